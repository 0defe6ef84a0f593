"""FileSink: append events to a file as JSON Lines, with optional rotation.

Each batch is one ``write`` of complete lines to a file opened with
``O_APPEND``, so a reader (``tail -f``, ``jq``) never sees half a line, lines
from several writers never interleave, and nothing sits in a user-space
buffer if supervise is killed. Rotation (``max_bytes``) happens between
writes: ``events.jsonl`` becomes ``events.jsonl.1``, and so on up to
``backups``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

import trio

from supervisor.sinks import Event, LineLog, SinkError

__all__ = ["FileSink"]


class FileSink:
    """Append each event's flat JSON form and a newline to ``path``.

    The file is created (mode 0o644) if missing; parent directories are not.
    Writes to a regular file go straight to the kernel, which never makes
    them wait, so they are done on the event loop rather than in a thread. A
    FIFO, pipe or terminal (``--events /dev/stderr``) can block, so it is
    written through a non-blocking trio stream instead: a stalled reader then
    stalls this sink only, never the event loop.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, max_bytes: int = 0, backups: int = 5
    ) -> None:
        self.path = Path(path)
        self.name = f"file:{self.path}"
        self.max_bytes = max_bytes
        self.backups = backups
        self._fd: int | None = None
        self._stream: trio.lowlevel.FdStream | None = None
        self._log: LineLog | None = None

    def open(self) -> None:
        """Open the file now, so a bad path fails before the child starts.

        Raises:
            SinkError: the file cannot be opened for appending.
        """
        if self._fd is None and self._log is None:
            try:
                self._fd = os.open(
                    self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644
                )
            except OSError as exc:
                raise SinkError(
                    self.name, f"cannot open for appending: {exc.strerror}", retryable=False
                ) from exc
            if not stat.S_ISREG(os.fstat(self._fd).st_mode):
                self._stream = trio.lowlevel.FdStream(self._fd)
            elif self.max_bytes:
                os.close(self._fd)
                self._fd = None
                self._log = LineLog(self.path, max_bytes=self.max_bytes, backups=self.backups)

    async def __aenter__(self) -> FileSink:
        """Open the file when the router starts: a bad path stops the run before the child."""
        self.open()
        await trio.lowlevel.checkpoint()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def send(self, event: Event) -> None:
        await self.send_batch((event,))

    async def send_batch(self, events: Sequence[Event]) -> None:
        """Append the events' lines with one write, so none waits in a buffer."""
        if not events:
            await trio.lowlevel.checkpoint()
            return
        self.open()
        data = b"\n".join([event.to_json() for event in events]) + b"\n"
        if self._stream is not None:
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise SinkError(self.name, f"write failed: {exc.__cause__ or exc}") from exc
            return
        try:
            if self._log is not None:
                self._log.write(data)
            else:
                assert self._fd is not None
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view) :]
        except OSError as exc:
            raise SinkError(self.name, f"write failed: {exc.strerror}") from exc
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        if self._stream is not None:
            await self._stream.aclose()  # closes self._fd too
        elif self._log is not None:
            self._log.close()
        elif self._fd is not None:
            os.close(self._fd)
        self._stream = None
        self._log = None
        self._fd = None
        await trio.lowlevel.checkpoint()
