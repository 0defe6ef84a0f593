"""The building blocks under :class:`~supervisor.Supervisor`, for people who wire their own.

``supervisor`` itself exports what an application needs: the supervisor,
its configuration, the events, the errors. This module holds the layers
beneath, each usable alone:

- one program kept alive (:class:`ProgramSupervisor`) or run once
  (:class:`ProgramRunner`), putting their events on an :class:`EventQueue`;
- the frame decoder's validator pieces and the process state machine
  (:func:`transition`, :class:`Trigger`), the restart policy
  (:class:`BackoffPolicy`, :class:`GiveUpRule`, :class:`RestartTracker`);
- the router and its journal (:class:`Router`, :class:`Journal`,
  :class:`AsyncJournal`), the event hub and the event stamper;
- metrics (:class:`MetricsState`, :class:`SupervisorCollector`,
  :func:`serve_metrics`);
- the control commands, however a request arrives (:func:`control_request`),
  and their replies read back (:func:`result_of`, :func:`answer_error`,
  :func:`status_from_reply`, :func:`pending_options`); the fingerprint a
  chat card carries of the question it offers to answer
  (:func:`question_digest`);
- whole-line log files (:class:`LineLog`), for sinks that write files;
- the wall clock every part reads (:class:`Clock`, :class:`SystemClock`);
- the payload models of every event (``TaskData``, ``ApprovalRequestData``,
  ...), for annotations;
- each sink's settings model (``FileSinkConfig``, ...); a route also takes
  them as plain dicts.

Importing this module imports all of them; ``supervisor`` itself stays
cheap to import.
"""

from ._clock import Clock as Clock
from ._clock import SystemClock as SystemClock
from ._control.replies import answer_error as answer_error
from ._control.replies import pending_options as pending_options
from ._control.replies import result_of as result_of
from ._control.replies import status_from_reply as status_from_reply
from ._control.server import control_request as control_request
from ._core.backoff import BackoffPolicy as BackoffPolicy
from ._core.backoff import GiveUpRule as GiveUpRule
from ._core.backoff import RestartTracker as RestartTracker
from ._core.events import DeliveryDeadData as DeliveryDeadData
from ._core.events import EventStamper as EventStamper
from ._core.events import FrameInvalidData as FrameInvalidData
from ._core.events import ProcessExitData as ProcessExitData
from ._core.events import ProcessStalledData as ProcessStalledData
from ._core.events import ProcessStartData as ProcessStartData
from ._core.events import QuestionAnsweredData as QuestionAnsweredData
from ._core.events import QuestionTimeoutData as QuestionTimeoutData
from ._core.events import RouteOverflowData as RouteOverflowData
from ._core.frames import DEFAULT_MAX_FRAME_BYTES as DEFAULT_MAX_FRAME_BYTES
from ._core.frames import LineEndRemoved as LineEndRemoved
from ._core.frames import Rejected as Rejected
from ._core.messages import ApprovalRequestData as ApprovalRequestData
from ._core.messages import EventData as EventData
from ._core.messages import LogData as LogData
from ._core.messages import LoopStartData as LoopStartData
from ._core.messages import LoopStats as LoopStats
from ._core.messages import ProgressUpdateData as ProgressUpdateData
from ._core.messages import QuestionData as QuestionData
from ._core.messages import QuestionOption as QuestionOption
from ._core.messages import TaskCompleteData as TaskCompleteData
from ._core.messages import TaskData as TaskData
from ._core.messages import TaskFailedData as TaskFailedData
from ._core.questions import question_digest as question_digest
from ._core.state import Trigger as Trigger
from ._core.state import transition as transition
from ._logfile import LineLog as LineLog
from ._metrics.collector import SupervisorCollector as SupervisorCollector
from ._metrics.server import MetricsAddress as MetricsAddress
from ._metrics.server import bind_metrics_socket as bind_metrics_socket
from ._metrics.server import serve_metrics as serve_metrics
from ._metrics.state import MetricsState as MetricsState
from ._process.child import ChildSpec as ChildSpec
from ._process.program import ProgramSupervisor as ProgramSupervisor
from ._process.queue import EventQueue as EventQueue
from ._process.runner import ProgramRunner as ProgramRunner
from ._process.runner import RunStats as RunStats
from ._process.runner import TerminalSettings as TerminalSettings
from ._routing.config import CommandSinkConfig as CommandSinkConfig
from ._routing.config import FileSinkConfig as FileSinkConfig
from ._routing.config import RedisSinkConfig as RedisSinkConfig
from ._routing.config import TmuxSinkConfig as TmuxSinkConfig
from ._routing.config import WebhookSinkConfig as WebhookSinkConfig
from ._routing.hub import EventHub as EventHub
from ._routing.journal import AsyncJournal as AsyncJournal
from ._routing.journal import Journal as Journal
from ._routing.router import Router as Router

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "ApprovalRequestData",
    "AsyncJournal",
    "BackoffPolicy",
    "ChildSpec",
    "Clock",
    "CommandSinkConfig",
    "DeliveryDeadData",
    "EventData",
    "EventHub",
    "EventQueue",
    "EventStamper",
    "FileSinkConfig",
    "FrameInvalidData",
    "GiveUpRule",
    "Journal",
    "LineEndRemoved",
    "LineLog",
    "LogData",
    "LoopStartData",
    "LoopStats",
    "MetricsAddress",
    "MetricsState",
    "ProcessExitData",
    "ProcessStalledData",
    "ProcessStartData",
    "ProgramRunner",
    "ProgramSupervisor",
    "ProgressUpdateData",
    "QuestionAnsweredData",
    "QuestionData",
    "QuestionOption",
    "QuestionTimeoutData",
    "RedisSinkConfig",
    "Rejected",
    "RestartTracker",
    "RouteOverflowData",
    "Router",
    "RunStats",
    "SupervisorCollector",
    "SystemClock",
    "TaskCompleteData",
    "TaskData",
    "TaskFailedData",
    "TerminalSettings",
    "TmuxSinkConfig",
    "Trigger",
    "WebhookSinkConfig",
    "answer_error",
    "bind_metrics_socket",
    "control_request",
    "pending_options",
    "question_digest",
    "result_of",
    "serve_metrics",
    "status_from_reply",
    "transition",
]
