"""The one clock the engine reads wall time from, so a test can drive all of it.

Durations inside a run (backoff, timeouts, rate limits, prompt detection) are
measured on trio's clock, which a test replaces with
:class:`trio.testing.MockClock`. Wall time is different: every event is
stamped with the epoch milliseconds it was received at, a route's ``ttl`` is
the age of that stamp, a dead letter records when it failed, the journal
prunes by age, and the delivery-latency metric subtracts stamps from now. All
of these read one :class:`Clock`, given to :class:`~supervisor.Supervisor`
as ``clock=``.

:class:`SystemClock` (the default) is the system's wall clock.
:class:`TrioWallClock` is wall time that moves with trio's clock: under an
autojump ``MockClock`` an hour's ttl runs out in an instant and the stamps in
the journal advance with it, so a test of ttl, pruning or dead letters needs
no real waiting. It is not the default because trio's clock is monotonic and
does not advance while a machine sleeps: a supervisor running for weeks on a
laptop must stamp events with the time a person reads on the wall.
"""

from __future__ import annotations

import time
from typing import Protocol

import trio

__all__ = ["Clock", "SystemClock", "TrioWallClock"]


class Clock(Protocol):
    """Where the engine reads wall time: epoch milliseconds, as events carry them."""

    def now_ms(self) -> int:
        """Milliseconds since the epoch, now."""
        ...


class SystemClock:
    """The system's wall clock (``time.time_ns``)."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def __repr__(self) -> str:
        return "SystemClock()"


class TrioWallClock:
    """Wall time that follows trio's clock: it starts at the real time and
    advances only as ``trio.current_time()`` does.

    It is anchored the first time it is read, which must be inside
    ``trio.run`` (and, like ``trio.current_time()``, in trio's thread): a
    clock built before the run starts is fine.

    Args:
        start_ms: the epoch milliseconds of the first reading; the real time
            by default. A fixed start makes stamps reproducible.
    """

    def __init__(self, start_ms: int | None = None) -> None:
        self._start_ms = start_ms
        self._anchor: tuple[int, float] | None = None

    def now_ms(self) -> int:
        now = trio.current_time()
        if self._anchor is None:
            start = time.time_ns() // 1_000_000 if self._start_ms is None else self._start_ms
            self._anchor = (start, now)
        start, anchored_at = self._anchor
        return start + int((now - anchored_at) * 1000)

    def __repr__(self) -> str:
        return f"TrioWallClock(start_ms={self._start_ms!r})"
