"""Events: what subscribers receive, from child frames and from supervise itself.

An :class:`Event` wraps one message (a validated child frame, or one of
supervise's own facts such as ``process_exit``) with what only the receiving
side knows: the program's name, a ``seq`` that orders every event of a run,
and ``received_at``. Its JSON form is flat, so a line of ``--events`` output
reads like the child's frame with a few fields added::

    {"seq":3,"program":"loopwork","received_at":1795236690950,"source":"child",
     "type":"ipc","version":"1.0","event":"task_start","data":{...},
     "timestamp":1795236690901,"messageId":"..."}
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_json

from ._messages import EventData, GenericMessage, IpcMessage, parse_message

__all__ = [
    "Event",
    "EventStamper",
    "FrameInvalid",
    "FrameInvalidData",
    "ProcessExit",
    "ProcessExitData",
    "ProcessStart",
    "ProcessStartData",
    "ProcessStateChanged",
    "ProcessStateData",
    "Source",
    "own_message_type",
]

Source: TypeAlias = Literal["child", "supervisor"]


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

    reason: Literal["json", "type", "schema", "oversize", "unterminated"]
    offset: int
    detail: str
    excerpt: str


_OWN_MESSAGES: dict[str, type[IpcMessage]] = {}


class _OwnMessage(IpcMessage):
    """Base of supervise's own messages, which need no ``type`` argument.

    Each subclass registers under its event name, so an event log read back
    (:meth:`Event.from_json`) gets its typed message again, wherever in the
    package the subclass is defined.
    """

    type: Literal["ipc"] = "ipc"

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        default = cls.model_fields["event"].default
        if isinstance(default, str):
            _OWN_MESSAGES[default] = cls


class ProcessStart(_OwnMessage):
    event: Literal["process_start"] = "process_start"
    data: ProcessStartData


class ProcessExit(_OwnMessage):
    event: Literal["process_exit"] = "process_exit"
    data: ProcessExitData


class FrameInvalid(_OwnMessage):
    event: Literal["frame_invalid"] = "frame_invalid"
    data: FrameInvalidData


class ProcessStateData(EventData):
    """``process_state`` data: a transition of the program's state machine."""

    model_config = ConfigDict(populate_by_name=True)

    from_: str = Field(alias="from")
    to: str
    reason: str


class ProcessStateChanged(_OwnMessage):
    event: Literal["process_state"] = "process_state"
    data: ProcessStateData


def own_message_type(event: str) -> type[IpcMessage]:
    """The class of supervise's own message ``event`` (GenericMessage if unknown)."""
    return _OWN_MESSAGES.get(event, GenericMessage)


@dataclass(frozen=True, slots=True)
class Event:
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
    """

    seq: int
    program: str
    received_at: int
    source: Source
    message: IpcMessage
    # to_json()'s result, kept: the journal, a file route and a webhook all
    # want the same bytes of the same event.
    _json: bytes | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def event(self) -> str:
        return self.message.event

    @property
    def data(self) -> Any:
        return self.message.data

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
        message = self.message
        data = message.data
        data_json = (
            data.__pydantic_serializer__.to_json(data, exclude_unset=True, by_alias=True)
            if isinstance(data, BaseModel)
            else to_json(data)
        )
        parts = [
            b'{"seq":%d,"program":%s,"received_at":%d,"source":"%s","type":"ipc","version":%s'
            % (
                self.seq,
                to_json(self.program),
                self.received_at,
                self.source.encode(),
                to_json(message.version),
            ),
            b'"event":' + to_json(message.event),
            b'"data":' + data_json,
            b'"timestamp":' + to_json(message.timestamp),
            b'"messageId":' + to_json(message.messageId),
        ]
        if message.model_extra:
            parts.extend(to_json(k) + b":" + to_json(v) for k, v in message.model_extra.items())
        return b",".join(parts) + b"}"

    @classmethod
    def from_json(cls, line: bytes | str) -> Event:
        """Parse a line written by :meth:`to_json`.

        Raises:
            ValueError: the line is not JSON, or not an event
                (``pydantic.ValidationError`` is a ValueError).
        """
        fields = json.loads(line)
        source = fields.pop("source")
        seq = fields.pop("seq")
        program = fields.pop("program")
        received_at = fields.pop("received_at")
        own = _OWN_MESSAGES.get(fields.get("event", "")) if source == "supervisor" else None
        # supervise also speaks the child's vocabulary (a lost task's
        # task_failed), so anything not its own parses as a child message.
        message = own.model_validate(fields) if own is not None else parse_message(fields)
        return cls(seq, program, received_at, source, message)


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

    def stamp(self, message: IpcMessage, received_at: int, source: Source = "child") -> Event:
        """Wrap ``message``, filling a missing ``timestamp`` with the receipt time."""
        if message.timestamp is None:
            message = message.model_copy(update={"timestamp": received_at})
        return Event(self._next_seq(), self.program, received_at, source, message)
