"""RedisStreamSink: XADD each event to a Redis Stream, for consumers on other machines.

A stream keeps what a pub/sub channel forgets: a consumer that connects late,
or restarts, reads on from the last entry it saw (``XREAD``), and a consumer
group shares the entries among workers and tracks what each acknowledged
(``XREADGROUP`` and ``XACK``; see ``examples/redis_consumer.py``).

Each event becomes one entry, with a Redis-generated id (``*``)::

    XADD ipc:events MAXLEN ~ 100000 * event task_complete program loopwork seq 7
         message_id 9b1c... source child received_at 1795236690950 json {"seq":7,...}

``json`` is the event's flat JSON form (:meth:`Event.to_json`), byte for
byte; the other fields are copies of a few of its values, so that a consumer
can pick entries without parsing JSON. ``MAXLEN ~`` lets Redis trim whole
blocks of old entries, which is cheap; the stream then holds at least
``maxlen`` entries and usually a little more. ``maxlen=0`` never trims.

The stream key may name the event's program and event: ``ipc:{program}``
gives each program its stream (``{{`` and ``}}`` are literal braces, for a
cluster hash tag). The XADDs of a batch go out in one pipeline, one round
trip, in the order of the events, so each stream has its entries in the
events' order. Across streams, entry ids say little (each stream numbers
the entries of one millisecond on its own): ``seq`` orders a run's events.

How a failure is judged, so that the router knows whether to retry:

* No connection, a connection lost, no answer within ``timeout``, and the
  errors of a server that is busy or changing role (``LOADING``, ``BUSY``,
  ``TRYAGAIN``, ``READONLY``, ``MASTERDOWN``, ``CLUSTERDOWN``, ``OOM``,
  ``MISCONF``, ``NOREPLICAS``): retryable.
* A wrong or missing password (``WRONGPASS``, ``NOAUTH``), no permission
  (``NOPERM``), a key that holds something other than a stream
  (``WRONGTYPE``), a cluster redirection (``MOVED``, ``ASK``: cluster mode is
  not supported) and other command errors: not retryable, the events go to
  the dead letters at once.

The password, given or in the URL, never appears in the sink's name or in
its errors.

**The connection under trio.** coredis 6 runs each connection as a task in a
task group (a trio nursery) that the client opens when it is entered as an
async context manager. A nursery belongs to the task that opened it and must
be closed by that task, before any cancel scope that task opened around it.
The router calls ``send`` from a route's worker task, ``send`` runs under its
own ``fail_after``, and ``aclose`` comes from another task at shutdown: so the
client cannot be entered on the first send and left in ``aclose`` (trio
reports "Cancel scope stack corrupted" and ends the run). Entering it for
every send would work, at the cost of a TCP connection and a handshake per
batch, and a socket in TIME_WAIT per send: enough, at a few hundred events a
second, to run out of local ports. So the sink starts a task of its own on
first use, a trio *system task* because the Sink protocol hands it no
nursery, which holds the client open and runs the batches handed to it over
a channel. ``aclose`` (or the end of the trio run) ends that task, and with
it the connection. After a failed batch the task opens a new client (see
``_client``), so the next send reconnects.
"""

from __future__ import annotations

import contextlib
import os
import string
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

import coredis
import trio
from anyio import TASK_STATUS_IGNORED
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from coredis.connection import TCPConnection
from coredis.exceptions import (
    AskError,
    AuthenticationFailureError,
    AuthenticationRequiredError,
    AuthorizationError,
    BusyLoadingError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TryAgainError,
    WrongTypeError,
)
from coredis.tokens import PureToken

from supervisor.sinks import ConfigError, Event, SinkError

__all__ = ["RedisStreamSink"]

DEFAULT_URL = "redis://127.0.0.1:6379/0"
DEFAULT_PORT = 6379

_PLACEHOLDERS = ("program", "event")
# Error codes (the first word of an error reply) of a server that cannot take
# the write now but may soon: it is loading its data, running a long script,
# resharding, a replica, cut off from its master, out of memory (until a
# consumer trims), or failing to save.
_RETRYABLE_CODES = frozenset(
    {
        "LOADING",
        "BUSY",
        "TRYAGAIN",
        "READONLY",
        "MASTERDOWN",
        "CLUSTERDOWN",
        "OOM",
        "MISCONF",
        "NOREPLICAS",
    }
)
# coredis strips the code from the errors it has a class for; these put it back.
_CODES: tuple[tuple[type[RedisError], str], ...] = (
    (AuthenticationFailureError, "WRONGPASS"),
    (AuthenticationRequiredError, "NOAUTH"),
    (AuthorizationError, "NOPERM"),
    (WrongTypeError, "WRONGTYPE"),
    (BusyLoadingError, "LOADING"),
    (TryAgainError, "TRYAGAIN"),
    (ReadOnlyError, "READONLY"),
)
_LINE_MAX = 300

Fields: TypeAlias = dict[str, str | int | bytes]


@dataclass(frozen=True, slots=True)
class _Failure:
    problem: str
    retryable: bool


@dataclass(eq=False, slots=True)
class _Call:
    """One batch handed to the connection task, and what became of it.

    The sender cancels ``scope`` when it stops waiting (timeout, or its own
    cancellation), so the connection task does not go on with a batch that
    nobody waits for.
    """

    entries: list[tuple[str, Fields]]
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    done: trio.Event = field(default_factory=trio.Event)
    failure: _Failure | None = None


@dataclass(eq=False, slots=True)
class _Connection:
    """The connection task's handles: where sends go, how to stop it, when it has."""

    calls: trio.MemorySendChannel[_Call]
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    stopped: trio.Event = field(default_factory=trio.Event)


@dataclass(frozen=True, slots=True)
class _Target:
    url: str  # without the userinfo, which is passed on separately
    display: str  # redis:host:port/db, for the name
    username: str | None
    password: str | None
    secrets: tuple[str, ...]  # forms of the URL's password to keep out of messages


class RedisStreamSink:
    """XADD each event to a Redis Stream.

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]``, or ``rediss://``
            for TLS.
        stream: the stream key; ``{program}`` and ``{event}`` in it are
            replaced per event.
        maxlen: keep about this many entries per stream (``MAXLEN ~``); 0
            never trims.
        password: the password, used instead of one in the URL.
        timeout: seconds a send may take, connecting included.
        fields: more fields for every entry (the bus adds ``host`` and
            ``instance``); they cannot replace the event's own.

    Raises:
        ConfigError: the URL, the stream key, ``maxlen``, ``timeout`` or the
            password is unusable.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        stream: str = "ipc:events",
        *,
        maxlen: int = 100_000,
        password: str | None = None,
        timeout: float = 5.0,
        fields: Mapping[str, str] | None = None,
    ) -> None:
        target = _parse_url(url)
        self.fields = dict(fields or {})
        self.stream = stream
        self.name = f"{target.display}#{stream}"
        if not stream:
            raise ConfigError(self.name, "the stream key is empty")
        self._key = _compile_key(self.name, stream)
        if isinstance(maxlen, bool) or not isinstance(maxlen, int) or maxlen < 0:
            raise ConfigError(self.name, f"maxlen must be a whole number >= 0, not {maxlen!r}")
        if not timeout > 0:
            raise ConfigError(self.name, f"timeout must be positive, not {timeout}")
        if password == "":
            raise ConfigError(self.name, "the password is empty")
        self.maxlen = maxlen
        self.timeout = timeout
        self._target = target
        self._password = password if password is not None else target.password
        self._secrets = sorted({s for s in (password, *target.secrets) if s}, key=len, reverse=True)
        self._connection: _Connection | None = None
        self._nursery: trio.Nursery | None = None
        self._nursery_manager: contextlib.AbstractAsyncContextManager[trio.Nursery] | None = None

    async def send(self, event: Event) -> None:
        """XADD ``event``; return once Redis has added it.

        Raises:
            SinkError: see :meth:`send_batch`.
        """
        await self.send_batch((event,))

    async def send_batch(self, events: Sequence[Event]) -> None:
        """XADD ``events`` in one pipeline; return once Redis has added them all.

        Delivery is at least once: when a batch fails part way (one of its
        streams has the wrong type, the connection drops), the router sends
        all of it again, or dead-letters all of it.

        Raises:
            SinkError: no connection, no answer in time, or an error reply
                (see the module docstring for which are retryable).
        """
        if not events:
            await trio.lowlevel.checkpoint()
            return
        try:
            call = _Call(
                [(self._key(event), {**self.fields, **_fields(event)}) for event in events]
            )
        except ValueError as exc:  # to_json: a lone surrogate, say; retrying cannot help
            raise SinkError(
                self.name, self._redact(f"cannot encode the event: {exc}"), retryable=False
            ) from None
        try:
            with trio.fail_after(self.timeout):
                await self._hand_over(call)
                await call.done.wait()
        except trio.TooSlowError:
            raise SinkError(self.name, f"no answer within {self.timeout:g} s") from None
        except Exception as exc:
            raise SinkError(self.name, self._redact(_describe(exc))) from None
        finally:
            call.scope.cancel()
        if call.failure is not None:
            raise SinkError(self.name, call.failure.problem, retryable=call.failure.retryable)

    async def _hand_over(self, call: _Call) -> None:
        """Give ``call`` to the connection task, starting one if there is none.

        A task that has ended (the trio run it belonged to is over, say)
        has closed its channel: then a new one is started.
        """
        for _ in range(2):
            connection = self._connection
            if connection is None:
                connection = self._connection = self._start()
            try:
                await connection.calls.send(call)
                return
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                if self._connection is connection:
                    self._connection = None
        raise SinkError(self.name, "the connection task ended at once")

    def _start(self) -> _Connection:
        # The first client is made here, so that a failure to make one is
        # the sender's error, with its reason.
        client = self._client()
        calls, requests = trio.open_memory_channel[_Call](0)
        connection = _Connection(calls)
        name = f"{self.name} connection"
        if self._nursery is not None:
            self._nursery.start_soon(self._serve, connection, requests, client, name=name)
        else:  # used on its own, outside a router
            trio.lowlevel.spawn_system_task(self._serve, connection, requests, client, name=name)
        return connection

    async def __aenter__(self) -> RedisStreamSink:
        """Open the nursery the connection task runs in while the router runs.

        Outside one (the sink used on its own), the task is a system task.
        """
        self._nursery_manager = trio.open_nursery()
        self._nursery = await self._nursery_manager.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Stop the connection task: the router has drained the route."""
        nursery, manager = self._nursery, self._nursery_manager
        self._nursery = self._nursery_manager = None
        if nursery is None or manager is None:
            return
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.calls.close()
            connection.scope.cancel()
        nursery.cancel_scope.cancel()
        await manager.__aexit__(None, None, None)

    async def _serve(
        self,
        connection: _Connection,
        requests: trio.MemoryReceiveChannel[_Call],
        client: coredis.Redis[bytes],
    ) -> None:
        """The connection task: hold a client open, run the calls handed over.

        It must not raise: in the router's nursery that would end every
        route, and as a system task it would end the trio run. So every
        error ends up in a call's failure or, failing that, ends the task;
        the next send then starts another.
        """
        current: _Call | None = None
        ended = "the connection task was stopped"
        try:
            with connection.scope:
                while True:
                    async with client:
                        async for call in requests:
                            current = call
                            with call.scope:
                                call.failure = await self._xadd(client, call.entries)
                            current = None
                            call.done.set()
                            if call.failure is not None or call.scope.cancelled_caught:
                                break  # for a new client: see _client
                        else:
                            return  # aclose closed the channel
                    client = self._client()
        except* Exception as group:
            ended = self._redact(_describe(_first(group)))
        finally:
            requests.close()
            if current is not None:
                current.failure = _Failure(f"connection task ended: {ended}", True)
                current.done.set()
            connection.stopped.set()

    def _client(self) -> coredis.Redis[bytes]:
        """A new client, with a pool of one connection.

        After a failed call the connection task leaves its client for a new
        one: coredis 6.9's pool loses a connection slot whenever a command
        on a connection it lent out is cancelled or times out, and once it
        has lost them all it waits for a connection for ever. One slot, as
        the sink never runs two calls at once, makes that visible at once
        rather than after 64 timeouts.
        """
        client = coredis.Redis.from_url(
            self._target.url,
            username=self._target.username,
            password=self._password,
            connect_timeout=self.timeout,
            stream_timeout=self.timeout,
            max_connections=1,
        )
        client.connection_pool.connection_class = _TCPConnection
        return client

    async def _xadd(
        self, client: coredis.Redis[bytes], entries: list[tuple[str, Fields]]
    ) -> _Failure | None:
        """Run the XADDs in one pipeline: None when all were added, else the first failure."""
        try:
            async with client.pipeline(transaction=False, raise_on_error=False) as pipe:
                for key, fields in entries:
                    if self.maxlen:
                        pipe.xadd(
                            key,
                            fields,
                            trim_strategy=PureToken.MAXLEN,
                            trim_operator=PureToken.APPROXIMATELY,
                            threshold=self.maxlen,
                        )
                    else:
                        pipe.xadd(key, fields)
            results = pipe.results or ()
        except Exception as exc:
            return self._judge(exc)
        errors = [
            (key, result)
            for (key, _), result in zip(entries, results, strict=True)
            if isinstance(result, BaseException)
        ]
        if not errors:
            return None
        key, error = errors[0]
        failure = self._judge(error)
        problem = f"{key}: {failure.problem}"
        if len(errors) < len(entries):
            problem += f" ({len(entries) - len(errors)} of {len(entries)} entries were added)"
        return _Failure(_one_line(self._redact(problem)), failure.retryable)

    def _judge(self, error: BaseException) -> _Failure:
        """What ``error`` means for the delivery, and whether a retry can help."""
        if isinstance(error, TimeoutError):
            return _Failure(f"no answer within {self.timeout:g} s", True)
        if isinstance(error, AskError):  # MOVED too
            return _Failure("the server is a cluster node; Redis Cluster is not supported", False)
        if isinstance(error, ResponseError | BusyLoadingError):
            reply = _error_reply(error)
            code = reply.partition(" ")[0]
            return _Failure(_one_line(self._redact(reply)), code in _RETRYABLE_CODES)
        # Connections refused, reset or lost, and whatever else goes wrong
        # on the way (coredis wraps the OSError): the server may be back soon.
        return _Failure(_one_line(self._redact(_describe(error))), True)

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    async def aclose(self) -> None:
        """Close the connection: end the sink's connection task and wait for it."""
        connection, self._connection = self._connection, None
        if connection is None:
            await trio.lowlevel.checkpoint()
            return
        connection.calls.close()
        connection.scope.cancel()
        await connection.stopped.wait()


class _TCPConnection(TCPConnection):
    """coredis's TCP connection, which also closes its buffers when it never connected.

    coredis 6.9 makes a connection's memory streams in ``__init__`` and
    closes them only on the way out of a connection that was made: after a
    refused one, the garbage collector finds six open streams, and anyio
    warns about each (a ResourceWarning, an error under pytest).
    """

    async def run(self, *, task_status: TaskStatus[None] = TASK_STATUS_IGNORED) -> None:
        try:
            await super().run(task_status=task_status)
        finally:
            for value in list(vars(self).values()):
                if isinstance(value, MemoryObjectSendStream | MemoryObjectReceiveStream):
                    value.close()


def _fields(event: Event) -> Fields:
    return {
        "event": event.event,
        "program": event.program,
        "seq": event.seq,
        "message_id": event.message_id,
        "source": event.source,
        "received_at": event.received_at,
        "json": event.to_json(),
    }


def _compile_key(where: str, stream: str) -> Callable[[Event], str]:
    """A function giving an event's stream key, from ``stream`` and its placeholders.

    Unknown placeholders are refused now rather than at the first event:
    ``{programme}`` would otherwise fail every send.
    """
    try:
        parsed = list(string.Formatter().parse(stream))
    except ValueError as exc:
        raise ConfigError(
            where, f"stream key {stream!r}: {exc} (write {{{{ and }}}} for literal braces)"
        ) from None
    parts: list[tuple[str, str | None]] = []
    for literal, name, spec, conversion in parsed:
        if name is not None and name not in _PLACEHOLDERS:
            raise ConfigError(
                where,
                f"unknown placeholder {{{name}}} in stream key {stream!r} (known: {{program}}, "
                "{event}; write {{ and }} for literal braces)",
            )
        if spec or conversion:
            raise ConfigError(where, f"stream key {stream!r}: placeholders take no format spec")
        parts.append((literal, name))
    if all(name is None for _, name in parts):
        constant = "".join(literal for literal, _ in parts)
        return lambda event: constant

    def key(event: Event) -> str:
        values = {"program": event.program, "event": event.event}
        return "".join(literal + (values[name] if name else "") for literal, name in parts)

    return key


def _parse_url(url: str) -> _Target:
    """Split ``url`` into what coredis is given and what the sink's name shows.

    Only the URL's host, port and db are ever quoted: it may hold a password.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        raise ConfigError("redis", "the URL's host or port is invalid") from None
    if parts.scheme not in ("redis", "rediss"):
        raise ConfigError("redis", "the URL must start with redis:// or rediss://")
    host = parts.hostname
    if not host:
        raise ConfigError("redis", "the URL has no host")
    shown_host = f"[{host}]" if ":" in host else host
    port = DEFAULT_PORT if port is None else port
    query = urllib.parse.parse_qs(parts.query)
    db_text = query["db"][0] if "db" in query else parts.path.strip("/") or "0"
    if not db_text.isdigit():
        raise ConfigError(
            f"redis:{shown_host}:{port}", f"db must be a number >= 0, not {db_text!r}"
        )
    display = f"{parts.scheme}:{shown_host}:{port}/{int(db_text)}"
    raw_password = parts.password
    password = urllib.parse.unquote(raw_password) if raw_password else None
    username = urllib.parse.unquote(parts.username) if parts.username else None
    netloc = parts.netloc.rpartition("@")[2]
    clean = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    secrets = tuple(s for s in (raw_password, password) if s)
    return _Target(clean, display, username, password, secrets)


def _error_reply(error: RedisError) -> str:
    """A Redis error reply as the server sent it (``WRONGTYPE Operation against...``).

    coredis drops the code from the replies it has a class for; it is put
    back, so that the message, and the test for a retryable code, see it.
    """
    text = str(error)
    for cls, code in _CODES:
        if isinstance(error, cls):
            return f"{code} {text}"
    return text


def _describe(error: BaseException) -> str:
    """``error`` in a line, with the reason at the bottom of its chain of causes.

    coredis says "Unable to establish a connection to HOST:PORT", caused by
    anyio's "All connection attempts failed", caused by the OSError that
    says why: "Connection refused".
    """
    detail = str(error) or type(error).__name__
    reason = None
    cause = error.__cause__
    while cause is not None:
        if isinstance(cause, BaseExceptionGroup):
            cause = cause.exceptions[0]
            continue
        if isinstance(cause, OSError) and cause.errno is not None:
            reason = os.strerror(cause.errno)
        elif isinstance(cause, TimeoutError):
            reason = "timed out"
        cause = cause.__cause__
    if reason is not None and reason not in detail:
        detail = f"{detail}: {reason}"
    return _one_line(detail)


def _first(group: BaseExceptionGroup[Exception]) -> Exception:
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    assert isinstance(error, Exception)
    return error


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _LINE_MAX else text[: _LINE_MAX - 3] + "..."
