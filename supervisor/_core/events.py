"""Events: what subscribers receive, from child frames and from supervise itself.

An :class:`Event` wraps one message (a validated child frame, or one of
supervise's own facts such as ``process_exit``) with what only the receiving
side knows: the program's name, a ``seq`` that orders every event of a run,
and ``received_at``. Its JSON form is flat, so a line of ``--events`` output
reads like the child's frame with a few fields added::

    {"seq":3,"program":"loopwork","received_at":1795236690950,"source":"child",
     "type":"ipc","version":"1.0","event":"task_start","data":{...},
     "timestamp":1795236690901,"messageId":"...","position":"line_start"}

The envelope belongs to supervise. Its top-level keys are a fixed set
(:data:`ENVELOPE_KEYS`), written once each and in one order; whatever else a
child put at the top level of its frame is kept under ``"extra"``, where it
cannot collide with them. A child that sends ``"seq": 1`` or ``"source":
"supervisor"`` therefore changes nothing a reader (the journal's replay
included) takes from the line. Numbers that JSON cannot hold (a child's
``1e999`` or ``NaN``) are written as ``null``, so every line is strict JSON
that any parser (node's ``JSON.parse`` too) reads.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Generic, Literal, TypeAlias, cast

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_json
from typing_extensions import TypeVar

from .frames import InvalidReason
from .messages import (
    RESERVED_EVENTS,
    EventData,
    GenericMessage,
    IpcMessage,
    parse_message,
    verbatim_body,
)

__all__ = [
    "ENVELOPE_KEYS",
    "OWN_EVENTS",
    "RESERVED_EVENTS",
    "ApprovalIgnored",
    "ApprovalIgnoredData",
    "DeliveryDead",
    "DeliveryDeadData",
    "Event",
    "EventStamper",
    "EventsDropped",
    "EventsDroppedData",
    "FrameInvalid",
    "FrameInvalidData",
    "FrameUntrusted",
    "FrameUntrustedData",
    "Position",
    "ProcessExit",
    "ProcessExitData",
    "ProcessStalled",
    "ProcessStalledData",
    "ProcessStart",
    "ProcessStartData",
    "ProcessStateChanged",
    "ProcessStateData",
    "QuestionAnswered",
    "QuestionAnsweredData",
    "QuestionKind",
    "QuestionTimeout",
    "QuestionTimeoutData",
    "QuestionWithdrawn",
    "QuestionWithdrawnData",
    "RouteOverflow",
    "RouteOverflowData",
    "Source",
    "TaskTimeout",
    "TaskTimeoutData",
    "own_message_type",
]

Source: TypeAlias = Literal["child", "supervisor"]
Position: TypeAlias = Literal["line_start", "mid_line"]
"""Where a child's frame stood in its output: at the start of a line (where
the program itself writes its frames) or after other text on that line
(where text a program relays from someone else ends up)."""

ENVELOPE_KEYS = (
    "seq",
    "program",
    "received_at",
    "source",
    "type",
    "version",
    "event",
    "data",
    "timestamp",
    "messageId",
    "position",
    "extra",
)
"""Every top-level key an event line may have, in the order written."""

_PROTOCOL_KEYS = frozenset(("type", "version", "event", "data", "timestamp", "messageId"))


class ProcessStartData(EventData):
    """``process_start`` data."""

    pid: int
    argv: tuple[str, ...]


class ProcessExitData(EventData):
    """``process_exit`` data: exactly one of ``exit_code`` and ``signal`` is set."""

    exit_code: int | None
    signal: int | None
    uptime: float = Field(description="seconds the process ran")


class FrameInvalidData(EventData):
    """``frame_invalid`` data: why, where in the stream, and how it began."""

    reason: InvalidReason
    offset: int
    detail: str
    excerpt: str


QuestionKind: TypeAlias = Literal["question", "approval_request"]


class _OwnMessage(IpcMessage):
    """Base of supervise's own messages, which need no ``type`` argument.

    Every subclass is listed in :data:`OWN_EVENTS` below, so an event log
    read back (:meth:`Event.from_json`) gets its typed message again in any
    interpreter, whatever else of the package it has imported.
    """

    type: Literal["ipc"] = "ipc"

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        default = cls.model_fields["event"].default
        if isinstance(default, str) and default not in RESERVED_EVENTS:
            # Otherwise a child could send a frame that reads as this event.
            raise TypeError(f"{default!r} must be listed in RESERVED_EVENTS")


class ProcessStart(_OwnMessage):
    event: Literal["process_start"] = "process_start"
    data: ProcessStartData


class ProcessExit(_OwnMessage):
    event: Literal["process_exit"] = "process_exit"
    data: ProcessExitData


class FrameInvalid(_OwnMessage):
    event: Literal["frame_invalid"] = "frame_invalid"
    data: FrameInvalidData


class FrameUntrustedData(EventData):
    """``frame_untrusted`` data: a frame that asked for an answer, not trusted to.

    Attributes:
        event: the frame's event (``question`` or ``approval_request``).
        messageId: the frame's ``messageId`` as sent (or the one given it).
        position: where it stood in the output.
        reason: why it is not answerable, in one line.
        offset: byte offset of its ``__IPC_START__`` in the stream.
        excerpt: the start of the frame, for humans.
    """

    event: str
    messageId: str
    position: Position
    reason: str
    offset: int
    excerpt: str


class FrameUntrusted(_OwnMessage):
    event: Literal["frame_untrusted"] = "frame_untrusted"
    data: FrameUntrustedData


class ProcessStateData(EventData):
    """``process_state`` data: a transition of the program's state machine."""

    model_config = ConfigDict(populate_by_name=True, defer_build=True)

    from_: str = Field(alias="from")
    to: str
    reason: str


class ProcessStateChanged(_OwnMessage):
    event: Literal["process_state"] = "process_state"
    data: ProcessStateData


# -- questions and approvals (see questions.py) ------------------------------


class QuestionAnsweredData(EventData):
    """``question_answered`` data.

    ``decision`` is ``approve`` or ``deny`` for an approval answered through
    the vocabulary, and None otherwise (questions, raw answers).
    """

    messageId: str
    response: str
    written: str
    by: str
    latency: float
    decision: Literal["approve", "deny"] | None = None


class QuestionTimeoutData(EventData):
    """``question_timeout`` data: ``default`` is the word applied, or None."""

    messageId: str
    kind: QuestionKind
    default: str | None
    waited: float


class QuestionWithdrawnData(EventData):
    """``question_withdrawn`` data: the program left its prompt unanswered by supervise.

    ``reason`` says how: the program wrote past the prompt (its own timeout,
    or an answer from somewhere supervise does not see), or it exited.
    """

    messageId: str
    kind: QuestionKind
    reason: str
    waited: float


class ApprovalIgnoredData(EventData):
    """``approval_ignored`` data: a denied task went on.

    Attributes:
        messageId: the approval request that was denied.
        taskId: the task it was about.
        event: the program's frame that showed the task going on.
        by: who denied it (``ctl``, ``telegram:@alice``, ``timeout`` ...).
        action: what happened besides this event: ``report`` or ``stop``.
    """

    messageId: str
    taskId: str
    event: str
    by: str
    action: str


class QuestionAnswered(_OwnMessage):
    """A pending question or approval was answered and the answer written."""

    event: Literal["question_answered"] = "question_answered"
    data: QuestionAnsweredData


class QuestionTimeout(_OwnMessage):
    """Nobody answered in time; ``data.default`` says what was applied."""

    event: Literal["question_timeout"] = "question_timeout"
    data: QuestionTimeoutData


class QuestionWithdrawn(_OwnMessage):
    """The question is gone without an answer from supervise; nothing was written."""

    event: Literal["question_withdrawn"] = "question_withdrawn"
    data: QuestionWithdrawnData


class ApprovalIgnored(_OwnMessage):
    """The program went on with a task whose approval was denied."""

    event: Literal["approval_ignored"] = "approval_ignored"
    data: ApprovalIgnoredData


# -- tasks (see tasks.py) ----------------------------------------------------


class TaskTimeoutData(EventData):
    """``task_timeout`` data: a task has run for ``timeout`` seconds or more."""

    taskId: str
    namespace: str | None = None
    title: str | None = None
    elapsed: float
    timeout: float


class TaskTimeout(_OwnMessage):
    """A task ran longer than the configured limit; sent once per task.

    The task stays in flight: it may still complete, fail or be lost later.
    """

    event: Literal["task_timeout"] = "task_timeout"
    data: TaskTimeoutData


# -- routes (see _routing/router.py) -----------------------------------------


class RouteOverflowData(EventData):
    """``route_overflow`` data: a lagging route dropped events."""

    route: str
    dropped: int
    total_dropped: int


class RouteOverflow(_OwnMessage):
    event: Literal["route_overflow"] = "route_overflow"
    data: RouteOverflowData


class DeliveryDeadData(EventData):
    """``delivery_dead`` data: an event a route gave up on (see ``ctl dead``)."""

    route: str
    seq: int
    event: str
    error: str
    attempts: int


class DeliveryDead(_OwnMessage):
    event: Literal["delivery_dead"] = "delivery_dead"
    data: DeliveryDeadData


# -- process watchdog (see _process/program.py) ------------------------------


class ProcessStalledData(EventData):
    """``process_stalled`` data: how long the child has been silent."""

    silent_for: float
    stall_timeout: float
    action: str


class ProcessStalled(_OwnMessage):
    event: Literal["process_stalled"] = "process_stalled"
    data: ProcessStalledData


# -- control socket tails (see _control/server.py) ---------------------------


class EventsDroppedData(EventData):
    """``events_dropped`` data: a tail lost events ``first_seq`` to ``last_seq``."""

    count: int
    first_seq: int
    last_seq: int


class EventsDropped(_OwnMessage):
    """Sent to a tail that fell behind, in place of the events it lost."""

    event: Literal["events_dropped"] = "events_dropped"
    data: EventsDroppedData


OWN_EVENTS: Mapping[str, type[IpcMessage]] = MappingProxyType(
    {
        "process_start": ProcessStart,
        "process_exit": ProcessExit,
        "process_state": ProcessStateChanged,
        "process_stalled": ProcessStalled,
        "frame_invalid": FrameInvalid,
        "frame_untrusted": FrameUntrusted,
        "question_answered": QuestionAnswered,
        "question_timeout": QuestionTimeout,
        "question_withdrawn": QuestionWithdrawn,
        "approval_ignored": ApprovalIgnored,
        "task_timeout": TaskTimeout,
        "route_overflow": RouteOverflow,
        "delivery_dead": DeliveryDead,
        "events_dropped": EventsDropped,
    }
)
"""Every event of supervise's own, by name: how :meth:`Event.from_json` finds
the class of a ``"source": "supervisor"`` line. Written out rather than
collected by subclass registration, so it does not depend on which modules
happen to be imported."""


def own_message_type(event: str) -> type[IpcMessage]:
    """The class of supervise's own message ``event`` (GenericMessage if unknown)."""
    return OWN_EVENTS.get(event, GenericMessage)


_JSON_STRINGS: dict[str, bytes] = {}
_JSON_STRINGS_CAP = 1024


def _json_string(text: str) -> bytes:
    """``to_json(text)``, remembered for the few strings every line repeats.

    Program names, versions and event names come back on every line; a
    child choosing new ones each time only fills the cache up to its cap.
    """
    found = _JSON_STRINGS.get(text)
    if found is None:
        found = to_json(text)
        if len(_JSON_STRINGS) < _JSON_STRINGS_CAP:
            _JSON_STRINGS[text] = found
    return found


MessageT = TypeVar("MessageT", bound=IpcMessage, default=IpcMessage, covariant=True)
"""The message type an :class:`Event` carries; plain ``Event`` is ``Event[IpcMessage]``."""
NarrowT = TypeVar("NarrowT", bound=IpcMessage)


@dataclass(frozen=True, slots=True)
class Event(Generic[MessageT]):
    """One event of a supervised run, as routed to subscribers.

    A plain frozen dataclass rather than a pydantic model: one is built for
    every frame on the hot path, and everything in it is already validated
    (``message`` is the pydantic model) or produced by supervise itself.

    Attributes:
        seq: 1, 2, 3 ... in stream order within one run of supervise.
        program: the supervised program's name.
        received_at: epoch milliseconds when supervise received it.
        source: ``child`` for frames, ``supervisor`` for supervise's own events.
        message: the typed message (``message.event``, ``message.data`` ...).
            ``Event[ApprovalRequest]`` says which: its ``message.data`` is
            an :class:`ApprovalRequestData`, checked by type checkers;
            :meth:`narrow` gets there from a plain ``Event``.
        position: for a child's frame, where it stood in the output; None
            for supervise's own events.
    """

    seq: int
    program: str
    received_at: int
    source: Source
    message: MessageT
    position: Position | None = None
    # to_json()'s result, kept: the journal, a file route and a webhook all
    # want the same bytes of the same event.
    _json: bytes | None = field(default=None, init=False, repr=False, compare=False)
    # The child's payload, strictly validated into ``message``: its line may
    # carry it as it is (set by EventStamper.stamp; see verbatim_body).
    _verbatim: bytes | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def event(self) -> str:
        return self.message.event

    @property
    def data(self) -> Any:
        """``message.data``, untyped; ``event.narrow(Kind).message.data`` is typed."""
        return self.message.data

    def narrow(self, kind: type[NarrowT]) -> Event[NarrowT] | None:
        """This event typed as carrying a ``kind`` message, or None if it does not.

        ::

            if (approval := event.narrow(ApprovalRequest)) is not None:
                print(approval.message.data.question)  # typed: ApprovalRequestData
        """
        return cast("Event[NarrowT]", self) if isinstance(self.message, kind) else None

    @property
    def message_id(self) -> str:
        return self.message.messageId

    def to_json(self) -> bytes:
        """The flat JSON object, without a trailing newline.

        ``data`` holds exactly the fields the child sent (declared fields it
        left out are not written as ``null``), so the line stays faithful.
        """
        if self._json is None:
            object.__setattr__(self, "_json", self._serialize())
        assert self._json is not None
        return self._json

    def _serialize(self) -> bytes:
        verbatim = self._verbatim
        if verbatim is not None:
            verbatim = verbatim_body(verbatim, self.message)
        if verbatim is not None:
            # The envelope's own keys, then the child's payload as it came:
            # validated in strict mode, so its JSON is the message's (~0.5 us
            # where serialising it again cost ~4 us on the hot path).
            head = b'{"seq":%d,"program":%s,"received_at":%d,"source":"%s",' % (
                self.seq,
                _json_string(self.program),
                self.received_at,
                b"child" if self.source == "child" else b"supervisor",
            )
            if self.position is not None:
                head += b'"position":"%s",' % self.position.encode()
            return head + verbatim[1:]
        # One formatting of the envelope around pydantic's own serialization
        # of ``data``: ~1.8 us, where a to_json() call per field cost ~2.8 us.
        message = self.message
        data = message.data
        data_json = (
            data.__pydantic_serializer__.to_json(data, exclude_unset=True, by_alias=True)
            if isinstance(data, BaseModel)
            else to_json(data, inf_nan_mode="null")
        )
        timestamp = message.timestamp
        line = (
            b'{"seq":%d,"program":%s,"received_at":%d,"source":"%s","type":"ipc",'
            b'"version":%s,"event":%s,"data":%s,"timestamp":%s,"messageId":%s'
            % (
                self.seq,
                _json_string(self.program),
                self.received_at,
                b"child" if self.source == "child" else b"supervisor",
                _json_string(message.version),
                _json_string(message.event),
                data_json,
                b"%d" % timestamp if type(timestamp) is int else to_json(timestamp),
                to_json(message.messageId),
            )
        )
        if self.position is not None:
            line += b',"position":"%s"' % self.position.encode()
        if message.model_extra:
            line += b',"extra":' + to_json(message.model_extra, inf_nan_mode="null")
        return line + b"}"

    @classmethod
    def from_json(cls, line: bytes | str) -> Event:
        """Parse a line written by :meth:`to_json`.

        Only the envelope's own keys are read; a line that lacks one, or
        whose keys have the wrong types, is not an event.

        Raises:
            ValueError: the line is not JSON, or not an event
                (``pydantic.ValidationError`` is a ValueError).
        """
        fields = json.loads(line)
        if not isinstance(fields, dict):
            raise ValueError("not a JSON object")
        try:
            source = fields["source"]
            seq = fields["seq"]
            program = fields["program"]
            received_at = fields["received_at"]
        except KeyError as missing:
            raise ValueError(f"no {missing} field") from None
        position = fields.get("position")
        if (
            source not in ("child", "supervisor")
            or type(seq) is not int
            or type(received_at) is not int
            or not isinstance(program, str)
            or position not in (None, "line_start", "mid_line")
        ):
            raise ValueError("the envelope's fields have the wrong types")
        message_fields = {k: v for k, v in fields.items() if k in _PROTOCOL_KEYS}
        extra = fields.get("extra")
        if isinstance(extra, dict):
            for key, value in extra.items():
                if key not in _PROTOCOL_KEYS:
                    message_fields.setdefault(key, value)
        own = OWN_EVENTS.get(fields.get("event", "")) if source == "supervisor" else None
        # supervise also speaks the child's vocabulary (a lost task's
        # task_failed), so anything not its own parses as a child message.
        message = (
            own.model_validate(message_fields) if own is not None else parse_message(message_fields)
        )
        return Event(seq, program, received_at, source, message, position)


# Event's slots, set directly. A frozen dataclass's __init__ goes through
# object.__setattr__ for each field (~0.9 us an event); these descriptors
# take half that, and an event is built for every frame.
_new = object.__new__
_set_seq, _set_program, _set_received_at, _set_source, _set_message, _set_position = (
    Event.__dict__[name].__set__
    for name in ("seq", "program", "received_at", "source", "message", "position")
)
_set_json, _set_verbatim = Event.__dict__["_json"].__set__, Event.__dict__["_verbatim"].__set__


def _new_event(
    seq: int,
    program: str,
    received_at: int,
    source: Source,
    message: IpcMessage,
    position: Position | None,
    verbatim: bytes | None,
) -> Event:
    """``Event(seq, program, received_at, source, message, position)``, with ``_verbatim``."""
    event: Event = _new(Event)
    _set_seq(event, seq)
    _set_program(event, program)
    _set_received_at(event, received_at)
    _set_source(event, source)
    _set_message(event, message)
    _set_position(event, position)
    _set_json(event, None)
    _set_verbatim(event, verbatim)
    return event


class EventStamper:
    """Turns messages into numbered events for one program.

    Pure apart from its counter: the caller passes the receipt time, so tests
    and the sans-IO core stay clock-free. Stampers that share ``sequence``
    (one per program of a supervise run, and across restarts) number all
    events of the run in one series.
    """

    def __init__(self, program: str, sequence: Iterator[int] | None = None) -> None:
        self.program = program
        self._next_seq = (sequence if sequence is not None else itertools.count(1)).__next__

    def stamp(
        self,
        message: IpcMessage,
        received_at: int,
        source: Source = "child",
        position: Position | None = None,
        verbatim: bytes | None = None,
    ) -> Event:
        """Wrap ``message``, filling a missing ``timestamp`` with the receipt time.

        ``verbatim`` is the payload ``message`` was validated from in strict
        mode (:func:`~supervisor._core.messages.validate_payload_verbatim`):
        the event's line carries it as it is if
        :func:`~supervisor._core.messages.verbatim_body` allows.
        """
        if message.timestamp is None:
            message = message.model_copy(update={"timestamp": received_at})
            verbatim = None
        return _new_event(
            self._next_seq(), self.program, received_at, source, message, position, verbatim
        )
