"""One injected clock: the wall time in stamps, ttl, dead letters and pruning is the supervisor's.

With :class:`~supervisor.testing.TrioWallClock`, trio's ``MockClock`` drives
the wall time too: an hour's ttl runs out in an instant of real time, and the
stamps it leaves are an hour apart.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import trio
import trio.testing
from conftest import child

from supervisor import Event, JournalConfig, ProgramConfig, RouteConfig, SinkError, Supervisor
from supervisor._core.messages import parse_message
from supervisor._routing.journal import Journal
from supervisor._routing.router import Router
from supervisor.lowlevel import Clock, SystemClock
from supervisor.testing import CapturingSink, TrioWallClock

HOUR_MS = 3600 * 1000
START_MS = 1_000_000_000_000  # 2001-09-09: far from any real clock of a test machine
MAX_AGE = 2.5 * 3600  # the runs below are 0, 1 and 3 hours apart: margins of half an hour


class AlwaysFailing(CapturingSink):
    """A tmux session that never appears: every attempt fails, retryably."""

    async def send(self, event: object) -> None:
        await trio.lowlevel.checkpoint()
        raise SinkError("tmux", "can't find session: mgr")


def test_trio_wall_clock_starts_where_told_and_moves_with_trio() -> None:
    async def main() -> list[int]:
        clock: Clock = TrioWallClock(start_ms=START_MS)
        readings = [clock.now_ms()]
        await trio.sleep(90)
        readings.append(clock.now_ms())
        await trio.sleep(0.0015)
        readings.append(clock.now_ms())
        return readings

    readings = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert readings == [START_MS, START_MS + 90_000, START_MS + 90_001]


def test_the_system_clock_is_the_default_and_reads_real_time() -> None:
    before = time.time_ns() // 1_000_000
    reading = SystemClock().now_ms()
    assert before <= reading <= time.time_ns() // 1_000_000
    assert isinstance(Supervisor().clock, SystemClock)


async def test_an_hours_ttl_runs_out_on_the_mock_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """tmux's default: retry for an hour, then a dead letter stamped an hour later."""
    clock = TrioWallClock(start_ms=START_MS)
    config = RouteConfig.model_validate(
        {"name": "mgr", "sink": {"type": "tmux", "target": "mgr"}, "retry": {"jitter": "none"}}
    )
    assert config.ttl == 3600
    emitted: list[str] = []
    router = Router(
        [(config, AlwaysFailing("tmux"))],
        emit=lambda message: emitted.append(message.event),
        rng=random.Random(1),
        clock=clock,
    )
    message = parse_message({"type": "ipc", "event": "task_failed", "data": {"taskId": "T-1"}})
    event = Event(1, "loop", clock.now_ms(), "child", message)
    started = time.monotonic()
    async with trio.open_nursery() as nursery:
        await nursery.start(router.run)
        await router.publish([event])
        with trio.fail_after(2 * 3600):  # virtual seconds
            while "delivery_dead" not in emitted:
                await trio.sleep(1)
        nursery.cancel_scope.cancel()
    (letter,) = await router.dead_letters()
    assert letter.error == "not delivered within ttl 3600s"
    assert HOUR_MS <= letter.failed_at - event.received_at <= HOUR_MS + 60_000
    (stats,) = router.stats()
    assert stats.failures > 10  # it kept trying through the hour
    assert time.monotonic() - started < 30  # an instant of real time, not an hour


def _run_once(path: Path, start_ms: int, max_age: float) -> None:
    config = ProgramConfig(name="gen", command=child("frames", "3"))
    sup = Supervisor(
        [config],
        outputs={"gen": None},
        journal=JournalConfig(path=path, max_age=max_age),
        clock=TrioWallClock(start_ms=start_ms),
    )

    async def main() -> None:
        with trio.fail_after(60):
            await sup.run()

    trio.run(main)


def test_stamps_and_pruning_read_the_supervisors_clock(tmp_path: Path) -> None:
    """Every stamp comes from the clock given, and the journal ages events by it.

    The real trio clock runs here: a run lasts well under a minute of it.
    """
    path = tmp_path / "j.db"
    _run_once(path, START_MS, max_age=MAX_AGE)
    with Journal.open(path) as journal:
        first = journal.read(0)
    assert {event.event for event in first} >= {"process_start", "task_complete", "process_exit"}
    assert all(START_MS <= event.received_at < START_MS + 60_000 for event in first)

    # An hour later by the clock: within max_age, nothing of the first run goes.
    _run_once(path, START_MS + HOUR_MS, max_age=MAX_AGE)
    with Journal.open(path) as journal:
        both = journal.read(0)
    assert [event.seq for event in both[: len(first)]] == [event.seq for event in first]
    second = both[len(first) :]
    assert second
    assert all(event.received_at >= START_MS + HOUR_MS for event in second)

    # Three hours after the first run: its events are older than max_age and go;
    # the second run's, two hours old, stay.
    _run_once(path, START_MS + 3 * HOUR_MS, max_age=MAX_AGE)
    with Journal.open(path) as journal:
        kept = journal.read(0)
    assert min(event.received_at for event in kept) >= START_MS + HOUR_MS
    assert [(e.seq, e.event, e.received_at - START_MS) for e in kept[: len(second)]] == [
        (e.seq, e.event, e.received_at - START_MS) for e in second
    ]
