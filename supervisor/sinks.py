"""The public protocol every event sink implements.

A sink delivers events somewhere (a file, a tmux pane, a chat). It is kept to
one method that does the work and one that releases resources, like
prometheus_client's one-method ``Collector``: filtering, retries and rate
limits belong to whoever feeds the sink, not to each sink.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ._events import Event

__all__ = ["Sink", "send_batch"]


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


async def send_batch(sink: Sink, events: Sequence[Event]) -> None:
    """Deliver several events in order, in one go if the sink can.

    A sink may define ``send_batch(events)`` (e.g. to write them with one
    system call); otherwise each event is sent in turn.
    """
    batch = getattr(sink, "send_batch", None)
    if batch is not None:
        await batch(events)
        return
    for event in events:
        await sink.send(event)
