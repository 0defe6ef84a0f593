"""Pydantic models of the IPC frames a child writes, and the frame validator.

The shapes follow what loopwork really sends (see the captures described in
the project README), which differs from its own docs: ``task_complete``'s
``duration`` is seconds as a float, ``loop_end``'s ``data`` is a string, and
frames written by an AI agent (``question``, ``approval_request``, ``log``)
often lack ``version``, ``timestamp`` and ``messageId``. The models are
therefore lenient: only the fields a consumer cannot do without are required,
every declared field is type-checked, and unknown fields are kept.

Unknown event names are accepted as :class:`GenericMessage` so a newer child
works with an older supervisor. :func:`validate_payload` is pure (no I/O, no
clock), which lets the sans-IO frame decoder call it.
"""

from __future__ import annotations

import functools
import json
import uuid
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
)

from .frames import Rejected

__all__ = [
    "RESERVED_EVENTS",
    "ApprovalRequest",
    "ApprovalRequestData",
    "EventData",
    "GenericMessage",
    "IpcMessage",
    "KnownMessage",
    "LogData",
    "LogMessage",
    "LoopEnd",
    "LoopStart",
    "LoopStartData",
    "LoopStats",
    "ProgressUpdate",
    "ProgressUpdateData",
    "Question",
    "QuestionData",
    "QuestionOption",
    "TaskComplete",
    "TaskCompleteData",
    "TaskData",
    "TaskFailed",
    "TaskFailedData",
    "TaskStart",
    "parse_message",
    "validate_payload",
    "validate_payload_verbatim",
    "verbatim_body",
]

Severity: TypeAlias = Literal["low", "medium", "high", "critical"]

RESERVED_EVENTS = frozenset(
    {
        "approval_ignored",
        "delivery_dead",
        "events_dropped",
        "frame_invalid",
        "frame_untrusted",
        "process_exit",
        "process_stalled",
        "process_start",
        "process_state",
        "question_answered",
        "question_timeout",
        "question_withdrawn",
        "route_overflow",
        "task_timeout",
    }
)
"""The names of supervise's own events, which no child frame may carry.

Routes, the journal's replay, metrics and Telegram act on these names; a
child that could send ``process_exit`` or ``question_answered`` would speak
as supervise. Such a frame is refused (``reserved``) and stays visible as
output, like any other invalid frame.
"""


class EventData(BaseModel):
    """Base of every event's data: immutable, extra fields kept."""

    # allow_inf_nan: 1e999 parses as inf; like NaN, no JSON number (see _non_finite).
    model_config = ConfigDict(
        frozen=True,
        extra="allow",
        coerce_numbers_to_str=True,
        allow_inf_nan=False,
        defer_build=True,
    )


class TaskData(EventData):
    """``task_start`` data: which task, in which namespace and iteration."""

    taskId: str
    title: str | None = None
    namespace: str | None = None
    iteration: int | None = None


class TaskCompleteData(TaskData):
    """``task_complete`` data.

    ``duration`` is kept as the child sent it: loopwork sends seconds while its
    docs say milliseconds, so the number is not converted. The supervisor
    measures durations itself from receipt times.
    """

    duration: float | None = None
    success: bool | None = None


class TaskFailedData(TaskData):
    """``task_failed`` data; ``error`` may span several lines."""

    error: str | None = None


class LoopStartData(EventData):
    """``loop_start`` data."""

    namespace: str | None = None


class LoopStats(EventData):
    """``loop_end`` data in the documented form (real loopwork sends a string)."""

    completed: int | None = None
    failed: int | None = None
    duration: float | None = None


class QuestionOption(EventData):
    """One answer a ``question`` offers."""

    id: str
    label: str | None = None


class QuestionData(EventData):
    """``question`` data; ``timeout`` is in seconds."""

    question: str
    options: tuple[QuestionOption, ...] = ()
    timeout: float | None = None


class ApprovalRequestData(EventData):
    """``approval_request`` data.

    Real children send either ``{requestId, operation, ...}`` (loopwork's
    safety plugin) or ``{action, ...}`` (its docs), so both are optional.
    """

    requestId: str | None = None
    action: str | None = None
    operation: str | None = None
    description: str | None = None
    severity: Severity | None = None
    timeout: float | None = None


class ProgressUpdateData(EventData):
    """``progress_update`` data: free-form, with the common fields typed."""

    taskId: str | None = None
    stepId: str | None = None
    description: str | None = None
    phase: str | None = None
    progress: float | None = None
    message: str | None = None


class LogData(EventData):
    """``log`` data."""

    level: str = "info"
    message: str


def _new_message_id() -> str:
    return str(uuid.uuid4())


class IpcMessage(BaseModel):
    """The envelope every frame shares.

    ``version`` and ``messageId`` are filled in when a frame lacks them;
    ``timestamp`` (epoch milliseconds) stays ``None`` here, because this
    module reads no clock, and the supervisor sets it to the receipt time.
    """

    model_config = ConfigDict(frozen=True, extra="allow", defer_build=True)

    type: Literal["ipc"]
    version: str = "1.0"
    event: str
    data: Any = None
    timestamp: int | None = None
    messageId: str = Field(default_factory=_new_message_id)


class TaskStart(IpcMessage):
    event: Literal["task_start"]
    data: TaskData


class TaskComplete(IpcMessage):
    event: Literal["task_complete"]
    data: TaskCompleteData


class TaskFailed(IpcMessage):
    event: Literal["task_failed"]
    data: TaskFailedData


class LoopStart(IpcMessage):
    event: Literal["loop_start"]
    data: LoopStartData = LoopStartData()


class LoopEnd(IpcMessage):
    event: Literal["loop_end"]
    data: str | LoopStats | None = None


class Question(IpcMessage):
    event: Literal["question"]
    data: QuestionData


class ApprovalRequest(IpcMessage):
    event: Literal["approval_request"]
    data: ApprovalRequestData


class ProgressUpdate(IpcMessage):
    event: Literal["progress_update"]
    data: ProgressUpdateData = ProgressUpdateData()


class LogMessage(IpcMessage):
    event: Literal["log"]
    data: LogData


class GenericMessage(IpcMessage):
    """An event this version does not know; routed with its data untouched."""


_KNOWN: dict[str, type[IpcMessage]] = {
    "task_start": TaskStart,
    "task_complete": TaskComplete,
    "task_failed": TaskFailed,
    "loop_start": LoopStart,
    "loop_end": LoopEnd,
    "question": Question,
    "approval_request": ApprovalRequest,
    "progress_update": ProgressUpdate,
    "log": LogMessage,
}
KnownMessage: TypeAlias = Annotated[
    TaskStart
    | TaskComplete
    | TaskFailed
    | LoopStart
    | LoopEnd
    | Question
    | ApprovalRequest
    | ProgressUpdate
    | LogMessage,
    Field(discriminator="event"),
]


# A plain tag lookup in Rust is a third cheaper than a Python callable
# discriminator; unknown events are rare, so they take a second, generic pass.
# Built on first use, not at import: building the union's validator costs
# tens of milliseconds, and `supervise -- true` should not pay them.
@functools.cache
def _known_adapter() -> TypeAdapter[IpcMessage]:
    return TypeAdapter(KnownMessage)


@functools.cache
def _generic_adapter() -> TypeAdapter[IpcMessage]:
    return TypeAdapter(GenericMessage)


_NOT_A_KNOWN_EVENT = frozenset({"union_tag_invalid", "union_tag_not_found"})


def parse_message(fields: Any) -> IpcMessage:
    """Validate an already-decoded frame object (e.g. read back from a journal).

    Raises:
        ValidationError: the object does not fit the envelope or its event's model.
    """
    try:
        return _known_adapter().validate_python(fields)
    except ValidationError as error:
        if error.errors(include_url=False)[0]["type"] not in _NOT_A_KNOWN_EVENT:
            raise
    return _generic_adapter().validate_python(fields)


def _describe(error: ValidationError) -> Rejected:
    first = error.errors(include_url=False)[0]
    kind = first["type"]
    # A known event's errors start with its union tag; the rest is the field path.
    loc = first["loc"][1:] if first["loc"] and first["loc"][0] in _KNOWN else first["loc"]
    path = ".".join(str(part) for part in loc)
    if kind == "json_invalid":
        return Rejected("json", f"not valid JSON: {first['msg']}")
    if kind in ("model_type", "dict_type", "model_attributes_type") and not path:
        return Rejected("type", "payload is not a JSON object")
    if path == "type":
        return Rejected("type", 'payload is not an object with "type": "ipc"')
    return Rejected("schema", f"{path or '<frame>'}: {first['msg']}")


# The known union's core validator, kept in a global once built: a cached
# function's call would cost more than the lookup on every frame.
_validator: Any = None


def _load_validator() -> Any:
    global _validator
    _validator = _known_adapter().validator
    return _validator


def validate_payload(payload: bytes) -> IpcMessage | Rejected:
    """Validate one frame's payload (the bytes between the markers).

    Args:
        payload: UTF-8 JSON, possibly surrounded by whitespace and newlines.

    Returns:
        The typed message, or :class:`Rejected` with reason ``json``, ``type``
        or ``schema`` and a one-line detail naming the field path.
    """
    try:
        # The core validator directly: TypeAdapter's wrapper costs a third
        # as much again per frame on the passthrough's hot path.
        message: IpcMessage = (_validator or _load_validator()).validate_json(payload)
    except ValidationError as error:
        if error.errors(include_url=False)[0]["type"] not in _NOT_A_KNOWN_EVENT:
            return _describe(error)
    else:
        return _non_finite(payload) or message
    try:
        generic = _generic_adapter().validate_json(payload)
    except ValidationError as error:
        return _describe(error)
    refused = _non_finite(payload)
    if refused is not None:
        return refused
    if generic.event in RESERVED_EVENTS:
        return Rejected(
            "reserved", f"event {generic.event!r} is one of supervise's own; a child cannot send it"
        )
    return generic


_ENVELOPE_FIELDS = frozenset({"version", "timestamp", "messageId"})


def validate_payload_verbatim(payload: bytes) -> tuple[IpcMessage, bytes | None] | Rejected:
    """:func:`validate_payload`, and the payload itself when strict validation passed.

    Serialising a validated message again costs 1.5-4 us a frame on the hot
    path; the child's own bytes already are that JSON when validation
    changed nothing. So the payload is validated in strict mode first: if
    that passes, no value was coerced (no ``"3"`` became ``3``), and the
    payload comes back with the message; whether an event line may carry it
    as it is, :func:`verbatim_body` decides when (and only if) a line is
    written. For every payload strict mode refuses, the result is exactly
    :func:`validate_payload`'s, with None for the bytes.

    Returns:
        (message, payload or None), or :class:`Rejected`.
    """
    try:
        message: IpcMessage = (_validator or _load_validator()).validate_json(payload, strict=True)
    except ValidationError:
        result = validate_payload(payload)
        return result if isinstance(result, Rejected) else (result, None)
    if b"NaN" in payload or b"Infinity" in payload:  # _non_finite's test, inlined: every frame
        refused = _non_finite(payload)
        if refused is not None:
            return refused
    return message, payload


def _non_finite(payload: bytes) -> Rejected | None:
    """Refuse ``NaN``, ``Infinity`` and ``-Infinity``, which are not JSON (RFC 8259).

    The JSON parser takes them, so a frame carrying one would validate and
    put them into supervise's own records: an event line that is not JSON
    for a strict reader, and a re-serialised event that says ``null`` where
    the frame said ``Infinity``. Two substring searches per frame; only
    when such a word appears at all, a parse tells a number from the same
    letters inside a string.
    """
    if b"NaN" not in payload and b"Infinity" not in payload:
        return None
    constants: list[str] = []
    try:
        json.loads(payload, parse_constant=constants.append)
    except ValueError:  # the validator took what json does not: nothing to refuse here
        return None
    if constants:
        return Rejected("json", f"not valid JSON: {constants[0]} is not a JSON number")
    return None


_LINE_BREAKS_AS_SPACES = bytes.maketrans(b"\r\n", b"  ")


def verbatim_body(payload: bytes, message: IpcMessage) -> bytes | None:
    """The payload, stripped, if an event line may carry it in place of ``message``.

    ``message`` must have been validated from ``payload`` in strict mode
    (:func:`validate_payload_verbatim`). It may when, moreover, every
    envelope field was given (none was filled in), no key outside the
    envelope was (it could pose as one of the event line's own, like
    ``source``; pydantic sees keys after JSON unescaping, so no spelling
    hides one), and ``event`` and ``data`` each appear once. Duplicate
    keys are read last-wins by pydantic, and so by ``json``, jq, JavaScript
    and Go, which then see in the line what supervise validated.

    A payload spread over lines is carried too, on one line: strict JSON
    allows no raw control character inside a string, so each ``\n`` or
    ``\r`` of a validated payload is whitespace between tokens, and a space
    in its place means the same JSON. Carried, the line keeps the child's
    own numbers (``1e999`` in a key no model declares would be ``null``
    once serialised again). ``NaN`` and ``Infinity`` were refused by
    validation.
    """
    # The cheapest tests first (~3 us in all, paid only for lines written).
    if (
        message.__pydantic_extra__
        or message.timestamp is None
        or not message.__pydantic_fields_set__ >= _ENVELOPE_FIELDS
    ):
        return None
    body = payload.strip()
    if body.count(b'"event"') != 1 or body.count(b'"data"') != 1:
        return None
    if b"\n" in body or b"\r" in body:
        return body.translate(_LINE_BREAKS_AS_SPACES)
    return body
