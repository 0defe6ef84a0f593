"""ProgramSupervisor with real children: answers, timeouts, stalls, restarts."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from conftest import child

from supervisor import Event, ProgramConfig
from supervisor._core.errors import AlreadyAnsweredError, ControlError, UnknownQuestionError
from supervisor._process.program import ProgramSupervisor
from supervisor.lowlevel import EventQueue
from supervisor.testing import wait_until

MESSAGE_ID = "11111111-2222-4333-8444-555555555555"


class Harness:
    """A supervised program with its output and events collected."""

    def __init__(self, program: ProgramSupervisor, output: trio.testing.MemorySendStream) -> None:
        self.program = program
        self.output = output
        self.events: list[Event] = []
        self.seen = b""

    async def output_until(self, marker: bytes) -> None:
        while marker not in self.seen:
            self.seen += await self.output.get_data()

    async def event(self, name: str, count: int = 1) -> list[Event]:
        await wait_until(
            lambda: sum(e.event == name for e in self.events) >= count,
            timeout=20,
            message=f"fewer than {count} {name} event(s)",
        )
        return [e for e in self.events if e.event == name]


@asynccontextmanager
async def supervised(**settings: Any) -> AsyncIterator[Harness]:
    """Run a program under a ProgramSupervisor; stop it at the end, whatever happens."""
    queue = EventQueue(10_000)
    output = trio.testing.MemorySendStream()
    program = ProgramSupervisor(ProgramConfig(**settings), events=queue, output=output)
    harness = Harness(program, output)

    async def collect() -> None:
        async for event in queue:
            harness.events.append(event)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(collect)
            nursery.start_soon(program.run)
            try:
                yield harness
            finally:
                program.request_stop()
                with contextlib.suppress(AssertionError):
                    await wait_until(lambda: program.settled, timeout=10)
                nursery.cancel_scope.cancel()


@pytest.mark.parametrize(("response", "written"), [("approve", "y\n"), ("deny", "n\n")])
async def test_answer_reaches_stdin_without_echo(
    tmp_path: Path, response: str, written: str
) -> None:
    """An approval answered by word is written mapped (deny is n), never echoed."""
    out = tmp_path / "answer"
    async with supervised(command=tuple(child("asker", "approval", str(out)))) as run:
        await run.output_until(b"READY")
        (pending,) = run.program.pending_questions()
        assert pending.message_id == MESSAGE_ID
        answered = await run.program.answer(MESSAGE_ID, response, by="test")
        assert answered.data.written == written.strip()
        await run.output_until(b"DONE\n")
        with pytest.raises(AlreadyAnsweredError, match="already answered by test"):
            await run.program.answer(MESSAGE_ID, "approve", by="other")
        await run.event("question_answered")
    assert out.read_text() == written
    assert run.seen == b"READY\nDONE\n"


async def test_unknown_question_is_a_clear_error(tmp_path: Path) -> None:
    """Answering an id nobody asked is refused with a one-line error."""
    async with supervised(command=tuple(child("asker", "question", str(tmp_path / "a")))) as run:
        await run.output_until(b"READY")
        with pytest.raises(UnknownQuestionError, match="no such question"):
            await run.program.answer("nope", "iso", by="test")
        await run.program.answer(MESSAGE_ID, "epoch", by="test")
        await run.output_until(b"DONE")
    assert (tmp_path / "a").read_text() == "epoch\n"


async def test_unanswered_approval_gets_the_default_deny(tmp_path: Path) -> None:
    """An approval nobody answers in time is denied with n, and the timeout is an event."""
    out = tmp_path / "answer"
    async with supervised(command=tuple(child("asker", "approval", str(out), "0.3"))) as run:
        await run.output_until(b"DONE")
        (timeout,) = await run.event("question_timeout")
    assert timeout.data.default == "deny"
    assert out.read_text() == "n\n"


async def test_task_timeout_restarts_and_loses_the_task(tmp_path: Path) -> None:
    """A task running past task_timeout is reported, and with action restart it is lost."""
    settings = {
        "command": tuple(child("asker", "silent-task", str(tmp_path / "x"))),
        "restart": "on-failure",
        "task_timeout": 0.3,
        "task_timeout_action": "restart",
    }
    async with supervised(**settings) as run:
        await run.event("task_timeout")
        (lost, *_) = await run.event("task_failed")
        await run.event("process_start", 2)
    first_pid, second_pid, *_ = [e.data.pid for e in run.events if e.event == "process_start"]
    assert lost.data.lost is True
    assert lost.data.error.startswith("process restarted: task timed out")
    assert run.program.restarts >= 1
    assert first_pid != second_pid


async def test_stall_is_reported_once(tmp_path: Path, mock_clock: trio.testing.MockClock) -> None:
    """No output for stall_timeout gives one process_stalled event per silence."""
    # Trio's clock runs as the wall clock does (a real child needs time), and
    # jumps on top: three more stall timeouts of silence, each looked at.
    mock_clock.rate = 1.0
    settings = {
        "command": tuple(child("asker", "silent-task", str(tmp_path / "x"))),
        "stall_timeout": 0.3,
    }
    async with supervised(**settings) as run:
        (stalled,) = await run.event("process_stalled")
        for _ in range(3):
            mock_clock.jump(0.3)
            await trio.testing.wait_all_tasks_blocked()
        assert len(await run.event("process_stalled")) == 1
    assert stalled.data.silent_for >= 0.3
    assert stalled.data.action == "none"


async def test_manual_restart_is_not_a_failure(tmp_path: Path) -> None:
    """request_restart starts a new process at once; the state never enters backoff."""
    settings = {
        "command": tuple(child("signals", "--report", "SIGTERM")),
        "restart": "on-failure",
        "start_seconds": 0.1,
    }
    async with supervised(**settings) as run:
        await run.output_until(b"READY")
        first = run.program.pid
        run.program.request_restart("test")
        await run.event("process_start", 2)
        assert run.program.pid not in (None, first)
        with pytest.raises(ControlError):
            run.program.request_start()
    states = [e.data.to for e in run.events if e.event == "process_state"]
    assert "backoff" not in states
    assert "stopping" in states


async def test_backoff_schedule_on_trio_clock(autojump_clock: trio.abc.Clock) -> None:
    """Spawn failures back off 10, 20, 40, 40 s (capped) on trio's clock, then go FATAL."""
    queue = EventQueue(1000)
    notices: list[str] = []
    config = ProgramConfig(
        command=("no-such-command-xyz",),
        restart="on-failure",
        backoff={"initial": 10, "factor": 2, "cap": 40, "jitter": "none"},
        give_up={"max_failures": 5, "window": 1000},
    )
    program = ProgramSupervisor(config, events=queue, report=notices.append)
    began = trio.current_time()
    assert await program.run() == 127
    assert trio.current_time() - began == pytest.approx(10 + 20 + 40 + 40)
    states = []
    while True:
        try:
            event = queue.receive_nowait()
        except trio.WouldBlock:
            break
        states.append(event.data.to)
    assert states == ["starting", "backoff"] * 5 + ["fatal"]
    assert notices[-1] == "FATAL: gave up after 5 failed starts within 1000s"
    assert program.status().last_exit == "process exited with code 127"
