"""``supervise ctl``: control a running supervise through its control socket.

A short-lived, blocking client: it connects, sends one request (JSON Lines,
see :mod:`supervisor._control.server`), prints the reply for people and exits. Only
``tail`` stays, printing events until Control-C or until supervise ends.

Exit status: 0 on success, 1 when supervise refuses or cannot be reached, 2
for usage errors (including an ambiguous choice of instance).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import socket
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .._core.errors import ConfigError
from .._core.summary import whole_duration
from .._paths import (
    check_private_dir,
    check_private_file,
    control_dir,
    socket_answers,
    validate_instance_name,
)
from .terminal import warn

__all__ = ["build_parser", "main"]

USAGE_ERROR = 2
# sun_path holds 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 107
# Longer than the server ever waits for a program to stop or start (30 s).
_REPLY_TIMEOUT = 60.0
_STATUS_COLUMNS = ("PROGRAM", "STATE", "PID", "UPTIME", "RESTARTS", "LAST EXIT", "TASKS", "PENDING")


class CtlError(Exception):
    """Something to tell the user in one line, and the status to exit with."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="supervise ctl",
        description="Control a running supervise: status, start/stop/restart, answers, events.",
    )
    parser.add_argument(
        "--instance",
        metavar="NAME",
        help="which supervise to talk to (default: the only one running)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("status", help="show every program's state")
    for verb in ("start", "stop", "restart"):
        command = commands.add_parser(verb, help=f"{verb} a program")
        command.add_argument("program", metavar="NAME")
    answer = commands.add_parser("answer", help="answer a pending question or approval")
    answer.add_argument("message_id", metavar="MESSAGE_ID")
    answer.add_argument("response", metavar="RESPONSE", help="approve, deny, or an option id")
    answer.add_argument("--raw", action="store_true", help="write RESPONSE exactly as given")
    commands.add_parser("pending", help="list the questions waiting for an answer")
    commands.add_parser("reopen-logs", help="reopen log files after an external rotation")
    tail = commands.add_parser("tail", help="print events as JSON lines until Control-C")
    tail.add_argument(
        "pattern", nargs="?", metavar="PATTERN", help="event glob (task_*) or PROGRAM:EVENT glob"
    )
    tail.add_argument(
        "--since",
        type=int,
        metavar="SEQ",
        help="first replay the journaled events after SEQ (0: from the start)",
    )
    commands.add_parser("routes", help="show each route's deliveries, failures and queue")
    dead = commands.add_parser("dead", help="list the events routes gave up on")
    dead.add_argument("route", nargs="?", metavar="ROUTE", help="only this route's")
    retry = commands.add_parser("retry", help="deliver dead letters again")
    retry.add_argument("route", nargs="?", metavar="ROUTE", help="only this route's")
    retry.add_argument(
        "--id", dest="ids", type=int, action="append", default=[], help="only this dead letter"
    )
    return parser


def main(argv: Sequence[str]) -> int:
    """Run ``supervise ctl`` with ``argv`` (the arguments after ``ctl``); return the status."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, usage errors
        return exc.code if isinstance(exc.code, int) else USAGE_ERROR
    try:
        instance, path = _find_instance(args.instance)
        timeout = None if args.command == "tail" else _REPLY_TIMEOUT
        with _Connection(instance, path, timeout=timeout) as connection:
            _run(connection, args)
    except CtlError as exc:
        warn(str(exc))
        return exc.status
    except KeyboardInterrupt:
        return 0 if args.command == "tail" else 130
    return 0


def _run(connection: _Connection, args: argparse.Namespace) -> None:
    if args.command == "tail":
        _tail(connection, args.pattern, args.since)
    elif args.command == "routes":
        _print_routes(connection.request({"cmd": "routes"}))
    elif args.command == "dead":
        _print_dead(connection.request({"cmd": "dead", "route": args.route}))
    elif args.command == "retry":
        result = connection.request({"cmd": "retry", "route": args.route, "ids": args.ids})
        print(f"queued {result['requeued']} dead letter(s) again")
    elif args.command == "status":
        _print_status(connection.request({"cmd": "status"}))
    elif args.command == "pending":
        _print_pending(connection.request({"cmd": "pending"}))
    elif args.command == "reopen-logs":
        names = connection.request({"cmd": "reopen-logs"})
        print(f"reopened logs of: {', '.join(names)}" if names else "no program has a log file")
    elif args.command == "answer":
        request = {
            "cmd": "answer",
            "message_id": args.message_id,
            "response": args.response,
            "raw": args.raw,
            "by": "ctl",
        }
        result = connection.request(request)
        print(f"answered {result['messageId']}: wrote {json.dumps(result['written'])}")
    else:
        status = connection.request({"cmd": args.command, "program": args.program})
        pid = f" (pid {status['pid']})" if status["pid"] is not None else ""
        print(f"{status['name']}: {status['state']}{pid}")


def _find_instance(name: str | None) -> tuple[str, Path]:
    """The instance to talk to: the named one, or the only one running."""
    directory = control_dir()
    if name is not None:
        try:
            validate_instance_name(name, "--instance")
        except ConfigError as exc:
            raise CtlError(str(exc), USAGE_ERROR) from None
        return name, directory / f"{name}.sock"
    if os.path.lexists(directory):
        _check_control_dir(directory)
    sockets = sorted(directory.glob("*.sock"))
    if len(sockets) > 1:
        # A supervise that was killed leaves its socket behind; don't count it.
        sockets = [path for path in sockets if socket_answers(path)] or sockets
    if not sockets:
        raise CtlError("no supervise instance is running")
    if len(sockets) > 1:
        names = ", ".join(path.stem for path in sockets)
        raise CtlError(
            f"several supervise instances are running ({names}): pick one with --instance",
            USAGE_ERROR,
        )
    return sockets[0].stem, sockets[0]


def _check_control_dir(directory: Path) -> None:
    """The control directory: ours, writable by nobody else, and not a symlink.

    A symlink there, even one put in after supervise started, could lead
    to another user's socket, which would then be sent our answers.
    """
    try:
        check_private_dir(directory, follow=False)
    except ConfigError as exc:
        raise CtlError(str(exc)) from None


@contextlib.contextmanager
def _private_socket(path: Path) -> Iterator[str]:
    """An address for connecting to the socket ``path`` only if it is ours.

    The directory is opened without following a symlink and checked
    through its descriptor; the socket is checked in that very directory
    and connected to through ``/proc/self/fd``, so a directory swapped
    after the check is not the one connected into.

    Raises:
        CtlError: the directory or the socket is a symlink, not ours, or
            the directory is writable by others.
        FileNotFoundError: there is no such directory or socket.
    """
    directory = path.parent
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError:
        _check_control_dir(directory)  # says what is wrong with it
        raise
    try:
        info = os.fstat(fd)
        if info.st_uid != os.getuid() or info.st_mode & 0o022:
            _check_control_dir(directory)
        proc = Path(f"/proc/self/fd/{fd}")
        short = len(os.fsencode(proc / path.name)) <= _MAX_SOCKET_PATH
        base = proc if short and proc.is_dir() else directory
        try:
            if check_private_file(base / path.name, kind="a socket") is None:
                raise FileNotFoundError(path)
        except ConfigError as exc:
            raise CtlError(f"{path}: {exc.problem}") from None
        yield str(base / path.name)
    finally:
        os.close(fd)


class _Connection:
    """A blocking JSON Lines connection to one supervise."""

    def __init__(self, instance: str, path: Path, *, timeout: float | None) -> None:
        self._instance = instance
        self._timeout = timeout
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            with _private_socket(path) as address:
                sock.connect(address)
        except CtlError:
            sock.close()
            raise
        except FileNotFoundError:
            sock.close()
            running = sorted(p.stem for p in path.parent.glob("*.sock"))
            hint = f" (instances: {', '.join(running)})" if running else ""
            raise CtlError(f"supervise instance {instance!r} is not running{hint}") from None
        except ConnectionRefusedError:
            sock.close()
            raise CtlError(
                f"supervise instance {instance!r} is not running (stale socket {path})"
            ) from None
        except OSError as exc:
            sock.close()
            raise CtlError(f"cannot connect to {path}: {exc.strerror or exc}") from None
        self._socket = sock
        self._reader = sock.makefile("rb")

    def request(self, request: dict[str, Any]) -> Any:
        """Send one request; return its result, or raise CtlError with its error."""
        self._send(request)
        return self._result(self._readline())

    def _send(self, request: dict[str, Any]) -> None:
        try:
            self._socket.sendall(json.dumps(request).encode() + b"\n")
        except OSError as exc:
            raise CtlError(f"supervise instance {self._instance!r} went away: {exc}") from None

    def _readline(self) -> bytes:
        try:
            line = self._reader.readline()
        except TimeoutError:
            raise CtlError(
                f"no reply from supervise instance {self._instance!r} within {self._timeout:g}s"
            ) from None
        except OSError as exc:
            raise CtlError(f"supervise instance {self._instance!r} went away: {exc}") from None
        if not line.endswith(b"\n"):
            raise CtlError(f"supervise instance {self._instance!r} closed the connection")
        return line

    def _result(self, line: bytes) -> Any:
        try:
            reply = json.loads(line)
        except ValueError:
            reply = None
        if not isinstance(reply, dict):
            raise CtlError(f"supervise sent a reply that is not a JSON object: {line[:200]!r}")
        if not reply.get("ok"):
            raise CtlError(str(reply.get("error", "request refused")))
        return reply.get("result")

    def events(self, pattern: str | None, since: int | None = None) -> Iterator[bytes]:
        """Subscribe, then yield event lines until supervise closes the connection."""
        self._send({"cmd": "tail", "pattern": pattern, "since": since})
        self._result(self._readline())
        yield from self._reader  # until EOF

    def __enter__(self) -> _Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._reader.close()
        self._socket.close()


def _tail(connection: _Connection, pattern: str | None, since: int | None) -> None:
    """Print event lines as they come; Control-C is the normal way out."""
    try:
        for line in connection.events(pattern, since):
            if line.startswith(b'{"seq":0,') and b'"event":"events_dropped"' in line:
                data = json.loads(line)["data"]
                warn(
                    f"tail fell behind: {data['count']} events dropped "
                    f"(seq {data['first_seq']}-{data['last_seq']})"
                )
                continue
            sys.stdout.write(line.decode(errors="replace"))
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        # The reader went away (`ctl tail | head`): stop quietly, and keep
        # Python from complaining when it flushes stdout at exit.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)


def _table(rows: list[Sequence[str]]) -> None:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())


def _print_routes(routes: list[dict[str, Any]]) -> None:
    if not routes:
        print("no routes")
        return
    rows: list[Sequence[str]] = [
        ("ROUTE", "SINK", "QUEUED", "DELIVERED", "RETRIES", "DROPPED", "DEAD", "LAST ERROR")
    ]
    for route in routes:
        name = route["name"] + (" (durable)" if route["durable"] else "")
        counts = ("queued", "delivered", "retries", "dropped", "dead")
        rows.append(
            (name, route["sink"], *(str(route[key]) for key in counts), route["last_error"] or "-")
        )
    _table(rows)


def _print_dead(letters: list[dict[str, Any]]) -> None:
    if not letters:
        print("no dead letters")
        return
    rows: list[Sequence[str]] = [("ID", "ROUTE", "SEQ", "EVENT", "PROGRAM", "ATTEMPTS", "ERROR")]
    for letter in letters:
        rows.append(
            (
                str(letter["id"]),
                letter["route"],
                str(letter["seq"]),
                letter["event"],
                letter["program"],
                str(letter["attempts"]),
                letter["error"],
            )
        )
    _table(rows)


def _print_status(programs: list[dict[str, Any]]) -> None:
    rows = [_STATUS_COLUMNS]
    for p in programs:
        rows.append(
            (
                p["name"],
                p["state"],
                _or_dash(p["pid"]),
                "-" if p["uptime"] is None else format_duration(p["uptime"]),
                str(p["restarts"]),
                "-" if p["last_exit"] is None else _short_exit(p["last_exit"]),
                str(p["tasks_in_flight"]),
                str(p["pending_questions"]),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(_STATUS_COLUMNS))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def _print_pending(questions: list[dict[str, Any]]) -> None:
    if not questions:
        print("no pending questions")
        return
    blocks = []
    for q in questions:
        kind = q["kind"] + (f" (severity {q['severity']})" if q["severity"] else "")
        choices = ", ".join(q["options"]) if q["options"] else "any single line"
        waiting = format_duration(q["waiting"])
        expires = q["expires_in"]
        deadline = "no deadline" if expires is None else format_duration(expires)
        asker = q["program"] + (f", task {q['task_id']}" if q.get("task_id") else "")
        lines = [
            q["message_id"],
            f"  asked by:  {asker}",
            f"  kind:      {kind}",
        ]
        if q.get("operation"):
            lines.append(f"  operation: {_one_line(q['operation'])}")
        if q["text"] and q["text"] != q.get("operation"):
            lines.append(f"  text:      {_one_line(q['text'])}")
        lines += [f"  choices:   {choices}", f"  time left: {deadline} (waiting {waiting})"]
        blocks.append("\n".join(lines))
    print("\n\n".join(blocks))


def format_duration(seconds: float) -> str:
    """``45s``, ``1m05s``, ``2h03m``, ``3d04h``: short enough for a table."""
    return whole_duration(int(seconds))


def _or_dash(value: object) -> str:
    return "-" if value is None else str(value)


_EXIT_CODE = re.compile(r"^process exited with code (-?\d+)$")
_KILLED = re.compile(r"^killed by signal \d+ \((\w+)\)$")


def _short_exit(text: str) -> str:
    """``exit 3`` or ``SIGKILL`` for the table; anything else as given."""
    if match := _EXIT_CODE.match(text):
        return f"exit {match.group(1)}"
    if match := _KILLED.match(text):
        return match.group(1)
    return text


def _one_line(text: str) -> str:
    """A child's text on one line: control characters cannot redraw the terminal."""
    return "".join(ch if ch.isprintable() else " " for ch in text)
