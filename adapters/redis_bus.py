"""The event bus across machines, on Redis Streams: supervise publishes, a hub reads.

``supervise --bus redis://HOST:6379/0`` adds a durable route that XADDs
every event to the stream ``ipc:events``, with ``host`` and ``instance``
fields beside the usual ones (see :mod:`adapters.redis_stream`); a Redis
outage loses nothing, since a durable route's events wait in the journal
until Redis takes them. It also reads the answers meant for it from its own
stream, ``ipc:answers:HOST:INSTANCE``, and gives each to the supervisor,
which decides as it does for every channel: the first answer wins, a second
one is refused, so an answer written twice is written to the child once.

``supervise hub --bus URL`` reads ``ipc:events`` in the consumer group
``hub`` (``XREADGROUP``), acknowledges each entry once it is handled
(``XACK``), and every 10 s claims entries another consumer took more than
30 s ago without acknowledging them (``XAUTOCLAIM``: a hub that died), so
several hubs can share a fleet and each event is handled by one of them. A
group is read from the stream's start when a hub creates it (the first hub,
or the first after Redis lost its data), so what was published meanwhile
arrives; only events older than 5 minutes then are skipped as history. Programs are named
``HOST/INSTANCE/PROGRAM``.

A tap on a question from another machine is sent (XADD of ``message_id``,
``response`` and ``by``) and acknowledged in the chat at once; the
instance's ``question_answered`` then edits the card as usual, or, when
someone else answered first, its verdict is the one that stands.

Streams are trimmed with ``MAXLEN ~`` (100,000 events, 1,000 answers per
instance). ``/restart`` and ``/stop`` of instances on other machines are not
carried over the bus yet; ``/status`` lists the instances seen, with the
time of their last event.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import coredis
import trio

from supervisor import (
    AnswerError,
    ControlError,
    Event,
    ProgramStatus,
    Supervisor,
    UnknownNameError,
)
from supervisor.lowlevel import QuestionAnsweredData

from .redis_stream import RedisStreamSink
from .redis_stream import _describe as describe_redis_error
from .telegram import _remember

__all__ = [
    "EVENTS_STREAM",
    "GROUP",
    "BusBackend",
    "BusReader",
    "answers_stream",
    "bus_route_sink",
    "default_host",
    "serve_answers",
]

logger = logging.getLogger(__name__)

EVENTS_STREAM = "ipc:events"
GROUP = "hub"
CLAIM_IDLE_MS = 30_000
"""An entry a consumer took this long ago without acknowledging it is claimed."""
CLAIM_EVERY = 10.0
MAX_QUESTIONS = 10_000
"""Questions whose origin the hub remembers: the child picks their ids, so a bound."""
HISTORY_SECONDS = 300.0
"""A group made now reads the stream from its start, but skips what is older than this."""


def default_host() -> str:
    """This machine's name, as the bus calls it."""
    return socket.gethostname().split(".", 1)[0] or "localhost"


def answers_stream(host: str, instance: str) -> str:
    return f"ipc:answers:{host}:{instance}"


def bus_route_sink(url: str, host: str, instance: str) -> RedisStreamSink:
    """The sink of supervise's durable ``bus`` route."""
    return RedisStreamSink(url, EVENTS_STREAM, fields={"host": host, "instance": instance})


def _describe(exc: BaseException) -> str:
    """The first real error inside the exception groups coredis's task group raises."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return describe_redis_error(exc)


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


async def serve_answers(
    url: str,
    host: str,
    instance: str,
    sup: Supervisor,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """supervise's side: give ``sup`` every answer the hub sends it, until cancelled."""
    stream = answers_stream(host, instance)
    last = "$"
    started = False
    failures = 0
    while True:
        try:
            async with coredis.Redis.from_url(url) as client:
                if last == "$":
                    # Start after what is there now: earlier answers were for
                    # questions of an earlier run.
                    info = await client.xrevrange(stream, count=1)
                    last = _text(info[0].identifier) if info else "0-0"
                if not started:
                    task_status.started()
                    started = True
                failures = 0
                while True:
                    found = await client.xread({stream: last}, count=100, block=1000)
                    for entry in (found or {}).get(stream.encode(), ()):
                        last = _text(entry.identifier)
                        await _apply(sup, entry.field_values)
        except Exception as exc:  # Redis away: try again, never end supervise
            if not started:
                task_status.started()
                started = True
            failures += 1
            if failures == 1:
                logger.warning("bus: cannot read answers from %s: %s", stream, _describe(exc))
            await trio.sleep(min(30.0, 0.5 * 2 ** min(failures, 6)))


async def _apply(sup: Supervisor, fields: Any) -> None:
    values = {_text(k): _text(v) for k, v in dict(fields).items()}
    message_id = values.get("message_id", "")
    try:
        await sup.answer(message_id, values.get("response", ""), by=values.get("by") or "bus")
    except AnswerError as exc:
        logger.info("bus: answer refused: %s", exc)


@dataclass
class _Seen:
    host: str
    instance: str
    programs: set[str]
    last_event: float


Deliver = Callable[[Event], Awaitable[bool]]


class BusReader:
    """The hub's side: events from the bus, in a consumer group, to ``deliver``."""

    def __init__(self, url: str, deliver: Deliver, *, consumer: str | None = None) -> None:
        self.url = url
        self._deliver = deliver
        self.consumer = consumer or f"{default_host()}-{os.getpid()}"
        self.seen: dict[tuple[str, str], _Seen] = {}
        self.asked: dict[str, tuple[str, str]] = {}  # messageId -> (host, instance)
        self.client: coredis.Redis[bytes] | None = None
        self._history_before = 0.0
        self._last_seq: dict[tuple[str, str], int] = {}

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        started = False
        failures = 0
        while True:
            try:
                async with coredis.Redis.from_url(self.url) as client:
                    self.client = client
                    if await self._create_group(client):
                        # We made the group: what the stream held from long
                        # before is history, not news.
                        self._history_before = (time.time() - HISTORY_SECONDS) * 1000
                    if not started:
                        task_status.started()
                        started = True
                    failures = 0
                    await self._read(client)
            except Exception as exc:  # Redis away: the events wait in the stream
                self.client = None
                if not started:
                    task_status.started()
                    started = True
                failures += 1
                if failures == 1:
                    logger.warning("hub: the bus is unreachable: %s", _describe(exc))
                await trio.sleep(min(30.0, 0.5 * 2 ** min(failures, 6)))

    @staticmethod
    async def _create_group(client: coredis.Redis[bytes]) -> bool:
        """Make the group (reading from the stream's start); False if it exists."""
        if await client.exists([EVENTS_STREAM]):
            for group in await client.xinfo_groups(EVENTS_STREAM):
                name = group.get(b"name")
                if isinstance(name, bytes) and name.decode() == GROUP:
                    return False
        try:
            await client.xgroup_create(EVENTS_STREAM, GROUP, "0", mkstream=True)
        except coredis.exceptions.ResponseError:
            return False  # another hub made it just now
        return True

    async def _read(self, client: coredis.Redis[bytes]) -> None:
        next_claim = 0.0
        while True:
            if time.monotonic() >= next_claim:
                next_claim = time.monotonic() + CLAIM_EVERY
                claimed = await client.xautoclaim(
                    EVENTS_STREAM, GROUP, self.consumer, CLAIM_IDLE_MS, "0-0", count=100
                )
                for entry in claimed[1] if len(claimed) > 1 else ():
                    await self._handle(client, entry)
            found = await client.xreadgroup(
                GROUP, self.consumer, {EVENTS_STREAM: ">"}, count=100, block=1000
            )
            for entries in (found or {}).values():
                for entry in entries:
                    await self._handle(client, entry)

    async def _handle(self, client: coredis.Redis[bytes], entry: Any) -> None:
        values = {_text(k): v for k, v in dict(entry.field_values).items()}
        try:
            event = Event.from_json(values["json"])
        except (KeyError, ValueError) as exc:
            logger.warning("hub: a bus entry that is not an event (%s): %s", entry.identifier, exc)
        else:
            if event.received_at < self._history_before:
                await client.xack(EVENTS_STREAM, GROUP, [entry.identifier])
                return
            host, instance = _text(values.get("host")), _text(values.get("instance"))
            last = self._last_seq.get((host, instance), 0)
            if 0 < event.seq <= last:
                # Sent again (a batch retried across a Redis restart): handled.
                await client.xack(EVENTS_STREAM, GROUP, [entry.identifier])
                return
            if event.seq > 0:
                self._last_seq[(host, instance)] = event.seq
            seen = self.seen.setdefault((host, instance), _Seen(host, instance, set(), 0.0))
            seen.last_event = time.time()
            if event.program:
                seen.programs.add(event.program)
            if event.event in ("question", "approval_request"):
                _remember(self.asked, event.message_id, (host, instance), MAX_QUESTIONS)
            name = "/".join(part for part in (host, instance, event.program) if part)
            await self._deliver(replace(event, program=name))
        await client.xack(EVENTS_STREAM, GROUP, [entry.identifier])


class BusBackend:
    """The chat's view of the bus (adapters.telegram's ``ChatBackend``)."""

    def __init__(self, reader: BusReader) -> None:
        self._reader = reader

    def names(self) -> list[str]:
        return [
            f"{s.host}/{s.instance}/{program}"
            for s in self._reader.seen.values()
            for program in sorted(s.programs)
        ]

    async def answer(self, message_id: str, response: str, *, by: str) -> QuestionAnsweredData:
        where = self._reader.asked.get(message_id)
        client = self._reader.client
        if where is None:
            raise AnswerError(message_id, "not a question this hub has seen")
        if client is None:
            raise AnswerError(message_id, "the bus is unreachable; try again")
        fields = {"message_id": message_id, "response": response, "by": by}
        await client.xadd(
            answers_stream(*where),
            fields,
            trim_strategy=coredis.PureToken.MAXLEN,
            threshold=1000,
            trim_operator=coredis.PureToken.APPROXIMATELY,
        )
        decision = response if response in ("approve", "deny") else None
        return QuestionAnsweredData(
            messageId=message_id,
            response=response,
            written="",
            by=by,
            latency=0.0,
            decision=decision,
        )

    async def status(self) -> Sequence[ProgramStatus]:
        now = time.time()
        return [
            ProgramStatus(
                name=f"{s.host}/{s.instance}/{program}",
                state=f"last event {now - s.last_event:.0f}s ago",
                pid=None,
                uptime=None,
                restarts=0,
                last_exit=None,
                tasks_in_flight=0,
                pending_questions=0,
            )
            for s in self._reader.seen.values()
            for program in sorted(s.programs)
        ]

    async def pending(self) -> list[tuple[str, str]]:
        return []

    async def control(self, command: str, name: str) -> None:
        if name not in self.names():
            raise UnknownNameError("program", name, tuple(self.names()))
        raise ControlError(f"/{command} is not carried over the bus yet ({name})")
