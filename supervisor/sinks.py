"""The public protocol every event sink implements.

A sink delivers events somewhere (a file, a tmux pane, a chat). It is kept to
one method that does the work and one that releases resources, like
prometheus_client's one-method ``Collector``: filtering, retries and rate
limits belong to whoever feeds the sink, not to each sink.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ._events import Event

__all__ = ["Sink"]


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
