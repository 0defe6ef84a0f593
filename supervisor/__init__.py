"""ipc-supervisor: run programs that speak in-band IPC frames, and route their events.

The public surface, by who needs it:

- ``supervisor``: what an application uses (below, one table);
- ``supervisor.emit``: writing frames from a Python child (standard library only);
- ``supervisor.sinks``: the interface an event sink implements;
- ``supervisor.testing``: helpers for testing your own routes and sinks;
- ``supervisor.lowlevel``: the building blocks beneath :class:`Supervisor`.

General layout of the private modules, each layer importing only those
above it (``tests/test_layers.py`` enforces it)::

    _core        sans-IO: errors, frames, messages, events, state, backoff,
                 tasks, questions, filter, match, summary
    _paths       instance names, private directories
    _logfile     whole-line log files (reopened after rotation)
    _routing     route config, router, journal, hub; factory names the adapters
    _config      supervise.toml and its environment overrides
    _process     the child, the reaper, one run, one program's supervision
    _metrics     counters, the collector, /metrics
    _supervisor  Supervisor and open_supervisor()
    _control     the control socket
    _cli         the command line (imported only by __main__)
"""

import importlib as _importlib
import typing as _typing
import warnings as _warnings

__version__ = "0.1.0"

# The one export table: each public name and the private module defining it.
# Names are imported on first use, so a child that needs only the stdlib-only
# ``supervisor.emit`` does not pay for trio and pydantic.
_EXPORTS: dict[str, str] = {
    # the supervisor
    "Supervisor": "._supervisor",
    "open_supervisor": "._supervisor",
    # configuration
    "SupervisorConfig": "._config",
    "ProgramConfig": "._config",
    "BackoffConfig": "._config",
    "GiveUpConfig": "._config",
    "AnswersConfig": "._config",
    "LogConfig": "._config",
    "JournalConfig": "._config",
    "MetricsConfig": "._config",
    "TelegramConfig": "._config",
    "RouteConfig": "._routing.config",
    "RetryConfig": "._routing.config",
    "load_config": "._config",
    # events: the child's messages
    "Event": "._core.events",
    "IpcMessage": "._core.messages",
    "GenericMessage": "._core.messages",
    "TaskStart": "._core.messages",
    "TaskComplete": "._core.messages",
    "TaskFailed": "._core.messages",
    "LoopStart": "._core.messages",
    "LoopEnd": "._core.messages",
    "Question": "._core.messages",
    "ApprovalRequest": "._core.messages",
    "ProgressUpdate": "._core.messages",
    "LogMessage": "._core.messages",
    # events: supervise's own
    "ProcessStart": "._core.events",
    "ProcessExit": "._core.events",
    "ProcessStateChanged": "._core.events",
    "ProcessStalled": "._core.events",
    "FrameInvalid": "._core.events",
    "QuestionAnswered": "._core.events",
    "QuestionTimeout": "._core.events",
    "TaskTimeout": "._core.events",
    "RouteOverflow": "._core.events",
    "DeliveryDead": "._core.events",
    # decoding frames yourself
    "FrameDecoder": "._core.frames",
    "Frame": "._core.frames",
    "Output": "._core.frames",
    "MalformedFrame": "._core.frames",
    "validate_payload": "._core.messages",
    # status
    "ProcessState": "._core.state",
    "ProgramStatus": "._process.program",
    "DeadLetter": "._routing.journal",
    "RouteStats": "._routing.router",
    # sinks and helpers
    "Sink": ".sinks",
    "CallbackSink": ".sinks",
    "compile_filter": "._core.filter",
    "summarize": "._core.summary",
    # errors (the tree is drawn in supervisor._core.errors)
    "SupervisorError": "._core.errors",
    "ConfigError": "._core.errors",
    "SpawnError": "._core.errors",
    "StateTransitionError": "._core.errors",
    "SinkError": "._core.errors",
    "UsageError": "._core.errors",
    "UnknownNameError": "._core.errors",
    "ControlError": "._core.errors",
    "FilterError": "._core.errors",
    "AnswerError": "._core.errors",
    "UnknownQuestionError": "._core.errors",
    "AlreadyAnsweredError": "._core.errors",
    "QuestionExpiredError": "._core.errors",
    "InvalidResponseError": "._core.errors",
    "SupervisorNotRunningError": "._core.errors",
}

# Names that left the package root: still importable from here for one
# release, with a DeprecationWarning naming their new home.
_MOVED: dict[str, str] = {
    "ApprovalRequestData": "supervisor.lowlevel",
    "AsyncJournal": "supervisor.lowlevel",
    "CapturingSink": "supervisor.testing",
    "ChildSpec": "supervisor.lowlevel",
    "CommandSinkConfig": "supervisor.lowlevel",
    "DEFAULT_MAX_FRAME_BYTES": "supervisor.lowlevel",
    "DeliveryDeadData": "supervisor.lowlevel",
    "EventQueue": "supervisor.lowlevel",
    "EventStamper": "supervisor.lowlevel",
    "FileSinkConfig": "supervisor.lowlevel",
    "FrameInvalidData": "supervisor.lowlevel",
    "Journal": "supervisor.lowlevel",
    "LineEndRemoved": "supervisor.lowlevel",
    "LogData": "supervisor.lowlevel",
    "LoopStartData": "supervisor.lowlevel",
    "LoopStats": "supervisor.lowlevel",
    "MetricsAddress": "supervisor.lowlevel",
    "MetricsState": "supervisor.lowlevel",
    "ProcessExitData": "supervisor.lowlevel",
    "ProcessStartData": "supervisor.lowlevel",
    "ProgramRunner": "supervisor.lowlevel",
    "ProgramSupervisor": "supervisor.lowlevel",
    "ProgressUpdateData": "supervisor.lowlevel",
    "QuestionData": "supervisor.lowlevel",
    "QuestionOption": "supervisor.lowlevel",
    "Rejected": "supervisor.lowlevel",
    "RouteOverflowData": "supervisor.lowlevel",
    "RunStats": "supervisor.lowlevel",
    "SupervisorCollector": "supervisor.lowlevel",
    "TaskCompleteData": "supervisor.lowlevel",
    "TaskData": "supervisor.lowlevel",
    "TaskFailedData": "supervisor.lowlevel",
    "TerminalSettings": "supervisor.lowlevel",
    "TmuxSinkConfig": "supervisor.lowlevel",
    "WebhookSinkConfig": "supervisor.lowlevel",
    "bind_metrics_socket": "supervisor.lowlevel",
    "serve_metrics": "supervisor.lowlevel",
}

# Names that were renamed: old name -> new name, same warning.
_RENAMED: dict[str, str] = {
    "InvalidFrame": "MalformedFrame",
}

__all__ = [*_EXPORTS]  # checked against the table by tests/test_exports.py

if _typing.TYPE_CHECKING:  # the same table, spelled out for type checkers
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
    from ._core.errors import AlreadyAnsweredError as AlreadyAnsweredError
    from ._core.errors import AnswerError as AnswerError
    from ._core.errors import ConfigError as ConfigError
    from ._core.errors import ControlError as ControlError
    from ._core.errors import FilterError as FilterError
    from ._core.errors import InvalidResponseError as InvalidResponseError
    from ._core.errors import QuestionExpiredError as QuestionExpiredError
    from ._core.errors import SinkError as SinkError
    from ._core.errors import SpawnError as SpawnError
    from ._core.errors import StateTransitionError as StateTransitionError
    from ._core.errors import SupervisorError as SupervisorError
    from ._core.errors import SupervisorNotRunningError as SupervisorNotRunningError
    from ._core.errors import UnknownNameError as UnknownNameError
    from ._core.errors import UnknownQuestionError as UnknownQuestionError
    from ._core.errors import UsageError as UsageError
    from ._core.events import DeliveryDead as DeliveryDead
    from ._core.events import Event as Event
    from ._core.events import FrameInvalid as FrameInvalid
    from ._core.events import ProcessExit as ProcessExit
    from ._core.events import ProcessStalled as ProcessStalled
    from ._core.events import ProcessStart as ProcessStart
    from ._core.events import ProcessStateChanged as ProcessStateChanged
    from ._core.events import QuestionAnswered as QuestionAnswered
    from ._core.events import QuestionTimeout as QuestionTimeout
    from ._core.events import RouteOverflow as RouteOverflow
    from ._core.events import TaskTimeout as TaskTimeout
    from ._core.filter import compile_filter as compile_filter
    from ._core.frames import Frame as Frame
    from ._core.frames import FrameDecoder as FrameDecoder
    from ._core.frames import MalformedFrame as MalformedFrame
    from ._core.frames import Output as Output
    from ._core.messages import ApprovalRequest as ApprovalRequest
    from ._core.messages import GenericMessage as GenericMessage
    from ._core.messages import IpcMessage as IpcMessage
    from ._core.messages import LogMessage as LogMessage
    from ._core.messages import LoopEnd as LoopEnd
    from ._core.messages import LoopStart as LoopStart
    from ._core.messages import ProgressUpdate as ProgressUpdate
    from ._core.messages import Question as Question
    from ._core.messages import TaskComplete as TaskComplete
    from ._core.messages import TaskFailed as TaskFailed
    from ._core.messages import TaskStart as TaskStart
    from ._core.messages import validate_payload as validate_payload
    from ._core.state import ProcessState as ProcessState
    from ._core.summary import summarize as summarize
    from ._process.program import ProgramStatus as ProgramStatus
    from ._routing.config import RetryConfig as RetryConfig
    from ._routing.config import RouteConfig as RouteConfig
    from ._routing.journal import DeadLetter as DeadLetter
    from ._routing.router import RouteStats as RouteStats
    from ._supervisor import Supervisor as Supervisor
    from ._supervisor import open_supervisor as open_supervisor
    from .sinks import CallbackSink as CallbackSink
    from .sinks import Sink as Sink


def __getattr__(name: str) -> _typing.Any:
    module = _EXPORTS.get(name)
    if module is not None:
        value = getattr(_importlib.import_module(module, __name__), name)
        globals()[name] = value
        return value
    new_home, new_name = _MOVED.get(name), _RENAMED.get(name)
    if new_home is None and new_name is None:
        raise AttributeError(f"module 'supervisor' has no attribute {name!r}")
    where = f"{new_home}.{name}" if new_home else f"supervisor.{new_name}"
    _warnings.warn(
        f"supervisor.{name} is deprecated: use {where}; the old name goes away in the next release",
        DeprecationWarning,
        stacklevel=2,
    )
    if new_home is not None:
        return getattr(_importlib.import_module(new_home), name)
    return __getattr__(new_name or name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
