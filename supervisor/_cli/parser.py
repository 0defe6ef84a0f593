"""The ``supervise`` command line's parser, importable without the rest.

It imports argparse and nothing heavy, so ``supervise --help``, ``--version``
and a usage error answer without importing trio, pydantic or the supervisor
(see :mod:`supervisor._cli.launch`).
"""

from __future__ import annotations

import argparse
from argparse import SUPPRESS

from .. import __version__
from .._core.sizes import parse_size

__all__ = ["build_parser"]


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _env_pair(text: str) -> tuple[str, str]:
    key, equals, value = text.partition("=")
    if not equals or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="supervise",
        usage=(
            "supervise [options] -- COMMAND [ARGS...]\n"
            "       supervise --config FILE [options]\n"
            "       supervise check-config FILE\n"
            "       supervise ctl [--instance NAME] COMMAND ...  (status, answer, tail ...)\n"
            "       supervise events [--since SEQ] [--follow]     (replay the event journal)\n"
            "       supervise ipc COMMAND ...                    (ts-ipc: send, publish, run ...)\n"
            "       supervise hub                                (one Telegram bot, every instance)"
        ),
        description=(
            "Run COMMAND under a pseudo-terminal, pass its output through untouched "
            "minus the __IPC_START__...__IPC_END__ frames, and turn the frames into "
            "events; or run every program of a config file, kept alive by their "
            "restart policies. Exits with COMMAND's exit status."
        ),
    )
    parser.add_argument("--config", metavar="FILE", help="run the programs of a TOML config file")
    parser.add_argument(
        "--instance",
        metavar="NAME",
        help="name for `supervise ctl --instance` (default: the config file's stem, "
        "or the program's name)",
    )
    parser.add_argument("--events", metavar="PATH", help="append every event to PATH as JSON Lines")
    routing = parser.add_argument_group("routing (added to a config file's [[routes]])")
    routing.add_argument(
        "--notify",
        action="append",
        default=[],
        metavar="SINK",
        help="tell SINK (e.g. tmux:SESSION) about task_failed, task_complete, question "
        "and approval_request (repeatable)",
    )
    routing.add_argument(
        "--route",
        action="append",
        default=[],
        metavar="EVENTS=SINK",
        help="route events matching the comma-separated globs to SINK: tmux:TARGET[:ACTION], "
        "file:PATH, webhook:URL, exec:COMMAND or redis:[URL#]STREAM (repeatable), "
        "e.g. 'task_*=tmux:mgr:notify'",
    )
    routing.add_argument(
        "--webhook",
        action="append",
        default=[],
        metavar="URL",
        help="POST every event to URL, durably (secret from $SUPERVISE_WEBHOOK_SECRET)",
    )
    routing.add_argument(
        "--exec",
        action="append",
        default=[],
        metavar="COMMAND",
        help="run COMMAND for each task_failed, task_complete, question and approval_request, "
        "with the event JSON on stdin (repeatable)",
    )
    routing.add_argument(
        "--no-journal",
        action="store_true",
        help="do not keep the event journal (no replay, no delivery after a restart)",
    )
    routing.add_argument(
        "--journal", metavar="PATH", help="the journal database (default: in $XDG_STATE_HOME)"
    )
    telegram = parser.add_argument_group("Telegram (a config file's [telegram])")
    telegram.add_argument(
        "--telegram",
        action="store_true",
        help="report to a Telegram chat and answer questions from it: token in "
        "$TELEGRAM_BOT_TOKEN, chat in $TELEGRAM_CHAT_ID, who may answer in "
        "$TELEGRAM_ALLOWED_USERS (ids or @names, comma-separated)",
    )
    telegram.add_argument(
        "--telegram-api-url",
        metavar="URL",
        help="the Bot API's base URL (default https://api.telegram.org)",
    )
    bus = parser.add_argument_group("The event bus across machines (Redis Streams)")
    bus.add_argument(
        "--bus",
        metavar="URL",
        help="publish every event to Redis Streams (redis://HOST:6379/0) for a supervise hub,"
        " and take the answers it sends",
    )
    bus.add_argument(
        "--host", metavar="NAME", help="this machine's name on the bus (default: the hostname)"
    )
    metrics = parser.add_argument_group("Prometheus metrics (a config file's [metrics])")
    metrics.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve /metrics and /healthz on PORT (0: any free port, printed on stderr)",
    )
    metrics.add_argument(
        "--metrics-host", metavar="HOST", help="address to listen on (default 127.0.0.1)"
    )
    metrics.add_argument("--metrics-path", metavar="PATH", help="default /metrics")
    metrics.add_argument(
        "--no-namespace-label",
        action="store_true",
        help="do not break task metrics down by namespace",
    )
    metrics.add_argument(
        "--pushgateway",
        metavar="URL",
        help="push the final metrics to this Prometheus Pushgateway when supervise ends",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="do not report invalid frames on stderr"
    )
    parser.add_argument("--version", action="version", version=f"supervise {__version__}")
    one = parser.add_argument_group("the one-program form (settings of a config file's program)")
    add = one.add_argument
    add(
        "--name",
        default=SUPPRESS,
        help="program name in events (default: the script or package COMMAND runs, "
        "not its interpreter or launcher)",
    )
    add("--cwd", default=SUPPRESS, metavar="DIR", help="run COMMAND in DIR")
    add(
        "--env",
        action="append",
        type=_env_pair,
        default=SUPPRESS,
        metavar="KEY=VALUE",
        help="add to COMMAND's environment (repeatable)",
    )
    add(
        "--pass-env",
        action="append",
        default=SUPPRESS,
        metavar="NAME",
        help="let COMMAND inherit NAME although it holds a secret supervise uses "
        "(the Telegram token, a webhook secret); repeatable",
    )
    add(
        "--no-pty",
        dest="pty",
        action="store_false",
        default=SUPPRESS,
        help="use pipes instead of a pty; the child's stderr goes to supervise's stderr",
    )
    add(
        "--keep-frames",
        action="store_true",
        default=SUPPRESS,
        help="leave frames in the passthrough (to nest one supervisor under another)",
    )
    add(
        "--max-frame-bytes",
        type=_size,
        default=SUPPRESS,
        metavar="SIZE",
        help="larger frame payloads are reported as invalid and shown as output (default 1M)",
    )
    add(
        "--stop-timeout",
        type=float,
        default=SUPPRESS,
        metavar="SECONDS",
        help="after a stop signal, SIGKILL the child's group this much later (default 10)",
    )
    add(
        "--forward-eof",
        action="store_true",
        default=SUPPRESS,
        help="pass the end of supervise's stdin on to the child (default: keep its input open)",
    )
    add(
        "--actionable-frames",
        choices=["line-start", "anywhere", "never"],
        default=SUPPRESS,
        help="which question/approval frames may be answered: those that start a line"
        " (default; frames after other text are usually relayed agent output), any, or none",
    )
    add(
        "--on-approval-ignored",
        choices=["report", "stop"],
        default=SUPPRESS,
        help="when the program goes on with a task whose approval was denied:"
        " report it (default) or also stop the program",
    )
    add(
        "--restart",
        choices=["no", "on-failure", "always"],
        default=SUPPRESS,
        help="restart policy (default: no)",
    )
    add(
        "--start-seconds",
        type=float,
        default=SUPPRESS,
        metavar="SECONDS",
        help="a run shorter than this is a failed start (default 1)",
    )
    add(
        "--stop-signal",
        default=SUPPRESS,
        metavar="SIGNAL",
        help="signal that stops the program when supervise stops it (default TERM)",
    )
    for key, kind, text in (
        ("initial", float, "first restart delay in seconds (default 1)"),
        ("factor", float, "each further delay is this many times longer (default 2)"),
        ("cap", float, "longest delay in seconds (default 60)"),
        ("reset-after", float, "a run this long resets the delays (default 60)"),
    ):
        add(
            f"--backoff-{key}",
            dest=f"backoff.{key.replace('-', '_')}",
            type=kind,
            default=SUPPRESS,
            metavar="N",
            help=text,
        )
    add(
        "--backoff-jitter",
        dest="backoff.jitter",
        choices=["full", "equal", "none"],
        default=SUPPRESS,
        help="jitter of restart delays (default equal)",
    )
    add(
        "--max-failures",
        dest="give_up.max_failures",
        type=int,
        default=SUPPRESS,
        metavar="N",
        help="FATAL after N failed starts within --failure-window (default 5; 0 never)",
    )
    add(
        "--failure-window",
        dest="give_up.window",
        type=float,
        default=SUPPRESS,
        metavar="SECONDS",
        help="window of the give-up rule (default 300)",
    )
    add(
        "--stall-timeout",
        type=float,
        default=SUPPRESS,
        metavar="SECONDS",
        help="no output and no frame for this long is a stall (default 0: off)",
    )
    add(
        "--stall-action",
        choices=["none", "restart"],
        default=SUPPRESS,
        help="what a stall does besides its process_stalled event (default none)",
    )
    add(
        "--task-timeout",
        type=float,
        default=SUPPRESS,
        metavar="SECONDS",
        help="a task running longer emits task_timeout (default 0: off)",
    )
    add(
        "--task-timeout-action",
        choices=["none", "restart"],
        default=SUPPRESS,
        help="what a task timeout does besides its event (default none)",
    )
    add(
        "--approve-text",
        dest="answers.approve",
        default=SUPPRESS,
        metavar="TEXT",
        help="written to the child's stdin to approve a request (default y)",
    )
    add(
        "--deny-text",
        dest="answers.deny",
        default=SUPPRESS,
        metavar="TEXT",
        help="written to deny a request (default n)",
    )
    add(
        "--approval-timeout",
        dest="answers.approval_timeout",
        choices=["approve", "deny"],
        default=SUPPRESS,
        help="the answer to an approval nobody answers in time (default deny)",
    )
    add(
        "--log-file",
        dest="log.path",
        default=SUPPRESS,
        metavar="PATH",
        help="also write the plain output to PATH, whole lines only",
    )
    add(
        "--log-timestamps",
        dest="log.timestamps",
        action="store_true",
        default=SUPPRESS,
        help="prefix each logged line with its time",
    )
    add(
        "--log-max-bytes",
        dest="log.max_bytes",
        type=_size,
        default=SUPPRESS,
        metavar="SIZE",
        help="rotate the log at this size (default 10M; 0 never)",
    )
    add(
        "--log-backups",
        dest="log.backups",
        type=int,
        default=SUPPRESS,
        metavar="N",
        help="rotated logs to keep (default 5)",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser
