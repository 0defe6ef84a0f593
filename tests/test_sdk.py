"""The Python SDK: a Supervisor built from code, with callbacks, subscriptions,
answers, status and a sink of one's own, driving the example loopwork-like child."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import trio
from conftest import ROOT, finish, popen

from supervisor import AlreadyAnsweredError, Event, ProgramConfig, Supervisor, UnknownQuestionError
from supervisor.testing import CapturingSink

FAKE = [sys.executable, str(ROOT / "examples" / "fake_loopwork.py")]


class Collect(trio.abc.SendStream):
    """A program's output, kept in memory."""

    def __init__(self) -> None:
        self.data = bytearray()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        self.data += data

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


def loop(*args: str) -> ProgramConfig:
    command = (*FAKE, "--delay", "0.01", "--question-every", "0", *args)
    return ProgramConfig(command=command, name="loop")


async def test_callbacks_subscriptions_answers_and_status() -> None:
    output = Collect()
    sup = Supervisor([loop("--tasks", "4", "--approval")], outputs={"loop": output})
    finished: list[str] = []
    capture = CapturingSink()
    sup.route("mine", capture, events=["task_*"], filter='data.namespace == "demo"')

    @sup.on("task_complete", "task_failed")
    async def record(event: Event) -> None:
        finished.append(f"{event.event} {event.data.taskId}")

    answered = []
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sup.run)
            async with sup.subscribe("approval_request") as requests:
                async for request in requests:
                    (status,) = sup.status()
                    assert (status.name, status.state, status.pending_questions) == (
                        "loop",
                        "running",
                        1,
                    )
                    answered.append(await sup.answer(request.message_id, "approve"))
                    with pytest.raises(AlreadyAnsweredError):
                        await sup.answer(request.message_id, "deny")
    assert sup.results == {"loop": 0}
    (answer,) = answered
    assert (answer.data.written, answer.data.by) == ("y", "sdk")
    assert b"[Y/n] approved" in output.data
    # fake_loopwork fails every third task: FEAT-003.
    assert finished == [
        "task_complete FEAT-001",
        "task_complete FEAT-002",
        "task_failed FEAT-003",
        "task_complete FEAT-004",
    ]
    assert capture.names == ["task_start", "task_complete"] * 2 + [
        "task_start",
        "task_failed",
        "task_start",
        "task_complete",
    ]
    with pytest.raises(UnknownQuestionError):
        await sup.answer("no-such-id", "approve")


async def test_a_failing_callback_does_not_stop_anything() -> None:
    sup = Supervisor([loop("--tasks", "2")], outputs={"loop": None})
    reports: list[str] = []
    sup._report = reports.append
    seen: list[str] = []

    @sup.on("task_start")
    async def broken(event: Event) -> None:
        raise RuntimeError("bug in my notifier")

    @sup.on("task_complete")
    async def fine(event: Event) -> None:
        seen.append(event.data.taskId)

    with trio.fail_after(30):
        assert await sup.run() == {"loop": 0}
    assert seen == ["FEAT-001", "FEAT-002"]
    stats = {s.name: s for s in sup.route_stats()}
    assert (stats["on:broken"].dead, stats["on:fine"].delivered) == (2, 2)
    dead = await sup.dead_letters("on:broken")
    assert [letter.error for letter in dead] == ["RuntimeError: bug in my notifier"] * 2


def test_the_example_notifier() -> None:
    """examples/notifier.py, as a user runs it (without notify-send on PATH)."""
    if shutil.which("notify-send"):
        pytest.skip("notify-send would take the notifications")
    proc = popen(
        [
            sys.executable,
            "examples/notifier.py",
            "--",
            *FAKE,
            "--tasks",
            "3",
            "--delay",
            "0.01",
            "--approval",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    status, out, err = finish(proc, timeout=60)
    assert status == 0, err
    lines = [line for line in out.decode().splitlines() if line.startswith("[notifier]")]
    assert lines[0] == "[notifier] 🔄 fake_loopwork: stopped → starting (start requested)"
    assert any(line.startswith("[notifier] ✅ FEAT-001 ") for line in lines)
    assert any(line.startswith("[notifier] ❌ FEAT-003 ") for line in lines)
    # The example denies high-severity approvals, and the child saw the denial.
    assert "[Y/n] denied" in out.decode()
