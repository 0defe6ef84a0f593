"""The SDK's ownership of its programs: ``open_supervisor``, cancellation, the journal.

A host that leaves the block or cancels ``run()`` must see its children
stopped gracefully (stop signal first, their own clean-up) and its routes
given the ``process_exit``; a supervisor built and never run leaves nothing
behind.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import trio
from conftest import ROOT

from supervisor import (
    ConfigError,
    JournalConfig,
    ProgramConfig,
    Supervisor,
    SupervisorNotRunningError,
    open_supervisor,
)
from supervisor.testing import CapturingSink

SIGNALS = [sys.executable, str(ROOT / "tests" / "children" / "signals.py")]


class Marked(trio.abc.SendStream):
    """A program's output, kept in memory, with a wait for a marker in it."""

    def __init__(self) -> None:
        self.data = bytearray()
        self._changed = trio.Event()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        self.data += data
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, marker: bytes) -> None:
        while marker not in self.data:
            await self._changed.wait()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


def trapper() -> ProgramConfig:
    """A child that handles SIGTERM: prints ``got SIGTERM`` and exits 0."""
    return ProgramConfig(command=[*SIGNALS, "--report", "SIGTERM"], name="trap", stop_timeout=10)


def assert_stopped_by_sigterm(output: Marked, capture: CapturingSink) -> None:
    assert b"got SIGTERM" in output.data
    (exit_event,) = [event for event in capture.events if event.event == "process_exit"]
    # Exit status 0 from its own handler, not killed by SIGKILL.
    assert (exit_event.data.exit_code, exit_event.data.signal) == (0, None)


async def test_cancelling_run_stops_the_child_gracefully() -> None:
    output, capture = Marked(), CapturingSink()
    sup = Supervisor([trapper()], outputs={"trap": output})
    sup.route("capture", capture, events=["process_*"])
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await output.wait_for(b"READY")
            nursery.cancel_scope.cancel()
    assert_stopped_by_sigterm(output, capture)
    assert sup.results == {"trap": 0}


async def test_leaving_open_supervisor_stops_the_child_gracefully() -> None:
    output, capture = Marked(), CapturingSink()
    sup = Supervisor([trapper()], outputs={"trap": output}, exit_when_settled=False)
    sup.route("capture", capture, events=["process_*"])
    with trio.fail_after(20):
        async with open_supervisor(sup) as running:
            assert running is sup
            await output.wait_for(b"READY")
    assert_stopped_by_sigterm(output, capture)


async def test_cancelling_an_open_supervisor_block_stops_the_child_gracefully() -> None:
    output = Marked()
    with trio.fail_after(20):
        with trio.CancelScope() as scope:
            async with open_supervisor([trapper()], outputs={"trap": output}) as sup:
                await output.wait_for(b"READY")
                scope.cancel()
                await trio.sleep_forever()
    assert b"got SIGTERM" in output.data
    assert sup.results == {"trap": 0}


def _open_fds_to(path: Path) -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        with_target = Path("/proc/self/fd", fd)
        try:
            target = os.readlink(with_target)
        except OSError:
            continue
        if target.startswith(str(path)):
            found.append(target)
    return found


async def test_the_journal_exists_only_while_the_supervisor_runs(tmp_path: Path) -> None:
    path = tmp_path / "sdk.journal.db"
    sup = Supervisor(
        [ProgramConfig(command=[*SIGNALS, "--exit"], name="once")],
        outputs={"once": None},
        journal=JournalConfig(path=path),
    )
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SupervisorNotRunningError, match="not running yet"):
        await sup.dead_letters()
    with trio.fail_after(20):
        async with open_supervisor(sup):
            assert path.exists()
            assert await sup.dead_letters() == []
    assert _open_fds_to(path) == []
    path.unlink()


def test_an_unknown_outputs_key_is_refused() -> None:
    with pytest.raises(
        ConfigError, match=r"outputs\.tarp: no program of that name \(programs: trap\)"
    ):
        Supervisor([trapper()], outputs={"tarp": None})
