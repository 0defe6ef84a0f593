"""The router: every event offered to every route, each route delivering on its own.

supervisord's event listeners share one buffer of ten events and drop the
oldest when it fills; PM2's bus and circus's PUB socket fire and forget. Here
each route has its own bounded queue and its own task, so a sink that takes
ten seconds per event (or is down for an hour) costs only that route: the
child's output, the decoder and every other route carry on at full speed.

Per route:

- **Order** is kept: one delivery at a time, retried until it succeeds or
  becomes a dead letter, before the next.
- **Retries** back off exponentially with jitter (:class:`RetryConfig`); a
  sink that says retrying cannot help (a webhook's 404) dead-letters at once,
  and one that names a wait (HTTP ``Retry-After``) gets that wait.
- **Overflow** of a non-durable route drops the oldest queued event (counted,
  and reported as a ``route_overflow`` event at most once a second), unless
  the route asked to ``block``.
- **Coalescing** keeps only the latest queued event per task of the names
  listed (``progress_update``) when the sink lags.
- **Durable** routes are backed by the journal: the router journals each
  event before any durable route sees it, a durable route's progress (the
  last seq it delivered) is saved, and after a restart, or after its memory
  queue overflowed, it reads what it has not delivered from the journal.
  Delivery is at least once; each event carries its ``messageId`` and ``seq``
  so receivers can drop repeats.

The journal is written by group commit, off the publishing path: ``publish``
hands events to non-durable routes and appends them to a list of rows to
journal, without waiting; one writer task commits that list, at most once
per :data:`COMMIT_WINDOW` (5 ms) unless 512 rows wait, and only then offers
the committed events to the durable routes: a quiet child's event is
committed at once, a busy child's events a window's worth at a time. Why:
a commit costs the same few WAL pages whether it holds 2 rows or 500, and
a busy child's reads bring 1-2 frames each, so a commit per batch was most
of what the journal cost per frame. A commit of 64 rows or more (a busy child)
runs on the event loop's thread (:meth:`AsyncJournal.append_here`): ~3 us
of CPU per row, where a worker thread costs a ~0.1 ms round trip per
commit and a GIL hand-over per row. A smaller one (a quiet child, where
CPU is plentiful and latency counts) runs in the worker thread, so a
plain route's next event never waits behind it (p99 at 1,000 frames/s).
The promise is unchanged: a durable route sees an event only after its
commit returned (``kill -9`` then loses nothing a durable route was given),
and non-durable routes never wait for the disk. What it costs is up to 5 ms
more latency on durable routes while the child is busy; a disk that cannot
keep up slows the child only once 16,384 events (or 8 MiB of their lines)
wait to be journaled.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol, cast

import trio

from .._clock import Clock, SystemClock
from .._core.backoff import BackoffPolicy
from .._core.errors import ConfigError, SinkError, UnknownNameError
from .._core.events import (
    DeliveryDead,
    DeliveryDeadData,
    Event,
    RouteOverflow,
    RouteOverflowData,
)
from .._core.messages import IpcMessage
from ..sinks import BatchSink, Sink
from .config import RouteConfig, RouteMatcher
from .journal import AsyncJournal, DeadLetter

logger = logging.getLogger(__name__)

__all__ = [
    "RouteStats",
    "Router",
]

# Events handed to a sink that can take several at once (a file's one write).
_BATCH = 256
# Events a durable route reads from the journal at a time while catching up:
# each read is two thread hops, which cost milliseconds when the event loop
# is busy, so a small read could not keep up with a busy child.
_BACKLOG_READ = 1024
# How often durable routes' progress is saved to the journal.
_MARK_INTERVAL = 0.2
# Group commit (see Router): at most one commit per window, unless this
# many rows are pending; a commit takes at most _MAX_COMMIT_ROWS at once.
# A commit writes a few pages to the WAL whatever it holds, and its thread
# round trip costs ~0.1 ms: per read batch that was most of the journal's
# cost per frame; per window it is a fraction of a microsecond.
COMMIT_WINDOW = 0.005
_COMMIT_ROWS = 512
_MAX_COMMIT_ROWS = 1024
# Commits of at least this many rows run on the event loop's thread.
_INLINE_ROWS = 64
# Events (and bytes of their lines) published but not yet journaled before
# publish() waits for the journal: what a slow disk can make supervise hold,
# and where it slows the child. Bytes too, as the event queue counts them:
# a count alone would let large frames hold gigabytes.
_UNJOURNALED_ROOM = 16384
_UNJOURNALED_ROOM_BYTES = 8 * 1024 * 1024
_OVERFLOW_REPORT_INTERVAL = 1.0
# Dead letters kept in memory when there is no journal.
_MEMORY_DEAD_LETTERS = 10_000


@dataclasses.dataclass
class RouteStats:
    """What a route has done, for ``ctl routes`` and metrics."""

    name: str
    sink: str
    durable: bool
    queued: int = 0
    delivered: int = 0
    failures: int = 0
    retries: int = 0
    dropped: int = 0
    coalesced: int = 0
    dead: int = 0
    last_error: str | None = None
    delivered_seq: int = 0


class _Entry:
    """A queued event; ``event`` becomes None when a newer one coalesced it away."""

    __slots__ = ("event",)

    def __init__(self, event: Event) -> None:
        self.event: Event | None = event


class _DeadLetterStore(Protocol):
    async def add_dead(
        self, route: str, event: Event, error: str, attempts: int, *, failed_at: int | None = None
    ) -> object: ...
    async def dead_letters(self, route: str | None = None) -> list[DeadLetter]: ...
    async def remove_dead(self, ids: Sequence[int]) -> list[DeadLetter]: ...


class _MemoryDeadLetters:
    """Dead letters without a journal: the newest ten thousand, lost on exit."""

    def __init__(self) -> None:
        self._letters: deque[DeadLetter] = deque(maxlen=_MEMORY_DEAD_LETTERS)
        self._next_id = 1

    async def add_dead(
        self, route: str, event: Event, error: str, attempts: int, *, failed_at: int | None = None
    ) -> None:
        self._letters.append(
            DeadLetter(
                id=self._next_id,
                route=route,
                seq=event.seq,
                error=error,
                failed_at=time.time_ns() // 1_000_000 if failed_at is None else failed_at,
                attempts=attempts,
                event=event,
            )
        )
        self._next_id += 1
        await trio.lowlevel.checkpoint()

    async def dead_letters(self, route: str | None = None) -> list[DeadLetter]:
        await trio.lowlevel.checkpoint()
        return [letter for letter in self._letters if route is None or letter.route == route]

    async def remove_dead(self, ids: Sequence[int]) -> list[DeadLetter]:
        await trio.lowlevel.checkpoint()
        wanted = set(ids)
        removed = [letter for letter in self._letters if letter.id in wanted]
        kept = [letter for letter in self._letters if letter.id not in wanted]
        self._letters.clear()
        self._letters.extend(kept)
        return removed


class _RouteWorker:
    """One route's queue and the task that empties it into the sink."""

    def __init__(
        self,
        config: RouteConfig,
        sink: Sink,
        router: Router,
    ) -> None:
        self.config = config
        self.sink = sink
        self.matches = RouteMatcher(config)
        self.stats = RouteStats(config.name, sink.name, config.durable)
        self._router = router
        self._queue: deque[_Entry] = deque()
        self._live = 0
        self._latest: dict[tuple[str, str, str], _Entry] = {}
        self._wakeup = trio.Event()
        self._space = trio.Event()
        self._parked = False
        self._failing = False
        # seq -> dead-letter id of events queued again by `ctl retry`.
        self._redelivering: dict[int, int] = {}
        self._policy = BackoffPolicy(
            initial=config.retry.initial,
            factor=config.retry.factor,
            cap=config.retry.cap,
            jitter=config.retry.jitter,
        )
        self._unreported_drops = 0
        self._last_overflow_report = -_OVERFLOW_REPORT_INTERVAL
        # Durable routes: everything up to `cursor` is delivered (or dead);
        # events up to `backlog_until` are read from the journal, not the queue.
        self.cursor = 0
        self.marked = 0
        self.backlog_until = 0
        # Read from the journal, not yet delivered; all rows up to
        # `_backlog_read_to` are in it or did not match.
        self._backlog: deque[Event] = deque()
        self._backlog_read_to = 0
        self._batches = isinstance(sink, BatchSink)
        # Set when the sink could not be entered: the route takes no events.
        self.failed: str | None = None

    @property
    def name(self) -> str:
        return self.config.name

    def fail(self, error: str) -> None:
        """Mark the route failed for this run: it takes no events; others go on."""
        self.failed = error
        self.stats.last_error = error
        self._router.report(f"route {self.name}: {error}")

    @property
    def durable(self) -> bool:
        return self.config.durable and self._router.journal is not None

    # -- the publishing side (never waits, except a `block` route) --------------

    def offer_all(self, events: Sequence[Event]) -> bool:
        """Queue all of ``events`` at once if nothing about them needs a decision.

        The common case on the hot path: a route that takes every event
        (nothing coalesced, no backlog to catch up on) with room for them
        all. Returns False, having queued nothing, otherwise; then offer
        them one by one with :meth:`offer`.
        """
        if (
            self.failed is not None
            or self.config.coalesce
            or self._live + len(events) > self.config.queue
            or (self.durable and self.backlog_until > self.cursor)
        ):
            return False
        self._queue.extend([_Entry(event) for event in events])
        self._live += len(events)
        self._wake()
        return True

    def offer(self, event: Event) -> bool:
        """Queue ``event``; False if a ``block`` route is full and it must wait."""
        if self.failed is not None:
            return True  # its sink never opened: nothing is delivered to it
        if self.durable and self.backlog_until > self.cursor and not self._router.journal_failed:
            # Catching up from the journal, which has this event too: it is
            # read from there in its turn, not queued to be dropped again.
            self.backlog_until = event.seq
            self._wake()
            return True
        if self._live >= self.config.queue:
            if self.durable:
                # The journal has it: drop the memory copy of everything and
                # read the backlog from disk instead.
                self._queue.clear()
                self._latest.clear()
                self._live = 0
                self.backlog_until = event.seq
                self._wake()
                return True
            if self.config.overflow == "block":
                return False
            self._drop_oldest()
        key = self._coalesce_key(event)
        if key is not None:
            older = self._latest.get(key)
            if older is not None and older.event is not None:
                older.event = None
                self._live -= 1
                self.stats.coalesced += 1
        entry = _Entry(event)
        if key is not None:
            self._latest[key] = entry
        self._queue.append(entry)
        self._live += 1
        self._wake()
        return True

    async def wait_for_space(self) -> None:
        while self._live >= self.config.queue:
            self._space = trio.Event()
            await self._space.wait()

    def requeue(self, letters: Sequence[DeadLetter]) -> int:
        """Put dead letters back at the front, oldest first, whatever the limit.

        They stay in the dead-letter store until delivered (so a crash
        before then loses nothing); one already queued again is skipped.
        Returns how many were queued.
        """
        fresh = [letter for letter in letters if letter.id not in self._redelivering.values()]
        for letter in reversed(fresh):
            self._queue.appendleft(_Entry(letter.event))
            self._live += 1
            self._redelivering[letter.event.seq] = letter.id
        self._wake()
        return len(fresh)

    async def _forget_redelivered(self, batch: Sequence[Event]) -> None:
        """Dead letters in ``batch`` were delivered, or are dead again: drop the old records."""
        if self._redelivering:
            ids = [self._redelivering.pop(e.seq) for e in batch if e.seq in self._redelivering]
            if ids:
                await self._router.dead.remove_dead(ids)

    def _coalesce_key(self, event: Event) -> tuple[str, str, str] | None:
        if event.event not in self.config.coalesce:
            return None
        task = getattr(event.data, "taskId", None)
        return (event.program, event.event, str(task))

    def _drop_oldest(self) -> None:
        while self._queue:
            entry = self._queue.popleft()
            if entry.event is not None:
                self._live -= 1
                self.stats.dropped += 1
                self._unreported_drops += 1
                break
        now = trio.current_time()
        if now - self._last_overflow_report >= _OVERFLOW_REPORT_INTERVAL:
            self._last_overflow_report = now
            dropped, self._unreported_drops = self._unreported_drops, 0
            self._router.emit(
                RouteOverflow(
                    data=RouteOverflowData(
                        route=self.name, dropped=dropped, total_dropped=self.stats.dropped
                    )
                )
            )

    def _wake(self) -> None:
        self._wakeup.set()

    # -- the delivering side ------------------------------------------------------

    async def run(self) -> None:
        rng = self._router.rng
        while True:
            batch, advance_to = await self._next_batch()
            await self._deliver(batch, rng)
            if self.durable:
                self.cursor = max(self.cursor, advance_to)

    async def _next_batch(self) -> tuple[list[Event], int]:
        """The next events to deliver, and the seq the cursor reaches after them."""
        while True:
            if self._backlog:
                return self._pop_backlog()
            if self.durable and self.backlog_until > self.cursor:
                await self._read_backlog()
                continue
            queued = self._pop_queued()
            if queued:
                return queued, queued[-1].seq
            self._wakeup = trio.Event()
            self._parked = True
            try:
                await self._wakeup.wait()
            finally:
                self._parked = False

    async def _read_backlog(self) -> None:
        """Fill the backlog from the journal, or move the cursor past what does not match."""
        journal = self._router.journal
        assert journal is not None
        rows = await journal.read(self.cursor, limit=_BACKLOG_READ, until=self.backlog_until)
        if not rows:
            # Pruned or never journaled (a failed write): nothing more to read.
            self.cursor = self.backlog_until
            return
        self._backlog_read_to = rows[-1].seq
        matching = [event for event in rows if self.matches(event)]
        if not matching:
            self.cursor = rows[-1].seq
        self._backlog.extend(matching)

    def _pop_backlog(self) -> tuple[list[Event], int]:
        limit = min(_BATCH if self._batches else 1, len(self._backlog))
        batch = [self._backlog.popleft() for _ in range(limit)]
        # The last of what was read: past the rows after it that did not match.
        return batch, (batch[-1].seq if self._backlog else self._backlog_read_to)

    def _pop_queued(self) -> list[Event]:
        batch: list[Event] = []
        limit = _BATCH if self._batches else 1
        while self._queue and len(batch) < limit:
            entry = self._queue.popleft()
            event = entry.event
            if event is None:
                continue
            self._live -= 1
            if self._latest:
                key = self._coalesce_key(event)
                if key is not None and self._latest.get(key) is entry:
                    del self._latest[key]
            batch.append(event)
        if batch:
            self._space.set()
        return batch

    async def _deliver(self, batch: list[Event], rng: random.Random) -> None:
        attempt = 0
        ttl = self.config.ttl
        while True:
            attempt += 1
            if ttl is not None:
                age = (self._router.clock.now_ms() - batch[0].received_at) / 1000
                if age > ttl:
                    await self._give_up(batch, f"not delivered within ttl {ttl:g}s", attempt - 1)
                    return
            try:
                # Decided once: an isinstance check on a Protocol is slow.
                if self._batches:
                    await cast("BatchSink", self.sink).send_batch(batch)
                else:
                    for event in batch:
                        await self.sink.send(event)
            except SinkError as exc:
                problem, retryable, wait = exc.problem, exc.retryable, exc.retry_after
            except Exception as exc:  # a user's sink with a bug must not end supervise
                problem, retryable, wait = f"{type(exc).__name__}: {exc}", True, None
            else:
                if self._failing:
                    self._failing = False
                    self._router.report(f"route {self.name}: {self.sink.name}: delivering again")
                self.stats.delivered += len(batch)
                self.stats.delivered_seq = batch[-1].seq
                await self._forget_redelivered(batch)
                if self._router.on_delivered is not None:
                    self._router.on_delivered(self.name, batch)
                return
            self.stats.failures += 1
            self.stats.last_error = problem
            limit = self.config.max_attempts
            if not retryable or (limit and attempt >= limit):
                await self._give_up(batch, problem, attempt)
                return
            self.stats.retries += 1
            delay = wait if wait is not None else self._policy.delay(attempt, rng)
            if attempt == 1 and not self._failing:
                self._router.report(
                    f"route {self.name}: {self.sink.name}: {problem} (retrying; "
                    "further failures are not reported until it recovers)"
                )
            self._failing = True
            if ttl is not None:
                remaining = ttl - (self._router.clock.now_ms() - batch[0].received_at) / 1000
                delay = max(0.0, min(delay, remaining + 0.001))
            await trio.sleep(delay)

    async def _give_up(self, batch: list[Event], problem: str, attempts: int) -> None:
        self._router.report(
            f"route {self.name}: {self.sink.name}: gave up on {len(batch)} event(s) after "
            f"{attempts} attempt(s): {problem} (see `supervise ctl dead`)"
        )
        await self._forget_redelivered(batch)
        for event in batch:
            self.stats.dead += 1
            await self._router.dead.add_dead(
                self.name, event, problem, attempts, failed_at=self._router.clock.now_ms()
            )
            self._router.emit(
                DeliveryDead(
                    data=DeliveryDeadData(
                        route=self.name,
                        seq=event.seq,
                        event=event.event,
                        error=problem,
                        attempts=attempts,
                    )
                )
            )

    @property
    def idle(self) -> bool:
        """Nothing queued, nothing being delivered, no backlog in the journal."""
        if self.failed is not None:
            return True  # it never runs: what it holds waits for the next run
        backlog = self.durable and self.backlog_until > self.cursor
        return self._parked and self._live == 0 and not backlog and not self._backlog

    async def wait_idle(self) -> None:
        # Only shutdown waits for this, so a short poll is simpler than
        # signalling every transition.
        while not self.idle:  # noqa: ASYNC110
            await trio.sleep(0.01)


# The router's own events about a route, which that route is not offered.
_ROUTE_NEWS = frozenset({RouteOverflow, DeliveryDead})


def _about_route(event: Event) -> str | None:
    """The route a router event is about: a route never gets news of itself,
    or a dead webhook would feed on its own failure reports."""
    if isinstance(event.message, RouteOverflow | DeliveryDead):
        return event.message.data.route
    return None


class Router:
    """Offers events to routes; each route delivers on its own task.

    Args:
        routes: the routes with their sinks, in order.
        journal: the event journal; None runs without (durable routes then
            keep their events in memory only).
        emit: how the router reports its own facts (``route_overflow``,
            ``delivery_dead``): given a message, it should stamp and publish it
            like any other event.
        report: where one-line warnings go: a route's first failure after a
            success, and every dead letter.
        on_delivered: told of each delivered batch, by route (for metrics).
        rng: randomness for retry jitter (seed it in tests).
        clock: where wall time is read: an event's age for ``ttl``, when a
            dead letter failed.
    """

    def __init__(
        self,
        routes: Sequence[tuple[RouteConfig, Sink]],
        *,
        journal: AsyncJournal | None = None,
        emit: Callable[[IpcMessage], None] = lambda message: None,
        report: Callable[[str], None] | None = None,
        on_delivered: Callable[[str, Sequence[Event]], None] | None = None,
        rng: random.Random | None = None,
        clock: Clock | None = None,
    ) -> None:
        names = [config.name for config, _ in routes]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"route names must be unique: {', '.join(duplicates)}")
        self.journal = journal
        self.emit = emit
        self.report = report or (lambda line: None)
        self.on_delivered = on_delivered
        self.rng = rng or random.Random()
        self.clock: Clock = clock or SystemClock()
        self.dead: _DeadLetterStore = journal if journal is not None else _MemoryDeadLetters()
        self._workers = [_RouteWorker(config, sink, self) for config, sink in routes]
        self._by_name = {worker.name: worker for worker in self._workers}
        self._journaled = 0
        self._journal_progress = trio.Event()
        self._journal_failed = False
        # Group commit: published, not yet handed to the journal, in seq order.
        self._unjournaled: deque[Event] = deque()
        self._unjournaled_bytes = 0
        self._published = 0
        self._rows_waiting = trio.Event()
        self._rows_enough = trio.Event()
        self._commit_now = False
        self._last_commit = -math.inf
        self._durable_workers = [worker for worker in self._workers if worker.durable]

    @property
    def routes(self) -> list[str]:
        return [worker.name for worker in self._workers]

    def stats(self) -> list[RouteStats]:
        for worker in self._workers:
            worker.stats.queued = worker._live
            if worker.durable:
                worker.stats.delivered_seq = worker.cursor
        return [worker.stats for worker in self._workers]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver until cancelled (see :meth:`drain` for a clean end)."""
        if self.journal is not None:
            await self._resume_durable_routes(self.journal)
        # Sinks with setup or background work are entered here, in this
        # task, and exited when the router stops (see supervisor.sinks).
        # A sink's own nursery opens before, and closes after, the router's.
        async with contextlib.AsyncExitStack() as sinks:
            for worker in self._workers:
                if isinstance(worker.sink, contextlib.AbstractAsyncContextManager):
                    try:
                        await sinks.enter_async_context(worker.sink)
                    except SinkError as exc:
                        if not exc.retryable:  # its settings cannot work: nothing starts
                            raise ConfigError(f"routes.{worker.name}.sink", exc.problem) from None
                        worker.fail(f"cannot open its sink: {_one_line(exc)}")
                    except Exception as exc:
                        worker.fail(f"cannot open its sink: {_one_line(exc)}")
            async with trio.open_nursery() as nursery:
                for worker in self._workers:
                    if worker.failed is None:
                        nursery.start_soon(worker.run)
                if self.journal is not None:
                    nursery.start_soon(self._save_progress_periodically)
                    nursery.start_soon(self._write_journal, self.journal)
                task_status.started()

    async def _resume_durable_routes(self, journal: AsyncJournal) -> None:
        last = await journal.last_seq()
        self._journaled = last
        for worker in self._workers:
            if not worker.config.durable:
                continue
            delivered = await journal.delivered(worker.name)
            if delivered is None:
                # A new route starts from now; it does not replay history.
                await journal.register_route(worker.name, last)
                delivered = last
            worker.cursor = worker.marked = delivered
            worker.backlog_until = last

    async def publish(self, events: Sequence[Event]) -> None:
        """Offer ``events`` (in seq order) to every route.

        Non-durable routes get them at once; the journal writer commits them
        and then gives them to durable routes, so nothing is delivered
        durably that is not on disk. Waits only for a ``block`` route that
        is full, or for a journal that has fallen far behind.
        """
        for worker in self._workers:
            if not worker.durable:
                await self._offer(worker, events)
        if self.journal is None or not events:
            return
        pending = self._unjournaled
        pending.extend(events)
        # The lines are written to the journal anyway (to_json() keeps them).
        self._unjournaled_bytes += sum([len(event.to_json()) for event in events])
        self._published = events[-1].seq
        self._rows_waiting.set()
        if len(pending) >= _COMMIT_ROWS:
            self._rows_enough.set()
        while (
            len(self._unjournaled) >= _UNJOURNALED_ROOM
            or self._unjournaled_bytes >= _UNJOURNALED_ROOM_BYTES
        ):
            await self._journal_progress.wait()

    async def _offer(self, worker: _RouteWorker, events: Sequence[Event]) -> None:
        matches, name = worker.matches, worker.name
        wanted = [
            event
            for event in events
            if (matches.everything or matches(event))
            and (type(event.message) not in _ROUTE_NEWS or _about_route(event) != name)
        ]
        if not wanted or worker.offer_all(wanted):
            return
        for event in wanted:
            while not worker.offer(event):
                await worker.wait_for_space()

    async def _write_journal(self, journal: AsyncJournal) -> None:
        """Commit what was published, a window's worth at a time; then feed durable routes."""
        pending = self._unjournaled
        while True:
            if not pending:
                self._rows_waiting = trio.Event()
                await self._rows_waiting.wait()
            # At most one commit per window: a quiet child's event is committed
            # at once, a busy child's wait for the window (or 512 rows) together.
            wait = self._last_commit + COMMIT_WINDOW - trio.current_time()
            if wait > 0 and len(pending) < _COMMIT_ROWS and not self._commit_now:
                self._rows_enough = trio.Event()
                with trio.move_on_after(wait):
                    await self._rows_enough.wait()
            batch = [pending.popleft() for _ in range(min(len(pending), _MAX_COMMIT_ROWS))]
            self._unjournaled_bytes -= sum([len(event.to_json()) for event in batch])
            with trio.CancelScope(shield=True):
                await self._append(journal, batch)
            self._last_commit = trio.current_time()
            for worker in self._durable_workers:
                await self._offer(worker, batch)

    async def _append(self, journal: AsyncJournal, events: Sequence[Event]) -> None:
        try:
            # A busy child's commits run on the event loop's thread, where they
            # cost least; a quiet child's few rows go to the worker thread, so
            # no route's next event waits behind a commit.
            if len(events) < _INLINE_ROWS or not journal.append_here(events):
                await journal.append(events)
        except Exception as exc:  # disk full, database locked: keep routing
            if not self._journal_failed:
                self._journal_failed = True
                logger.warning("journal: cannot write events: %s (events are still routed)", exc)
        self._journaled = events[-1].seq
        self._journal_progress.set()
        self._journal_progress = trio.Event()

    async def _flush_journal(self) -> None:
        """Commit what waits at once, not at the end of a window (drain, shutdown)."""
        if self.journal is None:
            return
        self._commit_now = True
        self._rows_enough.set()
        try:
            await self.wait_journaled(self._published)
        finally:
            self._commit_now = False

    @property
    def journal_failed(self) -> bool:
        """Whether an append to the journal has failed during this run."""
        return self._journal_failed

    @property
    def journaled_seq(self) -> int:
        """The last seq handed to the journal (0 before any)."""
        return self._journaled

    async def wait_journaled(self, seq: int) -> None:
        """Return once every event up to ``seq`` has been written (or failed to be)."""
        while self.journal is not None and self._journaled < seq:
            await self._journal_progress.wait()

    async def _save_progress_periodically(self) -> None:
        while True:
            await trio.sleep(_MARK_INTERVAL)
            await self.save_progress()

    async def save_progress(self) -> None:
        """Write each durable route's delivered seq to the journal."""
        if self.journal is None:
            return
        for worker in self._workers:
            if worker.durable and worker.cursor > worker.marked:
                cursor = worker.cursor
                await self.journal.mark_delivered(worker.name, cursor)
                worker.marked = cursor

    async def drain(self, grace: float) -> bool:
        """Wait up to ``grace`` seconds for every route to deliver what it holds.

        Returns whether all did; durable routes' progress is saved either way
        (what they did not deliver is delivered by the next run).
        """
        with trio.move_on_after(grace):
            await self._flush_journal()
            for worker in self._workers:
                await worker.wait_idle()
        with trio.CancelScope(shield=True):
            await self.save_progress()
        return all(worker.idle for worker in self._workers)

    # -- dead letters ---------------------------------------------------------------

    async def dead_letters(self, route: str | None = None) -> list[DeadLetter]:
        self._check_route(route)
        return await self.dead.dead_letters(route)

    async def retry_dead(self, route: str | None = None, ids: Sequence[int] = ()) -> int:
        """Queue dead letters again (of ``route``, or only ``ids``); return how many.

        Each stays listed until it is delivered; failing again, it is listed
        anew with its new error.
        """
        self._check_route(route)
        letters = await self.dead.dead_letters(route)
        if ids:
            wanted = set(ids)
            letters = [letter for letter in letters if letter.id in wanted]
        by_route: dict[str, list[DeadLetter]] = {}
        for letter in sorted(letters, key=lambda letter: letter.seq):
            if letter.route in self._by_name:
                by_route.setdefault(letter.route, []).append(letter)
        return sum(self._by_name[name].requeue(group) for name, group in by_route.items())

    def _check_route(self, route: str | None) -> None:
        if route is not None and route not in self._by_name:
            raise UnknownNameError("route", route, tuple(self._by_name))

    async def aclose(self) -> None:
        """Close every sink (after :meth:`drain`, and after cancelling :meth:`run`).

        Events still waiting for the journal (a drain cut short) are
        committed now: durable routes get them from the journal next run.
        """
        with trio.CancelScope(shield=True):
            if self.journal is not None and self._unjournaled:
                rows = list(self._unjournaled)
                self._unjournaled.clear()
                self._unjournaled_bytes = 0
                await self._append(self.journal, rows)
            for worker in self._workers:
                with contextlib.suppress(Exception):
                    await worker.sink.aclose()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
