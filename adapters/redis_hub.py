"""The event bus across machines, on Redis Streams: the hub's side.

``supervise hub --bus URL`` serves every instance that publishes to the bus
(:mod:`adapters.redis_bus` is their side):

- **One leader.** Only one hub at a time reads events and polls the bot
  (two pollers of one bot token get ``409 Conflict`` from Telegram). The
  leader holds the key ``ipc:hub:leader`` (its consumer name, ``SET NX``
  with a lease of ``lease`` seconds, renewed every third of it with a
  compare-and-extend script). Other hubs stand by and try for the key every
  second; a leader that stops cleanly deletes it, one that dies loses it
  when the lease runs out. A hub that loses the key, or its connection to
  Redis, stops reading and polling at once.
- **Events.** The leader reads ``ipc:events`` in the consumer group ``hub``
  (``XREADGROUP``) and acknowledges each entry once it is handled
  (``XACK``): one that reached the chat before the next is handled, the
  others with the rest of their batch (handled again after a crash, they
  show nothing again). When it takes the lead it claims every entry left pending by
  earlier consumers (``XAUTOCLAIM`` from idle 0: their hub is gone), and
  every 10 s it claims what has been pending for 30 s. A group a hub
  creates reads the stream from its start (the first hub, or the first
  after Redis lost its data), skipping events older than five minutes as
  history. An entry handled again (a batch retried across a Redis restart)
  is recognised by its ``seq`` and dropped.
- **Requests.** Answers, ``/status``, ``/pending``, ``/restart`` and
  ``/stop`` go to the instance's ``ipc:control:HOST:INSTANCE`` stream with
  a request id and this hub's reply stream, ``ipc:replies:CONSUMER``, which
  one task reads and hands to whoever waits for that id. The instance
  decides (the first answer wins), so a tap that arrives twice or two hubs
  answering write at most one answer to the child.
- **Instances.** Each instance keeps ``ipc:instance:HOST:INSTANCE`` alive
  while it runs; the leader lists them (``SCAN``) every 10 s, so ``/status``
  has a line for every instance on every machine, including one that has
  published nothing yet, and says which did not reply.

Programs are named ``HOST/INSTANCE/PROGRAM``. What the chat tracks (cards
being edited, digests) lives in the leading hub's memory: after a takeover
the new leader sends new messages where the old one would have edited.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import coredis
import trio

from supervisor import (
    AnswerError,
    ControlError,
    Event,
    ProgramStatus,
    QuestionExpiredError,
    UnknownNameError,
)
from supervisor.lowlevel import (
    QuestionAnsweredData,
    answer_error,
    pending_options,
    result_of,
    status_from_reply,
)

from .redis_bus import (
    EVENTS_STREAM,
    PRESENCE_PREFIX,
    REPLIES_PREFIX,
    control_stream,
    default_host,
    describe,
    presence_key,
    text,
)
from .telegram import _remember

__all__ = ["GROUP", "LEADER_KEY", "BusBackend", "BusHub"]

logger = logging.getLogger(__name__)

GROUP = "hub"
LEADER_KEY = "ipc:hub:leader"
CLAIM_IDLE_MS = 30_000
"""An entry a consumer took this long ago without acknowledging it is claimed."""
CLAIM_EVERY = 10.0
PRESENCE_EVERY = 10.0
MAX_QUESTIONS = 10_000
"""Questions whose origin the hub remembers: the child picks their ids, so a bound."""
MAX_RUNS = 10_000
"""Runs whose last seq the hub remembers (each instance start is one)."""
HISTORY_SECONDS = 300.0
"""A group made now reads the stream from its start, but skips what is older than this."""
STATUS_WAIT = 5.0
"""How long ``/status`` and ``/pending`` wait for the instances' replies."""
ANSWER_WAIT = 10.0
CONTROL_WAIT = 40.0
"""``/restart`` waits for the program to be up again, as ``supervise ctl`` does."""

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""

Deliver = Callable[[Event], Awaitable[bool]]


@dataclass
class Presence:
    """One instance on the bus, as its presence key or its events describe it."""

    host: str
    instance: str
    programs: set[str] = field(default_factory=set)
    last_event: float | None = None
    listed: bool = False
    """Whether its presence key was there at the last look (it runs)."""

    @property
    def name(self) -> str:
        return f"{self.host}/{self.instance}"

    def program_names(self) -> list[str]:
        return [f"{self.name}/{program}" for program in sorted(self.programs)]


@dataclass
class _Waiting:
    done: trio.Event = field(default_factory=trio.Event)
    reply: Any = None


class BusHub:
    """The hub's side of the bus: leads or stands by, reads events, sends requests.

    Args:
        url: the Redis URL.
        deliver: handles one event (renamed ``HOST/INSTANCE/PROGRAM``).
        consumer: this hub's name in the group (default ``HOSTNAME-PID``).
        lease: seconds the leader's key lives without being renewed.
        while_leading: run while this hub leads, cancelled when it stops
            leading (the bot's poller).
        report: where role changes are said (one line each).
    """

    def __init__(
        self,
        url: str,
        deliver: Deliver,
        *,
        consumer: str | None = None,
        lease: float = 10.0,
        while_leading: Callable[[], Awaitable[None]] | None = None,
        report: Callable[[str], None] = logger.warning,
    ) -> None:
        self.url = url
        self._deliver = deliver
        self.consumer = consumer or f"{default_host()}-{os.getpid()}"
        self.replies = f"{REPLIES_PREFIX}{self.consumer}"
        self._lease_ms = max(1000, int(lease * 1000))
        self.while_leading = while_leading
        self._report = report
        self.client: coredis.Redis[bytes] | None = None
        self.instances: dict[tuple[str, str], Presence] = {}
        self.asked: dict[str, tuple[str, str]] = {}  # messageId -> (host, instance)
        self._waiting: dict[str, _Waiting] = {}
        self._history_before = 0.0
        self._last_seq: dict[tuple[str, str, str], int] = {}

    # -- connection and role ---------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[bool] = trio.TASK_STATUS_IGNORED) -> None:
        """Until cancelled; started (with whether it leads) after its first try for the lead."""
        started = False

        def role(leading: bool) -> None:
            nonlocal started
            if not started:
                started = True
                task_status.started(leading)

        failures = 0
        while True:
            try:
                async with coredis.Redis.from_url(self.url) as client, trio.open_nursery() as inner:
                    if await self._create_group(client):
                        # We made the group: what the stream held from long
                        # before is history, not news.
                        self._history_before = (time.time() - HISTORY_SECONDS) * 1000
                    await inner.start(self._read_replies, client)
                    self.client = client
                    failures = 0
                    await self._lead_or_stand_by(client, role)
            except Exception as exc:  # Redis away (or emptied): the events wait in the stream
                role(False)
                failures += 1
                if failures == 1:
                    self._report(f"hub: the bus is unreachable: {describe(exc)}")
                await trio.sleep(min(30.0, 0.5 * 2 ** min(failures, 6)))
            finally:
                self.client = None

    async def _lead_or_stand_by(
        self, client: coredis.Redis[bytes], role: Callable[[bool], None]
    ) -> None:
        announced: str | None = None
        first = True
        while True:
            if await client.set(
                LEADER_KEY, self.consumer, condition=coredis.PureToken.NX, px=self._lease_ms
            ):
                if announced is not None:
                    self._report(f"hub: {self.consumer} now leads (took over from {announced})")
                announced = None
                role(True)
                first = False
                await self._lead(client)
                self._report(f"hub: {self.consumer} lost the lead; standing by")
                continue
            holder = text(await client.get(LEADER_KEY)) or "?"
            if holder != announced and not first:
                self._report(f"hub: standing by ({holder} leads)")
            announced = holder
            role(False)
            first = False
            await trio.sleep(min(1.0, self._lease_ms / 5000))

    async def _lead(self, client: coredis.Redis[bytes]) -> None:
        """Lead until the key is lost; cancellation (a stop) gives it up at once."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._keep_lead, client, nursery.cancel_scope)
                nursery.start_soon(self._look_for_instances, client)
                if self.while_leading is not None:
                    nursery.start_soon(self.while_leading)
                await self._read(client)
        finally:
            with trio.move_on_after(2) as scope:
                scope.shield = True
                await self._release()

    async def _release(self) -> None:
        """Give the key up, so a standby takes over at once (over a connection of its own:
        the one in use may have been cut by the cancellation that ends the lead)."""
        try:
            async with coredis.Redis.from_url(self.url) as client:
                await client.eval(_RELEASE, [LEADER_KEY], [self.consumer])
        except Exception as exc:  # the lease runs out by itself
            logger.info("hub: could not give up the lead: %s", describe(exc))

    async def _keep_lead(self, client: coredis.Redis[bytes], lead: trio.CancelScope) -> None:
        while True:
            await trio.sleep(self._lease_ms / 3000)
            renewed = await client.eval(_RENEW, [LEADER_KEY], [self.consumer, self._lease_ms])
            if not renewed:
                lead.cancel()  # another hub has the key now
                return

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

    # -- events ------------------------------------------------------------------------

    async def _read(self, client: coredis.Redis[bytes]) -> None:
        idle = 0  # at the lead's start: whatever earlier consumers left pending
        next_claim = 0.0
        while True:
            if time.monotonic() >= next_claim:
                next_claim = time.monotonic() + CLAIM_EVERY
                start = "0-0"
                while True:
                    claimed = await client.xautoclaim(
                        EVENTS_STREAM, GROUP, self.consumer, idle, start, count=100
                    )
                    await self._handle_all(client, claimed[1] if len(claimed) > 1 else ())
                    start = text(claimed[0]) if claimed else "0-0"
                    if start in ("0-0", "0"):
                        break
                idle = CLAIM_IDLE_MS
            found = await client.xreadgroup(
                GROUP, self.consumer, {EVENTS_STREAM: ">"}, count=100, block=1000
            )
            for entries in (found or {}).values():
                await self._handle_all(client, entries)

    async def _handle_all(self, client: coredis.Redis[bytes], entries: Sequence[Any]) -> None:
        """Handle entries in order, acknowledging each one a person saw before the next.

        An entry that showed nothing is acknowledged with the rest of its
        batch, in one XACK: handled again after a crash, it shows nothing
        again, and an XACK per entry would cost more than handling it.
        """
        unacknowledged: list[Any] = []
        for entry in entries:
            unacknowledged.append(entry.identifier)
            if await self._handle(entry):
                await client.xack(EVENTS_STREAM, GROUP, unacknowledged)
                unacknowledged = []
        if unacknowledged:
            await client.xack(EVENTS_STREAM, GROUP, unacknowledged)

    async def _handle(self, entry: Any) -> bool:
        """Handle one entry; True if a person saw something."""
        values = {text(k): v for k, v in dict(entry.field_values).items()}
        try:
            event = Event.from_json(values["json"])
        except (KeyError, ValueError) as exc:
            where = f"{EVENTS_STREAM} {text(entry.identifier)}"
            logger.warning("hub: %s is not an event: %s", where, exc)
            return False
        if event.received_at < self._history_before:
            return False
        host, instance = text(values.get("host")), text(values.get("instance"))
        return await self.handle_event(host, instance, text(values.get("run")), event)

    async def handle_event(self, host: str, instance: str, run: str, event: Event) -> bool:
        """Deliver one event read from the bus, unless this run's ``seq`` was handled.

        A durable route delivers at least once: a batch is sent again whole
        when Redis failed part way, so an entry can come twice, always after
        the first. Seqs grow within a run, so anything at or below the
        highest seq handled for the run is a repeat.
        """
        key = (host, instance)
        last = self._last_seq.get((host, instance, run), 0)
        if 0 < event.seq <= last:
            return False  # sent again (a batch retried across a Redis restart): handled
        if event.seq > 0:
            _remember(self._last_seq, (host, instance, run), event.seq, MAX_RUNS)
        presence = self.instances.setdefault(key, Presence(host, instance))
        presence.last_event = time.time()
        if event.program:
            presence.programs.add(event.program)
        if event.event in ("question", "approval_request"):
            _remember(self.asked, event.message_id, key, MAX_QUESTIONS)
        name = "/".join(part for part in (host, instance, event.program) if part)
        return await self._deliver(replace(event, program=name))

    async def _look_for_instances(self, client: coredis.Redis[bytes]) -> None:
        while True:
            await self.refresh_instances(client)
            await trio.sleep(PRESENCE_EVERY)

    async def refresh_instances(self, client: coredis.Redis[bytes] | None = None) -> None:
        """Read every instance's presence key: who runs now, with which programs."""
        client = client or self.client
        if client is None:
            return
        keys = [key async for key in client.scan_iter(match=f"{PRESENCE_PREFIX}*", count=500)]
        values = await client.mget(keys) if keys else ()
        listed = set()
        for value in values:
            try:
                found = json.loads(value or b"")
                key = (str(found["host"]), str(found["instance"]))
                programs = {str(program) for program in found["programs"]}
            except (ValueError, KeyError, TypeError):
                continue
            presence = self.instances.setdefault(key, Presence(*key))
            presence.programs |= programs
            listed.add(key)
        for key, presence in self.instances.items():
            presence.listed = key in listed

    # -- requests ----------------------------------------------------------------------

    async def _read_replies(
        self,
        client: coredis.Redis[bytes],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        newest = await client.xrevrange(self.replies, count=1)
        last = text(newest[0].identifier) if newest else "0-0"
        task_status.started()
        while True:
            found = await client.xread({self.replies: last}, count=100, block=1000)
            for entry in (found or {}).get(self.replies.encode(), ()):
                last = text(entry.identifier)
                values = {text(k): text(v) for k, v in dict(entry.field_values).items()}
                waiting = self._waiting.get(values.get("id", ""))
                if waiting is None:
                    continue  # its asker gave up waiting
                try:
                    waiting.reply = json.loads(values.get("reply", ""))
                except ValueError:
                    waiting.reply = {"ok": False, "error": "the reply is not JSON"}
                waiting.done.set()

    async def running(self, host: str, instance: str) -> bool:
        """Whether the instance's presence key is there (True when the bus cannot tell)."""
        client = self.client
        if client is None:
            return True
        try:
            return bool(await client.exists([presence_key(host, instance)]))
        except Exception:  # the request that follows says what is wrong
            return True

    async def request(self, host: str, instance: str, body: dict[str, Any], within: float) -> Any:
        """Send one control request to an instance; its result.

        Raises:
            ControlError: the instance refused it (its one-line error), or
                the bus is unreachable.
            trio.TooSlowError: no reply within ``within`` seconds (the
                instance may still carry it out).
        """
        client = self.client
        if client is None:
            raise ControlError("the bus is unreachable; try again")
        request_id = uuid.uuid4().hex
        waiting = self._waiting[request_id] = _Waiting()
        try:
            fields = {"id": request_id, "reply_to": self.replies, "request": json.dumps(body)}
            await client.xadd(
                control_stream(host, instance),
                fields,
                trim_strategy=coredis.PureToken.MAXLEN,
                threshold=1000,
                trim_operator=coredis.PureToken.APPROXIMATELY,
            )
            with trio.fail_after(within):
                await waiting.done.wait()
        finally:
            del self._waiting[request_id]
        return result_of(waiting.reply)

    async def ask_all(self, body: dict[str, Any], within: float) -> list[tuple[Presence, Any]]:
        """``body``'s result from every running instance, asked at once.

        An instance that refused or did not reply has the exception instead.
        """
        await self.refresh_instances()
        running = [p for p in self.instances.values() if p.listed]
        results: list[tuple[Presence, Any]] = []

        async def one(presence: Presence) -> None:
            try:
                result = await self.request(presence.host, presence.instance, body, within)
            except (ControlError, trio.TooSlowError) as exc:
                result = exc
            results.append((presence, result))

        async with trio.open_nursery() as nursery:
            for presence in running:
                nursery.start_soon(one, presence)
        return sorted(results, key=lambda item: item[0].name)


class BusBackend:
    """The chat's view of the bus (adapters.telegram's ``ChatBackend``)."""

    def __init__(self, hub: BusHub) -> None:
        self._hub = hub

    def names(self) -> list[str]:
        return [name for p in self._hub.instances.values() for name in p.program_names()]

    def _resolve(self, name: str) -> tuple[Presence, str]:
        for presence in self._hub.instances.values():
            for program in presence.programs:
                if f"{presence.name}/{program}" == name:
                    return presence, program
        raise UnknownNameError("program", name, tuple(self.names()))

    async def answer(self, message_id: str, response: str, *, by: str) -> QuestionAnsweredData:
        where = self._hub.asked.get(message_id) or await self._find(message_id)
        if where is None:
            raise AnswerError(message_id, "not a question any instance on the bus has pending")
        if not await self._hub.running(*where):
            # It stopped cleanly: no reply would come. Its question went with it.
            raise QuestionExpiredError(message_id, f"{where[0]}/{where[1]} is not running")
        body = {"cmd": "answer", "message_id": message_id, "response": response, "by": by}
        try:
            result = await self._hub.request(*where, body, ANSWER_WAIT)
        except ControlError as exc:
            raise answer_error(message_id, str(exc)) from None
        except trio.TooSlowError:
            host, instance = where
            raise AnswerError(
                message_id, f"sent to {host}/{instance}, which has not confirmed it yet"
            ) from None
        return QuestionAnsweredData.model_validate(result)

    async def options(self, message_id: str, digest: str) -> list[str] | None:
        for _, pending in await self._hub.ask_all({"cmd": "pending"}, STATUS_WAIT):
            found = pending_options(pending, message_id, digest)
            if found is not None:
                return found
        return None

    async def _find(self, message_id: str) -> tuple[str, str] | None:
        for presence, pending in await self._hub.ask_all({"cmd": "pending"}, STATUS_WAIT):
            if isinstance(pending, list) and any(
                isinstance(item, dict) and item.get("message_id") == message_id for item in pending
            ):
                return presence.host, presence.instance
        return None

    async def status(self) -> Sequence[ProgramStatus]:
        lines: list[ProgramStatus] = []
        for presence, programs in await self._hub.ask_all({"cmd": "status"}, STATUS_WAIT):
            if isinstance(programs, BaseException):
                lines.append(_silent(presence, programs))
                continue
            for item in programs:
                presence.programs.add(str(item["name"]))
                lines.append(status_from_reply(f"{presence.name}/{item['name']}", item))
        return lines

    async def pending(self) -> list[tuple[str, str]]:
        return [
            (f"{presence.name}/{item.get('program') or ''}", str(item.get("text") or ""))
            for presence, items in await self._hub.ask_all({"cmd": "pending"}, STATUS_WAIT)
            if isinstance(items, list)
            for item in items
            if isinstance(item, dict)
        ]

    async def control(self, command: str, name: str) -> None:
        presence, program = self._resolve(name)
        body = {"cmd": command, "program": program}
        try:
            await self._hub.request(presence.host, presence.instance, body, CONTROL_WAIT)
        except trio.TooSlowError:
            raise ControlError(f"{name}: no reply within {CONTROL_WAIT:.0f} s") from None


def _silent(presence: Presence, problem: BaseException) -> ProgramStatus:
    """A line for an instance that did not reply."""
    why = "no reply" if isinstance(problem, trio.TooSlowError) else str(problem)
    if presence.last_event is not None:
        why += f" (last event {time.time() - presence.last_event:.0f}s ago)"
    return status_from_reply(presence.name, {"state": why})
