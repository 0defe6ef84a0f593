"""How long to wait before restarting a program, and when to stop trying.

Supervisors disagree here, and each choice has a cost. supervisord waits one
second longer after every failed start (linear, with no cap), PM2's
exponential backoff is capped at a fixed 15 seconds, process-compose waits a
constant delay, and systemd's growing restart delay does not shrink again
after a program has run well for a while. We want four things at once:

- **Exponential growth**, so a broken program soon stops eating the machine.
- **A cap**, so a program that was down for an hour comes back within a
  minute of being fixed rather than an hour later.
- **Jitter**, so programs that crashed together (say, when a shared database
  went away) do not all come back in the same instant. The ``full`` and
  ``equal`` variants are those of the AWS Architecture Blog's "Exponential
  Backoff and Jitter".
- **A reset after a stable run**, so a program that crashes once a day starts
  again from the short initial delay instead of from whatever the delay grew
  to last week.

On top of that, :class:`GiveUpRule` turns a crash loop into ``FATAL`` once too
many starts have failed within a time window.

:class:`BackoffPolicy` and :class:`GiveUpRule` are frozen values.
:class:`RestartTracker` holds the little state that changes (the attempt
count and recent failure times); it reads no clock and draws no entropy of
its own: the caller passes the monotonic time in, and may pass a seeded
:class:`random.Random`, so tests are exact and need no sleeping. Which exits
count as failures is the caller's decision too (see
:meth:`RestartTracker.on_failure`).
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass
from typing import Literal, TypeAlias

__all__ = ["BackoffPolicy", "GiveUpRule", "Jitter", "RestartTracker"]

Jitter: TypeAlias = Literal["full", "equal", "none"]

_JITTERS: frozenset[str] = frozenset({"full", "equal", "none"})


def _require(ok: bool, field: str, requirement: str, value: object) -> None:
    # Range checks are written so that NaN fails them: every comparison with
    # NaN is false.
    if not ok:
        raise ValueError(f"{field} must be {requirement}, got {value!r}")


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """Exponential, capped, jittered delays between restart attempts.

    Attributes:
        initial: seconds before the first retry (before jitter).
        factor: how much each further failure multiplies the delay; 1 gives
            a constant delay.
        cap: the longest delay, in seconds (before jitter).
        jitter: ``"equal"`` (the default) waits between half and all of the
            delay, which spreads restarts out but never retries at once;
            ``"full"`` waits anywhere from zero to the delay; ``"none"`` waits
            exactly the delay.
        reset_after: seconds a run must last for the next failure to start
            again from ``initial``; ``math.inf`` never resets.

    Raises:
        ValueError: a field is out of range; the message names it.
    """

    initial: float = 1.0
    factor: float = 2.0
    cap: float = 60.0
    jitter: Jitter = "equal"
    reset_after: float = 60.0

    def __post_init__(self) -> None:
        _require(
            0 < self.initial < math.inf,
            "BackoffPolicy.initial",
            "positive and finite",
            self.initial,
        )
        _require(
            1 <= self.factor < math.inf,
            "BackoffPolicy.factor",
            "at least 1 and finite",
            self.factor,
        )
        _require(
            self.initial <= self.cap < math.inf,
            "BackoffPolicy.cap",
            f"finite and at least initial={self.initial}",
            self.cap,
        )
        _require(
            self.jitter in _JITTERS,
            "BackoffPolicy.jitter",
            "'full', 'equal' or 'none'",
            self.jitter,
        )
        _require(self.reset_after >= 0, "BackoffPolicy.reset_after", "at least 0", self.reset_after)

    def base_delay(self, attempt: int) -> float:
        """The delay before jitter: ``initial * factor ** (attempt - 1)``, capped.

        Args:
            attempt: which consecutive failure this is, counting from 1.

        Returns:
            A finite number of seconds between ``initial`` and ``cap``, for
            any ``attempt`` however large.

        Raises:
            ValueError: ``attempt`` is less than 1.
        """
        if attempt < 1:
            raise ValueError(f"attempt counts from 1, got {attempt}")
        exponent = attempt - 1
        if exponent == 0 or self.factor == 1:
            return self.initial
        # Past this many steps the cap applies. Checking first means factor is
        # never raised to a power that would overflow a float (attempt 10_000
        # with factor 2 would).
        steps_to_cap = math.log(self.cap / self.initial) / math.log(self.factor)
        if exponent >= steps_to_cap:
            return self.cap
        return min(self.cap, self.initial * self.factor**exponent)

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The delay before retry number ``attempt``, with jitter applied.

        Args:
            attempt: which consecutive failure this is, counting from 1.
            rng: where the jitter comes from; seed it for repeatable delays.

        Returns:
            Seconds to wait: within ``[0, base]`` for full jitter,
            ``[base / 2, base]`` for equal jitter and exactly ``base`` for
            none, where ``base`` is :meth:`base_delay`.

        Raises:
            ValueError: ``attempt`` is less than 1.
        """
        base = self.base_delay(attempt)
        if self.jitter == "full":
            return rng.uniform(0, base)
        if self.jitter == "equal":
            half = base / 2
            return half + rng.uniform(0, half)
        return base


@dataclass(frozen=True, slots=True)
class GiveUpRule:
    """When a program that keeps failing to start is declared ``FATAL``.

    The rule trips on the ``max_failures``-th failed start that falls within
    ``window`` seconds: with the defaults, the fifth failure within five
    minutes. A failure ``window`` seconds old or older no longer counts, so a
    program that fails now and then, but never that often, is retried
    forever.

    Attributes:
        max_failures: failed starts within the window that make us give up;
            ``None`` never gives up.
        window: how far back failures count, in seconds.

    Raises:
        ValueError: a field is out of range; the message names it.
    """

    max_failures: int | None = 5
    window: float = 300.0

    def __post_init__(self) -> None:
        _require(
            self.max_failures is None or self.max_failures >= 1,
            "GiveUpRule.max_failures",
            "at least 1, or None",
            self.max_failures,
        )
        _require(self.window > 0, "GiveUpRule.window", "positive", self.window)


class RestartTracker:
    """The restart bookkeeping of one program: attempt count and recent failures.

    Args:
        policy: how delays grow.
        give_up: when to stop retrying.
        rng: the source of jitter. Pass a seeded ``random.Random`` for
            repeatable delays; the default is a new one seeded by the OS.

    Every method that needs the time takes ``now``, in seconds on a monotonic
    clock (``trio.current_time()`` in the supervisor), which must never go
    backwards between calls. Memory stays bounded: only failures inside the
    window are kept, and never more than ``max_failures`` of them (with
    ``max_failures=None``, as many as happen within one window).
    """

    def __init__(
        self,
        policy: BackoffPolicy,
        give_up: GiveUpRule,
        rng: random.Random | None = None,
    ) -> None:
        self._policy = policy
        self._give_up = give_up
        self._rng = random.Random() if rng is None else rng
        self._attempt = 0
        # Times of recent failed starts, oldest first. Only the newest
        # max_failures can ever matter to the rule, so older ones drop off.
        self._failures: deque[float] = deque(maxlen=give_up.max_failures)

    @property
    def policy(self) -> BackoffPolicy:
        """How delays grow."""
        return self._policy

    @property
    def give_up(self) -> GiveUpRule:
        """When to stop retrying."""
        return self._give_up

    @property
    def attempt(self) -> int:
        """Consecutive failed starts since the last reset (0 after a reset)."""
        return self._attempt

    def failures_in_window(self, now: float) -> int:
        """How many failed starts happened less than ``window`` seconds before ``now``.

        With a finite ``max_failures`` the count stops growing at that
        number, which is all the give-up rule needs.
        """
        horizon = now - self._give_up.window
        return sum(1 for when in self._failures if when > horizon)

    def on_failure(self, now: float) -> float | None:
        """Record a failed start and say how long to wait before the next one.

        What counts as a failure is the caller's decision: a run shorter than
        ``start_seconds``, a spawn that failed, and, under ``restart =
        "on-failure"`` or ``"always"``, a crash after a good start. A stop or
        restart that a person asked for never counts. For a run that ended
        after a good start, call :meth:`on_run_ended` first, so that a long
        run resets the count before this failure is added.

        Args:
            now: monotonic time of the failure, in seconds.

        Returns:
            Seconds to wait before the next start, or ``None`` when the
            give-up rule has tripped and the program should go ``FATAL``.
        """
        self._attempt += 1
        self._failures.append(now)
        self._forget_before(now)
        limit = self._give_up.max_failures
        if limit is not None and len(self._failures) >= limit:
            return None
        return self._policy.delay(self._attempt, self._rng)

    def next_delay(self) -> float:
        """The delay before restarting a program that exited after a good start.

        Such an exit is not a failed start, so the give-up rule ignores it,
        but a program that keeps crashing a while after each start must not
        be restarted in a tight loop either: the delay grows with each such
        restart, until a run of ``reset_after`` seconds resets it.
        """
        self._attempt += 1
        return self._policy.delay(self._attempt, self._rng)

    def on_run_ended(self, now: float, uptime: float) -> None:
        """Note that a run has ended, for whatever reason.

        A run of at least ``reset_after`` seconds proves the program can
        stay up: the attempt count and the failure window are cleared, so the
        next failure waits only ``initial`` again. A shorter run changes
        nothing.

        Args:
            now: monotonic time the run ended, in seconds.
            uptime: how long the run lasted, in seconds.
        """
        if uptime >= self._policy.reset_after:
            self.reset()
        else:
            self._forget_before(now)

    def reset(self) -> None:
        """Forget all failures, as when a person starts or restarts the program."""
        self._attempt = 0
        self._failures.clear()

    def _forget_before(self, now: float) -> None:
        # The deque is in time order, so expired failures are all at the left.
        horizon = now - self._give_up.window
        while self._failures and self._failures[0] <= horizon:
            self._failures.popleft()
