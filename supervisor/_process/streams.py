"""Standard streams as trio streams, without changing the shared file descriptions.

Why this needs care: trio reads and writes file descriptors in non-blocking
mode, and ``O_NONBLOCK`` belongs to the *open file description*, which
supervise shares with the shell that started it (and, with ``--no-pty``, with
the child's inherited stderr). Setting it on fd 0 or 1 directly would leave
the user's shell, or the child, with non-blocking streams. So terminals and
pipes are reopened through ``/proc/self/fd`` to get a description of our own;
regular files and ``/dev/null`` never block and are used as they are.

A standard stream may also be closed (``supervise ... <&- >&-``), or refuse
writes (``>/dev/full``). Closed ones get a placeholder first, so that no file
supervise opens later takes their number; a failed write ends like a reader
that went away, never in a traceback.
"""

from __future__ import annotations

import errno
import fcntl
import io
import os
import stat
import sys

import trio

__all__ = [
    "BlockingFdSendStream",
    "fill_closed_standard_fds",
    "open_input_stream",
    "open_output_stream",
]


def _own_description(fd: int, flags: int) -> int | None:
    """A new open file description for what ``fd`` refers to, if possible."""
    try:
        return os.open(f"/proc/self/fd/{fd}", flags | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return None


def _never_blocks(fd: int) -> bool:
    mode = os.fstat(fd).st_mode
    return stat.S_ISREG(mode) or (stat.S_ISCHR(mode) and not os.isatty(fd))


class BlockingFdSendStream(trio.abc.SendStream):
    """Writes to a regular file or /dev/null, where a write never waits."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        if self._fd < 0:
            raise trio.ClosedResourceError("file was already closed")
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as exc:  # ENOSPC from /dev/full or a full disk, EBADF, EIO
            raise trio.BrokenResourceError(str(exc)) from exc

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        await trio.lowlevel.checkpoint()


def fill_closed_standard_fds() -> frozenset[int]:
    """Open ``/dev/null`` read-only on each of fds 0-2 that is closed; return which were.

    Read-only, the placeholder behaves as the closed stream would: stdin reads
    as empty, and writes to stdout or stderr fail (EBADF), so a closed stdout
    stops the child as a reader that went away does. Without it, the next
    file supervise opened (its own dup of stdout, the journal) would get the
    number and receive what was meant for the stream.
    """
    closed: list[int] = []
    for fd in (0, 1, 2):
        try:
            fcntl.fcntl(fd, fcntl.F_GETFD)
        except OSError as exc:
            if exc.errno != errno.EBADF:
                raise
            closed.append(fd)
            placeholder = os.open(os.devnull, os.O_RDONLY)
            if placeholder == fd:
                os.set_inheritable(fd, True)
            else:
                os.dup2(placeholder, fd)
                os.close(placeholder)
    if 2 in closed and sys.stderr is None:
        # Python leaves sys.stderr None then, and argparse falls back to
        # stdout for its usage message: give it a stderr that refuses writes.
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), write_through=True)
    return frozenset(closed)


def open_output_stream(fd: int) -> trio.abc.SendStream:
    """A trio stream writing to ``fd`` without changing ``fd``'s own flags."""
    if _never_blocks(fd):
        return BlockingFdSendStream(os.dup(fd))
    own = _own_description(fd, os.O_WRONLY)
    return trio.lowlevel.FdStream(own if own is not None else os.dup(fd))


def open_input_stream(fd: int) -> trio.abc.ReceiveStream:
    """A trio stream reading ``fd`` without changing ``fd``'s own flags."""
    if _never_blocks(fd):
        return trio.lowlevel.FdStream(os.dup(fd))
    own = _own_description(fd, os.O_RDONLY)
    return trio.lowlevel.FdStream(own if own is not None else os.dup(fd))
