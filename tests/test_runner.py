"""ProgramRunner used as a library, in-process under trio."""

from __future__ import annotations

import signal

import pytest
import trio
import trio.testing
from conftest import child

import supervisor
from supervisor import Event, ProgramConfig, SpawnError
from supervisor.lowlevel import EventQueue, ProgramRunner
from supervisor.testing import new_fds, open_fds


async def collect(receive: EventQueue) -> list[Event]:
    events = []
    while True:
        try:
            events.append(receive.receive_nowait())
        except trio.WouldBlock:
            return events


async def test_run_to_completion_leaks_no_fd() -> None:
    """A run yields output and events, and leaves no file descriptor behind."""
    before = open_fds()
    queue = EventQueue(100)
    output = trio.testing.MemorySendStream()
    runner = ProgramRunner(
        ProgramConfig(command=tuple(child("all_bytes"))), events=queue, output=output
    )
    with trio.fail_after(20):
        returncode = await runner.run()
    assert returncode == 0
    assert output.get_data_nowait().endswith(b"tail without newline")
    events = await collect(queue)
    assert [e.event for e in events if e.event != "process_state"] == [
        "process_start",
        "log",
        "process_exit",
    ]
    assert runner.stats.frames["log"] == 1
    assert new_fds(before) == set()


async def test_request_stop_forwards_the_signal() -> None:
    """request_stop sends the signal to the child's group; the run ends with its status."""
    output = trio.testing.MemorySendStream()
    config = ProgramConfig(command=tuple(child("signals", "--report", "SIGTERM")))
    runner = ProgramRunner(config, output=output)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            pid = await nursery.start(runner.run)
            assert runner.pid == pid
            seen = b""
            while b"READY" not in seen:
                seen += await output.get_data()
            runner.request_stop(signal.SIGTERM)
    assert b"got SIGTERM" in seen + output.get_data_nowait()


async def test_spawn_error_is_raised_before_anything_runs() -> None:
    """An unknown command raises SpawnError with the shell's status."""
    runner = ProgramRunner(ProgramConfig(command=("no-such-command-xyz",)))
    with pytest.raises(SpawnError) as caught:
        await runner.run()
    assert caught.value.exit_status == 127
    assert caught.value.command == "no-such-command-xyz"


def test_exported_members() -> None:
    """__all__ lists exactly the public names the package offers."""
    public = {name for name in dir(supervisor) if not name.startswith("_")}
    exported = set(supervisor.__all__)
    assert exported <= public
    assert {name for name in public - exported if name[0].isupper()} == set()
    for name in supervisor.__all__:
        assert getattr(supervisor, name) is not None
