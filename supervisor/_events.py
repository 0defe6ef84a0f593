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

import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import BaseModel, Field, TypeAdapter
from pydantic_core import to_json

from ._messages import EventData, IpcMessage, parse_message

__all__ = [
    "Event",
    "EventStamper",
    "FrameInvalid",
    "FrameInvalidData",
    "ProcessExit",
    "ProcessExitData",
    "ProcessStart",
    "ProcessStartData",
    "Source",
    "SupervisorMessage",
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


class _OwnMessage(IpcMessage):
    """Base of supervise's own messages, which need no ``type`` argument."""

    type: Literal["ipc"] = "ipc"


class ProcessStart(_OwnMessage):
    event: Literal["process_start"] = "process_start"
    data: ProcessStartData


class ProcessExit(_OwnMessage):
    event: Literal["process_exit"] = "process_exit"
    data: ProcessExitData


class FrameInvalid(_OwnMessage):
    event: Literal["frame_invalid"] = "frame_invalid"
    data: FrameInvalidData


SupervisorMessage: TypeAlias = Annotated[
    ProcessStart | ProcessExit | FrameInvalid, Field(discriminator="event")
]
_SUPERVISOR_ADAPTER: TypeAdapter[IpcMessage] = TypeAdapter(SupervisorMessage)


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
        message = self.message
        data = message.data
        data_json = (
            data.__pydantic_serializer__.to_json(data, exclude_unset=True)
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
        if source == "supervisor":
            message = _SUPERVISOR_ADAPTER.validate_python(fields)
        else:
            message = parse_message(fields)
        return cls(seq, program, received_at, source, message)


class EventStamper:
    """Turns messages into numbered events for one program.

    Pure apart from its counter: the caller passes the receipt time, so tests
    and the sans-IO core stay clock-free.
    """

    def __init__(self, program: str) -> None:
        self.program = program
        self._seq = 0

    @property
    def last_seq(self) -> int:
        return self._seq

    def stamp(self, message: IpcMessage, received_at: int, source: Source = "child") -> Event:
        """Wrap ``message``, filling a missing ``timestamp`` with the receipt time."""
        if message.timestamp is None:
            message = message.model_copy(update={"timestamp": received_at})
        self._seq += 1
        return Event(self._seq, self.program, received_at, source, message)
