"""The public protocol every event sink implements.

A sink delivers events somewhere (a file, a tmux pane, a chat). It is kept to
one method that does the work and one that releases resources, like
prometheus_client's one-method ``Collector``: filtering, retries and rate
limits belong to the router that feeds the sink, not to each sink. A sink
reports a failed delivery by raising :class:`SinkError`, saying whether a
retry can help.

A notifier of your own is a class with ``name``, ``send`` and ``aclose``::

    class Beep:
        name = "beep"

        async def send(self, event: Event) -> None:
            if event.event == "task_failed":
                await trio.run_process(["paplay", "/usr/share/sounds/bell.oga"])

        async def aclose(self) -> None:
            pass

Lifecycle. A sink that needs setup, or a task of its own in the background
(a connection held open), is also an async context manager
(``__aenter__``/``__aexit__``); in ``__aenter__`` it opens its own nursery
if it needs one. The router enters every such sink, in route order, with
an :class:`contextlib.AsyncExitStack` in its own task, when it starts and
before any ``send``; it exits them (last entered first) when it stops,
after the routes have been drained, and then calls ``aclose`` on every
sink. A sink whose ``__aenter__`` raises fails its own route only: the
route is reported failed with a one-line error, its events are not queued,
its ``aclose`` is still called, and the other routes go on. A sink that
cannot work with the settings it was given (a file that cannot be created)
raises :class:`SinkError` with ``retryable=False`` there instead: that is a
configuration error, and the run stops before any program starts with a
:class:`ConfigError` naming ``routes.NAME.sink``.

A sink that can deliver several events at once (one write, one round trip)
implements :class:`BatchSink`. One that writes a file of lines uses
:class:`LineLog` (whole lines, reopened after rotation), as the file sink does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, runtime_checkable

import trio

from ._core.errors import ConfigError, SinkError
from ._core.events import Event
from ._core.summary import format_duration, one_line, summarize
from ._logfile import LineLog

__all__ = [
    "BatchSink",
    "CallbackSink",
    "CapturingSink",
    "ConfigError",
    "Event",
    "LineLog",
    "Sink",
    "SinkError",
    "format_duration",
    "one_line",
    "send_batch",
    "summarize",
]


@runtime_checkable
class Sink(Protocol):
    """Something that takes events.

    Attributes:
        name: a short name for errors and metrics (``file:events.jsonl``).
    """

    name: str

    async def send(self, event: Event) -> None:
        """Deliver one event, or raise :class:`SinkError`."""
        ...

    async def aclose(self) -> None:
        """Release what the sink holds; no ``send`` follows."""
        ...


@runtime_checkable
class BatchSink(Sink, Protocol):
    """A sink that delivers several events at once (one write, one round trip)."""

    async def send_batch(self, events: Sequence[Event]) -> None:
        """Deliver ``events`` in order, or raise :class:`SinkError`."""
        ...


async def send_batch(sink: Sink, events: Sequence[Event]) -> None:
    """Deliver several events in order, in one go if the sink is a :class:`BatchSink`;
    otherwise each event is sent in turn."""
    if isinstance(sink, BatchSink):
        await sink.send_batch(events)
        return
    for event in events:
        await sink.send(event)


class CallbackSink:
    """A sink that calls an async function per event: what ``@sup.on(...)`` builds.

    An exception from the function is a failed delivery (retried or
    dead-lettered by the route like any other), never an end of supervise.
    """

    def __init__(self, callback: Callable[[Event], Awaitable[object]], name: str = "") -> None:
        self.callback = callback
        self.name = name or f"callback:{getattr(callback, '__qualname__', 'callback')}"

    async def send(self, event: Event) -> None:
        await self.callback(event)

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


class CapturingSink:
    """A sink that keeps what it gets, for tests of notifiers built on the SDK.

    Attributes:
        events: everything delivered, in order.
        fail_next: how many of the next deliveries fail (with a retryable
            SinkError), to test a route's retries.
    """

    def __init__(self, name: str = "capture") -> None:
        self.name = name
        self.events: list[Event] = []
        self.fail_next = 0
        self.closed = False
        self._changed = trio.Event()

    async def send(self, event: Event) -> None:
        await trio.lowlevel.checkpoint()
        if self.fail_next > 0:
            self.fail_next -= 1
            raise SinkError(self.name, "failing on purpose (fail_next)")
        self.events.append(event)
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, count: int, within: float = 10.0) -> list[Event]:
        """Wait until ``count`` events have arrived; return them.

        Raises:
            TimeoutError: fewer arrived within ``within`` seconds.
        """
        with trio.move_on_after(within):
            while len(self.events) < count:
                await self._changed.wait()
            return self.events[:count]
        raise TimeoutError(f"{self.name}: {len(self.events)} of {count} events in {within}s")

    @property
    def names(self) -> list[str]:
        """The event names received, in order."""
        return [event.event for event in self.events]

    async def aclose(self) -> None:
        self.closed = True
        await trio.lowlevel.checkpoint()
