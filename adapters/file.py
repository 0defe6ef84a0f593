"""FileSink: append events to a file as JSON Lines.

Each event is one ``write`` of one complete line to a file opened with
``O_APPEND``, so a reader (``tail -f``, ``jq``) never sees half a line, lines
from several writers never interleave, and nothing sits in a user-space
buffer if supervise is killed.
"""

from __future__ import annotations

import os
from pathlib import Path

import trio

from supervisor import Event, SinkError

__all__ = ["FileSink"]


class FileSink:
    """Append each event's flat JSON form and a newline to ``path``.

    The file is created (mode 0o644) if missing; parent directories are not.
    Writes go straight to the kernel: a local file write does not wait on
    anything, so it is done on the event loop rather than in a thread.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.name = f"file:{self.path}"
        self._fd: int | None = None

    def open(self) -> None:
        """Open the file now, so a bad path fails before the child starts.

        Raises:
            SinkError: the file cannot be opened for appending.
        """
        if self._fd is None:
            try:
                self._fd = os.open(
                    self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644
                )
            except OSError as exc:
                raise SinkError(self.name, f"cannot open for appending: {exc.strerror}") from exc

    async def send(self, event: Event) -> None:
        self.open()
        assert self._fd is not None
        line = event.to_json() + b"\n"
        try:
            written = os.write(self._fd, line)
            if written != len(line):
                raise SinkError(self.name, f"short write ({written} of {len(line)} bytes)")
        except OSError as exc:
            raise SinkError(self.name, f"write failed: {exc.strerror}") from exc
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        await trio.lowlevel.checkpoint()
