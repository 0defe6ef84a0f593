"""Bounded by supervise, not by the child: label values, tables, and own events.

A child decides what it prints; the tests here make it print what an attacker
would (thousands of event names, namespaces, open tasks) through real
``supervise`` runs, and check that what supervise keeps stays bounded while
its own events all arrive, in ``seq`` order.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from conftest import child, supervise
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from telegram_stub import telegram_stub
from test_telegram import running

from adapters import telegram
from supervisor import Event, ProgramConfig, Supervisor
from supervisor._core.bounds import MAX_EVENT_NAMES, MAX_NAMESPACES, OTHER
from supervisor._core.messages import parse_message
from supervisor._core.tasks import TaskTable
from supervisor._process.program import ProgramSupervisor
from supervisor._process.queue import EVENT_OVERHEAD
from supervisor.lowlevel import EventQueue, ProgramRunner


def read_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_open_task_is_lost_and_the_last_state_arrives(tmp_path: Path) -> None:
    """20,000 tasks open at exit 3: 20,000 lost-task reports, then the final state, in order."""
    events_file = tmp_path / "events.jsonl"
    result = supervise(
        "--events", str(events_file), "--", *child("flood", "tasks", "20000", "3"), timeout=90
    )
    assert result.returncode == 3, result.stderr
    assert result.stdout.endswith(b"DONE\r\n") or result.stdout.endswith(b"DONE\n")
    events = read_events(events_file)
    seqs = [event["seq"] for event in events]
    assert seqs == sorted(set(seqs)), "seq not strictly increasing"
    started = [e["data"]["taskId"] for e in events if e["event"] == "task_start"]
    assert len(started) == 20_000
    lost = [
        e["data"]["taskId"]
        for e in events
        if e["event"] == "task_failed" and e["source"] == "supervisor" and e["data"]["lost"]
    ]
    assert sorted(lost) == sorted(started)
    exit_at = next(i for i, e in enumerate(events) if e["event"] == "process_exit")
    assert events[exit_at]["data"]["exit_code"] == 3
    last = events[-1]
    assert (last["event"], last["data"]["to"]) == ("process_state", "exited")
    assert events[-1]["source"] == "supervisor"
    assert {e["event"] for e in events} == {
        "process_state",
        "process_start",
        "task_start",
        "task_failed",
        "process_exit",
    }


async def test_own_events_never_wait_for_room() -> None:
    """A queue with room for 64: 5,000 lost tasks and the final state all arrive, in order."""
    queue = EventQueue(64)
    config = ProgramConfig(command=tuple(child("flood", "tasks", "5000", "3")), restart="no")
    program = ProgramSupervisor(config, events=queue, output=None)
    received: list[Event] = []

    async def consume() -> None:
        async for event in queue:
            received.append(event)
            await trio.lowlevel.checkpoint()  # a consumer that is slower than the child

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            assert await program.run() == 3
            queue.close()
    seqs = [event.seq for event in received]
    assert seqs == sorted(set(seqs))
    lost = [e for e in received if e.event == "task_failed" and e.source == "supervisor"]
    assert len(lost) == 5000
    assert {e.data.taskId for e in lost} == {f"T-{i}" for i in range(5000)}
    assert received[-1].event == "process_state"
    assert received[-1].data.to == "exited"


open_and_close = st.lists(
    st.tuples(st.sampled_from(["task_start", "task_complete"]), st.integers(0, 30)),
    max_size=200,
)


@given(open_and_close, st.integers(1, 8))
def test_the_task_table_is_bounded_and_every_task_ends_once(
    steps: list[tuple[str, int]], max_open: int
) -> None:
    """Whatever the child sends, at most ``max_open`` tasks are kept, and every
    task_start ends exactly once: by the child, by eviction, or lost at exit."""
    table = TaskTable(max_open=max_open)
    open_ids: set[str] = set()
    ended: list[str] = []
    for now, (event, number) in enumerate(steps):
        task = f"T-{number}"
        message = parse_message({"type": "ipc", "event": event, "data": {"taskId": task}})
        outcome = table.observe(message, float(now))
        if event == "task_start":
            if task in open_ids:
                ended.append(task)  # a restart replaces the open task
            open_ids.add(task)
        elif outcome is not None and outcome.record is not None:
            ended.append(task)
            open_ids.discard(task)
        evicted = table.take_evicted(float(now), 0)
        for lost in evicted:
            assert (lost.data.model_extra or {}).get("lost") is True
            assert "more than" in (lost.data.error or "")
            ended.append(lost.data.taskId)
            open_ids.discard(lost.data.taskId)
        assert len(table) <= max_open
        assert {record.task_id for record in table.in_flight()} == open_ids
    ended += [lost.data.taskId for lost in table.lose_all("exit", float(len(steps)), 0)]
    starts = sum(event == "task_start" for event, _ in steps)
    assert len(ended) == starts


def scrape(registry: CollectorRegistry) -> tuple[bytes, list[Any]]:
    """The exposition text, and its samples parsed back by prometheus_client."""
    text = generate_latest(registry)
    samples = [
        sample
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
    ]
    return text, samples


async def run_flood(kind: str, count: int) -> CollectorRegistry:
    registry = CollectorRegistry()
    config = ProgramConfig(command=tuple(child("flood", kind, str(count))), name="flood")
    sup = Supervisor([config], outputs={"flood": None}, registry=registry)
    with trio.fail_after(60):
        await sup.run()
    return registry


async def test_event_names_fold_into_other() -> None:
    """5,000 distinct event names from a real child: 100 series and ``other``, counts add up."""
    registry = await run_flood("events", 5000)
    text, samples = scrape(registry)
    frames = {s.labels["event"]: s.value for s in samples if s.name == "supervise_frames_total"}
    assert len(frames) == MAX_EVENT_NAMES + 1
    assert sum(frames.values()) == 5000
    assert frames[OTHER] == 5000 - MAX_EVENT_NAMES
    assert all(frames[f"ev-{i}"] == 1 for i in range(MAX_EVENT_NAMES))  # first come, first kept
    folded = [s for s in samples if s.name == "supervise_label_values_folded_total"]
    assert [(s.labels, s.value) for s in folded] == [
        ({"program": "flood", "label": "event"}, 5000 - MAX_EVENT_NAMES)
    ]
    assert len(text) < 64 * 1024


async def test_namespaces_fold_into_other() -> None:
    """2,000 tasks in 2,000 namespaces: every task counter has 50 namespaces and ``other``."""
    registry = await run_flood("namespaces", 2000)
    _, samples = scrape(registry)
    for outcome in ("started", "completed"):
        counts = {
            s.labels["namespace"]: s.value
            for s in samples
            if s.name == f"supervise_tasks_{outcome}_total"
        }
        assert len(counts) == MAX_NAMESPACES + 1
        assert sum(counts.values()) == 2000
        assert counts[OTHER] == 2000 - MAX_NAMESPACES
    durations = {
        s.labels["namespace"] for s in samples if s.name == "supervise_task_duration_seconds_count"
    }
    assert len(durations) == MAX_NAMESPACES + 1
    folded = {
        s.labels["label"]: s.value
        for s in samples
        if s.name == "supervise_label_values_folded_total"
    }
    assert folded == {"namespace": 2 * (2000 - MAX_NAMESPACES)}


async def test_run_stats_keep_a_bounded_table_of_event_names() -> None:
    """A runner's per-name frame counter holds 100 names and ``other``."""
    runner = ProgramRunner(ProgramConfig(command=tuple(child("flood", "events", "1000"))))
    with trio.fail_after(30):
        assert await runner.run() == 0
    frames = runner.stats.frames
    assert len(frames) == MAX_EVENT_NAMES + 1
    assert sum(frames.values()) == 1000
    assert frames[OTHER] == 1000 - MAX_EVENT_NAMES


async def test_the_telegram_chat_remembers_a_bounded_number_of_tasks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Progress for 60 tasks that never end: the chat keeps the 20 most recent."""
    monkeypatch.setattr(telegram, "_MAX_TRACKED", 20)
    config = ProgramConfig(command=tuple(child("flood", "progress", "60")), name="flood")
    with telegram_stub() as stub:
        settings = {"per_chat_interval": 0, "global_rate": 10_000, "events": ("progress_update",)}
        async with running(stub, config, **settings) as run:
            await run.calls("sendMessage", 60)
            # The bot records a task once its message's reply is back, just
            # after the stub counted the call.
            with trio.fail_after(10):
                while "T-59" not in [task for _, task in run.bot._cards]:
                    await trio.sleep(0.01)
            tracked = [task for _, task in run.bot._cards]
    assert tracked == [f"T-{i}" for i in range(40, 60)]


async def test_the_queue_is_bounded_by_bytes_not_only_by_events() -> None:
    """300 frames of 16 KiB each, a queue with room for 100,000 events but 512 KiB:
    the child's reader waits at the byte bound, and every frame still arrives."""
    script = (
        "import json, sys\n"
        "for i in range(300):\n"
        "    payload = {'type': 'ipc', 'event': 'log',"
        " 'data': {'level': 'info', 'message': str(i) + ' ' + 'x' * 16384}}\n"
        "    sys.stdout.write('__IPC_START__' + json.dumps(payload) + '__IPC_END__\\n')\n"
        "sys.stdout.flush()\n"
    )
    queue = EventQueue(100_000, room_bytes=512 * 1024)
    config = ProgramConfig(command=(sys.executable, "-c", script), restart="no")
    runner = ProgramRunner(config, events=queue, output=None)
    logs: list[Event] = []
    peak = 0

    async def consume() -> None:
        nonlocal peak
        # Nothing is taken before the reader has filled the queue to its byte
        # bound: on a busy machine the child can be slower than this consumer,
        # and the queue would then never fill.
        full = 512 * 1024 - (16 * 1024 + EVENT_OVERHEAD)
        while queue.queued_bytes < full:
            await trio.sleep(0.01)
        while True:
            # Whatever the reader could queue, it has queued: it waits for
            # room (or for the child) when every other task is blocked.
            await trio.testing.wait_all_tasks_blocked()
            peak = max(peak, queue.queued_bytes)
            try:
                batch = await queue.receive_batch(4)
            except trio.EndOfChannel:
                return
            logs.extend(event for event in batch if event.event == "log")

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            assert await runner.run() == 0
            queue.close()
    assert [event.data.message.split()[0] for event in logs] == [str(i) for i in range(300)]
    one_read = 64 * 1024 + 4 * (16 * 1024 + EVENT_OVERHEAD)  # a read's worth of frames
    assert 256 * 1024 <= peak <= 512 * 1024 + one_read
