"""The ``ts-ipc`` command (also ``supervise ipc``): the original's interface, kept.

``send`` and ``publish`` are what people and agents type most, and the
original was a shell script that waited only for tmux; so this module and
what those two commands import use the standard library only (sqlite3,
subprocess). trio comes in for ``run`` and ``serve``, pydantic only for a
subscription with a filter.

Exit statuses: 0 done (a message queued for a session that does not exist
yet counts: it is on record and will be delivered), 1 a delivery failed or
a workflow step failed with status 1, 2 a usage or input error (one line on
stderr, naming what is wrong), otherwise a failed workflow step's status.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO, cast

from .publishing import publish
from .store import ACTIONS, DEFAULT_TTL, KINDS, Message, Store, Subscription

__all__ = ["main"]

_RULE = "═" * 51


class _ArgumentError(Exception):
    """A bad argument or input file: printed as ``ts-ipc: MESSAGE``, exit 2."""


def build_parser(prog: str = "ts-ipc", only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; with ``only``, just that command's (argparse's set-up
    looks up translations for every message of every subcommand, ~25 ms).
    """

    def wanted(name: str) -> bool:
        return only is None or name == only

    parser = argparse.ArgumentParser(
        prog=prog,
        description="Messages, subscriptions and workflows between tmux sessions.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    if wanted("send"):
        send = commands.add_parser("send", help="send a message to a session")
        send.add_argument("source", metavar="FROM")
        send.add_argument("target", metavar="TO")
        send.add_argument("message", metavar="MESSAGE")
        send.add_argument("kind", metavar="TYPE", nargs="?", default="command", choices=KINDS)
        _delivery_options(send)

    if wanted("subscribe"):
        subscribe = commands.add_parser("subscribe", help="SESSION hears EVENT (a glob)")
        subscribe.add_argument("session", metavar="SESSION")
        subscribe.add_argument("event", metavar="EVENT")
        subscribe.add_argument(
            "action", metavar="ACTION", nargs="?", default="notify", choices=ACTIONS
        )
        subscribe.add_argument(
            "--filter", metavar="EXPR", help="only events the route filter EXPR accepts"
        )
        subscribe.add_argument(
            "--allow-child-commands",
            action="store_true",
            help="a command subscription runs the message of a supervised program's event too",
        )

    if wanted("unsubscribe"):
        unsubscribe = commands.add_parser("unsubscribe", help="stop SESSION hearing EVENT")
        unsubscribe.add_argument("session", metavar="SESSION")
        unsubscribe.add_argument("event", metavar="EVENT")

    if wanted("publish"):
        publish = commands.add_parser("publish", help="every subscriber of EVENT gets DATA")
        publish.add_argument("source", metavar="SOURCE")
        publish.add_argument("event", metavar="EVENT")
        publish.add_argument("data", metavar="DATA", nargs="?", default="")
        _delivery_options(publish)

    if wanted("workflow"):
        workflow = commands.add_parser(
            "workflow", help="define a workflow of SESSION:COMMAND steps"
        )
        workflow.add_argument("name", metavar="NAME")
        workflow.add_argument("steps", metavar="SESSION:COMMAND", nargs="+")

    if wanted("run"):
        run = commands.add_parser("run", help="run a workflow; exit with its first failure")
        run.add_argument("name", metavar="NAME")
        run.add_argument(
            "--keep-going", action="store_true", help="run later steps after a failure"
        )

    if wanted("queue"):
        queue = commands.add_parser("queue", help="messages and where each stands")
        queue.add_argument("--state", choices=("queued", "delivered", "failed", "expired"))
        queue.add_argument("-n", "--limit", type=int, default=50, help="at most this many (50)")
        queue.add_argument("--json", action="store_true", help="JSON lines")

    if wanted("subscriptions"):
        subscriptions = commands.add_parser("subscriptions", help="subscriptions by session")
        subscriptions.add_argument("--json", action="store_true", help="JSON lines")

    if wanted("events"):
        events = commands.add_parser("events", help="the last N lines of the log")
        events.add_argument("lines", metavar="N", nargs="?", type=int, default=20)
        events.add_argument("--json", action="store_true", help="JSON lines (for Loki or jq)")
        events.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")

    if wanted("pipeline"):
        pipeline = commands.add_parser("pipeline", help="TARGET follows SOURCE's deployments")
        pipeline.add_argument("source", metavar="SOURCE")
        pipeline.add_argument("target", metavar="TARGET")

    if wanted("read"):
        read = commands.add_parser("read", help="the data messages SESSION received")
        read.add_argument("session", metavar="SESSION")
        read.add_argument("-f", "--follow", action="store_true", help="keep printing new ones")

    if wanted("deliver"):
        commands.add_parser("deliver", help="one delivery pass (for a tmux hook)")

    if wanted("serve"):
        serve = commands.add_parser("serve", help="deliver waiting messages as sessions appear")
        serve.add_argument("--interval", type=float, default=0.5, help="seconds between passes")

    if wanted("migrate"):
        migrate = commands.add_parser(
            "migrate", help="import the original's subscriptions/workflows"
        )
        migrate.add_argument(
            "--from",
            dest="origin",
            type=Path,
            default=Path.home() / ".config" / "ts" / "ipc",
            help="the original's directory (~/.config/ts/ipc)",
        )
    return parser


def _delivery_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ttl",
        type=float,
        default=DEFAULT_TTL,
        metavar="SECONDS",
        help="expire the message if not delivered by then (3600)",
    )
    parser.add_argument(
        "--if-busy",
        choices=("wait", "fail"),
        default="wait",
        help="a command for a pane that is not at a prompt: wait for it (default) or fail",
    )


def main(argv: Sequence[str] | None = None, prog: str = "ts-ipc") -> int:
    """Run one ts-ipc command; return its exit status."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    only = arguments[0] if arguments and arguments[0] in _COMMANDS else None
    args = build_parser(prog, only).parse_args(arguments)
    try:
        with Store() as store:
            # A text stream in all but name: typing.TextIO is a class of its own.
            out = cast(TextIO, TerminalSafe(sys.stdout))
            return _COMMANDS[args.command](store, args, out)
    except _ArgumentError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1


class TerminalSafe(io.TextIOBase):
    """Writes to ``stream`` with every non-printable character but ``\n`` escaped.

    What ts-ipc prints comes partly from strangers: a supervised child picks
    its event names and texts, which reach the queue, the log and the data
    files. Written raw, an ESC or a C1 control (``\x9b``) would drive the
    terminal of whoever runs ``ts-ipc queue``. Escaped as ``\u001b`` they
    are visible, and a JSON line stays valid JSON (the escape is JSON's own).
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        if not text.isprintable():
            text = "".join(ch if ch == "\n" or ch.isprintable() else _escape(ch) for ch in text)
        return self._stream.write(text)

    def flush(self) -> None:
        self._stream.flush()


def _escape(ch: str) -> str:
    code = ord(ch)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    high, low = divmod(code - 0x10000, 0x400)  # JSON's way: a surrogate pair
    return f"\\u{0xD800 + high:04x}\\u{0xDC00 + low:04x}"


def console() -> None:
    """Entry point of the ``ts-ipc`` console script."""
    sys.exit(main())


# -- send / publish ----------------------------------------------------------


def _check_session(name: str, what: str) -> str:
    if not name or not name.isprintable() or ":" in name or "." in name.lstrip("$"):
        raise _ArgumentError(f"{what} {name!r} is not a tmux session name")
    return name


def _send(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    from .deliver import deliver_waiting

    _check_session(args.target, "TO")
    message = store.enqueue(
        args.source, args.target, args.kind, args.message, ttl=args.ttl, if_busy=args.if_busy
    )
    final = _outcome_of(message, deliver_waiting(store, [args.target]))
    out.write(_describe(final) + "\n")
    return 1 if final.state in ("failed", "expired") else 0


def _outcome_of(message: Message, tried: list[Message]) -> Message:
    """The message as its delivery left it; untried, it waits behind an older one."""
    for candidate in tried:
        if candidate.id == message.id:
            return candidate
    blocking = [m for m in tried if m.target == message.target and m.state == "queued"]
    if blocking:
        reason = f"behind {blocking[-1].id}: {blocking[-1].last_error}"
        return message._replace(last_error=reason)
    return message


def _describe(message: Message) -> str:
    if message.state == "delivered":
        return f"✓ {message.id} delivered to {message.target} [{message.kind}] ({message.via})"
    if message.state == "queued":
        why = f": {message.last_error}" if message.last_error else ""
        return f"… {message.id} queued for {message.target} [{message.kind}]{why}"
    return f"✗ {message.id} {message.state} [{message.kind}] {message.target}: {message.last_error}"


def _publish(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    from .deliver import deliver_waiting

    messages = publish(
        store, args.source, args.event, args.data, ttl=args.ttl, if_busy=args.if_busy
    )
    if not messages:
        out.write(f"no subscribers for {args.event!r}\n")
        return 0
    tried = deliver_waiting(store, dict.fromkeys(m.target for m in messages))
    failed = 0
    for message in messages:
        final = _outcome_of(message, tried)
        failed += final.state in ("failed", "expired")
        out.write(_describe(final) + "\n")
    return 1 if failed else 0


# -- subscriptions -----------------------------------------------------------


def _subscribe(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    _check_session(args.session, "SESSION")
    if args.filter is not None:
        from .filtering import check_filter

        problem = check_filter(args.filter)
        if problem:
            raise _ArgumentError(f"--filter: {problem}")
    store.subscribe(
        Subscription(
            args.session,
            args.event,
            args.action,
            filter=args.filter,
            allow_child_commands=args.allow_child_commands,
        )
    )
    out.write(f"✓ {args.session} subscribed to {args.event} ({args.action})\n")
    return 0


def _unsubscribe(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    if not store.unsubscribe(args.session, args.event):
        out.write(f"{args.session} was not subscribed to {args.event}\n")
        return 1
    out.write(f"✓ {args.session} unsubscribed from {args.event}\n")
    return 0


def _subscriptions(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    subscriptions = store.subscriptions()
    if args.json:
        for s in subscriptions:
            out.write(json.dumps(_as_dict(s), ensure_ascii=False) + "\n")
        return 0
    out.write(f"{_RULE}\n           Event Subscriptions\n{_RULE}\n")
    session = None
    for s in subscriptions:
        if s.session != session:
            session = s.session
            out.write(f"  ● {session}\n")
        extra = f" if {s.filter}" if s.filter else ""
        out.write(f"    → {s.event} ({s.action}){extra}\n")
    if not subscriptions:
        out.write("  (none)\n")
    return 0


def _as_dict(s: Subscription) -> dict[str, Any]:
    return {
        "session": s.session,
        "event": s.event,
        "action": s.action,
        "filter": s.filter,
        "allow_child_commands": s.allow_child_commands,
    }


# -- queue / events / read ---------------------------------------------------


def _queue(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    messages = store.messages(limit=args.limit, state=args.state)
    if args.json:
        for message in messages:
            out.write(json.dumps(message.as_dict(), ensure_ascii=False) + "\n")
        return 0
    out.write(f"{_RULE}\n           Message Queue\n{_RULE}\n")
    for m in messages:
        body = m.body if len(m.body) <= 40 else m.body[:40] + "..."
        out.write(f"  ● {m.source} → {m.target} [{m.state}]\n")
        out.write(f"    Type: {m.kind}\n")
        out.write(f"    Message: {_one_line(body)}\n")
        detail = f"    Id: {m.id}  Attempts: {m.attempts}"
        if m.via:
            detail += f"  Via: {m.via}"
        out.write(detail + "\n")
        if m.last_error:
            out.write(f"    Last error: {_one_line(m.last_error)}\n")
    if not messages:
        out.write("  (empty)\n")
    return 0


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _events(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    if args.lines < 0:
        raise _ArgumentError(f"N must not be negative, not {args.lines}")
    rows = store.log_tail(args.lines)
    for _seq, line, record in rows:
        out.write((record if args.json else line) + "\n")
    out.flush()
    if not args.follow:
        return 0
    last = rows[-1][0] if rows else store.last_log_seq()
    while True:
        time.sleep(0.2)
        for entry_seq, line, record in store.log_after(last):
            out.write((record if args.json else line) + "\n")
            last = entry_seq
        out.flush()


def _read(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    from .deliver import data_file

    path = data_file(store, _check_session(args.session, "SESSION"))
    offset = 0
    while True:
        try:
            with open(path, "rb") as file:
                file.seek(offset)
                chunk = file.read()
        except FileNotFoundError:
            chunk = b""
        complete = chunk[: chunk.rfind(b"\n") + 1]
        offset += len(complete)
        out.write(complete.decode("utf-8", "replace"))
        out.flush()
        if not args.follow:
            return 0
        time.sleep(0.2)


# -- workflows ---------------------------------------------------------------


def _workflow(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    from .workflow import WorkflowError, define_workflow

    try:
        path = define_workflow(store.home, args.name, list(args.steps))
    except WorkflowError as exc:
        raise _ArgumentError(str(exc)) from None
    out.write(f"✓ workflow {args.name} ({len(args.steps)} steps): {path}\n")
    return 0


def _run(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    from .runs import run_named_workflow
    from .workflow import WorkflowError

    try:
        return run_named_workflow(store, args.name, keep_going=args.keep_going, out=out)
    except WorkflowError as exc:
        raise _ArgumentError(str(exc)) from None


def _pipeline(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    from .workflow import WorkflowError, define_workflow

    source = _check_session(args.source, "SOURCE")
    target = _check_session(args.target, "TARGET")
    # Only SOURCE's deployments: ts-ipc publish SOURCE deployment ... (or its
    # supervised program of that name).
    only_source = f"program == {json.dumps(source)}"
    store.subscribe(Subscription(target, "deployment", "notify", filter=only_source))
    name = f"deploy-{source}-to-{target}"
    steps = [
        f"{source}:npm run build",
        f"{source}:npm test",
        f"{target}:git pull",
        f"{target}:docker-compose up -d",
    ]
    try:
        path = define_workflow(store.home, name, steps)
    except WorkflowError as exc:
        raise _ArgumentError(str(exc)) from None
    out.write(f"✓ {target} subscribed to {source}'s deployment events (notify)\n")
    out.write(f"✓ workflow {name}: {path} (edit the commands to fit)\n")
    return 0


# -- delivery agents ---------------------------------------------------------


def _deliver(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    from .deliver import deliver_waiting

    for message in deliver_waiting(store):
        if message.state != "queued":
            out.write(_describe(message) + "\n")
    return 0


def _serve(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    from .serve import serve_forever

    serve_forever(store.home, interval=args.interval, out=out)
    return 0


def _migrate(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    from .migrate import MigrationError, migrate

    try:
        report = migrate(store, args.origin)
    except MigrationError as exc:
        raise _ArgumentError(str(exc)) from None
    for line in report:
        out.write(line + "\n")
    return 0


_COMMANDS = {
    "send": _send,
    "subscribe": _subscribe,
    "unsubscribe": _unsubscribe,
    "publish": _publish,
    "workflow": _workflow,
    "run": _run,
    "queue": _queue,
    "subscriptions": _subscriptions,
    "events": _events,
    "pipeline": _pipeline,
    "read": _read,
    "deliver": _deliver,
    "serve": _serve,
    "migrate": _migrate,
}


if __name__ == "__main__":  # pragma: no cover
    # python -m: run the package's module, not this copy under __main__,
    # so the modules it imports share its classes.
    from supervisor._ipc.cli import main as package_main

    sys.exit(package_main())
