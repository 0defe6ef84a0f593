"""Event models: the shapes real children send, errors that name the field, JSON round trips."""

from __future__ import annotations

import io
import json
from typing import cast

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from supervisor import (
    ApprovalRequest,
    Event,
    FrameDecoder,
    GenericMessage,
    LoopEnd,
    ProgressUpdate,
    Question,
    TaskComplete,
    TaskStart,
    validate_payload,
)
from supervisor._core.events import Position
from supervisor._core.messages import validate_payload_verbatim, verbatim_body
from supervisor.emit import FrameWriter
from supervisor.lowlevel import EventStamper, LoopStats, Rejected


def valid(payload: dict[str, object]) -> object:
    result = validate_payload(json.dumps(payload).encode())
    assert not isinstance(result, Rejected), result
    return result


def frame(event: str, data: object, **envelope: object) -> dict[str, object]:
    return {"type": "ipc", "event": event, "data": data, **envelope}


def test_documented_and_real_shapes_validate() -> None:
    """Every shape from loopwork's docs and captures is accepted with its type."""
    assert isinstance(valid(frame("loop_end", "ipc-demo")), LoopEnd)
    stats = valid(frame("loop_end", {"completed": 4, "failed": 1, "duration": 12.5}))
    assert isinstance(stats, LoopEnd)
    assert isinstance(stats.data, LoopStats)
    question = valid(
        frame(
            "question",
            {"question": "Which?", "options": [{"id": "a", "label": "A"}], "timeout": 30},
        )
    )
    assert isinstance(question, Question)
    assert question.data.options[0].id == "a"
    for data in (
        {"requestId": "r1", "operation": "task", "severity": "high", "timeout": 20},
        {"action": "delete", "description": "d", "severity": "critical"},
    ):
        assert isinstance(valid(frame("approval_request", data)), ApprovalRequest)
    for data in (
        {"stepId": "cli_spawn_end", "phase": "end", "durationMs": 5, "exitCode": 0},
        {"taskId": "T", "progress": 50, "message": "half"},
    ):
        assert isinstance(valid(frame("progress_update", data)), ProgressUpdate)


def test_child_duration_is_kept_as_sent() -> None:
    """task_complete.duration is the child's number, not converted."""
    message = valid(frame("task_complete", {"taskId": "T", "duration": 0.528, "success": True}))
    assert isinstance(message, TaskComplete)
    assert message.data.duration == 0.528


def test_missing_envelope_fields_are_filled() -> None:
    """Agent frames without version/messageId get defaults; the stamp adds the time."""
    message = valid(frame("log", {"level": "info", "message": "m"}))
    event = EventStamper("p").stamp(message, received_at=1234)  # type: ignore[arg-type]
    assert event.message.version == "1.0"
    assert event.message.timestamp == 1234
    assert len(event.message_id) == 36


def test_unknown_events_and_extra_fields_are_kept() -> None:
    """Forward compatibility: unknown events route as generic, extras survive."""
    message = valid(frame("deploy_done", {"env": "prod"}, region="eu"))
    assert isinstance(message, GenericMessage)
    start = valid(frame("task_start", {"taskId": "T", "priority": 3}))
    assert isinstance(start, TaskStart)
    line = EventStamper("p").stamp(start, 1).to_json()
    assert json.loads(line)["data"] == {"taskId": "T", "priority": 3}
    line = EventStamper("p").stamp(message, 1).to_json()
    assert json.loads(line)["extra"] == {"region": "eu"}


@pytest.mark.parametrize(
    ("payload", "reason", "detail"),
    [
        (frame("task_complete", {"taskId": "T", "duration": "abc"}), "schema", "data.duration:"),
        (frame("task_start", {}), "schema", "data.taskId:"),
        (frame("approval_request", {"severity": "bogus"}), "schema", "data.severity:"),
        (frame("question", {"question": "q", "options": [{}]}), "schema", "data.options.0.id:"),
        ({"type": "other", "event": "task_start", "data": {"taskId": "T"}}, "type", ""),
        ({"event": "x"}, "type", ""),
        ([1, 2], "type", ""),
    ],
)
def test_rejections_name_reason_and_field(payload: object, reason: str, detail: str) -> None:
    """A bad frame is rejected with its reason and the path of the bad field."""
    result = validate_payload(json.dumps(payload).encode())
    assert isinstance(result, Rejected)
    assert result.reason == reason
    assert result.detail.startswith(detail)
    assert "\n" not in result.detail


def test_not_json_is_rejected() -> None:
    """Bytes that are not JSON (or not UTF-8) are reason json."""
    assert validate_payload(b"{nope").reason == "json"  # type: ignore[union-attr]
    assert validate_payload(b'{"type":"ipc","event":"\xff"}').reason == "json"  # type: ignore[union-attr]


def _strict_loads(line: bytes) -> object:
    """json.loads as a strict reader (JavaScript, Go, jq) takes it: no NaN or Infinity."""

    def refuse(name: str) -> object:
        raise ValueError(f"{name} in {line!r}")

    return json.loads(line, parse_constant=refuse)


@pytest.mark.parametrize(
    "value", ["NaN", "Infinity", "-Infinity", "[1, NaN]", '{"deep": [-Infinity]}', "1e999"]
)
@pytest.mark.parametrize("event_name", ["log", "question", "custom_event", "task_complete"])
def test_a_number_json_does_not_have_is_refused(value: str, event_name: str) -> None:
    """NaN and Infinity (and 1e999, which parses as inf) are not JSON: refused as json or
    schema, in a typed field, an extra field or an unknown event alike."""
    fields = {"log": '"message": "m"', "question": '"question": "q"'}.get(event_name, "")
    fields = {"task_complete": '"taskId": "T"'}.get(event_name, fields)
    key = "duration" if event_name == "task_complete" else "extra"
    sep = ", " if fields else ""
    payload = (
        f'{{"type": "ipc", "event": "{event_name}", "data": {{{fields}{sep}"{key}": {value}}}}}'
    )
    for validate in (validate_payload, validate_payload_verbatim):
        result = validate(payload.encode())
        if value == "1e999" and key == "extra":
            continue  # a huge number in an untyped field: its line keeps the child's text
        assert isinstance(result, Rejected), (validate.__name__, payload)
        assert result.reason in ("json", "schema")
        assert "\n" not in result.detail


def test_the_same_letters_inside_a_string_are_text() -> None:
    payload = b'{"type":"ipc","event":"log","data":{"message":"NaN and Infinity, -Infinity"}}'
    result = validate_payload_verbatim(payload)
    assert not isinstance(result, Rejected)
    assert result[0].data.message == "NaN and Infinity, -Infinity"


@settings(max_examples=300)
@given(
    st.recursive(
        st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
        max_leaves=8,
    ),
    st.sampled_from(["log", "custom_event", "question"]),
)
def test_every_line_supervise_writes_is_strict_json(extra: object, event_name: str) -> None:
    """Whatever numbers a child writes, an accepted frame's event line, with the
    child's bytes or re-serialised, is JSON a strict reader takes."""
    data: dict[str, object] = {"message": "m"} if event_name == "log" else {"question": "q"}
    data["extra"] = extra
    payload = json.dumps({"type": "ipc", "event": event_name, "data": data}).encode()
    result = validate_payload_verbatim(payload)
    if isinstance(result, Rejected):
        assert result.reason == "json"
        assert b"NaN" in payload or b"Infinity" in payload
        return
    message, verbatim = result
    for carried in (verbatim, None):
        line = EventStamper("p").stamp(message, 1, "child", "line_start", carried).to_json()
        _strict_loads(line)


_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)


@settings(max_examples=200)
@given(task_id=_text.filter(bool), title=_text, duration=st.floats(0, 1e6), pretty=st.booleans())
def test_emit_then_decode_round_trip(
    task_id: str, title: str, duration: float, pretty: bool
) -> None:
    """What supervisor.emit writes, the decoder and models read back unchanged."""
    stream = io.BytesIO()
    writer = FrameWriter(stream)
    writer.task_complete(task_id, title, duration, pretty=pretty)
    decoder = FrameDecoder(validate_payload)
    items = decoder.feed(stream.getvalue()) + decoder.close()
    (message,) = [i.message for i in items if hasattr(i, "message")]
    assert isinstance(message, TaskComplete)
    data = message.data
    assert (data.taskId, data.title, data.duration) == (task_id, title, duration)


@settings(max_examples=200)
@given(
    data=st.recursive(
        st.none() | st.booleans() | st.integers(-(2**53), 2**53) | _text,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
        max_leaves=10,
    ),
    program=_text,
)
def test_event_json_round_trip(data: object, program: str) -> None:
    """Event.to_json and Event.from_json are inverse for any JSON data."""
    message = valid(frame("custom_event", data, timestamp=5, messageId="m-1"))
    event = EventStamper(program).stamp(message, 7)  # type: ignore[arg-type]
    again = Event.from_json(event.to_json())
    assert again == event
    assert again.to_json() == event.to_json()


# -- event lines that carry the child's payload as it came -------------------

_KNOWN_SHAPES: dict[str, dict[str, st.SearchStrategy[object]]] = {
    "task_start": {"taskId": st.text(max_size=12), "title": st.text(max_size=20)},
    "task_complete": {
        "taskId": st.text(max_size=12),
        "title": st.text(max_size=20),
        "duration": st.floats(0, 1e9) | st.integers(0, 10**6),
        "success": st.booleans(),
    },
    "log": {"level": st.sampled_from(["info", "warn"]), "message": st.text(max_size=40)},
    "progress_update": {"taskId": st.text(max_size=8), "step": st.text(max_size=20)},
}
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def _payloads(draw: st.DrawFn) -> bytes:
    """A frame's payload as a child might write it: mostly right, sometimes hostile."""
    event = draw(st.sampled_from(sorted(_KNOWN_SHAPES)))
    shape = _KNOWN_SHAPES[event]
    data = {
        key: draw(value) for key, value in shape.items() if draw(st.booleans()) or key == "taskId"
    }
    if event == "log":
        data["message"] = draw(st.text(max_size=40))
    data.update(
        draw(
            st.dictionaries(
                st.sampled_from(["extra", "seq", "source", "n"]), _json_values, max_size=2
            )
        )
    )
    payload: dict[str, object] = {"type": "ipc", "event": event, "data": data}
    for key, value in (("version", "1.0"), ("timestamp", 1706543240000), ("messageId", "m-1")):
        if draw(st.integers(0, 9)):  # usually present
            payload[key] = value
    if draw(st.integers(0, 5)) == 0:  # an envelope key the line keeps for itself
        payload[draw(st.sampled_from(["seq", "source", "program", "position", "extra"]))] = 7
    text = json.dumps(
        payload,
        ensure_ascii=draw(st.sampled_from([False, False, True])),
        indent=draw(st.sampled_from([None, None, 1])),
        separators=draw(st.sampled_from([(",", ":"), (", ", ": ")])),
    )
    if draw(st.integers(0, 5)) == 0:  # a duplicate envelope key, last one wins in pydantic
        key = draw(st.sampled_from(["event", "messageId"]))
        text = text[:-1] + f', "{key}": "log"}}'
    if draw(st.integers(0, 5)) == 0:  # a value pydantic coerces in lax mode
        text = text.replace('"level": "info"', '"level": 5').replace('"level":"info"', '"level":5')
    if draw(st.integers(0, 3)) == 0:  # lines ended as a terminal or Windows ends them
        text = text.replace("\n", "\r\n")
    return (draw(st.sampled_from(["", " ", "\n"])) + text).encode()


def _loads_with_event_and_data_once(line: bytes) -> object:
    """json.loads's last-wins object, checking that the line's own object (the
    last one the hook sees: objects are built inside out) has ``event`` and
    ``data`` once."""
    objects: list[list[str]] = []

    def hook(pairs: list[tuple[str, object]]) -> dict[str, object]:
        objects.append([key for key, _ in pairs])
        return dict(pairs)

    loaded = json.loads(line, object_pairs_hook=hook)
    keys = objects[-1]
    assert keys.count("event") == 1, keys
    assert keys.count("data") == 1, keys
    return loaded


@settings(max_examples=500)
@given(_payloads(), st.sampled_from(["line_start", "mid_line", None]))
def test_a_line_carrying_the_payload_says_what_was_validated(payload: bytes, position: str) -> None:
    """The verbatim path validates as validate_payload does; when it keeps the bytes,
    the line is one line of JSON, parses to the same object as the re-serialised one
    (with ``event`` and ``data`` once), and reads back as the same event."""
    plain = validate_payload(payload)
    result = validate_payload_verbatim(payload)
    if isinstance(plain, Rejected):
        assert result == plain
        return
    assert not isinstance(result, Rejected)
    message, verbatim = result
    # A messageId the child left out is a new uuid each time.
    same = {"messageId"} - (message.model_fields_set & plain.model_fields_set)
    assert message.model_dump(exclude=same) == plain.model_dump(exclude=same)
    assert type(message) is type(plain)
    event("carried" if verbatim and verbatim_body(verbatim, message) else "serialised again")
    if verbatim is None:
        return
    where = cast("Position | None", position)
    carried = EventStamper("p").stamp(message, 1, "child", where, verbatim).to_json()
    serialised = EventStamper("p").stamp(message, 1, "child", where).to_json()
    assert b"\n" not in carried
    assert b"\r" not in carried
    assert _loads_with_event_and_data_once(carried) == json.loads(serialised)
    assert Event.from_json(carried) == Event.from_json(serialised)


def test_the_payload_is_carried_only_when_nothing_was_changed_or_added() -> None:
    """Strictly valid and complete: carried. Coerced, incomplete, or with a key of
    the line's own: serialised again, as before."""
    whole = frame(
        "log", {"level": "info", "message": "hi"}, version="1.0", timestamp=5, messageId="m"
    )
    result = validate_payload_verbatim(json.dumps(whole).encode())
    assert not isinstance(result, Rejected)
    message, payload = result
    assert payload is not None
    assert verbatim_body(payload, message) == payload
    coerced = {**whole, "data": {"level": 5, "message": "hi"}}  # lax mode makes "5" of it
    assert validate_payload_verbatim(json.dumps(coerced).encode()) == (valid(coerced), None)
    with_nan = {**whole, "data": {"level": "info", "message": "x", "n": float("nan")}}
    assert validate_payload_verbatim(json.dumps(with_nan).encode()) == Rejected(
        "json", "not valid JSON: NaN is not a JSON number"
    )
    for changed in (
        {k: v for k, v in whole.items() if k != "timestamp"},  # supervise fills it in
        {**whole, "source": "supervisor"},  # would pose as supervise on a last-wins reader
    ):
        result = validate_payload_verbatim(json.dumps(changed).encode())
        assert not isinstance(result, Rejected)
        message, payload = result
        assert payload is not None
        assert verbatim_body(payload, message) is None


def test_a_payload_over_several_lines_is_carried_on_one_with_its_own_numbers() -> None:
    """Line breaks between a payload's tokens become spaces in the line, and a
    number no model declares keeps the child's spelling (serialised again,
    1e999 would be null and 1.50 would be 1.5)."""
    payload = (
        b'{"type":"ipc","version":"1.0","event":"task_start",\r\n'
        b' "data":{"taskId":"T-1","title":"two\\nlines","big":1e999,"cost":1.50},\n'
        b' "timestamp":1706543240000,"messageId":"m-1"}\n'
    )
    result = validate_payload_verbatim(payload)
    assert not isinstance(result, Rejected)
    message, verbatim = result
    assert verbatim is not None
    line = EventStamper("p").stamp(message, 1, "child", "line_start", verbatim).to_json()
    assert b"\n" not in line
    assert b"\r" not in line
    assert b'"big":1e999,"cost":1.50' in line
    assert b'"title":"two\\nlines"' in line  # an escaped newline inside a string stays
    assert json.loads(line)["data"]["big"] == float("inf")
    assert Event.from_json(line).message == message


def test_a_stamped_event_is_the_event_its_constructor_builds() -> None:
    """EventStamper builds events through their slots (faster than the frozen
    dataclass's __init__): every slot is set, to what the constructor sets."""
    message = cast(
        GenericMessage, valid(frame("log", {"message": "m"}, timestamp=5, messageId="m-1"))
    )
    stamped = EventStamper("p").stamp(message, 7, "child", "line_start")
    built = Event(1, "p", 7, "child", message, "line_start")
    slots = [name for cls in type(built).__mro__ for name in getattr(cls, "__slots__", ())]
    assert {"seq", "message", "_json", "_verbatim"} <= set(slots)
    for name in slots:
        assert getattr(stamped, name) == getattr(built, name), name
    assert stamped == built
    assert hash(stamped) == hash(built)
