"""One-line event summaries: exact wording per event, and always one short line."""

from __future__ import annotations

import json
import math
import re
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from supervisor._core.events import (
    Event,
    FrameInvalid,
    FrameInvalidData,
    ProcessExit,
    ProcessExitData,
    ProcessStart,
    ProcessStartData,
    ProcessStateChanged,
    ProcessStateData,
)
from supervisor._core.messages import GenericMessage, IpcMessage, parse_message
from supervisor._core.summary import DEFAULT_MAX_LENGTH, format_duration, one_line, summarize

FRAME = re.compile(rb"__IPC_START__(.*?)__IPC_END__")


def child(event: str, data: Any = None, program: str = "loopwork") -> Event:
    """An event as a child would send it, validated like a real frame."""
    frame = {"type": "ipc", "event": event} | ({} if data is None else {"data": data})
    return Event(1, program, 1_795_236_690_950, "child", parse_message(frame))


def own(message: IpcMessage) -> Event:
    """One of supervise's own events."""
    return Event(1, "loopwork", 1_795_236_690_950, "supervisor", message)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0ms"),
        (0.85, "850ms"),
        (0.9994, "999ms"),
        (0.9996, "1s"),
        (12, "12s"),
        (59.99, "59s"),
        (110, "1m50s"),
        (3599, "59m59s"),
        (7380, "2h03m"),
        (90_061, "1d01h"),
        (-2, "-2s"),
        (math.nan, "?"),
        (math.inf, "?"),
    ],
)
def test_durations_are_short(seconds: float, text: str) -> None:
    """Durations read like 850ms, 12s, 1m50s or 2h03m."""
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("event", "text"),
    [
        (
            child(
                "task_complete",
                {"taskId": "FEAT-001", "title": "Implement user authentication", "duration": 110},
            ),
            "✅ FEAT-001 Implement user authentication (1m50s)",
        ),
        (
            child("task_complete", {"taskId": "FEAT-001", "duration": 0.53, "success": False}),
            "❌ FEAT-001 (530ms)",
        ),
        (
            child(
                "task_failed",
                {
                    "taskId": "FEAT-002",
                    "title": "Add login page",
                    "error": "\n  Task FEAT-002 failed after maximum retries\n\nSession: s-1\n",
                },
            ),
            "❌ FEAT-002 Add login page: Task FEAT-002 failed after maximum retries",
        ),
        (child("task_failed", {"taskId": "FEAT-002"}), "❌ FEAT-002"),
        (child("task_start", {"taskId": "FEAT-001", "title": "Title"}), "▶️ FEAT-001 Title"),
        (child("question", {"question": "Which date\nformat?"}), "❓ Which date format?"),
        (
            child(
                "approval_request",
                {
                    "requestId": "r-1",
                    "operation": "Destroy stale preview environments",
                    "description": "Contains critical keywords: destroy",
                    "severity": "high",
                },
            ),
            "⚠️ approval: Destroy stale preview environments — "
            "Contains critical keywords: destroy (high)",
        ),
        (child("approval_request", {"action": "git push"}), "⚠️ approval: git push"),
        (child("loop_start", {"namespace": "ipc-demo"}), "🔁 loop started: ipc-demo"),
        (child("loop_end", "ipc-demo"), "🏁 loop ended: ipc-demo"),
        (
            child("loop_end", {"completed": 4, "failed": 1, "duration": 12.5}),
            "🏁 loop ended: 4 completed, 1 failed in 12s",
        ),
        (child("loop_end"), "🏁 loop ended"),
        (
            child("progress_update", {"taskId": "FEAT-3", "progress": 50, "message": "half way"}),
            "⏳ FEAT-3 half way (50%)",
        ),
        (child("progress_update", {}), "⏳ progress"),
        (child("log", {"level": "error", "message": "disk full"}), "❗ disk full"),
        (child("log", {"message": "changelog updated"}), "📝 changelog updated"),
        (child("deploy_done", {"x": 1}), "loopwork: deploy_done"),
        (
            own(ProcessStart(data=ProcessStartData(pid=4242, argv=("loopwork", "run")))),
            "🚀 loopwork started (pid 4242)",
        ),
        (
            own(ProcessExit(data=ProcessExitData(exit_code=3, signal=None, uptime=65.2))),
            "💥 loopwork exited with code 3 after 1m05s",
        ),
        (
            own(ProcessExit(data=ProcessExitData(exit_code=None, signal=9, uptime=2))),
            "💥 loopwork killed by signal 9 (SIGKILL) after 2s",
        ),
        (
            own(ProcessExit(data=ProcessExitData(exit_code=0, signal=None, uptime=0.25))),
            "⏹️ loopwork exited with code 0 after 250ms",
        ),
        (
            own(
                ProcessStateChanged(
                    data=ProcessStateData(from_="running", to="backoff", reason="exit 3")
                )
            ),
            "🔄 loopwork: running → backoff (exit 3)",
        ),
        (
            own(
                FrameInvalid(
                    data=FrameInvalidData(
                        reason="json", offset=7, detail="not valid JSON", excerpt="{"
                    )
                )
            ),
            "🚫 loopwork: invalid frame (json): not valid JSON",
        ),
    ],
)
def test_each_event_has_its_wording(event: Event, text: str) -> None:
    """Each known event reads as its icon, its subject and the detail that matters."""
    assert summarize(event) == text


def test_events_read_back_from_json_give_the_same_summary() -> None:
    """An event from an event log (plain dict data) reads like the live one."""
    event = own(ProcessStateChanged(data=ProcessStateData(from_="a", to="b", reason="r")))
    assert summarize(Event.from_json(event.to_json())) == summarize(event)
    generic = Event(
        1,
        "p",
        0,
        "supervisor",
        GenericMessage(type="ipc", event="process_exit", data={"signal": 15, "uptime": 3}),
    )
    assert summarize(generic) == "💥 p killed by signal 15 (SIGTERM) after 3s"


def test_long_text_is_cut_with_an_ellipsis() -> None:
    """A summary longer than the limit ends in … and fills it exactly."""
    event = child("task_start", {"taskId": "T-1", "title": "word " * 100})
    text = summarize(event, max_length=40)
    assert len(text) == 40
    assert text.endswith("…")
    assert text.startswith("▶️ T-1 word word")
    assert len(summarize(event)) == DEFAULT_MAX_LENGTH


def test_max_length_must_be_positive() -> None:
    """A limit below one character is a programming error."""
    with pytest.raises(ValueError, match="max_length"):
        summarize(child("loop_start"), max_length=0)


def test_lone_surrogates_are_replaced() -> None:
    """Text that cannot be encoded as UTF-8 never reaches tmux or a chat."""
    assert one_line("a\ud800b") == "a\ufffdb"


def test_loopwork_capture_reads_well(fixtures_dir: Path) -> None:
    """Every frame loopwork really sent has a summary; durations are seconds."""
    raw = (fixtures_dir / "pipe.raw").read_bytes()
    events = [child(**_fields(match)) for match in FRAME.findall(raw)]
    summaries = [summarize(event) for event in events]
    assert "✅ DEMO-001 Create greeting helper (528ms)" in summaries
    assert (
        "❌ DEMO-003 Fix flaky network test: Task DEMO-003 failed after maximum retries"
        in summaries
    )
    assert summaries[0] == "🔁 loop started: ipc-demo"
    assert summaries[-1] == "🏁 loop ended: ipc-demo"


def _fields(payload: bytes) -> dict[str, Any]:
    frame = json.loads(payload)
    return {"event": frame["event"], "data": frame.get("data")}


# -- properties ---------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)
FIELDS = st.sampled_from(
    [
        "taskId",
        "title",
        "duration",
        "success",
        "error",
        "question",
        "action",
        "operation",
        "description",
        "severity",
        "namespace",
        "completed",
        "failed",
        "progress",
        "message",
        "level",
        "pid",
        "exit_code",
        "signal",
        "uptime",
        "from",
        "to",
        "reason",
        "detail",
        "count",
    ]
)
NAMES = st.sampled_from(
    [
        "task_start",
        "task_complete",
        "task_failed",
        "question",
        "approval_request",
        "loop_start",
        "loop_end",
        "progress_update",
        "log",
        "process_start",
        "process_exit",
        "process_state",
        "frame_invalid",
        "process_stalled",
        "task_timeout",
        "question_answered",
        "question_timeout",
        "events_dropped",
    ]
) | st.text(min_size=1)
DATA = st.dictionaries(FIELDS, JSON, max_size=8) | JSON


def _message(name: str, data: Any) -> IpcMessage:
    """The typed message when the data fits the event's model, else a generic one."""
    try:
        return parse_message({"type": "ipc", "event": name, "data": data})
    except ValidationError:
        return GenericMessage(type="ipc", event=name, data=data)


def _is_one_safe_line(text: str) -> bool:
    return all(unicodedata.category(char) not in ("Cc", "Cs", "Zl", "Zp") for char in text) and (
        len(text.splitlines()) <= 1
    )


@given(
    name=NAMES,
    data=DATA,
    program=st.text(),
    source=st.sampled_from(["child", "supervisor"]),
    max_length=st.integers(min_value=1, max_value=300),
)
def test_any_event_gives_one_short_line(
    name: str, data: Any, program: str, source: Any, max_length: int
) -> None:
    """Whatever a child sends, the summary is one line within the limit."""
    event = Event(1, program, 0, source, _message(name, data))
    text = summarize(event, max_length=max_length)
    assert len(text) <= max_length
    assert _is_one_safe_line(text)
    text.encode("utf-8")


@given(text=st.text(st.characters(exclude_categories=())), max_length=st.integers(1, 50))
def test_one_line_keeps_short_clean_text(text: str, max_length: int) -> None:
    """Collapsing never lengthens; clean text that fits is returned unchanged."""
    line = one_line(text, max_length)
    assert len(line) <= max_length
    assert _is_one_safe_line(line)
    if len(text) <= max_length and text == " ".join(text.split()) and _is_one_safe_line(text):
        assert line == text


@given(seconds=st.floats(allow_nan=True, allow_infinity=True))
def test_any_duration_is_compact(seconds: float) -> None:
    """format_duration never fails and stays a few characters long."""
    text = format_duration(seconds)
    assert 1 <= len(text) <= 12 or text.lstrip("-").endswith("h")
