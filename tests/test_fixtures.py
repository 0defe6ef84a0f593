"""Real loopwork output (tests/fixtures/loopwork) replayed through supervise.

The expected counts are the ones the captures' README gives; the expected
plain output is computed here independently, with a simple line-based scan
that is correct for these files (every loopwork frame is one physical line).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from conftest import supervise

LOOPWORK_COUNTS = {
    "loop_start": 1,
    "task_start": 5,
    "progress_update": 10,
    "task_complete": 4,
    "task_failed": 1,
    "loop_end": 1,
    "log": 1,  # relayed from the fake AI CLI, without version/timestamp/messageId
}
EXPECTED = {
    "pipe.raw": LOOPWORK_COUNTS,
    "pty.raw": {**LOOPWORK_COUNTS, "approval_request": 1},
}
SINGLE_LINE_FRAME = re.compile(rb"__IPC_START__(\{[^\n]*?\})__IPC_END__(\r?\n)?")


def expected_plain(raw: bytes) -> bytes:
    """The input minus its single-line frames; a frame alone on its line takes its newline."""
    out = bytearray()
    last = 0
    for match in SINGLE_LINE_FRAME.finditer(raw):
        if json.loads(match.group(1)).get("type") != "ipc":
            continue
        out += raw[last : match.start()]
        at_line_start = match.start() == 0 or raw[match.start() - 1 : match.start()] == b"\n"
        last = match.end() if at_line_start else match.end(1) + len(b"__IPC_END__")
    out += raw[last:]
    return bytes(out)


@pytest.mark.parametrize("use_pty", [True, False], ids=["pty", "pipes"])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_capture_replay(fixtures_dir: Path, tmp_path: Path, name: str, use_pty: bool) -> None:
    """Every frame the README counts arrives as an event; the output keeps everything else."""
    raw = (fixtures_dir / name).read_bytes()
    events_path = tmp_path / "events.jsonl"
    flags = [] if use_pty else ["--no-pty"]
    result = supervise(*flags, "--events", str(events_path), "--", "cat", str(fixtures_dir / name))
    assert result.returncode == 0
    events = [json.loads(line) for line in events_path.read_text().splitlines()]

    frames = Counter(e["event"] for e in events if e["source"] == "child")
    assert frames == Counter(EXPECTED[name])

    # The AI agent's multi-line question was relayed line by line with a
    # prefix on every line, so it is not JSON: visible, counted, reported.
    invalid = [e for e in events if e["event"] == "frame_invalid"]
    assert [e["data"]["reason"] for e in invalid] == ["json"]
    assert raw[invalid[0]["data"]["offset"] :].startswith(b"__IPC_START__")
    assert result.stderr.count(b"invalid frame at byte") == 1

    assert result.stdout == expected_plain(raw)
    assert b'"messageId"' not in result.stdout
    assert result.stdout.count(b"__IPC_START__") == 1  # the relayed question only


def test_capture_frames_are_typed(fixtures_dir: Path, tmp_path: Path) -> None:
    """Real loopwork quirks survive validation: seconds as floats, loop_end as a string."""
    events_path = tmp_path / "events.jsonl"
    supervise("--events", str(events_path), "--", "cat", str(fixtures_dir / "pty.raw"))
    events = [json.loads(line) for line in events_path.read_text().splitlines()]
    by_event: dict[str, list[dict[str, object]]] = {}
    for event in events:
        by_event.setdefault(str(event["event"]), []).append(event)

    (loop_end,) = by_event["loop_end"]
    assert loop_end["data"] == "ipc-demo"
    durations = [e["data"]["duration"] for e in by_event["task_complete"]]  # type: ignore[index]
    assert all(isinstance(d, float) and 0 < d < 10 for d in durations)
    (failed,) = by_event["task_failed"]
    assert failed["data"]["taskId"] == "DEMO-003"  # type: ignore[index]
    assert "\n" in failed["data"]["error"]  # type: ignore[index]
    (approval,) = by_event["approval_request"]
    assert approval["data"]["severity"] == "high"  # type: ignore[index]
    assert approval["data"]["timeout"] == 20  # type: ignore[index]
    (log,) = by_event["log"]
    assert log["version"] == "1.0"
    assert log["timestamp"] == log["received_at"]
    assert re.fullmatch(r"[0-9a-f-]{36}", str(log["messageId"]))
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(events) + 1))
