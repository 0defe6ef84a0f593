"""Per-program log files of the plain output: whole lines, timestamps, rotation.

supervisord and PM2 cut lines in two at their write or rotation boundaries,
and a log whose lines are cut cannot be grepped. Here a line is written only
once its newline has arrived (or at exit), rotation happens between lines,
and each line may carry a timestamp prefix. ``reopen()`` supports external
rotation (logrotate's ``copytruncate``-free mode, ``supervise ctl
reopen-logs``).

Frames never reach the log: it receives what the terminal receives.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import trio

__all__ = ["LineLog", "TeeOutput"]


def _timestamp(now: float) -> bytes:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now))
    return f"{seconds}.{int(now % 1 * 1000):03d} ".encode()


class LineLog:
    """Append whole lines to ``path``; rotate at ``max_bytes`` keeping ``backups``.

    Writes go straight to a regular file, which never makes the event loop
    wait, so they are done inline.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timestamps: bool = False,
        max_bytes: int = 10 * 1024 * 1024,
        backups: int = 5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self._timestamps = timestamps
        self._max_bytes = max_bytes
        self._backups = backups
        self._clock = clock
        self._held = b""
        self._fd = -1
        self._size = 0
        self.reopen()

    def reopen(self) -> None:
        """Close and reopen the file (after an external rotation)."""
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._size = os.fstat(self._fd).st_size

    def write(self, data: bytes) -> None:
        """Log the complete lines of what was held plus ``data``."""
        data = self._held + data
        cut = data.rfind(b"\n") + 1
        self._held = data[cut:]
        if cut:
            self._write_lines(data[:cut])

    def close(self) -> None:
        """Log the unfinished last line, if any, and close the file."""
        if self._held:
            self._write_lines(self._held + b"\n")
            self._held = b""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _write_lines(self, lines: bytes) -> None:
        if self._timestamps:
            stamp = _timestamp(self._clock())
            lines = b"".join(stamp + line for line in lines.splitlines(keepends=True))
        if self._max_bytes and self._size and self._size + len(lines) > self._max_bytes:
            self._rotate()
        view = memoryview(lines)
        while view:
            view = view[os.write(self._fd, view) :]
        self._size += len(lines)

    def _rotate(self) -> None:
        os.close(self._fd)
        self._fd = -1
        if self._backups > 0:
            for index in range(self._backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{index}")
                if older.exists():
                    older.replace(self.path.with_name(f"{self.path.name}.{index + 1}"))
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
        self.reopen()


class TeeOutput(trio.abc.SendStream):
    """Plain output to the terminal (if any) and to a :class:`LineLog`."""

    def __init__(self, primary: trio.abc.SendStream | None, log: LineLog) -> None:
        self._primary = primary
        self.log = log

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.log.write(bytes(data))
        if self._primary is not None:
            await self._primary.send_all(data)
        else:
            await trio.lowlevel.checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        if self._primary is not None:
            await self._primary.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        self.log.close()
        await trio.lowlevel.checkpoint()
