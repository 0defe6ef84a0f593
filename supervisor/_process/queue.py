"""The one queue between the programs and the delivery loop.

Every event of a run, the child's frames and supervise's own facts alike, is
numbered (``seq``) and appended here in the same synchronous step, so the
queue's order is the numbering's order and the delivered stream's ``seq``
strictly increases (the journal refuses anything else).

Appending never waits: supervise's own events (a lost task's
``task_failed``, the final ``process_state``) are facts about the run and
must all arrive, however many there are at once. A child that exits with
20,000 tasks open gets 20,000 lost-task reports, then its last state change.

Backpressure is kept where it belongs, on the child: after appending a batch
of its frames, the program's output reader waits (:meth:`EventQueue.wait_for_room`)
until the delivery loop has brought the queue under ``room`` events and
``room_bytes``. So what the child can make supervise hold is bounded by
bytes, whatever the size of its frames, plus one read's worth of frames,
and supervise's own events never wait behind that limit.

The bytes are an estimate of what an event holds in memory: its frame's
length plus :data:`EVENT_OVERHEAD` for the event and its pydantic model
(~2 KiB measured for a loopwork ``task_complete``). A count alone did not
bound memory: 16,384 small events held ~40 MiB, and 16,384 frames of a
megabyte each would have held 16 GiB.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import trio

from .._core.events import Event

__all__ = ["DEFAULT_ROOM", "DEFAULT_ROOM_BYTES", "EVENT_OVERHEAD", "EventQueue"]

DEFAULT_ROOM = 16384
"""Events the delivery loop may fall behind before a child's output reader waits."""
DEFAULT_ROOM_BYTES = 8 * 1024 * 1024
"""Estimated bytes of queued events before a child's output reader waits."""
EVENT_OVERHEAD = 2048
"""Estimated bytes an event and its model hold beyond its frame's own bytes."""


class EventQueue:
    """A FIFO of events: appending never blocks, only the child's reader waits for room.

    The sending side is every program of a run (:class:`ProgramSupervisor`,
    :class:`ProgramRunner`) and the supervisor itself; the receiving side is
    one delivery loop, which takes events in batches.

    Args:
        room: when this many events are queued, :meth:`wait_for_room` waits.
        room_bytes: and when their estimated size reaches this.
    """

    def __init__(self, room: int = DEFAULT_ROOM, room_bytes: int = DEFAULT_ROOM_BYTES) -> None:
        if room < 1:
            raise ValueError(f"room must be at least 1, got {room}")
        if room_bytes < 1:
            raise ValueError(f"room_bytes must be at least 1, got {room_bytes}")
        self.room = room
        self.room_bytes = room_bytes
        self._items: deque[Event] = deque()
        self._sizes: deque[int] = deque()
        self._bytes = 0
        self._closed = False
        self._readers = trio.lowlevel.ParkingLot()
        self._writers = trio.lowlevel.ParkingLot()

    def __len__(self) -> int:
        return len(self._items)

    # -- sending ---------------------------------------------------------------

    @property
    def queued_bytes(self) -> int:
        """The estimated size of what is queued (see :data:`EVENT_OVERHEAD`)."""
        return self._bytes

    def put(self, events: Sequence[Event], sizes: Sequence[int] | None = None) -> None:
        """Append ``events`` in order, at once (no checkpoint, never waits).

        Number an event and put it in the same synchronous step: that is
        what keeps the queue in ``seq`` order.

        Args:
            events: what to append.
            sizes: each event's estimated size in bytes; by default
                :data:`EVENT_OVERHEAD` each.

        Raises:
            trio.ClosedResourceError: the queue was closed (the run is over).
        """
        if self._closed:
            raise trio.ClosedResourceError("the event queue is closed")
        if sizes is None:
            sizes = [EVENT_OVERHEAD] * len(events)
        self._items.extend(events)
        self._sizes.extend(sizes)
        self._bytes += sum(sizes)
        if self._items:
            self._readers.unpark_all()

    def send_nowait(self, event: Event) -> None:
        """Append one event (what a memory channel's sender would call)."""
        self.put((event,))

    async def wait_for_room(self) -> None:
        """Wait until fewer than ``room`` events are queued: backpressure for the child.

        Returns at once, without a checkpoint, when there is room, so the
        child's hot path costs what a ``send_nowait`` cost.
        """
        while self._full() and not self._closed:
            await self._writers.park()

    def _full(self) -> bool:
        return len(self._items) >= self.room or self._bytes >= self.room_bytes

    def close(self) -> None:
        """No more events: the receiver gets what is queued, then the end."""
        self._closed = True
        self._readers.unpark_all()
        self._writers.unpark_all()

    # -- receiving -------------------------------------------------------------

    async def receive_batch(self, limit: int) -> list[Event]:
        """The next events, oldest first, at most ``limit``; waits for one.

        Raises:
            trio.EndOfChannel: the queue is closed and empty.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        while not self._items:
            if self._closed:
                raise trio.EndOfChannel
            await self._readers.park()
        items, sizes = self._items, self._sizes
        count = min(limit, len(items))
        batch = [items.popleft() for _ in range(count)]
        self._bytes -= sum([sizes.popleft() for _ in range(count)])
        if not self._full():
            self._writers.unpark_all()
        return batch

    def receive_nowait(self) -> Event:
        """The oldest event.

        Raises:
            trio.WouldBlock: nothing is queued.
            trio.EndOfChannel: the queue is closed and empty.
        """
        if not self._items:
            raise trio.EndOfChannel if self._closed else trio.WouldBlock
        event = self._items.popleft()
        self._bytes -= self._sizes.popleft()
        if not self._full():
            self._writers.unpark_all()
        return event

    def __aiter__(self) -> EventQueue:
        return self

    async def __anext__(self) -> Event:
        try:
            (event,) = await self.receive_batch(1)
        except trio.EndOfChannel:
            raise StopAsyncIteration from None
        return event
