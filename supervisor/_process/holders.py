"""Which of supervise's descendants hold the child's output open.

After the child exits, its output ends only when every process that holds
the write side (the pty's slave, or the stdout pipe) has closed it. A helper
that left the child's process group with ``setsid`` keeps it open out of
reach of the group's signals, and as long as it writes the output never goes
quiet either. Signalling the processes that actually hold the file is what
ends it: they are found among supervise's descendants (supervise is the
child subreaper, so orphans stay among them) by the identity of the open
file, never by name, and never outside supervise's own tree.
"""

from __future__ import annotations

import ctypes
import os
from contextlib import suppress
from pathlib import Path

from .spawn import libc

__all__ = ["FileId", "descendants", "holders", "pipe_id", "pty_slave_id"]

FileId = tuple[int, int]
"""(st_dev, st_ino) of an open file: what two descriptors share when they
refer to the same pipe or terminal."""


def pipe_id(fd: int) -> FileId:
    """The identity of the pipe ``fd`` is one end of (both ends share it)."""
    info = os.fstat(fd)
    return info.st_dev, info.st_ino


def pty_slave_id(master_fd: int) -> FileId | None:
    """The identity of the slave side of the pty whose master is ``master_fd``.

    None when the C library cannot name it (then nothing is found holding it).
    """
    try:
        c_library = libc()
        buffer = ctypes.create_string_buffer(128)
        if c_library.ptsname_r(master_fd, buffer, len(buffer)) != 0:
            return None
        info = os.stat(buffer.value.decode())
    except (OSError, AttributeError, UnicodeDecodeError):
        return None
    return info.st_dev, info.st_ino


def _children_of(pid: int) -> list[int]:
    found: list[int] = []
    with suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with suppress(OSError, ValueError):
                found.extend(int(child) for child in (task / "children").read_text().split())
    return found


def descendants(root: int | None = None) -> set[int]:
    """Every live process below ``root`` (default: this process)."""
    seen: set[int] = set()
    pending = _children_of(os.getpid() if root is None else root)
    while pending:
        pid = pending.pop()
        if pid not in seen:
            seen.add(pid)
            pending.extend(_children_of(pid))
    return seen


def _holds(pid: int, target: FileId) -> bool:
    fds = Path(f"/proc/{pid}/fd")
    try:
        entries = list(fds.iterdir())
    except OSError:
        return False  # gone, or a zombie
    for entry in entries:
        with suppress(OSError):
            info = os.stat(entry)
            if (info.st_dev, info.st_ino) == target:
                return True
    return False


def holders(target: FileId | None) -> set[int]:
    """supervise's descendants that have ``target`` open (none if ``target`` is None)."""
    if target is None:
        return set()
    return {pid for pid in descendants() if _holds(pid, target)}
