"""Bounded by supervise, not by the child: label values, tables, and own events.

A child decides what it prints; the tests here make it print what an attacker
would (thousands of event names, namespaces, open tasks) through real
``supervise`` runs, and check that what supervise keeps stays bounded while
its own events all arrive, in ``seq`` order.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import trio
from conftest import child, supervise
from hypothesis import given
from hypothesis import strategies as st

from supervisor import Event, EventQueue, ProgramConfig
from supervisor._messages import parse_message
from supervisor._supervisor import ProgramSupervisor
from supervisor._tasks import TaskTable


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
