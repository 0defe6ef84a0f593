"""supervise's notices wait for the end of the child's line on a shared terminal.

Why: when supervise's stderr and the child's output are the same terminal, a
notice printed the moment it is raised (an invalid frame, a refused tap) lands
in the middle of whatever line the child is writing, and the child's line goes
on after it, torn in two. So while the child's output stands mid-line, notices
are held; they are written as soon as the output ends a line, at the end of
the run, or after ``HOLD_SECONDS`` (then on a line of their own, so a child
that never ends its line cannot hide them).

``LineTracker`` is the sans-IO part (where does the output stand?);
``NoticeGate`` holds and releases the notices; ``LineAwareOutput`` is the
output stream that tells the gate what went by.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable
from contextlib import suppress

import trio

__all__ = [
    "HOLD_SECONDS",
    "LineAwareOutput",
    "LineTracker",
    "NoticeGate",
    "same_terminal",
]

# Long enough for a line in progress to finish (a prompt the person answers
# takes longer, and then the notice should not wait for the answer).
HOLD_SECONDS = 2.0


class LineTracker:
    """Whether the bytes written so far leave the cursor in the middle of a line.

    Only ``\\n`` ends a line: a ``\\r`` returns the cursor to column 0 of the
    same line, where a notice would overwrite what the child is redrawing.
    """

    __slots__ = ("mid_line",)

    def __init__(self) -> None:
        self.mid_line = False

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if len(data):
            self.mid_line = bytes(data[-1:]) != b"\n"


def same_terminal(first: int, second: int) -> bool:
    """True if both file descriptors are the same terminal device."""
    try:
        if not (os.isatty(first) and os.isatty(second)):
            return False
        a, b = os.fstat(first), os.fstat(second)
    except OSError:
        return False
    return stat.S_ISCHR(a.st_mode) and a.st_rdev == b.st_rdev


def _write_stderr(data: bytes) -> None:
    with suppress(OSError):
        os.write(2, data)


class NoticeGate:
    """Holds notices while the child's output is mid-line; thread-safe.

    ``hold`` is called by whoever prints a notice (from any thread); the
    output stream reports each write with ``output_written``; ``serve``
    releases notices that waited ``hold_seconds``.
    """

    def __init__(
        self,
        hold_seconds: float = HOLD_SECONDS,
        write: Callable[[bytes], None] = _write_stderr,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._hold_seconds = hold_seconds
        self._write = write
        self._clock = clock
        self._lock = threading.Lock()
        self._tracker = LineTracker()
        self._held: list[bytes] = []
        self._held_since: float | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._wake = trio.Event()

    @property
    def held(self) -> int:
        """How many notices are waiting."""
        return len(self._held)

    def hold(self, notice: bytes) -> bool:
        """Keep ``notice`` for later if the output is mid-line; True if kept."""
        with self._lock:
            if not self._tracker.mid_line:
                return False
            self._held.append(notice)
            if self._held_since is not None:
                return True
            self._held_since = self._clock()
            token = self._token
        if token is not None:
            with suppress(trio.RunFinishedError):
                token.run_sync_soon(self._wake.set)
        return True

    def output_written(self, data: bytes | bytearray | memoryview) -> None:
        """The child's output just showed ``data``: release notices at a line's end."""
        with self._lock:
            self._tracker.feed(data)
            if self._tracker.mid_line or not self._held:
                return
            self._release(b"")

    def flush(self) -> None:
        """Write every held notice now, on a line of its own."""
        with self._lock:
            if self._held:
                self._release(b"\r\n" if self._tracker.mid_line else b"")

    def _release(self, lead: bytes) -> None:
        # Called with the lock held. After a leading line break the terminal
        # stands at a line's start, and so does it after the notices.
        notices, self._held, self._held_since = self._held, [], None
        if lead:
            self._tracker.mid_line = False
        self._write(lead + b"".join(notices))

    def _overdue_at(self) -> float | None:
        with self._lock:
            if self._held_since is None:
                return None
            return self._held_since + self._hold_seconds

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Release notices that waited too long; runs until cancelled, then flushes."""
        self._token = trio.lowlevel.current_trio_token()
        task_status.started()
        try:
            while True:
                deadline = self._overdue_at()
                if deadline is None:
                    self._wake = trio.Event()
                    if self._overdue_at() is None:  # nothing slipped in meanwhile
                        await self._wake.wait()
                    continue
                await trio.sleep_until(deadline - self._clock() + trio.current_time())
                with self._lock:
                    due = self._held_since is not None and (
                        self._clock() >= self._held_since + self._hold_seconds
                    )
                if due:
                    self.flush()
        finally:
            self._token = None
            self.flush()


class LineAwareOutput(trio.abc.SendStream):
    """The child's output stream, telling a ``NoticeGate`` where each write left it."""

    def __init__(self, inner: trio.abc.SendStream, gate: NoticeGate) -> None:
        self._inner = inner
        self._gate = gate

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._inner.send_all(data)
        self._gate.output_written(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._inner.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        self._gate.flush()
        await self._inner.aclose()
