"""The router: per-route queues, order, retries, dead letters, overflow, coalescing,
durable delivery from the journal; and, with a real child, that a slow sink
slows nothing else down."""

from __future__ import annotations

import itertools
import math
import random
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from conftest import child

from supervisor import Event, ProgramConfig, RouteConfig, SinkError, Supervisor
from supervisor._core.messages import IpcMessage, parse_message
from supervisor._routing.journal import AsyncJournal
from supervisor._routing.router import Router
from supervisor.testing import CapturingSink

_SEQ = itertools.count(1)


def event(name: str = "task_complete", program: str = "loop", **data: Any) -> Event:
    data = {"taskId": "T-1", **data}
    message = parse_message({"type": "ipc", "event": name, "data": data})
    return Event(next(_SEQ), program, time.time_ns() // 1_000_000, "child", message)


def route(name: str = "r", **options: Any) -> RouteConfig:
    retry = {"initial": 0.01, "cap": 0.05, "jitter": "none", **options.pop("retry", {})}
    return RouteConfig.model_validate(
        {"name": name, "sink": {"type": "file", "path": "/dev/null"}, "retry": retry, **options}
    )


class GatedSink(CapturingSink):
    """Takes nothing until opened; then behaves like CapturingSink."""

    def __init__(self, name: str = "gated") -> None:
        super().__init__(name)
        self.gate = trio.Event()
        self.waiting = 0

    async def send(self, event: Event) -> None:
        self.waiting += 1
        await self.gate.wait()
        await super().send(event)


class FailingSink(CapturingSink):
    """Fails with ``error`` until ``healed``."""

    def __init__(self, error: SinkError) -> None:
        super().__init__("failing")
        self.error = error
        self.attempts = 0
        self.healed = False
        self.attempt_times: list[float] = []

    async def send(self, event: Event) -> None:
        self.attempts += 1
        self.attempt_times.append(trio.current_time())
        if not self.healed:
            await trio.lowlevel.checkpoint()
            raise self.error
        await super().send(event)


async def until(predicate: Any, within: float = 10.0) -> None:
    with trio.fail_after(within):
        while not predicate():
            await trio.sleep(0.005)


class Running:
    def __init__(self, router: Router, emitted: list[IpcMessage]) -> None:
        self.router = router
        self.emitted = emitted

    def emitted_names(self) -> list[str]:
        return [message.event for message in self.emitted]


async def start(
    nursery: trio.Nursery,
    routes: Sequence[tuple[RouteConfig, Any]],
    journal: AsyncJournal | None = None,
) -> Running:
    emitted: list[IpcMessage] = []
    router = Router(routes, journal=journal, emit=emitted.append, rng=random.Random(1))
    await nursery.start(router.run)
    return Running(router, emitted)


async def test_each_route_gets_what_matches_in_order() -> None:
    """Event globs, program globs and the filter pick events; order is kept per route."""
    everything, tasks, prod = CapturingSink("all"), CapturingSink("tasks"), CapturingSink("prod")
    routes = [
        (route("all"), everything),
        (route("tasks", events=["task_*"], programs=["lo*"]), tasks),
        (route("prod", filter='data.namespace == "prod" and event != "log"'), prod),
    ]
    stream = [
        event("task_start", namespace="prod"),
        event("log", namespace="prod", message="x"),
        event("task_complete", program="other", namespace="prod"),
        event("task_failed", namespace="dev"),
    ]
    async with trio.open_nursery() as nursery:
        run = await start(nursery, routes)
        await run.router.publish(stream)
        await until(lambda: len(everything.events) == 4)
        await until(lambda: len(prod.events) == 2)
        await until(lambda: len(tasks.events) == 2)
        nursery.cancel_scope.cancel()
    assert everything.events == stream
    assert tasks.events == [stream[0], stream[3]]
    assert prod.events == [stream[0], stream[2]]


async def test_failures_are_retried_in_order_with_backoff(autojump_clock: Any) -> None:
    """A failing delivery is retried (delays 0.1, 0.2, 0.4) before the next event goes."""
    sink = FailingSink(SinkError("failing", "connection refused"))
    config = route(retry={"initial": 0.1, "cap": 10, "jitter": "none", "max_attempts": 0})
    stream = [event(), event(), event()]
    async with trio.open_nursery() as nursery:
        run = await start(nursery, [(config, sink)])
        await run.router.publish(stream)
        await until(lambda: sink.attempts == 4, within=100)
        sink.healed = True
        await until(lambda: len(sink.events) == 3, within=100)
        nursery.cancel_scope.cancel()
    gaps = [b - a for a, b in itertools.pairwise(sink.attempt_times)]
    assert [round(gap, 3) for gap in gaps[:4]] == [0.1, 0.2, 0.4, 0.8]
    assert sink.events == stream
    (stats,) = run.router.stats()
    assert (stats.delivered, stats.retries, stats.dead) == (3, 4, 0)


async def test_retry_after_from_the_sink_wins(autojump_clock: Any) -> None:
    """A sink that names a wait (HTTP Retry-After) gets exactly that wait."""
    sink = FailingSink(SinkError("failing", "429", retry_after=7.0))
    async with trio.open_nursery() as nursery:
        run = await start(nursery, [(route(), sink)])
        await run.router.publish([event()])
        await until(lambda: sink.attempts == 2, within=100)
        sink.healed = True
        await until(lambda: len(sink.events) == 1, within=100)
        nursery.cancel_scope.cancel()
    assert sink.attempt_times[1] - sink.attempt_times[0] == pytest.approx(7.0)


async def test_dead_letters_and_retry() -> None:
    """Retryable failures dead-letter after max_attempts, others at once; retry re-delivers."""
    flaky = FailingSink(SinkError("failing", "HTTP 503"))
    refused = FailingSink(SinkError("failing", "HTTP 404", retryable=False))
    routes = [(route("flaky", retry={"max_attempts": 3}), flaky), (route("refused"), refused)]
    stream = [event(), event()]
    async with trio.open_nursery() as nursery:
        run = await start(nursery, routes)
        await run.router.publish(stream)
        await until(lambda: len(run.emitted) == 4)
        assert flaky.attempts == 6  # 3 per event
        assert refused.attempts == 2  # once each
        letters = await run.router.dead_letters()
        assert sorted((d.route, d.seq, d.attempts, d.error) for d in letters) == sorted(
            [("flaky", e.seq, 3, "HTTP 503") for e in stream]
            + [("refused", e.seq, 1, "HTTP 404") for e in stream]
        )
        assert run.emitted_names() == ["delivery_dead"] * 4
        with pytest.raises(KeyError, match="no route named 'nope'"):
            await run.router.dead_letters("nope")

        flaky.healed = True
        assert await run.router.retry_dead("flaky") == 2
        await until(lambda: len(flaky.events) == 2)
        assert flaky.events == stream
        assert [d.route for d in await run.router.dead_letters()] == ["refused", "refused"]
        nursery.cancel_scope.cancel()


async def test_a_route_never_hears_of_its_own_failures() -> None:
    """delivery_dead about route X goes to other routes, not back into X."""
    failing = FailingSink(SinkError("failing", "down", retryable=False))
    watcher = CapturingSink("watcher")
    routes = [(route("failing"), failing), (route("watcher"), watcher)]
    async with trio.open_nursery() as nursery:
        run = await start(nursery, routes)
        await run.router.publish([event()])
        await until(lambda: len(run.emitted) == 1)
        dead = Event(next(_SEQ), "supervise", 0, "supervisor", run.emitted[0])
        await run.router.publish([dead])
        await until(lambda: len(watcher.events) == 2)
        await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    assert failing.attempts == 1
    assert watcher.names == ["task_complete", "delivery_dead"]


async def test_drop_oldest_counts_and_reports_once_a_second() -> None:
    """A full queue drops its oldest events; one route_overflow per second says how many."""
    sink = GatedSink()
    stream = [event() for _ in range(10)]
    async with trio.open_nursery() as nursery:
        run = await start(nursery, [(route(queue=3), sink)])
        await run.router.publish(stream[:1])
        await until(lambda: sink.waiting == 1)  # the first is in the sink's hands
        await run.router.publish(stream[1:])
        assert run.emitted_names() == ["route_overflow"]
        first = run.emitted[0].data
        assert (first.route, first.dropped, first.total_dropped) == ("r", 1, 1)
        sink.gate.set()
        await until(lambda: len(sink.events) == 4)
        nursery.cancel_scope.cancel()
    assert sink.events == [stream[0], *stream[-3:]]
    (stats,) = run.router.stats()
    assert stats.dropped == 6


async def test_block_waits_for_room_instead_of_dropping() -> None:
    sink = GatedSink()
    stream = [event() for _ in range(6)]
    published = trio.Event()
    async with trio.open_nursery() as nursery:
        run = await start(nursery, [(route(queue=2, overflow="block"), sink)])

        async def publish() -> None:
            await run.router.publish(stream)
            published.set()

        nursery.start_soon(publish)
        await until(lambda: sink.waiting == 1)
        await trio.sleep(0.05)
        assert not published.is_set()  # 1 in the sink, 2 queued, the rest wait
        sink.gate.set()
        await until(published.is_set)
        await until(lambda: len(sink.events) == 6)
        nursery.cancel_scope.cancel()
    assert sink.events == stream
    assert run.emitted == []


async def test_coalescing_keeps_the_latest_per_task() -> None:
    """While the sink lags, queued progress_updates of a task collapse into the newest."""
    sink = GatedSink()
    config = route(coalesce=["progress_update"])
    first = event("task_start", taskId="A")
    updates = [
        event("progress_update", taskId=task, progress=i / 10) for i in range(10) for task in "AB"
    ]
    done = event("task_complete", taskId="A")
    async with trio.open_nursery() as nursery:
        run = await start(nursery, [(config, sink)])
        await run.router.publish([first])
        await until(lambda: sink.waiting == 1)
        await run.router.publish([*updates, done])
        sink.gate.set()
        await until(lambda: len(sink.events) >= 4)
        await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    assert sink.events == [first, updates[-2], updates[-1], done]
    (stats,) = run.router.stats()
    assert stats.coalesced == 18


async def test_ttl_turns_old_events_into_dead_letters() -> None:
    sink = FailingSink(SinkError("failing", "can't find session: mgr"))
    config = route(ttl=0.2, retry={"max_attempts": 0, "initial": 0.05, "cap": 0.05})
    async with trio.open_nursery() as nursery:
        run = await start(nursery, [(config, sink)])
        await run.router.publish([event()])
        await until(lambda: len(run.emitted) == 1)
        nursery.cancel_scope.cancel()
    (letter,) = await run.router.dead_letters()
    assert letter.error == "not delivered within ttl 0.2s"
    assert 3 <= sink.attempts <= 6


async def test_a_buggy_sink_is_a_failed_delivery_not_a_crash() -> None:
    class Buggy(CapturingSink):
        async def send(self, event: Event) -> None:
            raise KeyError("oops")

    reports: list[str] = []
    router = Router([(route(retry={"max_attempts": 1}), Buggy())], report=reports.append)
    async with trio.open_nursery() as nursery:
        await nursery.start(router.run)
        await router.publish([event()])
        await until(lambda: router.stats()[0].dead == 1)
        nursery.cancel_scope.cancel()
    assert router.stats()[0].last_error == "KeyError: 'oops'"
    assert reports == [
        "route r: capture: gave up on 1 event(s) after 1 attempt(s): KeyError: 'oops' "
        "(see `supervise ctl dead`)"
    ]


# -- durable routes --------------------------------------------------------------


class JournalWitness(CapturingSink):
    """Records, for each event it is given, whether another connection can read it on disk."""

    def __init__(self, path: Path) -> None:
        super().__init__("witness")
        self.path = path
        self.on_disk: list[bool] = []

    async def send(self, event: Event) -> None:
        reader = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            row = reader.execute("SELECT 1 FROM events WHERE seq = ?", (event.seq,)).fetchone()
        finally:
            reader.close()
        self.on_disk.append(row is not None)
        await super().send(event)


async def test_a_durable_route_sees_an_event_only_once_it_is_committed(tmp_path: Path) -> None:
    """Group commits or not: when a durable route gets an event, another process
    can already read it from the journal; a plain route does not wait for that."""
    path = tmp_path / "j.db"
    journal = await AsyncJournal.open(path)
    durable, plain = JournalWitness(path), CapturingSink("plain")
    stream = [event() for _ in range(300)]
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            run = await start(
                nursery, [(route("d", durable=True), durable), (route("p"), plain)], journal
            )
            for chunk in range(0, 300, 7):
                await run.router.publish(stream[chunk : chunk + 7])
                await trio.lowlevel.checkpoint()
            assert await run.router.drain(5)
            nursery.cancel_scope.cancel()
    assert [e.seq for e in durable.events] == [e.seq for e in stream]
    assert durable.on_disk == [True] * 300
    assert [e.seq for e in plain.events] == [e.seq for e in stream]
    await journal.aclose()


async def test_a_journal_that_cannot_write_holds_bytes_not_only_events(tmp_path: Path) -> None:
    """While another connection holds the journal's lock, publish waits once
    ~8 MiB of lines wait to be journaled (not after 16,384 events whatever
    their size); when the lock goes, every event is journaled, none lost."""
    path = tmp_path / "j.db"
    journal = await AsyncJournal.open(path)
    big = [event("log", message=f"{i} " + "x" * 100_000) for i in range(200)]
    published = 0
    other = sqlite3.connect(path, isolation_level=None)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            run = await start(nursery, [(route("p"), CapturingSink("plain"))], journal)
            other.execute("BEGIN IMMEDIATE")

            async def publish() -> None:
                nonlocal published
                for chunk in range(0, 200, 10):
                    await run.router.publish(big[chunk : chunk + 10])
                    published += 10

            nursery.start_soon(publish)
            await trio.testing.wait_all_tasks_blocked()
            held = published
            other.execute("COMMIT")
            await run.router.wait_journaled(big[-1].seq)
            nursery.cancel_scope.cancel()
    other.close()
    # ~100 KB a line: the writer took the first batch, then 8 MiB more waited.
    assert 80 <= held <= 100
    assert published == 200
    assert [e.seq for e in await journal.read(big[0].seq - 1, limit=500)] == [e.seq for e in big]
    await journal.aclose()


async def test_durable_route_reads_its_backlog_from_the_journal(tmp_path: Path) -> None:
    """A durable route whose memory queue overflows loses nothing: the journal has it."""
    journal = await AsyncJournal.open(tmp_path / "j.db")
    sink = GatedSink()
    stream = [event() for _ in range(500)]
    async with trio.open_nursery() as nursery:
        run = await start(nursery, [(route(durable=True, queue=5), sink)], journal)
        for chunk in range(0, 500, 50):
            await run.router.publish(stream[chunk : chunk + 50])
        sink.gate.set()
        await until(lambda: len(sink.events) == 500)
        assert await run.router.drain(5)
        nursery.cancel_scope.cancel()
    assert [e.seq for e in sink.events] == [e.seq for e in stream]
    assert await journal.delivered("r") == stream[-1].seq
    assert run.emitted == []  # nothing dropped, so nothing to report
    await journal.aclose()


async def test_a_durable_route_catching_up_holds_nothing_in_memory(tmp_path: Path) -> None:
    """Once behind, a durable route reads everything from the journal until it has caught up.

    Queueing the new events in memory as well would only fill the queue to
    drop it again, paying for each event twice while the route is slowest.
    """
    journal = await AsyncJournal.open(tmp_path / "j.db")
    sink = GatedSink()
    stream = [event() for _ in range(103)]
    async with trio.open_nursery() as nursery:
        run = await start(nursery, [(route(durable=True, queue=5), sink)], journal)
        for chunk in range(0, 103, 10):
            await run.router.publish(stream[chunk : chunk + 10])
            if chunk >= 10:
                assert run.router.stats()[0].queued == 0
        sink.gate.set()
        await until(lambda: len(sink.events) == 103)
        assert await run.router.drain(5)
        # Caught up, it queues in memory again.
        await run.router.publish([late := event()])
        await until(lambda: len(sink.events) == 104)
        assert await run.router.drain(5)
        nursery.cancel_scope.cancel()
    assert [e.seq for e in sink.events] == [e.seq for e in [*stream, late]]
    assert await journal.delivered("r") == late.seq
    await journal.aclose()


async def test_durable_route_resumes_after_a_crash(tmp_path: Path) -> None:
    """Undelivered events of a run that died are delivered by the next run."""
    journal = await AsyncJournal.open(tmp_path / "j.db")
    down = FailingSink(SinkError("failing", "down"))
    stream = [event() for _ in range(20)]
    config = route(durable=True)
    async with trio.open_nursery() as nursery:
        run = await start(nursery, [(config, down)], journal)
        await run.router.publish(stream)
        await until(lambda: down.attempts >= 3)
        nursery.cancel_scope.cancel()  # the "crash": nothing was delivered
    up = CapturingSink()
    async with trio.open_nursery() as nursery:
        run = await start(nursery, [(config, up)], journal)
        await until(lambda: len(up.events) == 20)
        await run.router.save_progress()
        nursery.cancel_scope.cancel()
    assert [e.seq for e in up.events] == [e.seq for e in stream]
    assert [e.message_id for e in up.events] == [e.message_id for e in stream]
    assert await journal.delivered("r") == stream[-1].seq
    await journal.aclose()


async def test_a_new_durable_route_does_not_replay_history(tmp_path: Path) -> None:
    journal = await AsyncJournal.open(tmp_path / "j.db")
    old = [event() for _ in range(5)]
    await journal.append(old)
    sink = CapturingSink()
    async with trio.open_nursery() as nursery:
        run = await start(nursery, [(route("new", durable=True), sink)], journal)
        fresh = [event()]
        await run.router.publish(fresh)
        await until(lambda: len(sink.events) == 1)
        await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    assert sink.events == fresh
    await journal.aclose()


# -- with a real child -------------------------------------------------------------


class SlowSink(CapturingSink):
    """Ten seconds per event: a webhook on the far side of a dying link."""

    async def send(self, event: Event) -> None:
        await trio.sleep(10)
        await super().send(event)


async def test_a_ten_second_sink_slows_neither_the_child_nor_other_routes(
    tmp_path: Path,
) -> None:
    frames = 20_000
    slow, fast = SlowSink("slow"), CapturingSink("fast")
    config = ProgramConfig(command=tuple(child("frames", str(frames))), name="gen", pty=True)
    output = tmp_path / "out"
    # The drain deadline is the fast route's time to finish its backlog at exit
    # on a loaded machine; the slow sink cannot finish in it either way.
    sup = Supervisor(
        [config], outputs={"gen": None}, journal=False, drain_timeout=3, exit_when_settled=True
    )
    sup.route("slow", slow, queue=100)
    sup.route("fast", fast, queue=100_000)
    started = time.monotonic()
    with trio.fail_after(60):
        results = await sup.run()
    elapsed = time.monotonic() - started
    assert results == {"gen": 0}
    # One event in the slow sink's hands would alone take 10 s; the child,
    # the decoder and the fast route finished long before.
    assert elapsed < 10, f"{elapsed:.1f}s"
    assert fast.names.count("task_complete") == frames
    stats = {s.name: s for s in sup.route_stats()}
    assert stats["slow"].delivered == 0
    assert stats["slow"].dropped > frames - 200
    overflows = [e for e in fast.events if e.event == "route_overflow"]
    assert 1 <= len(overflows) <= math.ceil(elapsed) + 1
    assert sum(e.data.dropped for e in overflows) <= stats["slow"].dropped
    assert not output.exists()


async def test_retried_dead_letters_stay_listed_until_delivered() -> None:
    """ctl retry keeps each letter until delivery: a crash in between loses nothing;
    retrying twice queues once; failing again lists it anew."""
    refused = FailingSink(SinkError("failing", "HTTP 404", retryable=False))
    stream = [event(), event()]
    async with trio.open_nursery() as nursery:
        run = await start(nursery, [(route("r"), refused)])
        await run.router.publish(stream)
        await until(lambda: len(run.emitted) == 2)
        first_ids = sorted(letter.id for letter in await run.router.dead_letters())

        assert await run.router.retry_dead("r") == 2
        await until(lambda: len(run.emitted) == 4)  # dead again
        letters = await run.router.dead_letters()
        assert sorted(letter.seq for letter in letters) == [e.seq for e in stream]
        assert not set(first_ids) & {letter.id for letter in letters}

        gated = GatedSink()
        run.router._by_name["r"].sink = gated  # the sink recovers, slowly
        assert await run.router.retry_dead("r") == 2
        assert await run.router.retry_dead("r") == 0  # already queued
        await until(lambda: gated.waiting == 1)
        assert len(await run.router.dead_letters()) == 2  # in flight: still listed
        gated.gate.set()
        await until(lambda: len(gated.events) == 2)
        await until(lambda: not run.router._by_name["r"]._redelivering)
        assert await run.router.dead_letters() == []
        nursery.cancel_scope.cancel()


def test_retry_defaults_follow_the_route() -> None:
    """5 attempts by default; until the ttl when there is one; tmux waits an hour."""
    plain = route()
    assert (plain.ttl, plain.max_attempts) == (None, 5)
    durable = route(durable=True)
    assert durable.max_attempts == 0
    tmux = RouteConfig.model_validate({"name": "t", "sink": {"type": "tmux", "target": "mgr"}})
    assert (tmux.ttl, tmux.max_attempts) == (3600, 0)
    short = RouteConfig.model_validate(
        {"name": "t", "sink": {"type": "tmux", "target": "mgr"}, "ttl": 5}
    )
    assert (short.ttl, short.max_attempts) == (5, 0)
