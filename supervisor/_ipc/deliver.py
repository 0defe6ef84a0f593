"""Delivering queued messages to their sessions, in order, with an outcome each.

:func:`deliver_waiting` is the one delivery loop every delivery agent runs
(``ts-ipc send`` for the message it just queued, ``ts-ipc serve``,
``ts-ipc deliver`` from a tmux hook, a running supervise instance): it claims
the oldest waiting message of a session (:meth:`Store.claim_next`), tries it,
and records what happened. A message whose session does not exist yet, or
whose pane is busy under the ``wait`` policy, goes back to the queue with
the reason in ``last_error``, and nothing newer for that session is tried
before it: messages arrive in the order they were sent.

How each type arrives:

``command``
    If the session's active pane runs a supervised program, the text goes to
    that program's stdin through supervise's control socket (it records the
    pane it runs in). Otherwise, when the pane waits at a shell prompt, or
    runs a program named in ``settings.toml``'s ``prompt_programs`` (an AI
    agent's input box: ``prompt_programs = ["claude"]``), it is typed
    literally and Enter is pressed and confirmed (:func:`.tmux.type_line`).
    A pane that runs something else (a command, a full-screen program, copy
    mode) is never typed into: the message waits
    (``if_busy = "wait"``, the default) or fails (``"fail"``).
``notification``
    Shown on the session's clients; ``@ipc_last`` holds it for a status line.
``data``
    Appended to ``data/SESSION.jsonl`` (``ts-ipc read SESSION``); delivered
    whether or not the session exists, as the original stored it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Literal, NamedTuple

from . import tmux
from .store import Message, Store, iso_time

__all__ = ["IfBusy", "Outcome", "append_data", "deliver_message", "deliver_waiting"]

IfBusy = Literal["wait", "fail"]


class Outcome(NamedTuple):
    """What one attempt came to: delivered (with how), waiting, or failed."""

    state: Literal["delivered", "queued", "failed"]
    via: str | None = None
    error: str | None = None


def data_file(store: Store, session: str) -> Path:
    return store.data_dir / f"{session}.jsonl"


def append_data(store: Store, message: Message) -> Path:
    """Append the message as one JSON line to its session's data file (0600)."""
    if "/" in message.target or message.target.startswith(".") or "\0" in message.target:
        raise ValueError(f"session name {message.target!r} cannot name a data file")
    directory = store.data_dir
    directory.mkdir(mode=0o700, exist_ok=True)
    path = data_file(store, message.target)
    record = {
        "id": message.id,
        "time": iso_time(message.created),
        "from": message.source,
        "type": message.kind,
        "event": message.event,
        "message": message.body,
    }
    line = (json.dumps(record, ensure_ascii=False) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return path


def deliver_message(
    store: Store, message: Message, clients: dict[str, list[str]] | None = None
) -> Outcome:
    """Try once to deliver ``message``; never raises for the session's sake.

    ``clients`` caches the sessions' client lists over one delivery pass.
    """
    if_busy: IfBusy = "fail" if message.if_busy == "fail" else "wait"
    try:
        if message.kind == "data":
            path = append_data(store, message)
            tmux.set_session_option(message.target, "@ipc_data_file", str(path))
            return Outcome("delivered", via="data")
        if message.kind == "notification":
            cache = {} if clients is None else clients
            if message.target not in cache:
                cache[message.target] = tmux.clients_of(message.target)
            shown = tmux.notify(message.target, message.body, message.source, cache[message.target])
            return Outcome("delivered", via=f"notify:{shown}")
        return _deliver_command(message, if_busy, store.prompt_programs())
    except tmux.NoSessionError as exc:
        return Outcome("queued", error=f"session {message.target!r} does not exist yet ({exc})")
    except (tmux.TmuxError, OSError, ValueError) as exc:
        return Outcome("failed", error=str(exc))


def _deliver_command(
    message: Message, if_busy: IfBusy, prompt_programs: frozenset[str] = frozenset()
) -> Outcome:
    pane = tmux.pane_of(message.target)
    if pane.at_prompt or (pane.command in prompt_programs and not pane.in_mode):
        presses = tmux.type_line(pane, message.body)
        return Outcome("delivered", via="keys" if presses == 1 else f"keys:enter*{presses}")
    if not pane.alternate and not pane.in_mode:
        from .supervised import InputError, find_supervised, write_input

        supervised = find_supervised(pane.socket_path, pane.id)
        if supervised is not None:
            try:
                write_input(supervised, message.body)
            except InputError as exc:
                return _busy(message, if_busy, f"supervised program: {exc}")
            return Outcome("delivered", via=f"stdin:{supervised.instance}")
    return _busy(message, if_busy, pane.busy_reason())


def _busy(message: Message, if_busy: IfBusy, reason: str) -> Outcome:
    if if_busy == "fail":
        return Outcome("failed", error=reason)
    return Outcome("queued", error=f"waiting: {reason}")


def deliver_waiting(store: Store, targets: Iterable[str] | None = None) -> list[Message]:
    """Deliver what waits for ``targets`` (every session with messages if None).

    A command for a busy pane waits or fails as its sender asked
    (``--if-busy``, kept with the message).

    Expires overdue messages first. Returns the messages this call brought
    to an outcome or back to the queue, in the order they were tried.
    """
    finished = store.expire_overdue()
    chosen = store.waiting_targets() if targets is None else list(targets)
    finished += _notify_together(store, chosen)
    clients: dict[str, list[str]] = {}
    for target in chosen:
        while (message := store.claim_next(target)) is not None:
            outcome = deliver_message(store, message, clients)
            finished.append(
                store.finish(message, outcome.state, via=outcome.via, error=outcome.error)
            )
            if outcome.state == "queued":
                break  # the rest waits behind it: order is kept
    return finished


_BATCH = 64
"""Notifications per tmux request when several wait (a publish, a backlog)."""


def _notify_together(store: Store, targets: list[str]) -> list[Message]:
    """Deliver the notifications at the head of each queue in a few tmux requests.

    A publish to ten subscribers, or a backlog for a session that just
    appeared, would otherwise cost two tmux processes per message. Here the
    sessions and their clients are listed once and up to :data:`_BATCH`
    notifications go in one request; if tmux refuses it (a session went away
    meanwhile), each is tried alone, so every message still gets its own
    outcome.
    """
    if len(targets) < 2 and not any(store.count_waiting(t) > 1 for t in targets):
        return []
    try:
        sessions, clients = tmux.sessions_and_clients()
    except tmux.TmuxError:
        return []
    claimed: list[Message] = []
    for target in targets:
        if target not in sessions:
            continue
        while (message := store.claim_next(target, "notification")) is not None:
            claimed.append(message)
    finished = []
    for start in range(0, len(claimed), _BATCH):
        batch = claimed[start : start + _BATCH]
        notes = [(m.target, m.body, m.source, clients.get(m.target, [])) for m in batch]
        try:
            tmux.notify_many(notes)
        except tmux.TmuxError:
            for message in batch:
                outcome = deliver_message(store, message)
                finished.append(
                    store.finish(message, outcome.state, via=outcome.via, error=outcome.error)
                )
            continue
        for message in batch:
            shown = len(clients.get(message.target, []))
            finished.append(store.finish(message, "delivered", via=f"notify:{shown}"))
    return finished
