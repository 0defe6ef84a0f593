"""``ts-ipc serve``: a delivery agent, so a message waits for its session.

A message to a session that does not exist yet, or to a pane that is busy,
stays queued; something must try it again. Any running supervise instance
does (see :mod:`supervisor._ipc.agent`); without one, ``ts-ipc serve`` is a
small foreground service that makes a delivery pass every ``interval``
seconds and expires what outlived its ttl. Start it with the tmux server::

    # ~/.tmux.conf
    run-shell -b 'ts-ipc serve >/dev/null 2>&1'

or make tmux deliver the moment a session appears, with no service at all::

    set-hook -g session-created 'run-shell -b "ts-ipc deliver"'

Several agents may run at once: each delivery is claimed by exactly one
(:meth:`Store.claim_next`).
"""

from __future__ import annotations

import logging
import signal
from functools import partial
from pathlib import Path
from typing import TextIO

import trio

from .deliver import deliver_waiting
from .store import Store
from .tmux import kept_connection

__all__ = ["serve_deliveries", "serve_forever"]

logger = logging.getLogger(__name__)


def _describe(store: Store) -> list[str]:
    lines = []
    for message in deliver_waiting(store):
        if message.state != "queued":
            detail = message.via if message.state == "delivered" else message.last_error
            lines.append(
                f"{message.state} {message.id} → {message.target} [{message.kind}] {detail}"
            )
    return lines


async def serve_deliveries(
    home: Path,
    *,
    interval: float = 0.5,
    out: TextIO | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Deliver waiting messages every ``interval`` seconds until cancelled.

    The passes run in a worker thread (sqlite3 and tmux are blocking), with
    a store of their own and one tmux control connection
    (:func:`.tmux.kept_connection`); cancellation ends the loop between passes.
    """
    store = await trio.to_thread.run_sync(Store, home)
    try:
        with kept_connection():
            task_status.started()
            await _passes(store, interval, out)
    finally:
        store.close()


async def _passes(store: Store, interval: float, out: TextIO | None) -> None:
    while True:
        try:
            lines = await trio.to_thread.run_sync(_describe, store)
        except Exception as exc:  # a pass that fails must not end the service
            logger.warning("ts-ipc delivery pass failed: %s", exc)
            lines = []
        if out is not None:
            for line in lines:
                out.write(line + "\n")
            out.flush()
        await trio.sleep(interval)


def serve_forever(home: Path, *, interval: float, out: TextIO) -> None:
    """Serve until SIGTERM or SIGINT, which end it cleanly (exit status 0)."""
    out.write(f"ts-ipc serve: delivering from {home} every {interval:g} s (Ctrl-C stops)\n")
    out.flush()

    async def until_signalled() -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(partial(serve_deliveries, home, interval=interval, out=out))
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break

    trio.run(until_signalled)
