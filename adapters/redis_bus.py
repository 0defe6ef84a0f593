"""The event bus across machines, on Redis Streams: supervise's side.

``supervise --bus redis://HOST:6379/0`` does three things, all through one
Redis:

- **Events out.** A durable route XADDs every event to the stream
  ``ipc:events``, with ``host`` and ``instance`` fields beside the usual
  ones (see :mod:`adapters.redis_stream`). A Redis outage loses nothing:
  a durable route's events wait in the journal until Redis takes them.
- **Requests in.** The instance reads its own stream,
  ``ipc:control:HOST:INSTANCE``, and carries out each request with the
  same code the control socket uses (:func:`supervisor.lowlevel.control_request`),
  so an answer over the bus is decided as any other: the first answer wins,
  and a second one is refused with who gave the first. Only the commands in
  :data:`BUS_COMMANDS` are carried; a request older than
  :data:`REQUEST_TTL_SECONDS` when it is read (Redis was away, or the
  instance was) is refused rather than carried out late. The reply goes to
  the stream the request names (``ipc:replies:...``).
- **Presence.** The key ``ipc:instance:HOST:INSTANCE`` holds the instance's
  name and programs, and expires :data:`PRESENCE_TTL_SECONDS` after its last
  refresh, so a hub lists every instance on every machine, and one that
  died stops being listed by itself.

The hub's side is :mod:`adapters.redis_hub`. Whoever may write to this Redis
may answer this instance's questions and restart its programs, exactly as
whoever may open its control socket: give the bus a password
(``redis://:PASSWORD@HOST``) and keep it off networks you do not trust.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from typing import Any

import coredis
import trio

from supervisor import Supervisor
from supervisor.lowlevel import control_request

from .redis_stream import RedisStreamSink
from .redis_stream import _describe as describe_redis_error

__all__ = [
    "BUS_COMMANDS",
    "EVENTS_STREAM",
    "PRESENCE_PREFIX",
    "REPLIES_PREFIX",
    "bus_route_sink",
    "control_stream",
    "default_host",
    "describe",
    "presence_key",
    "serve_bus_requests",
    "text",
]

logger = logging.getLogger(__name__)

EVENTS_STREAM = "ipc:events"
REPLIES_PREFIX = "ipc:replies:"
"""Every reply stream's name starts so: a request cannot make supervise write elsewhere."""
PRESENCE_PREFIX = "ipc:instance:"
BUS_COMMANDS = frozenset({"answer", "pending", "status", "start", "stop", "restart"})
"""What a request over the bus may ask: what the chat offers, nothing that types or reads."""
REQUEST_TTL_SECONDS = 60.0
"""A request read later than this after it was sent is refused, not carried out."""
PRESENCE_TTL_SECONDS = 90
PRESENCE_EVERY = 30.0
REPLY_STREAM_TTL_SECONDS = 3600
"""A reply stream lives this long after its last reply (its hub may be gone)."""
MAX_REQUESTS_AT_ONCE = 8
"""Requests carried out side by side: a restart waiting for its program does not hold an answer."""


def default_host() -> str:
    """This machine's name, as the bus calls it."""
    return socket.gethostname().split(".", 1)[0] or "localhost"


def control_stream(host: str, instance: str) -> str:
    """The stream an instance reads its requests from."""
    return f"ipc:control:{host}:{instance}"


def presence_key(host: str, instance: str) -> str:
    """The key that says an instance runs, and with which programs."""
    return f"{PRESENCE_PREFIX}{host}:{instance}"


def bus_route_sink(url: str, host: str, instance: str, *, maxlen: int = 100_000) -> RedisStreamSink:
    """The sink of supervise's durable ``bus`` route.

    Each entry names this run of the instance (``run``: pid and start time),
    so a hub tells an entry sent again (same run, a seq it has handled) from
    a new run whose seqs start over (``--no-journal``).
    """
    run = f"{os.getpid()}-{int(time.time() * 1000)}"
    fields = {"host": host, "instance": instance, "run": run}
    return RedisStreamSink(url, EVENTS_STREAM, maxlen=maxlen, fields=fields)


def describe(exc: BaseException) -> str:
    """The first real error inside the exception groups coredis's task group raises."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return describe_redis_error(exc)


def text(value: bytes | str | None) -> str:
    """A Redis reply value as text (coredis gives bytes)."""
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def entry_millis(identifier: bytes | str) -> int:
    """The Redis server's clock, in ms, when it added the entry (its id's first half)."""
    head = text(identifier).partition("-")[0]
    return int(head) if head.isdigit() else 0


async def serve_bus_requests(
    url: str,
    host: str,
    instance: str,
    sup: Supervisor,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Keep this instance present on the bus and carry out its requests, until cancelled.

    Redis being away never ends it (nor supervise): it tries again with
    backoff, and goes on from the last request it read.
    """
    stream = control_stream(host, instance)
    last: str | None = None
    started = False
    failures = 0
    try:
        while True:
            try:
                async with coredis.Redis.from_url(url) as client, trio.open_nursery() as nursery:
                    if last is None:
                        # Start after what is there now: earlier requests were
                        # for an earlier run.
                        newest = await client.xrevrange(stream, count=1)
                        last = text(newest[0].identifier) if newest else "0-0"
                    nursery.start_soon(_stay_present, client, host, instance, sup)
                    if not started:
                        task_status.started()
                        started = True
                    failures = 0
                    slots = trio.Semaphore(MAX_REQUESTS_AT_ONCE)
                    while True:
                        found = await client.xread({stream: last}, count=100, block=1000)
                        entries = (found or {}).get(stream.encode(), ())
                        if not entries:
                            continue
                        now = (await client.time()).timestamp() * 1000
                        for entry in entries:
                            last = text(entry.identifier)
                            await slots.acquire()  # released when it is carried out
                            nursery.start_soon(_carry_out, client, sup, entry, now, slots, stream)
            except Exception as exc:  # Redis away: try again, never end supervise
                if not started:
                    task_status.started()
                    started = True
                failures += 1
                if failures == 1:
                    logger.warning("bus: cannot read requests from %s: %s", stream, describe(exc))
                await trio.sleep(min(30.0, 0.5 * 2 ** min(failures, 6)))
    finally:
        with trio.move_on_after(2) as scope:
            scope.shield = True
            await _leave(url, host, instance)


async def _stay_present(
    client: coredis.Redis[bytes], host: str, instance: str, sup: Supervisor
) -> None:
    while True:
        value = {"host": host, "instance": instance, "programs": list(sup.programs)}
        await client.set(presence_key(host, instance), json.dumps(value), ex=PRESENCE_TTL_SECONDS)
        await trio.sleep(PRESENCE_EVERY)


async def _leave(url: str, host: str, instance: str) -> None:
    """Stop being listed at once (a clean stop), rather than when the key expires."""
    try:
        async with coredis.Redis.from_url(url) as client:
            await client.delete([presence_key(host, instance)])
    except Exception as exc:  # best effort: the key expires anyway
        logger.info("bus: could not withdraw %s/%s: %s", host, instance, describe(exc))


async def _carry_out(
    client: coredis.Redis[bytes],
    sup: Supervisor,
    entry: Any,
    now_ms: float,
    slots: trio.Semaphore,
    stream: str,
) -> None:
    try:
        values = {text(k): text(v) for k, v in dict(entry.field_values).items()}
        reply_to = values.get("reply_to", "")
        request_id = values.get("id", "")
        reply = await _reply_for(sup, values, now_ms - entry_millis(entry.identifier))
        if not reply_to.startswith(REPLIES_PREFIX):
            logger.info(
                "bus: %s %s: no reply stream; reply dropped", stream, text(entry.identifier)
            )
            return
        fields = {"id": request_id, "reply": json.dumps(reply, ensure_ascii=False)}
        with trio.move_on_after(10):
            async with client.pipeline(transaction=False) as pipe:
                pipe.xadd(
                    reply_to,
                    fields,
                    trim_strategy=coredis.PureToken.MAXLEN,
                    threshold=1000,
                    trim_operator=coredis.PureToken.APPROXIMATELY,
                )
                pipe.expire(reply_to, REPLY_STREAM_TTL_SECONDS)
    finally:
        slots.release()


async def _reply_for(sup: Supervisor, values: dict[str, str], age_ms: float) -> dict[str, Any]:
    try:
        request = json.loads(values.get("request", ""))
    except ValueError:
        return {"ok": False, "error": "request is not JSON"}
    if not isinstance(request, dict):
        return {"ok": False, "error": "request must be a JSON object"}
    command = request.get("cmd")
    if command not in BUS_COMMANDS:
        carried = ", ".join(sorted(BUS_COMMANDS))
        return {
            "ok": False,
            "error": f"{json.dumps(command)} is not carried over the bus (carried: {carried})",
        }
    if age_ms > REQUEST_TTL_SECONDS * 1000:
        return {
            "ok": False,
            "error": f"{command}: sent {age_ms / 1000:.0f} s ago, too late to carry out",
        }
    started = time.monotonic()
    reply = await control_request(sup, request)
    logger.debug("bus: %s in %.1f ms", command, (time.monotonic() - started) * 1000)
    return reply
