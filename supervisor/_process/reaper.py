"""Orphans: become the child subreaper, reap orphaned grandchildren, stop them at the end.

When a supervised child crashes, helpers it started (a build, a dev server,
an AI CLI) would be re-parented to init and live on unseen. With
``PR_SET_CHILD_SUBREAPER`` they are re-parented to supervise instead, so it
can reap them (no zombies) and stop them when it stops (nothing left running),
even those that left the child's process group with ``setsid``.

The processes supervise started itself are reaped by their owners (``_child``
waits on each pid); this module only touches the others, by pid, so it never
steals an exit status from its owner.
"""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import trio

from .spawn import become_subreaper, prestarted_pids

__all__ = [
    "become_subreaper",
    "forget_child",
    "orphans",
    "reap_orphans",
    "register_child",
    "run_orphan_reaper",
    "signal_if_alive",
    "spawning",
    "stop_orphans",
]

# Pids of the children supervise spawned itself; their owners reap them.
_own_children: set[int] = set()
# While a spawn is under way its pid is not registered yet: hands off.
_spawning = 0


@contextmanager
def spawning() -> Iterator[None]:
    """Mark a spawn in progress, so its child is never mistaken for an orphan."""
    global _spawning
    _spawning += 1
    try:
        yield
    finally:
        _spawning -= 1


def register_child(pid: int) -> None:
    _own_children.add(pid)


def forget_child(pid: int) -> None:
    _own_children.discard(pid)


def _children() -> set[int]:
    pids: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        with suppress(OSError):
            pids.update(int(pid) for pid in (task / "children").read_text().split())
    return pids


def orphans() -> set[int]:
    """Our children that we did not start: orphans re-parented to us."""
    return _children() - _own_children - prestarted_pids()


def reap_orphans() -> int:
    """Reap the orphans that have exited; return how many."""
    reaped = 0
    if _spawning:
        return 0
    for pid in orphans():
        with suppress(ChildProcessError):
            done, _ = os.waitpid(pid, os.WNOHANG)
            reaped += bool(done)
    return reaped


async def run_orphan_reaper(interval: float = 1.0) -> None:
    """Reap exited orphans every ``interval`` seconds, until cancelled."""
    while True:
        reap_orphans()
        await trio.sleep(interval)


async def stop_orphans(grace: float, hurry: trio.Event | None = None) -> int:
    """SIGTERM every orphan, SIGKILL those still there after ``grace`` seconds; reap all.

    An orphan that appears meanwhile (the child of one just stopped, re-parented
    to supervise) gets the same treatment. ``hurry``, once set, ends the grace
    at once (a stop signal while supervise waits for them).

    Returns:
        How many orphans there were.
    """
    found: set[int] = set()
    with trio.move_on_after(grace) as scope:
        while orphans():
            for pid in orphans() - found:
                signal_if_alive(pid, signal.SIGTERM)
                found.add(pid)
            reap_orphans()
            if hurry is not None and hurry.is_set():
                scope.cancel()
            await trio.sleep(0.02)
    with trio.move_on_after(1.0):
        while remaining := orphans():
            for pid in remaining:
                signal_if_alive(pid, signal.SIGKILL)
            found |= remaining
            reap_orphans()
            await trio.sleep(0.02)
    return len(found)


def signal_if_alive(pid: int, signum: int) -> None:
    """Send ``signum`` to ``pid``, which may have exited meanwhile."""
    try:
        os.kill(pid, signum)
    except OSError as exc:
        if exc.errno != errno.ESRCH:
            raise
