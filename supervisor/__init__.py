"""ipc-supervisor: run programs that speak in-band IPC frames, and route their events.

The public API is re-exported here; everything else lives in private modules.
Names are imported on first use, so a child that only needs the stdlib-only
``supervisor.emit`` helper does not pay for importing trio and pydantic.
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from ._app import Supervisor as Supervisor
    from ._child import ChildSpec as ChildSpec
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
    from ._errors import ConfigError as ConfigError
    from ._errors import SinkError as SinkError
    from ._errors import SpawnError as SpawnError
    from ._errors import StateTransitionError as StateTransitionError
    from ._errors import SupervisorError as SupervisorError
    from ._events import Event as Event
    from ._events import EventStamper as EventStamper
    from ._events import FrameInvalid as FrameInvalid
    from ._events import FrameInvalidData as FrameInvalidData
    from ._events import ProcessExit as ProcessExit
    from ._events import ProcessExitData as ProcessExitData
    from ._events import ProcessStart as ProcessStart
    from ._events import ProcessStartData as ProcessStartData
    from ._events import ProcessStateChanged as ProcessStateChanged
    from ._filter import FilterError as FilterError
    from ._filter import compile_filter as compile_filter
    from ._frames import DEFAULT_MAX_FRAME_BYTES as DEFAULT_MAX_FRAME_BYTES
    from ._frames import Frame as Frame
    from ._frames import FrameDecoder as FrameDecoder
    from ._frames import InvalidFrame as InvalidFrame
    from ._frames import LineEndRemoved as LineEndRemoved
    from ._frames import Output as Output
    from ._frames import Rejected as Rejected
    from ._journal import AsyncJournal as AsyncJournal
    from ._journal import DeadLetter as DeadLetter
    from ._journal import Journal as Journal
    from ._messages import ApprovalRequest as ApprovalRequest
    from ._messages import ApprovalRequestData as ApprovalRequestData
    from ._messages import GenericMessage as GenericMessage
    from ._messages import IpcMessage as IpcMessage
    from ._messages import LogData as LogData
    from ._messages import LogMessage as LogMessage
    from ._messages import LoopEnd as LoopEnd
    from ._messages import LoopStart as LoopStart
    from ._messages import LoopStartData as LoopStartData
    from ._messages import LoopStats as LoopStats
    from ._messages import ProgressUpdate as ProgressUpdate
    from ._messages import ProgressUpdateData as ProgressUpdateData
    from ._messages import Question as Question
    from ._messages import QuestionData as QuestionData
    from ._messages import QuestionOption as QuestionOption
    from ._messages import TaskComplete as TaskComplete
    from ._messages import TaskCompleteData as TaskCompleteData
    from ._messages import TaskData as TaskData
    from ._messages import TaskFailed as TaskFailed
    from ._messages import TaskFailedData as TaskFailedData
    from ._messages import TaskStart as TaskStart
    from ._messages import validate_payload as validate_payload
    from ._metrics import MetricsState as MetricsState
    from ._metrics import SupervisorCollector as SupervisorCollector
    from ._metrics_server import MetricsAddress as MetricsAddress
    from ._metrics_server import bind_metrics_socket as bind_metrics_socket
    from ._metrics_server import serve_metrics as serve_metrics
    from ._questions import AlreadyAnsweredError as AlreadyAnsweredError
    from ._questions import AnswerError as AnswerError
    from ._questions import InvalidResponseError as InvalidResponseError
    from ._questions import QuestionAnswered as QuestionAnswered
    from ._questions import QuestionExpiredError as QuestionExpiredError
    from ._questions import QuestionTimeout as QuestionTimeout
    from ._questions import UnknownQuestionError as UnknownQuestionError
    from ._queue import EventQueue as EventQueue
    from ._router import DeliveryDead as DeliveryDead
    from ._router import DeliveryDeadData as DeliveryDeadData
    from ._router import RouteOverflow as RouteOverflow
    from ._router import RouteOverflowData as RouteOverflowData
    from ._router import RouteStats as RouteStats
    from ._routes import CommandSinkConfig as CommandSinkConfig
    from ._routes import FileSinkConfig as FileSinkConfig
    from ._routes import RetryConfig as RetryConfig
    from ._routes import RouteConfig as RouteConfig
    from ._routes import TmuxSinkConfig as TmuxSinkConfig
    from ._routes import WebhookSinkConfig as WebhookSinkConfig
    from ._runner import ProgramRunner as ProgramRunner
    from ._runner import RunStats as RunStats
    from ._runner import TerminalSettings as TerminalSettings
    from ._state import ProcessState as ProcessState
    from ._summary import summarize as summarize
    from ._supervisor import ControlError as ControlError
    from ._supervisor import ProcessStalled as ProcessStalled
    from ._supervisor import ProgramStatus as ProgramStatus
    from ._supervisor import ProgramSupervisor as ProgramSupervisor
    from ._tasks import TaskTimeout as TaskTimeout
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
    "InvalidFrame",
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
    "ChildSpec": "._child",
    "ProgramConfig": "._config",
    "ConfigError": "._errors",
    "SinkError": "._errors",
    "SpawnError": "._errors",
    "SupervisorError": "._errors",
    "Event": "._events",
    "EventStamper": "._events",
    "FrameInvalid": "._events",
    "FrameInvalidData": "._events",
    "ProcessExit": "._events",
    "ProcessExitData": "._events",
    "ProcessStart": "._events",
    "ProcessStartData": "._events",
    "DEFAULT_MAX_FRAME_BYTES": "._frames",
    "Frame": "._frames",
    "FrameDecoder": "._frames",
    "InvalidFrame": "._frames",
    "LineEndRemoved": "._frames",
    "Output": "._frames",
    "Rejected": "._frames",
    "ApprovalRequest": "._messages",
    "ApprovalRequestData": "._messages",
    "GenericMessage": "._messages",
    "IpcMessage": "._messages",
    "LogData": "._messages",
    "LogMessage": "._messages",
    "LoopEnd": "._messages",
    "LoopStart": "._messages",
    "LoopStartData": "._messages",
    "LoopStats": "._messages",
    "ProgressUpdate": "._messages",
    "ProgressUpdateData": "._messages",
    "Question": "._messages",
    "QuestionData": "._messages",
    "QuestionOption": "._messages",
    "TaskComplete": "._messages",
    "TaskCompleteData": "._messages",
    "TaskData": "._messages",
    "TaskFailed": "._messages",
    "TaskFailedData": "._messages",
    "TaskStart": "._messages",
    "validate_payload": "._messages",
    "EventQueue": "._queue",
    "ProgramRunner": "._runner",
    "RunStats": "._runner",
    "TerminalSettings": "._runner",
    "Sink": ".sinks",
    "ProgramSupervisor": "._supervisor",
    "ProgramStatus": "._supervisor",
    "ControlError": "._supervisor",
    "ProcessStalled": "._supervisor",
    "SupervisorConfig": "._config",
    "load_config": "._config",
    "BackoffConfig": "._config",
    "GiveUpConfig": "._config",
    "AnswersConfig": "._config",
    "LogConfig": "._config",
    "ProcessState": "._state",
    "StateTransitionError": "._errors",
    "ProcessStateChanged": "._events",
    "AnswerError": "._questions",
    "AlreadyAnsweredError": "._questions",
    "UnknownQuestionError": "._questions",
    "QuestionExpiredError": "._questions",
    "InvalidResponseError": "._questions",
    "QuestionAnswered": "._questions",
    "QuestionTimeout": "._questions",
    "TaskTimeout": "._tasks",
    "Supervisor": "._app",
    "CallbackSink": ".sinks",
    "CapturingSink": ".sinks",
    "JournalConfig": "._config",
    "RouteConfig": "._routes",
    "RetryConfig": "._routes",
    "FileSinkConfig": "._routes",
    "TmuxSinkConfig": "._routes",
    "CommandSinkConfig": "._routes",
    "WebhookSinkConfig": "._routes",
    "RouteStats": "._router",
    "RouteOverflow": "._router",
    "RouteOverflowData": "._router",
    "DeliveryDead": "._router",
    "DeliveryDeadData": "._router",
    "DeadLetter": "._journal",
    "Journal": "._journal",
    "AsyncJournal": "._journal",
    "FilterError": "._filter",
    "compile_filter": "._filter",
    "summarize": "._summary",
    "TelegramConfig": "._config",
    "serve_metrics": "._metrics_server",
    "bind_metrics_socket": "._metrics_server",
    "MetricsAddress": "._metrics_server",
    "MetricsConfig": "._config",
    "MetricsState": "._metrics",
    "SupervisorCollector": "._metrics",
}


def __getattr__(name: str) -> _typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'supervisor' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
