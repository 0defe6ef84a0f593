"""The control socket: what ``supervise ctl`` talks to.

Each ``supervise`` run listens on a unix stream socket,
``control_dir() / f"{instance}.sock"`` (mode 0600, in a 0700 directory), so
only its own user can control it. The protocol is JSON Lines in UTF-8: one
request object per line, one reply line per request, in order; a client may
send several requests on one connection. Every reply is
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "one line"}``::

    {"cmd": "status"}
        -> result: [{name, state, pid, uptime, restarts, last_exit,
                     tasks_in_flight, pending_questions}, ...] in program order
    {"cmd": "info"}
        -> result: {instance, pid, tmux_socket, tmux_pane, programs,
           first_seq, journal}: the instance name, supervise's pid, the tmux
           server socket and pane (``%3``) supervise was started in, from its
           ``TMUX`` and ``TMUX_PANE`` (null outside tmux), the program names
           in order, the seq of this run's first event, and whether the
           journal is on (a tail can start from a seq only then)
    {"cmd": "input", "program": "NAME", "text": "...", "enter": true}
        -> result: {program, written}: the text (UTF-8, at most 64 KiB) was
           written to the running child's stdin, followed by Enter (``\\r``
           on a pty, ``\\n`` on pipes) unless enter is false; written counts
           the bytes, Enter included. program may be left out when there is
           only one. It takes its turn with answers, never splitting one.
    {"cmd": "start" | "stop" | "restart", "program": "NAME"}
        -> result: NAME's status once the request has taken effect (the
           reply waits, at most 30 s, until the child is up or gone)
    {"cmd": "answer", "message_id": "...", "response": "approve",
     "raw": false, "by": "ctl"}
        -> result: the question_answered data {messageId, response,
           written, by, latency, decision}
    {"cmd": "reopen-logs"}
        -> result: the programs whose log files were reopened (after an
           external tool rotated them)
    {"cmd": "pending"}
        -> result: [{program, message_id, kind, text, options, digest,
                     severity, waiting, expires_in}, ...]; waiting and
           expires_in are seconds (expires_in is null without a deadline);
           options are the option ids, or ["approve", "deny"] for an
           approval; digest is question_digest() of what it asks, which a
           chat card carries so that a tap answers only the version shown
    {"cmd": "routes"}
        -> result: [{name, sink, durable, queued, delivered, failures,
                     retries, dropped, coalesced, dead, last_error,
                     delivered_seq}, ...]
    {"cmd": "dead", "route": "hook"}            (route optional)
        -> result: [{id, route, seq, event, program, message_id, error,
                     attempts, failed_at}, ...]
    {"cmd": "retry", "route": "hook", "ids": [3, 4]}   (both optional)
        -> result: {"requeued": N}: those dead letters are queued again
    {"cmd": "tail", "pattern": "task_*", "since": 120}  (both optional)
        -> result: {"pattern": ..., "since": ...}, then, with since, every
           journaled matching event with seq > since, then every new
           matching event as its JSON line (Event.to_json) until either
           side closes. The connection carries nothing else afterwards.

A tail pattern is an fnmatch glob on the event name (``task_*``), or
``PROGRAM:EVENT`` (``loop:task_*``); none matches everything. A tail that
falls behind loses events rather than slowing supervise down; it is then
sent an ``events_dropped`` event ``{count, first_seq, last_seq}`` (seq 0,
program "") before the next event it does get.

A bad request is answered with an error line and never ends the server:
``request is not JSON: ...``, ``unknown command "x" (commands: ...)``,
``missing field 'program'``, ``no program named 'x' (programs: a, b)``,
``NAME is not running``, ``text longer than 65536 bytes``, or the one-line
message of the refused control request or answer. A request
must be JSON text: one nested deeper than Python's parser goes, or with a
string holding a lone surrogate (``"\\ud800"``), is refused as not JSON.
At most ``MAX_CONNECTIONS`` (128) connections are served at once; one more
gets ``too many control connections ...`` and is closed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import socket
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import trio

from .._core.errors import AnswerError, ConfigError, ControlError
from .._core.messages import Question
from .._core.questions import question_digest
from .._core.state import ProcessState, is_alive
from .._paths import bind_control_socket
from .._process.program import ProgramStatus, ProgramSupervisor

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from .._supervisor import Supervisor

__all__ = [
    "MAX_CONNECTIONS",
    "RequestsInFlight",
    "TmuxPlace",
    "control_request",
    "serve_control",
    "tmux_place",
]

MAX_CONNECTIONS = 128
"""Control connections served at once (tails included); more are refused."""
_TOO_MANY = f"too many control connections (at most {MAX_CONNECTIONS} at once); try again later"

_MAX_INPUT = 65536
# A request line: room for an input request whose every byte of text is
# escaped (a control character is six bytes of JSON, \u001b).
_MAX_REQUEST = 6 * _MAX_INPUT + 4096
_TAIL_BATCH = 256
# Longest a start/stop/restart reply waits for the program to get there.
_MAX_WAIT = 30.0
_POLL = 0.01
# Seqs and dead-letter ids are SQLite integers; a larger number matches nothing.
_MIN_ID, _MAX_ID = -(2**63), 2**63 - 1
_COMMANDS = (
    "answer",
    "dead",
    "info",
    "input",
    "pending",
    "reopen-logs",
    "restart",
    "retry",
    "routes",
    "start",
    "status",
    "stop",
    "tail",
)


# -- the server -----------------------------------------------------------------


class RequestsInFlight:
    """Counts control requests being served, so shutdown can let replies out.

    A ``ctl stop`` of the last running program settles everything and so
    ends supervise; its reply must still reach the client first.
    """

    def __init__(self) -> None:
        self._count = 0
        self._idle = trio.Event()
        self._idle.set()

    @contextlib.contextmanager
    def track(self) -> Iterator[None]:
        if self._count == 0:
            self._idle = trio.Event()
        self._count += 1
        try:
            yield
        finally:
            self._count -= 1
            if self._count == 0:
                self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()


async def serve_control(
    path: Path,
    sup: Supervisor,
    *,
    requests: RequestsInFlight | None = None,
    listening: socket.socket | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer ``supervise ctl`` on a unix socket at ``path`` until cancelled.

    The directory must exist and be private (:func:`prepare_control_dir`).
    A socket file left by a supervise that died is replaced; the socket is
    removed again when this returns.

    Args:
        path: the socket, ``control_dir() / f"{instance}.sock"``.
        sup: the supervisor whose programs, routes and events it serves.
        requests: counts requests being answered (tails excluded).
        listening: the socket already bound at ``path``
            (:func:`~supervisor._paths.bind_control_socket`), by a supervise
            that started its child before it could serve; bound here if None.
        task_status: ``started()`` once clients can connect.

    Raises:
        ConfigError: another supervise is listening there, the path is taken
            by something that is not a socket, or is too long.
    """
    sock = trio.socket.from_stdlib_socket(
        listening if listening is not None else bind_control_socket(path)
    )
    bound: os.stat_result | None = None
    try:
        bound = os.stat(path)
        # Read once, before any child runs: where supervise itself was started.
        place = tmux_place(os.environ)

        in_flight = requests or RequestsInFlight()
        connections = 0

        async def handler(stream: trio.SocketStream) -> None:
            nonlocal connections
            if connections >= MAX_CONNECTIONS:
                # Each connection holds a file descriptor; a client that opens
                # them without end would leave none for restarting a child.
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    async with stream:
                        await stream.send_all(_reply(False, _TOO_MANY))
                return
            connections += 1
            try:
                await _serve_connection(stream, sup, in_flight, place)
            finally:
                connections -= 1

        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, handler, [trio.SocketListener(sock)])
            task_status.started()
    finally:
        sock.close()
        # Synchronous, so a cancellation cannot skip it. Only our own file:
        # never one another instance bound after ours was removed.
        with contextlib.suppress(OSError):
            now = os.stat(path)
            if bound is not None and (now.st_dev, now.st_ino) == (bound.st_dev, bound.st_ino):
                os.unlink(path)


class _RequestError(Exception):
    """A request we cannot act on; its message is the reply's error line."""


_Programs: TypeAlias = Mapping[str, ProgramSupervisor]


class _LineReader:
    """Splits a byte stream into request lines."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    async def readline(self) -> bytes | None:
        """The next line without its newline; None at the end of the stream."""
        searched = 0
        while (end := self._buffer.find(b"\n", searched)) < 0:
            if len(self._buffer) > _MAX_REQUEST:
                raise _RequestError(f"request longer than {_MAX_REQUEST} bytes")
            searched = len(self._buffer)
            data = await self._stream.receive_some(_MAX_REQUEST)
            if not data:
                line, self._buffer = bytes(self._buffer), bytearray()
                return line or None
            self._buffer += data
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        return line

    async def wait_closed(self) -> None:
        """Return when the client goes away, ignoring whatever it still sends."""
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while await self._stream.receive_some(_MAX_REQUEST):
                pass


def _reply(ok: bool, value: Any) -> bytes:
    return _line(_body(ok, value))


def _body(ok: bool, value: Any) -> dict[str, Any]:
    return {"ok": True, "result": value} if ok else {"ok": False, "error": value}


def _line(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


async def _serve_connection(
    stream: trio.SocketStream, sup: Supervisor, requests: RequestsInFlight, place: TmuxPlace
) -> None:
    lines = _LineReader(stream)
    try:
        async with stream:
            while True:
                try:
                    line = await lines.readline()
                except _RequestError as exc:  # too long: the next request cannot be found
                    await stream.send_all(_reply(False, str(exc)))
                    return
                if line is None:
                    return
                if not line.strip():
                    continue
                try:
                    request = _parse(line)
                except _RequestError as exc:
                    await stream.send_all(_reply(False, str(exc)))
                    continue
                if request.get("cmd") == "tail":
                    await _tail(stream, lines, request, sup)
                    return
                with requests.track():
                    await stream.send_all(_line(await control_request(sup, request, place)))
    except* (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the client went away
    except* Exception as group:
        # A bug in serving one client must not end supervise and its
        # children: say so, and drop only this connection.
        first = group.exceptions[0]
        sup.report(f"control: a request failed: {type(first).__name__}: {first}")


def _parse(line: bytes) -> dict[str, Any]:
    try:
        request = json.loads(line)
    except ValueError as exc:  # also UnicodeDecodeError
        raise _RequestError(f"request is not JSON: {exc}") from None
    except RecursionError:
        raise _RequestError("request is not JSON: nested too deeply") from None
    if not isinstance(request, dict):
        raise _RequestError("request must be a JSON object")
    try:
        # A "\ud800" escape decodes to a lone surrogate, which no reply, event
        # or journal line could carry on: UTF-8 has no encoding for it.
        json.dumps(request, ensure_ascii=False).encode()
    except UnicodeEncodeError as exc:
        raise _RequestError(
            "request is not JSON text: a string holds a lone surrogate"
            f" \\u{ord(exc.object[exc.start]):04x}"
        ) from None
    return request


async def control_request(
    sup: Supervisor, request: dict[str, Any], place: TmuxPlace | None = None
) -> dict[str, Any]:
    """Carry out one control request (not ``tail``); its reply, ``{"ok", "result" | "error"}``.

    The one place every control command is carried out, whichever way the
    request came (the control socket, the Redis bus): whatever goes wrong
    becomes an error reply, never an exception.
    """
    if place is None:
        place = TmuxPlace(None, None)
    programs = sup.programs
    try:
        cmd = _text(request, "cmd")
        result: Any
        if cmd == "status":
            result = [dataclasses.asdict(program.status()) for program in programs.values()]
        elif cmd == "info":
            result = {
                "instance": sup.instance,
                "pid": os.getpid(),
                "tmux_socket": place.socket,
                "tmux_pane": place.pane,
                "programs": list(programs),
                "first_seq": sup.first_seq,
                "journal": sup.journal is not None,
            }
        elif cmd == "input":
            result = await _input(request, programs)
        elif cmd in ("start", "stop", "restart"):
            result = await _control(cmd, _program(request, programs))
        elif cmd == "answer":
            result = await _answer(request, sup)
        elif cmd == "routes":
            result = [dataclasses.asdict(stats) for stats in sup.route_stats()]
        elif cmd == "dead":
            result = await _dead(request, sup)
        elif cmd == "retry":
            result = await _retry(request, sup)
        elif cmd == "pending":
            result = _pending(programs)
        elif cmd == "reopen-logs":
            for program in programs.values():
                program.reopen_log()
            result = [name for name, program in programs.items() if program.config.log.path]
        else:
            commands = ", ".join(_COMMANDS)
            raise _RequestError(f"unknown command {json.dumps(cmd)} (commands: {commands})")
        return _body(True, result)
    except (_RequestError, ControlError, AnswerError, ConfigError) as exc:
        return _body(False, str(exc))
    except KeyError as exc:  # no such route
        return _body(False, str(exc.args[0]))
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        # answer(): the child exited between being found and being written to.
        return _body(False, f"question {request['message_id']}: its program is not running")
    except Exception as exc:  # a bug: say so, and keep serving
        logger.warning("control request %r failed: %r", request, exc)
        return _body(False, f"internal error: {exc!r}")


def _text(request: dict[str, Any], name: str, default: str | None = None) -> str:
    value = request.get(name, default)
    if value is None:
        raise _RequestError(f"missing field {name!r}")
    if not isinstance(value, str):
        raise _RequestError(f"field {name!r} must be a string")
    return value


@dataclasses.dataclass(frozen=True)
class TmuxPlace:
    """The tmux server socket and pane a process runs in (None outside tmux)."""

    socket: str | None
    pane: str | None


def tmux_place(environ: Mapping[str, str]) -> TmuxPlace:
    """Where ``environ`` says its process runs in tmux.

    ``TMUX`` is ``SOCKET,SERVER_PID,SESSION``; the socket is what comes
    before the first comma, as tmux itself reads it. ``TMUX_PANE`` is the
    pane id (``%3``).
    """
    socket_path = environ.get("TMUX", "").partition(",")[0]
    return TmuxPlace(socket_path or None, environ.get("TMUX_PANE") or None)


def _program(request: dict[str, Any], programs: _Programs) -> ProgramSupervisor:
    name = _text(request, "program")
    program = programs.get(name)
    if program is None:
        raise _RequestError(f"no program named {name!r} (programs: {', '.join(programs)})")
    return program


async def _control(cmd: str, program: ProgramSupervisor) -> Any:
    """Start, stop or restart; reply once the outcome shows (or a bounded wait ends)."""
    config = program.config
    old_pid, before = program.pid, program.status().state
    if cmd == "stop":
        # Stopping what has no process changes nothing, as in the state
        # machine; passing it on would wake a settled program.
        if before in ("starting", "running", "backoff"):
            program.request_stop(final=False)
        return await _wait_for(program, lambda s: not _alive(s), config.stop_timeout + 2)
    if cmd == "start":
        program.request_start()
    else:
        program.request_restart("restart requested through ctl")

    def up(status: ProgramStatus) -> bool:
        if status.pid is not None and status.pid != old_pid:
            return status.state == "running"  # after start_seconds, as supervisorctl waits
        # A child that died within one poll is never seen running, only gone.
        return status.state in ("backoff", "fatal") or (
            status.state != before and not _alive(status)
        )

    return await _wait_for(program, up, config.stop_timeout + config.start_seconds + 2)


def _alive(status: ProgramStatus) -> bool:
    return is_alive(ProcessState(status.state))


async def _wait_for(
    program: ProgramSupervisor, done: Callable[[ProgramStatus], bool], within: float
) -> Any:
    with trio.move_on_after(min(within, _MAX_WAIT)):
        # Polling, because the supervisor offers nothing to wait on.
        while not done(program.status()):  # noqa: ASYNC110
            await trio.sleep(_POLL)
    return dataclasses.asdict(program.status())


async def _input(request: dict[str, Any], programs: _Programs) -> Any:
    """Type text into a program's stdin, through the writer answers use."""
    if request.get("program") is None and len(programs) == 1:
        (program,) = programs.values()
    else:
        program = _program(request, programs)
    text = request.get("text")
    if not isinstance(text, str):
        raise _RequestError(
            "field 'text' must be a string" if text is not None else "missing field 'text'"
        )
    enter = request.get("enter", True)
    if not isinstance(enter, bool):
        raise _RequestError("field 'enter' must be true or false")
    if len(text.encode()) > _MAX_INPUT:
        raise _RequestError(f"text longer than {_MAX_INPUT} bytes")
    written = await program.type_input(text, enter=enter)
    logger.info("control: typed %d bytes into %s", written, program.name)
    return {"program": program.name, "written": written}


async def _answer(request: dict[str, Any], sup: Supervisor) -> Any:
    message_id, response = _text(request, "message_id"), _text(request, "response")
    by = _text(request, "by", "ctl")
    raw = request.get("raw", False)
    if not isinstance(raw, bool):
        raise _RequestError("field 'raw' must be true or false")
    answered = await sup.answer(message_id, response, by=by, raw=raw)
    return answered.data.model_dump(mode="json")


def _is_seq(value: object) -> bool:
    """A seq or dead-letter id: an integer SQLite can store (a signed 64-bit one)."""
    return type(value) is int and _MIN_ID <= value <= _MAX_ID


def _optional_text(request: dict[str, Any], name: str) -> str | None:
    value = request.get(name)
    if value is not None and not isinstance(value, str):
        raise _RequestError(f"field {name!r} must be a string")
    return value


async def _dead(request: dict[str, Any], sup: Supervisor) -> Any:
    letters = await sup.dead_letters(_optional_text(request, "route"))
    return [
        {
            "id": letter.id,
            "route": letter.route,
            "seq": letter.seq,
            "event": letter.event.event,
            "program": letter.event.program,
            "message_id": letter.event.message_id,
            "error": letter.error,
            "attempts": letter.attempts,
            "failed_at": letter.failed_at,
        }
        for letter in letters
    ]


async def _retry(request: dict[str, Any], sup: Supervisor) -> Any:
    ids = request.get("ids", [])
    if not isinstance(ids, list) or not all(_is_seq(i) for i in ids):
        raise _RequestError("field 'ids' must be a list of dead-letter ids (64-bit integers)")
    return {"requeued": await sup.retry_dead(_optional_text(request, "route"), ids)}


def _pending_ids(program: ProgramSupervisor) -> set[str]:
    return {pending.message_id for pending in program.pending_questions()}


def _pending(programs: _Programs) -> list[dict[str, Any]]:
    now = trio.current_time()
    items = []
    for program in programs.values():
        for pending in program.pending_questions():
            message = pending.message
            if isinstance(message, Question):
                text = message.data.question
                options = [option.id for option in message.data.options]
                severity = None
            else:
                data = message.data
                text = data.description or data.action or data.operation or ""
                options, severity = ["approve", "deny"], data.severity
            deadline = pending.deadline
            operation = (
                None
                if isinstance(message, Question)
                else (message.data.operation or message.data.action)
            )
            items.append(
                {
                    "program": pending.program,
                    "message_id": pending.message_id,
                    "kind": pending.kind,
                    "task_id": pending.task_id,
                    "operation": operation,
                    "text": text,
                    "options": options,
                    "digest": question_digest(message),
                    "severity": severity,
                    "waiting": round(now - pending.asked_at, 3),
                    "expires_in": None if deadline is None else round(max(deadline - now, 0), 3),
                }
            )
    return items


async def _tail(
    stream: trio.SocketStream, lines: _LineReader, request: dict[str, Any], sup: Supervisor
) -> None:
    try:
        pattern = _optional_text(request, "pattern")
        since = request.get("since")
        if since is not None and not _is_seq(since):
            raise _RequestError("field 'since' must be a seq number (a 64-bit integer)")
        if since is not None and sup.journal is None:
            raise _RequestError("tail from a seq needs the event journal, which is off")
    except _RequestError as exc:
        await stream.send_all(_reply(False, str(exc)))
        return
    # Listen before replaying, so no event falls between the journal and
    # the live stream; the overlap is skipped by seq.
    with sup.hub.subscribe(pattern) as events:
        await stream.send_all(_reply(True, {"pattern": pattern, "since": since}))
        async with trio.open_nursery() as nursery:

            async def until_closed() -> None:
                await lines.wait_closed()
                nursery.cancel_scope.cancel()

            nursery.start_soon(until_closed)
            replayed = 0
            if since is not None:
                batch: list[bytes] = []
                async for event in sup.replay(since, pattern):
                    batch.append(event.to_json() + b"\n")
                    replayed = event.seq
                    if len(batch) >= _TAIL_BATCH:
                        await stream.send_all(b"".join(batch))
                        batch.clear()
                if batch:
                    await stream.send_all(b"".join(batch))
            async for first in events:
                live = [first]
                with contextlib.suppress(trio.WouldBlock, trio.EndOfChannel):
                    while len(live) < _TAIL_BATCH:
                        live.append(events.receive_nowait())
                # seq 0 is an events_dropped marker, which is always news.
                fresh = [event for event in live if event.seq > replayed or event.seq == 0]
                if fresh:
                    await stream.send_all(b"".join(event.to_json() + b"\n" for event in fresh))
            nursery.cancel_scope.cancel()
