"""The file sink: whole JSON lines appended, rotation between batches, FIFOs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import trio

from adapters.file import FileSink
from supervisor import Event, SinkError
from supervisor._core.messages import parse_message


def event(seq: int) -> Event:
    message = parse_message({"type": "ipc", "event": "log", "data": {"message": "x" * 100}})
    return Event(seq, "loop", 1000 + seq, "child", message)


async def test_rotation_keeps_whole_lines_and_backups(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    sink = FileSink(path, max_bytes=2000, backups=2)
    for seq in range(1, 61):
        await sink.send(event(seq))
    await sink.aclose()
    files = [path, path.with_name("events.jsonl.1"), path.with_name("events.jsonl.2")]
    assert not path.with_name("events.jsonl.3").exists()
    seqs = []
    for file in reversed(files):
        assert 0 < file.stat().st_size <= 2000
        seqs += [json.loads(line)["seq"] for line in file.read_text().splitlines()]
    # The oldest went with the backups that were dropped; the rest are in order.
    assert seqs == list(range(seqs[0], 61))
    assert seqs[0] > 1


async def test_appends_without_rotation_and_batches(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"kept": true}\n')
    sink = FileSink(path)
    await sink.send_batch([event(1), event(2)])
    await sink.send(event(3))
    await sink.aclose()
    lines = path.read_text().splitlines()
    assert json.loads(lines[0]) == {"kept": True}
    assert [json.loads(line)["seq"] for line in lines[1:]] == [1, 2, 3]


async def test_a_fifo_is_written_without_blocking_the_loop(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        sink = FileSink(fifo)
        sink.open()
        with trio.fail_after(5):
            await sink.send(event(1))
        assert json.loads(os.read(reader, 65536))["seq"] == 1
        await sink.aclose()
    finally:
        os.close(reader)


def test_an_unopenable_path_is_a_sink_error(tmp_path: Path) -> None:
    with pytest.raises(SinkError, match="cannot open for appending: No such file or directory"):
        FileSink(tmp_path / "missing" / "e.jsonl").open()
