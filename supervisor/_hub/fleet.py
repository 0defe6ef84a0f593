"""The instances a hub serves on this machine: found, followed, answered.

``supervise hub`` owns the Telegram bot for every supervise instance it can
reach, so one bot token has one poller (two pollers on one token get
``409 Conflict`` from Telegram and taps land anywhere). On one machine it
needs no extra server:

- **Finding instances.** Every supervise listens on
  ``control_dir()/INSTANCE.sock``; the hub looks there every ``interval``
  seconds and asks each new socket ``info``. An instance whose socket stops
  answering is gone.
- **Following events with no gap.** Each instance is followed with the
  control ``tail``, from the journal after the last seq the hub handled,
  then live. The hub keeps that seq per instance in a small state file,
  written (by rename) after each event is handled, so a hub that is killed
  and restarted goes on where it stopped: an event is handled again only if
  the hub died between handling it and writing the file. A tail that falls
  behind is sent ``events_dropped``; the hub then reconnects from its last
  seq and replays the rest from the journal. An instance the hub has never
  seen is followed from the start of its current run if it appeared while
  the hub ran, and from the moment it was found if it was already running
  when the hub started (what waits for an answer is in ``/pending``).
- **Answering.** A tap becomes the control ``answer`` to the instance whose
  question it is; the child's supervise decides, as ever, so a second tap,
  a second hub or ``supervise ctl answer`` cannot write a second answer.

Programs are named ``INSTANCE/PROGRAM`` (just ``PROGRAM`` when the instance
is named after it, as ``supervise -- CMD`` names it), in the chat and in
``/restart`` and ``/stop``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import trio

from .._control.replies import answer_error, pending_options, status_from_reply
from .._core.errors import (
    ConfigError,
    ControlError,
    UnknownNameError,
    UnknownQuestionError,
)
from .._core.events import Event, QuestionAnsweredData
from .._paths import check_private_file, control_dir
from .._process.program import ProgramStatus
from .._routing.journal import Journal, journal_path
from .client import request, tail

__all__ = [
    "MAX_QUESTIONS",
    "Fleet",
    "FleetBackend",
    "HubLock",
    "HubState",
    "Instance",
    "display_name",
    "hub_running",
    "remember_question",
]

logger = logging.getLogger(__name__)
T = TypeVar("T")

LAZY_SECONDS = 1.0
"""At most this long between handling an event that showed nothing and recording it."""
HUB_LOCK = "hub.lock"
"""The file a running hub holds locked, in the control directory."""


def display_name(instance: str, program: str) -> str:
    """``INSTANCE/PROGRAM``, or just the one name when they are the same."""
    if not program or program == instance:
        return instance
    return f"{instance}/{program}"


@dataclasses.dataclass(frozen=True)
class Instance:
    """One running supervise, as its ``info`` described it."""

    name: str
    socket: Path
    programs: tuple[str, ...]
    first_seq: int
    journal: bool


class HubState:
    """The last seq handled per instance, kept in a JSON file across restarts."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            loaded = {}
        except (OSError, ValueError) as exc:
            raise ConfigError(str(path), f"not a hub state file: {exc}") from None
        if not isinstance(loaded, dict) or not all(
            isinstance(k, str) and type(v) is int for k, v in loaded.items()
        ):
            raise ConfigError(str(path), "not a hub state file: expected {instance: seq}")
        self._seqs: dict[str, int] = loaded
        self._dirty = False
        self._written = 0.0

    @property
    def dirty(self) -> bool:
        return self._dirty

    def due(self) -> bool:
        """Whether a lazy write has waited :data:`LAZY_SECONDS`."""
        return time.monotonic() - self._written >= LAZY_SECONDS

    def last(self, instance: str) -> int | None:
        return self._seqs.get(instance)

    def items(self) -> list[tuple[str, int]]:
        return list(self._seqs.items())

    def handled(self, instance: str, seq: int, *, now: bool = True) -> None:
        """Record ``seq`` as handled.

        ``now``: written before the next event is handled (an event that
        reached the chat must not be sent again after a restart). Otherwise
        it is written within :data:`LAZY_SECONDS`: replaying an event that
        showed nothing shows nothing, and writing the file for each one
        would cost far more than handling it.
        """
        if self._seqs.get(instance, -1) >= seq:
            return
        self._seqs[instance] = seq
        if now or time.monotonic() - self._written >= LAZY_SECONDS:
            self.flush()
        else:
            self._dirty = True

    def flush(self) -> None:
        """Write the seqs to the file (by rename: a reader never sees half of it)."""
        self._dirty = False
        self._written = time.monotonic()
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(self._seqs, file)
        os.replace(temporary, self.path)


class HubLock:
    """Held while a hub runs: ``supervise --telegram`` defers to it.

    An advisory lock (``flock``) on ``control_dir()/hub.lock``: the kernel
    drops it when the hub dies, however it dies.
    """

    def __init__(self, directory: Path | None = None) -> None:
        self.path = (control_dir() if directory is None else directory) / HUB_LOCK
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise ConfigError naming the hub that has it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError(
                str(self.path), f"another hub is running (pid {_holder(self.path)})"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "?"
    except OSError:
        return "?"


def hub_running(directory: Path | None = None) -> int | None:
    """The pid of the hub serving this machine's instances, or None."""
    path = (control_dir() if directory is None else directory) / HUB_LOCK
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(path)
        return int(holder) if holder.isdigit() else -1
    finally:
        os.close(fd)
    return None


MAX_QUESTIONS = 10_000
"""Questions a hub remembers the origin of: the child picks their ids, so a bound."""


def remember_question(table: dict[str, T], message_id: str, origin: T) -> None:
    """``table[message_id] = origin``, forgetting the oldest beyond :data:`MAX_QUESTIONS`.

    A question forgotten this way is still answerable: the hub then asks the
    instances which one has it pending.
    """
    table.pop(message_id, None)
    table[message_id] = origin
    while len(table) > MAX_QUESTIONS:
        del table[next(iter(table))]


Deliver = Callable[[Event], Awaitable[bool]]
"""Handles one event; True if a person saw something (it must not be repeated)."""


class Fleet:
    """Finds instances and feeds their events, renamed, to ``deliver``, one at a time.

    Args:
        deliver: handles one event (a chat message); called in seq order per
            instance, one event at a time but for the ``urgent`` ones.
        state: where the last handled seq of each instance is kept.
        directory: where the control sockets are (default :func:`control_dir`).
        interval: seconds between two looks for new instances.
        urgent: events that do not wait for another instance's event to be
            handled (questions): each instance's events stay in order.
    """

    def __init__(
        self,
        deliver: Deliver,
        state: HubState,
        *,
        directory: Path | None = None,
        interval: float = 1.0,
        urgent: frozenset[str] = frozenset(),
    ) -> None:
        self._deliver = deliver
        self._urgent = urgent
        self._state = state
        self._directory = control_dir() if directory is None else directory
        self._interval = interval
        self.instances: dict[str, Instance] = {}
        self._turn = trio.Lock()
        self._asked: dict[str, str] = {}  # messageId -> instance, from question events

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Look for instances and follow them until cancelled."""
        try:
            await self._serve(task_status)
        finally:
            if self._state.dirty:
                self._state.flush()

    async def _serve(self, task_status: trio.TaskStatus[None]) -> None:
        async with trio.open_nursery() as nursery:
            first = True
            while True:
                for instance in await self._look():
                    self.instances[instance.name] = instance
                    nursery.start_soon(self._follow, instance, first)
                if first:
                    nursery.start_soon(self.drain_gone)
                    task_status.started()
                    first = False
                if self._state.dirty and self._state.due():
                    self._state.flush()  # a quiet instance's last seq reaches the disk too
                await trio.sleep(self._interval)

    async def _look(self) -> list[Instance]:
        try:
            sockets = sorted(self._directory.glob("*.sock"))
        except OSError:
            return []
        found = []
        for path in sockets:
            name = path.name.removesuffix(".sock")
            if name in self.instances:
                continue
            try:
                check_private_file(path, kind="a socket")
                info = await request(path, {"cmd": "info"}, within=2)
            except (ConfigError, ControlError, trio.TooSlowError):
                continue  # a stale socket, or not ours to trust
            found.append(
                Instance(
                    name=name,
                    socket=path,
                    programs=tuple(info.get("programs") or ()),
                    first_seq=int(info.get("first_seq") or 1),
                    journal=bool(info.get("journal")),
                )
            )
        return found

    async def _follow(self, instance: Instance, at_start: bool) -> None:
        """Follow one instance until it stops answering."""
        since = self._state.last(instance.name)
        if since is None and not at_start:
            since = instance.first_seq - 1  # it started while we ran: its whole run
        if not instance.journal:
            since = None
        try:
            while True:
                try:
                    since = await self._read(instance, since)
                except (ControlError, OSError, ValueError) as exc:
                    logger.info("hub: %s: %s", instance.name, exc)
                try:
                    await request(instance.socket, {"cmd": "info"}, within=2)
                except (ControlError, trio.TooSlowError):
                    # Gone. What it journaled that we had not handled yet is
                    # still in its journal file.
                    if instance.journal and since is not None:
                        await self.drain_journal(instance.name, since)
                    return
                await trio.sleep(0.2)  # it answers: the tail ended early; again
        finally:
            self.instances.pop(instance.name, None)

    async def _read(self, instance: Instance, since: int | None) -> int | None:
        """Handle events until the tail ends; the last seq handled."""
        async for line in tail(instance.socket, since if instance.journal else None):
            event = Event.from_json(line)
            if event.seq == 0 and event.event == "events_dropped":
                return since  # fell behind: replay the rest from the journal
            if since is not None and event.seq <= since:
                continue
            await self._handle(instance.name, event)
            since = event.seq
        return since

    async def drain_journal(self, name: str, since: int) -> None:
        """Handle what ``name``'s journal holds after ``since`` (the instance is gone)."""
        path = journal_path(name)
        if not path.exists():
            return
        try:
            journal = await trio.to_thread.run_sync(partial(Journal.open, path, readonly=True))
        except (ConfigError, sqlite3.Error) as exc:
            logger.warning("hub: %s: cannot read its journal: %s", name, exc)
            return
        try:
            while True:
                page = await trio.to_thread.run_sync(journal.read_lines, since, 500)
                for item in page:
                    event = Event.from_json(item.line)
                    await self._handle(name, event)
                    since = event.seq
                if len(page) < 500:
                    return
        finally:
            journal.close()

    async def _handle(self, name: str, event: Event) -> None:
        last = self._state.last(name)
        if last is not None and event.seq <= last:
            return  # handled already (the journal and a tail may overlap)
        shown = dataclasses.replace(event, program=display_name(name, event.program))
        if event.event in ("question", "approval_request"):
            remember_question(self._asked, event.message_id, name)
        if event.event in self._urgent:
            seen = await self._deliver(shown)
        else:
            async with self._turn:
                seen = await self._deliver(shown)
        self._state.handled(name, event.seq, now=seen)

    async def drain_gone(self) -> None:
        """At start: handle what instances that ended while no hub ran left unhandled."""
        for name, since in self._state.items():
            if name not in self.instances:
                await self.drain_journal(name, since)

    def instance_of(self, message_id: str) -> Instance | None:
        name = self._asked.get(message_id)
        return self.instances.get(name) if name is not None else None

    def resolve(self, name: str) -> tuple[Instance, str]:
        """The instance and program a fleet name (``INSTANCE/PROGRAM``) stands for."""
        for instance in self.instances.values():
            for program in instance.programs:
                if display_name(instance.name, program) == name:
                    return instance, program
        raise UnknownNameError("program", name, tuple(self.names()))

    def names(self) -> list[str]:
        return [
            display_name(instance.name, program)
            for instance in self.instances.values()
            for program in instance.programs
        ]


class FleetBackend:
    """The chat's view of a :class:`Fleet` (adapters.telegram's ``ChatBackend``)."""

    def __init__(self, fleet: Fleet) -> None:
        self._fleet = fleet

    def names(self) -> list[str]:
        return self._fleet.names()

    async def answer(self, message_id: str, response: str, *, by: str) -> QuestionAnsweredData:
        instance = self._fleet.instance_of(message_id) or await self._find(message_id)
        if instance is None:
            raise UnknownQuestionError(message_id)
        body = {"cmd": "answer", "message_id": message_id, "response": response, "by": by}
        try:
            result = await request(instance.socket, body)
        except ControlError as exc:
            raise answer_error(message_id, str(exc)) from None
        return QuestionAnsweredData.model_validate(result)

    async def _ask_each(self, command: str) -> list[tuple[Instance, Any]]:
        """``command``'s result from every instance that answers it in time."""
        answers = []
        for instance in list(self._fleet.instances.values()):
            with contextlib.suppress(ControlError, trio.TooSlowError):
                answers.append(
                    (instance, await request(instance.socket, {"cmd": command}, within=5))
                )
        return answers

    async def options(self, message_id: str, digest: str) -> list[str] | None:
        for _, pending in await self._ask_each("pending"):
            found = pending_options(pending, message_id, digest)
            if found is not None:
                return found
        return None

    async def _find(self, message_id: str) -> Instance | None:
        for instance, pending in await self._ask_each("pending"):
            if any(item.get("message_id") == message_id for item in pending):
                return instance
        return None

    async def status(self) -> Sequence[ProgramStatus]:
        return [
            status_from_reply(display_name(instance.name, str(item["name"])), item)
            for instance, programs in await self._ask_each("status")
            for item in programs
        ]

    async def pending(self) -> list[tuple[str, str]]:
        return [
            (
                display_name(instance.name, str(item.get("program") or "")),
                str(item.get("text") or ""),
            )
            for instance, items in await self._ask_each("pending")
            for item in items
        ]

    async def control(self, command: str, name: str) -> None:
        instance, program = self._fleet.resolve(name)
        await request(instance.socket, {"cmd": command, "program": program})
