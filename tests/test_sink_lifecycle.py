"""A sink's lifecycle: entered by the router, its background task cancelled at the end,
a sink that cannot be entered failing only its own route, and one whose settings
cannot work stopping the run before any program starts."""

from __future__ import annotations

import sys
from pathlib import Path
from types import TracebackType

import pytest
import trio
from conftest import ROOT

from supervisor import ConfigError, Event, ProgramConfig, RouteConfig, Supervisor, open_supervisor
from supervisor.sinks import BatchSink, Sink
from supervisor.testing import CapturingSink

SIGNALS = [sys.executable, str(ROOT / "tests" / "children" / "signals.py")]


def once() -> ProgramConfig:
    return ProgramConfig(command=[*SIGNALS, "--exit"], name="once")


def file_route(path: Path) -> RouteConfig:
    return RouteConfig.model_validate({"name": "ev", "sink": {"type": "file", "path": str(path)}})


class Background:
    """A sink that runs a task of its own from ``__aenter__`` to ``__aexit__``."""

    name = "background"

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.task_started = trio.Event()
        self.task_cancelled = False
        self.exited = False
        self.closed = False
        self._manager = trio.open_nursery()

    async def __aenter__(self) -> Background:
        nursery = await self._manager.__aenter__()
        nursery.start_soon(self._work)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.exited = True
        await self._manager.__aexit__(kind, value, traceback)

    async def _work(self) -> None:
        self.task_started.set()
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            self.task_cancelled = True
            raise

    async def send(self, event: Event) -> None:
        assert self.task_started.is_set()
        await trio.lowlevel.checkpoint()
        self.events.append(event)

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()
        self.closed = True


class Broken(CapturingSink):
    """A sink whose ``__aenter__`` fails."""

    async def __aenter__(self) -> Broken:
        await trio.lowlevel.checkpoint()
        raise OSError("no route to host\nsecond line")

    async def __aexit__(self, *exc_info: object) -> None:
        raise AssertionError("never entered, never exited")


async def test_a_sinks_background_task_is_cancelled_when_the_supervisor_stops() -> None:
    sink = Background()
    assert isinstance(sink, Sink)
    assert not isinstance(sink, BatchSink)
    sup = Supervisor([once()], outputs={"once": None})
    sup.route("bg", sink, events=["process_exit"])
    with trio.fail_after(20):
        async with open_supervisor(sup):
            await sink.task_started.wait()
    assert [event.event for event in sink.events] == ["process_exit"]
    assert sink.task_cancelled
    assert sink.exited
    assert sink.closed


async def test_a_sink_that_cannot_be_entered_fails_only_its_route() -> None:
    reports: list[str] = []
    broken, good = Broken("broken"), CapturingSink("good")
    sup = Supervisor([once()], outputs={"once": None}, report=reports.append)
    sup.route("broken", broken, events=["process_exit"])
    sup.route("good", good, events=["process_exit"])
    with trio.fail_after(20):
        assert await sup.run() == {"once": 0}
    assert good.names == ["process_exit"]
    assert broken.events == []
    assert broken.closed
    assert reports == ["route broken: cannot open its sink: OSError: no route to host second line"]
    stats = {stats.name: stats for stats in sup.route_stats()}
    assert (
        stats["broken"].last_error == "cannot open its sink: OSError: no route to host second line"
    )
    assert stats["good"].delivered == 1


async def test_a_route_file_is_created_when_the_run_starts_not_before(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    sup = Supervisor([once()], outputs={"once": None})
    sup.add_route(file_route(path))
    assert not path.exists()  # building a supervisor leaves nothing behind
    with trio.fail_after(20):
        async with open_supervisor(sup):
            assert path.exists()  # entered: the router has opened it
    assert b'"event":"process_exit"' in path.read_bytes()


async def test_a_route_file_that_cannot_be_created_stops_the_run_before_the_child(
    tmp_path: Path,
) -> None:
    """A configuration error, as itself: no program starts, and no group to unwrap."""
    marker = tmp_path / "started"
    program = ProgramConfig(command=["touch", str(marker)], name="toucher")
    sup = Supervisor([program], outputs={"toucher": None})
    sup.add_route(file_route(tmp_path / "missing" / "events.jsonl"))
    with (
        trio.fail_after(20),
        pytest.raises(ConfigError, match=r"^routes\.ev\.sink: cannot open for appending: "),
    ):
        async with open_supervisor(sup):
            pass  # pragma: no cover - never entered
    assert not marker.exists()
