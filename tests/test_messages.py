"""Event models: the shapes real children send, errors that name the field, JSON round trips."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import given, settings
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
