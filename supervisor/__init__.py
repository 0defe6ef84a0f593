"""ipc-supervisor: run programs that speak in-band IPC frames, and route their events.

The public API is re-exported here; everything else lives in private modules.
Names are imported on first use, so a child that only needs the stdlib-only
``supervisor.emit`` helper does not pay for importing trio and pydantic.
"""

import importlib as _importlib
import typing as _typing
import warnings as _warnings

if _typing.TYPE_CHECKING:
    from ._config import AnswersConfig as AnswersConfig
    from ._config import BackoffConfig as BackoffConfig
    from ._config import GiveUpConfig as GiveUpConfig
    from ._config import JournalConfig as JournalConfig
    from ._config import LogConfig as LogConfig
    from ._config import MetricsConfig as MetricsConfig
    from ._config import ProgramConfig as ProgramConfig
    from ._config import SupervisorConfig as SupervisorConfig
    from ._config import TelegramConfig as TelegramConfig
    from ._config import load_config as load_config
    from ._core.errors import ConfigError as ConfigError
    from ._core.errors import SinkError as SinkError
    from ._core.errors import SpawnError as SpawnError
    from ._core.errors import StateTransitionError as StateTransitionError
    from ._core.errors import SupervisorError as SupervisorError
    from ._core.events import DeliveryDead as DeliveryDead
    from ._core.events import DeliveryDeadData as DeliveryDeadData
    from ._core.events import Event as Event
    from ._core.events import EventStamper as EventStamper
    from ._core.events import FrameInvalid as FrameInvalid
    from ._core.events import FrameInvalidData as FrameInvalidData
    from ._core.events import ProcessExit as ProcessExit
    from ._core.events import ProcessExitData as ProcessExitData
    from ._core.events import ProcessStalled as ProcessStalled
    from ._core.events import ProcessStart as ProcessStart
    from ._core.events import ProcessStartData as ProcessStartData
    from ._core.events import ProcessStateChanged as ProcessStateChanged
    from ._core.events import QuestionAnswered as QuestionAnswered
    from ._core.events import QuestionTimeout as QuestionTimeout
    from ._core.events import RouteOverflow as RouteOverflow
    from ._core.events import RouteOverflowData as RouteOverflowData
    from ._core.events import TaskTimeout as TaskTimeout
    from ._core.filter import FilterError as FilterError
    from ._core.filter import compile_filter as compile_filter
    from ._core.frames import DEFAULT_MAX_FRAME_BYTES as DEFAULT_MAX_FRAME_BYTES
    from ._core.frames import Frame as Frame
    from ._core.frames import FrameDecoder as FrameDecoder
    from ._core.frames import LineEndRemoved as LineEndRemoved
    from ._core.frames import MalformedFrame as MalformedFrame
    from ._core.frames import Output as Output
    from ._core.frames import Rejected as Rejected
    from ._core.messages import ApprovalRequest as ApprovalRequest
    from ._core.messages import ApprovalRequestData as ApprovalRequestData
    from ._core.messages import GenericMessage as GenericMessage
    from ._core.messages import IpcMessage as IpcMessage
    from ._core.messages import LogData as LogData
    from ._core.messages import LogMessage as LogMessage
    from ._core.messages import LoopEnd as LoopEnd
    from ._core.messages import LoopStart as LoopStart
    from ._core.messages import LoopStartData as LoopStartData
    from ._core.messages import LoopStats as LoopStats
    from ._core.messages import ProgressUpdate as ProgressUpdate
    from ._core.messages import ProgressUpdateData as ProgressUpdateData
    from ._core.messages import Question as Question
    from ._core.messages import QuestionData as QuestionData
    from ._core.messages import QuestionOption as QuestionOption
    from ._core.messages import TaskComplete as TaskComplete
    from ._core.messages import TaskCompleteData as TaskCompleteData
    from ._core.messages import TaskData as TaskData
    from ._core.messages import TaskFailed as TaskFailed
    from ._core.messages import TaskFailedData as TaskFailedData
    from ._core.messages import TaskStart as TaskStart
    from ._core.messages import validate_payload as validate_payload
    from ._core.questions import AlreadyAnsweredError as AlreadyAnsweredError
    from ._core.questions import AnswerError as AnswerError
    from ._core.questions import InvalidResponseError as InvalidResponseError
    from ._core.questions import QuestionExpiredError as QuestionExpiredError
    from ._core.questions import UnknownQuestionError as UnknownQuestionError
    from ._core.state import ProcessState as ProcessState
    from ._core.summary import summarize as summarize
    from ._metrics.server import MetricsAddress as MetricsAddress
    from ._metrics.server import bind_metrics_socket as bind_metrics_socket
    from ._metrics.server import serve_metrics as serve_metrics
    from ._metrics.state import MetricsState as MetricsState
    from ._metrics.state import SupervisorCollector as SupervisorCollector
    from ._process.child import ChildSpec as ChildSpec
    from ._process.program import ControlError as ControlError
    from ._process.program import ProgramStatus as ProgramStatus
    from ._process.program import ProgramSupervisor as ProgramSupervisor
    from ._process.queue import EventQueue as EventQueue
    from ._process.runner import ProgramRunner as ProgramRunner
    from ._process.runner import RunStats as RunStats
    from ._process.runner import TerminalSettings as TerminalSettings
    from ._routing.config import CommandSinkConfig as CommandSinkConfig
    from ._routing.config import FileSinkConfig as FileSinkConfig
    from ._routing.config import RetryConfig as RetryConfig
    from ._routing.config import RouteConfig as RouteConfig
    from ._routing.config import TmuxSinkConfig as TmuxSinkConfig
    from ._routing.config import WebhookSinkConfig as WebhookSinkConfig
    from ._routing.journal import AsyncJournal as AsyncJournal
    from ._routing.journal import DeadLetter as DeadLetter
    from ._routing.journal import Journal as Journal
    from ._routing.router import RouteStats as RouteStats
    from ._supervisor import Supervisor as Supervisor
    from .sinks import CallbackSink as CallbackSink
    from .sinks import CapturingSink as CapturingSink
    from .sinks import Sink as Sink

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "AlreadyAnsweredError",
    "AnswerError",
    "AnswersConfig",
    "ApprovalRequest",
    "ApprovalRequestData",
    "AsyncJournal",
    "BackoffConfig",
    "CallbackSink",
    "CapturingSink",
    "ChildSpec",
    "CommandSinkConfig",
    "ConfigError",
    "ControlError",
    "DeadLetter",
    "DeliveryDead",
    "DeliveryDeadData",
    "Event",
    "EventQueue",
    "EventStamper",
    "FileSinkConfig",
    "FilterError",
    "Frame",
    "FrameDecoder",
    "FrameInvalid",
    "FrameInvalidData",
    "GenericMessage",
    "GiveUpConfig",
    "InvalidResponseError",
    "IpcMessage",
    "Journal",
    "JournalConfig",
    "LineEndRemoved",
    "LogConfig",
    "LogData",
    "LogMessage",
    "LoopEnd",
    "LoopStart",
    "LoopStartData",
    "LoopStats",
    "MalformedFrame",
    "MetricsAddress",
    "MetricsConfig",
    "MetricsState",
    "Output",
    "ProcessExit",
    "ProcessExitData",
    "ProcessStalled",
    "ProcessStart",
    "ProcessStartData",
    "ProcessState",
    "ProcessStateChanged",
    "ProgramConfig",
    "ProgramRunner",
    "ProgramStatus",
    "ProgramSupervisor",
    "ProgressUpdate",
    "ProgressUpdateData",
    "Question",
    "QuestionAnswered",
    "QuestionData",
    "QuestionExpiredError",
    "QuestionOption",
    "QuestionTimeout",
    "Rejected",
    "RetryConfig",
    "RouteConfig",
    "RouteOverflow",
    "RouteOverflowData",
    "RouteStats",
    "RunStats",
    "Sink",
    "SinkError",
    "SpawnError",
    "StateTransitionError",
    "Supervisor",
    "SupervisorCollector",
    "SupervisorConfig",
    "SupervisorError",
    "TaskComplete",
    "TaskCompleteData",
    "TaskData",
    "TaskFailed",
    "TaskFailedData",
    "TaskStart",
    "TaskTimeout",
    "TelegramConfig",
    "TerminalSettings",
    "TmuxSinkConfig",
    "UnknownQuestionError",
    "WebhookSinkConfig",
    "bind_metrics_socket",
    "compile_filter",
    "load_config",
    "serve_metrics",
    "summarize",
    "validate_payload",
]


_LAZY: dict[str, str] = {
    "ChildSpec": "._process.child",
    "ProgramConfig": "._config",
    "ConfigError": "._core.errors",
    "SinkError": "._core.errors",
    "SpawnError": "._core.errors",
    "SupervisorError": "._core.errors",
    "Event": "._core.events",
    "EventStamper": "._core.events",
    "FrameInvalid": "._core.events",
    "FrameInvalidData": "._core.events",
    "ProcessExit": "._core.events",
    "ProcessExitData": "._core.events",
    "ProcessStart": "._core.events",
    "ProcessStartData": "._core.events",
    "DEFAULT_MAX_FRAME_BYTES": "._core.frames",
    "Frame": "._core.frames",
    "FrameDecoder": "._core.frames",
    "MalformedFrame": "._core.frames",
    "LineEndRemoved": "._core.frames",
    "Output": "._core.frames",
    "Rejected": "._core.frames",
    "ApprovalRequest": "._core.messages",
    "ApprovalRequestData": "._core.messages",
    "GenericMessage": "._core.messages",
    "IpcMessage": "._core.messages",
    "LogData": "._core.messages",
    "LogMessage": "._core.messages",
    "LoopEnd": "._core.messages",
    "LoopStart": "._core.messages",
    "LoopStartData": "._core.messages",
    "LoopStats": "._core.messages",
    "ProgressUpdate": "._core.messages",
    "ProgressUpdateData": "._core.messages",
    "Question": "._core.messages",
    "QuestionData": "._core.messages",
    "QuestionOption": "._core.messages",
    "TaskComplete": "._core.messages",
    "TaskCompleteData": "._core.messages",
    "TaskData": "._core.messages",
    "TaskFailed": "._core.messages",
    "TaskFailedData": "._core.messages",
    "TaskStart": "._core.messages",
    "validate_payload": "._core.messages",
    "EventQueue": "._process.queue",
    "ProgramRunner": "._process.runner",
    "RunStats": "._process.runner",
    "TerminalSettings": "._process.runner",
    "Sink": ".sinks",
    "ProgramSupervisor": "._process.program",
    "ProgramStatus": "._process.program",
    "ControlError": "._process.program",
    "ProcessStalled": "._core.events",
    "SupervisorConfig": "._config",
    "load_config": "._config",
    "BackoffConfig": "._config",
    "GiveUpConfig": "._config",
    "AnswersConfig": "._config",
    "LogConfig": "._config",
    "ProcessState": "._core.state",
    "StateTransitionError": "._core.errors",
    "ProcessStateChanged": "._core.events",
    "AnswerError": "._core.questions",
    "AlreadyAnsweredError": "._core.questions",
    "UnknownQuestionError": "._core.questions",
    "QuestionExpiredError": "._core.questions",
    "InvalidResponseError": "._core.questions",
    "QuestionAnswered": "._core.events",
    "QuestionTimeout": "._core.events",
    "TaskTimeout": "._core.events",
    "Supervisor": "._supervisor",
    "CallbackSink": ".sinks",
    "CapturingSink": ".sinks",
    "JournalConfig": "._config",
    "RouteConfig": "._routing.config",
    "RetryConfig": "._routing.config",
    "FileSinkConfig": "._routing.config",
    "TmuxSinkConfig": "._routing.config",
    "CommandSinkConfig": "._routing.config",
    "WebhookSinkConfig": "._routing.config",
    "RouteStats": "._routing.router",
    "RouteOverflow": "._core.events",
    "RouteOverflowData": "._core.events",
    "DeliveryDead": "._core.events",
    "DeliveryDeadData": "._core.events",
    "DeadLetter": "._routing.journal",
    "Journal": "._routing.journal",
    "AsyncJournal": "._routing.journal",
    "FilterError": "._core.filter",
    "compile_filter": "._core.filter",
    "summarize": "._core.summary",
    "TelegramConfig": "._config",
    "serve_metrics": "._metrics.server",
    "bind_metrics_socket": "._metrics.server",
    "MetricsAddress": "._metrics.server",
    "MetricsConfig": "._config",
    "MetricsState": "._metrics.state",
    "SupervisorCollector": "._metrics.state",
}


_DEPRECATED: dict[str, str] = {
    # old name: new name. Each access warns, so the old name is not cached.
    "InvalidFrame": "MalformedFrame",
}
"""Names kept importable for a while after a rename; accessing one warns."""


def __getattr__(name: str) -> _typing.Any:
    new_name = _DEPRECATED.get(name)
    if new_name is not None:
        _warnings.warn(
            f"supervisor.{name} is deprecated; use supervisor.{new_name}",
            DeprecationWarning,
            stacklevel=2,
        )
        return __getattr__(new_name)
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'supervisor' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
