"""supervisor.emit from a child's side: whole frames from several threads, read by supervise."""

from __future__ import annotations

import io
import json
import sys
import threading
from collections import Counter
from pathlib import Path

from conftest import ROOT, supervise

from supervisor import Frame, FrameDecoder, MalformedFrame, validate_payload
from supervisor.emit import FrameWriter


def test_threads_never_interleave_frames() -> None:
    """Eight threads emitting at once still give only whole, valid frames."""
    stream = io.BytesIO()
    writer = FrameWriter(stream)

    def work(worker: int) -> None:
        for i in range(300):
            writer.progress_update(taskId=f"T{worker}", progress=i, message="x" * (i % 50))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    decoder = FrameDecoder(validate_payload)
    items = decoder.feed(stream.getvalue()) + decoder.close()
    assert sum(isinstance(i, Frame) for i in items) == 2400
    assert not any(isinstance(i, MalformedFrame) for i in items)


def test_fake_loopwork_under_supervise(tmp_path: Path) -> None:
    """The example child's frames arrive as the events it promises."""
    events_path = tmp_path / "events.jsonl"
    result = supervise(
        "--events",
        str(events_path),
        "--",
        sys.executable,
        str(ROOT / "examples" / "fake_loopwork.py"),
        "--tasks",
        "6",
        "--delay",
        "0",
        "--fail-every",
        "3",
        "--question-every",
        "2",
    )
    assert result.returncode == 0
    assert b"__IPC_" not in result.stdout
    assert b"\x1b[" in result.stdout  # its coloured log lines pass through
    events = [json.loads(line) for line in events_path.read_text().splitlines()]
    counts = Counter(e["event"] for e in events)
    assert counts["task_start"] == 6
    assert counts["task_complete"] == 4
    assert counts["task_failed"] == 2
    assert counts["question"] == 3
    assert counts["loop_start"] == counts["loop_end"] == 1
    assert counts["frame_invalid"] == 0
