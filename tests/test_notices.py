"""supervise's notices never tear the child's line in two on a shared terminal.

The notice about an invalid frame in the middle of a line waits for that
line's end (or ``HOLD_SECONDS``, then on a line of its own). Runs supervise
under a real pty (pexpect), where its stdout and stderr are one terminal.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest
import trio
import trio.testing
from conftest import ROOT, SUPERVISE, child, clean_env
from hypothesis import given
from hypothesis import strategies as st

from supervisor._cli.notices import LineAwareOutput, LineTracker, NoticeGate
from supervisor.testing import wait_until_sync

TIMEOUT = 20
NOTICE = b"supervise: invalid frame at byte 13"


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "go"
    os.mkfifo(path)
    return path


@pytest.fixture
def terminal() -> Iterator[list[pexpect.spawn]]:
    spawned: list[pexpect.spawn] = []
    yield spawned
    for proc in spawned:
        if not proc.closed:
            proc.close(force=True)


def _spawn(spawned: list[pexpect.spawn], argv: list[str]) -> pexpect.spawn:
    proc = pexpect.spawn(argv[0], argv[1:], cwd=str(ROOT), env=clean_env(), timeout=TIMEOUT)
    spawned.append(proc)
    return proc


def _wait_for(path: Path, marker: bytes) -> None:
    """Until ``path`` holds ``marker``: supervise's own record that it got that far."""
    wait_until_sync(
        lambda: path.exists() and marker in path.read_bytes(),
        timeout=TIMEOUT,
        message=f"{path} never showed {marker!r}",
    )


def _release(fifo: Path) -> None:
    with fifo.open("w") as go:
        go.write("go")


def test_a_notice_waits_for_the_end_of_the_childs_line(
    terminal: list[pexpect.spawn], fifo: Path, tmp_path: Path
) -> None:
    """The line reads whole on screen; the notice comes right after it."""
    events = tmp_path / "events.jsonl"
    proc = _spawn(
        terminal,
        [*SUPERVISE, "--events", str(events), "--", *child("partial_line", str(fifo))],
    )
    # The event reaches the file only after its notice was raised.
    _wait_for(events, b'"frame_invalid"')
    _release(fifo)
    proc.expect(pexpect.EOF)
    shown = proc.before
    proc.close()
    assert proc.exitstatus == 0
    line = b'partial line __IPC_START__{"type":"ipc","event":}__IPC_END__ rest\r\n'
    assert line in shown, shown
    assert shown.index(NOTICE) == shown.index(line) + len(line), shown


def test_a_line_left_open_does_not_hide_the_notice(
    terminal: list[pexpect.spawn], fifo: Path
) -> None:
    """After HOLD_SECONDS the notice goes out on a line of its own."""
    proc = _spawn(terminal, [*SUPERVISE, "--", *child("partial_line", str(fifo))])
    proc.expect(NOTICE)
    before_notice = proc.before
    assert before_notice.endswith(b'"event":}__IPC_END__\r\n'), before_notice
    _release(fifo)
    proc.expect(pexpect.EOF)
    proc.close()
    assert proc.exitstatus == 0


def test_the_tracker_counts_only_newlines_as_line_ends() -> None:
    tracker = LineTracker()
    assert not tracker.mid_line
    for data, mid_line in [(b"abc", True), (b"\n", False), (b"spin\r", True), (b"", True)]:
        tracker.feed(data)
        assert tracker.mid_line is mid_line


def test_notices_are_immediate_at_a_lines_start() -> None:
    written: list[bytes] = []
    gate = NoticeGate(write=written.append)
    assert not gate.hold(b"n\r\n")
    gate.output_written(b"line\n")
    assert not gate.hold(b"n\r\n")
    assert written == []  # not held: the caller writes it at once


@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("out"), st.binary(max_size=8)),
            st.tuples(st.just("notice"), st.integers(0, 99)),
            st.tuples(st.just("overdue"), st.none()),
        ),
        max_size=40,
    )
)
def test_every_notice_is_shown_once_and_never_mid_line(
    steps: list[tuple[str, object]],
) -> None:
    """Whatever the child writes between notices, each notice appears exactly once,
    in order, and only where a line starts (after the child's newline or ours)."""
    screen: list[tuple[str, bytes]] = []
    gate = NoticeGate(write=lambda data: screen.append(("notices", data)))
    tracker = LineTracker()
    expected: list[bytes] = []
    for kind, value in steps:
        if kind == "out":
            assert isinstance(value, bytes)
            screen.append(("out", value))
            gate.output_written(value)
        elif kind == "notice":
            notice = f"supervise: {value}\r\n".encode()
            expected.append(notice)
            if not gate.hold(notice):
                screen.append(("notices", notice))
        else:
            gate.flush()  # what serve does once a notice is overdue
    gate.flush()
    shown = b""
    for source, data in screen:
        if source == "notices":
            assert not tracker.mid_line or data.startswith(b"\r\n"), screen
            shown += data.removeprefix(b"\r\n") if tracker.mid_line else data
            tracker.feed(b"\n")
        else:
            tracker.feed(data)
    assert shown == b"".join(expected)


async def test_serve_releases_a_held_notice_after_the_hold_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """serve writes an overdue notice on a line of its own, by trio's clock."""
    written: list[bytes] = []
    gate = NoticeGate(hold_seconds=2.0, write=written.append, clock=trio.current_time)
    output = LineAwareOutput(trio.testing.MemorySendStream(), gate)
    async with trio.open_nursery() as nursery:
        await nursery.start(gate.serve)
        await output.send_all(b"half a line")
        assert gate.hold(b"supervise: n\r\n")
        await trio.sleep(1.9)
        assert written == []
        await trio.sleep(0.2)
        assert written == [b"\r\nsupervise: n\r\n"]
        await output.send_all(b" rest\n")
        assert gate.held == 0
        nursery.cancel_scope.cancel()
    assert written == [b"\r\nsupervise: n\r\n"]
