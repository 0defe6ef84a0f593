"""supervise as a ts-ipc agent: its programs' events reach ts-ipc subscribers.

When the user has ts-ipc state (the database under :func:`.store.ipc_home`
exists), every ``supervise`` run also

- publishes its events to ts-ipc subscriptions, so
  ``ts-ipc subscribe claude-manager task_failed notify`` shows every
  supervised loopwork's failures in ``claude-manager``. A notification
  carries the event's one-line summary, a ``data`` subscription the event's
  JSON line. The source is the program's name. A ``command`` subscription
  does not run an event's text: it comes from the child, which is not
  trusted, unless the subscription was made with ``--allow-child-commands``;
- delivers waiting messages, as ``ts-ipc serve`` does, so a message to a
  session that appears later arrives while any supervise runs.

The subscriptions are read again only when the database changed
(``PRAGMA data_version``), so an event nobody subscribed to costs a glob
match per subscription and no I/O; matching events are published in a
worker thread, off the event loop. Events reach the agent through the
hub's bounded subscription: if ts-ipc falls behind (a hung tmux), it loses
events rather than slowing the child.
"""

from __future__ import annotations

import fnmatch
import logging
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from .._core.events import Event
from .._core.summary import summarize
from .._paths import ipc_home
from .deliver import deliver_waiting
from .serve import serve_deliveries
from .store import Store, Subscription

if TYPE_CHECKING:
    from .._supervisor import Supervisor

__all__ = ["ipc_in_use", "serve_ipc_agent"]

logger = logging.getLogger(__name__)


def ipc_in_use(home: Path | None = None) -> bool:
    """Whether this user has ts-ipc state (then supervise acts as an agent)."""
    return ((ipc_home() if home is None else home) / "ipc.sqlite3").exists()


class _Publisher:
    """Matches events against the subscriptions; publishes the matching ones."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._version = -1
        self._subscriptions: list[Subscription] = []

    def refresh(self) -> None:
        """Read the subscriptions again if the database changed (in a thread)."""
        version = self._store.data_version()
        if version != self._version:
            self._version = version
            self._subscriptions = self._store.subscriptions()

    def wanted(self, event: Event) -> bool:
        return any(fnmatch.fnmatchcase(event.event, s.event) for s in self._subscriptions)

    def publish(self, event: Event) -> None:
        """Queue the event for each subscriber and deliver (in a thread)."""
        from .publishing import publish

        def accepts(source: str) -> bool:
            from .filtering import accepts_event

            return accepts_event(source, event)

        def body_for(subscription: Subscription) -> str:
            if subscription.action == "data":
                return event.to_json().decode()
            return summarize(event)

        messages = publish(
            self._store,
            event.program,
            event.event,
            summarize(event),
            accepts=accepts,
            body_for=body_for,
            from_child=True,
        )
        if messages:
            deliver_waiting(self._store, dict.fromkeys(m.target for m in messages))


async def serve_ipc_agent(
    sup: Supervisor,
    home: Path | None = None,
    *,
    interval: float = 1.0,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Publish ``sup``'s events to ts-ipc and deliver waiting messages, until cancelled.

    New subscriptions are picked up within ``interval`` seconds.
    """
    home = ipc_home() if home is None else home
    store = await trio.to_thread.run_sync(Store, home)
    publisher = _Publisher(store)
    await trio.to_thread.run_sync(publisher.refresh)

    async def refresh_periodically() -> None:
        while True:
            await trio.sleep(interval)
            try:
                await trio.to_thread.run_sync(publisher.refresh)
            except Exception as exc:  # a locked or damaged database: try again later
                logger.warning("ts-ipc: could not read subscriptions: %s", exc)

    try:
        async with sup.subscribe(None, buffer=1000) as events, trio.open_nursery() as nursery:
            nursery.start_soon(partial(serve_deliveries, home, interval=interval))
            nursery.start_soon(refresh_periodically)
            task_status.started()
            try:
                async for event in events:
                    await _publish(publisher, event)
            finally:
                # supervise is ending: what its last moments sent still goes
                # out (a loop's final failure), for at most a few seconds.
                with trio.CancelScope(shield=True), trio.move_on_after(_FINAL_SECONDS):
                    while True:
                        try:
                            event = events.receive_nowait()
                        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                            break
                        await _publish(publisher, event)
    finally:
        store.close()


_FINAL_SECONDS = 5.0


async def _publish(publisher: _Publisher, event: Event) -> None:
    if not publisher.wanted(event):
        return
    try:
        await trio.to_thread.run_sync(publisher.publish, event)
    except Exception as exc:  # ts-ipc trouble must never stop supervise
        logger.warning("ts-ipc: could not publish %s: %s", event.event, exc)
