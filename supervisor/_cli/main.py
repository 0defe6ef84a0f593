"""The ``supervise`` command line.

``main(argv)`` parses options, sets up supervise's terminal and streams, runs
the program under trio and returns the exit status: the child's own, 128+N if
signal N killed it, 127/126 if it could not be started, 2 for bad usage.
``trio.run`` is called only here.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import itertools
import os
import signal
import socket
import sys
from argparse import SUPPRESS
from collections.abc import AsyncIterator, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio
from pydantic import ValidationError

from .. import __version__
from .._supervisor import Supervisor

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
from .._config import (
    JournalConfig,
    MetricsConfig,
    ProgramConfig,
    SupervisorConfig,
    TelegramConfig,
    load_config,
    parse_size,
)
from .._control.server import (
    RequestsInFlight,
    serve_control,
    socket_answers,
)
from .._core.errors import ConfigError, SinkError
from .._core.state import ProcessState
from .._paths import control_dir, prepare_control_dir, validate_instance_name
from .._process.child import shell_status
from .._process.prefix import PrefixedOutput, program_prefixes
from .._process.reaper import become_subreaper, run_orphan_reaper, stop_orphans
from .._process.runner import TerminalSettings
from .._process.streams import fill_closed_standard_fds, open_input_stream, open_output_stream
from .._routing.config import (
    DEFAULT_NOTIFY_EVENTS,
    FileRouteConfig,
    parse_route_shortcut,
    parse_sink_spec,
)
from .._routing.factory import build_route_sink
from .notices import LineAwareOutput, NoticeGate, same_terminal
from .terminal import (
    holding_notices,
    install_log_handler,
    raw_terminal,
    terminal_modes,
    warn,
    window_size,
)

__all__ = ["build_parser", "main"]

USAGE_ERROR = 2
# Events wait here for the sinks; the decoder never waits unless the sinks
# fall this far behind.
_EVENT_BUFFER = 16384
# At most this many events go to a sink in one call.
_BATCH = 1024
_TELEGRAM_DRAIN = 30.0
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


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
            "       supervise events [--since SEQ] [--follow]     (replay the event journal)"
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


_NOT_PROGRAM_FLAGS = frozenset(
    {"config", "instance", "events", "quiet", "command", "notify", "route", "webhook", "exec"}
    | {"no_journal", "journal", "metrics_port", "metrics_host", "metrics_path"}
    | {"no_namespace_label", "pushgateway", "telegram", "telegram_api_url"}
)


def _flag_values(args: argparse.Namespace) -> dict[str, Any]:
    """The one-program settings given as flags, nested by dotted destination."""
    values: dict[str, Any] = {}
    for dest, value in vars(args).items():
        if dest in _NOT_PROGRAM_FLAGS:
            continue
        node = values
        *parents, leaf = dest.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = dict(value) if dest == "env" else value
    return values


def _flag_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Field path -> the flag the user typed, for error messages."""
    names = {"command": "COMMAND"}
    for action in parser._actions:
        if action.option_strings and action.dest not in ("help", "version"):
            names[action.dest] = action.option_strings[-1]
    return names


def _check_config(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="supervise check-config", description="Validate a config file without running it."
    )
    parser.add_argument("file", metavar="FILE")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.file)
        for route in config.routes:
            # What the sinks check when built: commands and tmux on PATH, URLs.
            try:
                build_route_sink(route)
            except ConfigError as exc:
                raise ConfigError(f"{args.file}: {exc.where}", exc.problem) from None
        if config.telegram is not None:
            try:
                config.telegram.resolved()
            except ConfigError as exc:
                raise ConfigError(f"{args.file}: {exc.where}", exc.problem) from None
    except ConfigError as exc:
        warn(str(exc))
        return USAGE_ERROR
    names = ", ".join(config.programs)
    count = len(config.programs)
    summary = f"{count} program{'s' if count != 1 else ''}: {names}"
    if config.telegram is not None:
        summary += "; telegram"
    if config.routes:
        routes = len(config.routes)
        route_names = ", ".join(route.name for route in config.routes)
        summary += f"; {routes} route{'s' if routes != 1 else ''}: {route_names}"
    print(f"{args.file}: ok ({summary})")
    secrets = config.secret_env()
    if secrets:
        passed = [
            f"{name}: {', '.join(p for p in program.pass_env if p in secrets)}"
            for name, program in config.programs.items()
            if set(program.pass_env) & set(secrets)
        ]
        also = f" (passed on to {'; '.join(passed)})" if passed else ""
        print(f"kept from the programs: {', '.join(secrets)}{also}")
    return 0


def _terminal_settings() -> TerminalSettings:
    input_is_terminal = os.isatty(0)
    output_is_terminal = os.isatty(1)
    return TerminalSettings(
        modes=terminal_modes(0) or terminal_modes(1),
        size=window_size(0, 1, 2),
        output_is_terminal=output_is_terminal,
        input_is_terminal=input_is_terminal,
    )


async def _reap_orphans_until(done: trio.Event) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_orphan_reaper)
        await done.wait()
        nursery.cancel_scope.cancel()


async def _stop_orphans(signals: AsyncIterator[int], grace: float) -> None:
    """Stop the orphans; a stop signal meanwhile ends their grace at once."""
    hurry = trio.Event()

    async def listen() -> None:
        async for signum in signals:
            if signum in _STOP_SIGNALS:
                hurry.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(listen)
        await stop_orphans(grace, hurry)
        nursery.cancel_scope.cancel()


async def _forward_signals(signals: AsyncIterator[int], sup: Supervisor, single: bool) -> None:
    """Stop signals stop the programs; SIGWINCH resizes the one program's pty.

    The one-program form passes the very signal on to the child's group, as if
    it had been sent to the child; several programs each get their own
    stop_signal. A second SIGINT kills at once, and ends the wait for routes
    to deliver what they hold; so does any stop signal once every program
    has ended.
    """
    programs = list(sup.programs.values())
    interrupted = False
    async for signum in signals:
        if signum == signal.SIGWINCH:
            size = window_size(0, 1, 2)
            if size is not None:
                for program in programs:
                    program.resize(*size)
            continue
        for program in programs:
            if interrupted and signum == signal.SIGINT:
                program.kill()
            else:
                program.request_stop(signum if single else None)
        if (interrupted and signum == signal.SIGINT) or all(p.settled for p in programs):
            sup.skip_drain()  # nothing left to stop: the signal means "stop waiting"
        interrupted = interrupted or signum == signal.SIGINT


async def _run(
    sup: Supervisor,
    single: bool,
    terminal: TerminalSettings,
    output: trio.abc.SendStream,
    stdin: trio.abc.ReceiveStream | None,
    socket_path: Path | None,
    metrics: _MetricsServing | None,
    notices: NoticeGate | None = None,
) -> int:
    """Run the programs to the end; return supervise's exit status.

    ``single`` is the one-program form: its output is not prefixed, it gets
    supervise's stdin and keystrokes, and supervise exits with its status.
    """
    programs = list(sup.programs.values())
    configs = [program.config for program in programs]
    requests = RequestsInFlight()
    become_subreaper()
    reaper_done = trio.Event()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_reap_orphans_until, reaper_done)
            async with trio.open_nursery() as control_nursery:
                if socket_path is not None:
                    await control_nursery.start(
                        partial(serve_control, requests=requests), socket_path, sup
                    )
                if metrics is not None:
                    await control_nursery.start(_serve_metrics_and_push, sup, metrics, sup.instance)
                if notices is not None:
                    await control_nursery.start(notices.serve)
                with trio.open_signal_receiver(*_STOP_SIGNALS, signal.SIGWINCH) as signals:
                    async with trio.open_nursery() as signal_nursery:
                        signal_nursery.start_soon(_forward_signals, signals, sup, single)
                        await sup.run()
                        signal_nursery.cancel_scope.cancel()
                    # Helpers the children left behind go when supervise goes.
                    grace = max(config.stop_timeout for config in configs)
                    await _stop_orphans(signals, grace)
                reaper_done.set()
                with trio.move_on_after(5):
                    await requests.wait_idle()  # a `ctl stop` that ended it all gets its reply
                control_nursery.cancel_scope.cancel()
        lost = [program for program in programs if program.output_lost]
        if lost:
            warn(f"standard output {lost[0].output_problem}; stopped the child")
    finally:
        with trio.CancelScope(shield=True):
            await output.aclose()
            if stdin is not None:
                await stdin.aclose()
    results = sup.results
    if single:
        returncode = results.get(programs[0].name)
        return USAGE_ERROR if returncode is None else shell_status(returncode)
    clean = all(
        program.state is ProcessState.STOPPED
        or (program.state is ProcessState.EXITED and results.get(program.name) == 0)
        for program in programs
    )
    return 0 if clean else 1


def _build(
    configs: list[ProgramConfig],
    file_config: SupervisorConfig | None,
    routes: list[FileRouteConfig],
    args: argparse.Namespace,
    terminal: TerminalSettings,
    output: trio.abc.SendStream,
    stdin: trio.abc.ReceiveStream | None,
    socket_path: Path | None,
) -> tuple[Supervisor, _MetricsServing | None]:
    """The Supervisor for this command line, and where its metrics go (if anywhere).

    Raises:
        ConfigError: a route's sink refused its settings, the journal cannot
            be opened, or the metrics port cannot be bound.
    """
    single = file_config is None
    outputs = _program_outputs(configs, output, terminal, single)
    journal: JournalConfig = file_config.journal if file_config is not None else JournalConfig()
    if args.no_journal:
        journal = journal.model_copy(update={"enabled": False})
    elif args.journal:
        journal = journal.model_copy(update={"path": Path(args.journal).expanduser()})
    metrics = _metrics_config(file_config, args)
    registry = None
    if metrics.port is not None or metrics.pushgateway is not None:
        from prometheus_client import CollectorRegistry  # only when asked: slow to import

        registry = CollectorRegistry(auto_describe=False)
    sup = Supervisor(
        configs,
        routes=[*(file_config.routes if file_config is not None else ()), *routes],
        journal=journal,
        # The instance's name: the control socket's, so `ctl --instance` and
        # `events --instance` agree (`cat-2` for a second `supervise -- cat`).
        instance=socket_path.stem if socket_path is not None else args.instance,
        outputs=outputs,
        input=stdin,
        terminal=terminal if single else _DETACHED,
        keep_alive=not single,
        drain_timeout=file_config.drain_timeout if file_config is not None else None,
        report_invalid_frames=not args.quiet,
        prefix_reports=not single,
        registry=registry,
        namespace_label=metrics.namespace_label,
    )
    _add_telegram(sup, file_config, args)
    if registry is None:
        return sup, None
    from .._metrics.server import bind_metrics_socket

    sock = bind_metrics_socket(metrics.host, metrics.port) if metrics.port is not None else None
    return sup, _MetricsServing(metrics, registry, sock)


def _add_telegram(
    sup: Supervisor, file_config: SupervisorConfig | None, args: argparse.Namespace
) -> None:
    """With --telegram or a [telegram] table: the bot's route and its poller."""
    config = file_config.telegram if file_config is not None else None
    if config is None and not (args.telegram or args.telegram_api_url):
        return
    config = config or TelegramConfig()
    if args.telegram_api_url:
        config = config.model_copy(update={"api_url": args.telegram_api_url})
    from adapters.telegram import TelegramBot  # only when asked: httpx is not free to import

    bot = TelegramBot(sup, config.resolved(), report=warn)
    sup.add_route(bot.route_config(), bot.sink)
    sup.add_service(bot.run)
    # At one message a second, the last news of a run needs time to go out
    # (a second Control-C stops waiting).
    sup.drain_timeout = max(sup.drain_timeout, _TELEGRAM_DRAIN)


@dataclasses.dataclass
class _MetricsServing:
    config: MetricsConfig
    registry: CollectorRegistry
    sock: socket.socket | None


def _metrics_config(
    file_config: SupervisorConfig | None, args: argparse.Namespace
) -> MetricsConfig:
    """The file's [metrics], with the command line's flags on top."""
    config = file_config.metrics if file_config is not None else MetricsConfig()
    flags = {
        "port": args.metrics_port,
        "host": args.metrics_host,
        "path": args.metrics_path,
        "pushgateway": args.pushgateway,
        "namespace_label": False if args.no_namespace_label else None,
    }
    given = {key: value for key, value in flags.items() if value is not None}
    if not given:
        return config
    try:
        return MetricsConfig.model_validate({**config.model_dump(), **given})
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        flag = "--" + {"port": "metrics-port", "host": "metrics-host", "path": "metrics-path"}.get(
            str(first["loc"][0]), str(first["loc"][0])
        )
        raise ConfigError(flag, first["msg"][:1].lower() + first["msg"][1:]) from None


async def _serve_metrics_and_push(
    sup: Supervisor,
    metrics: _MetricsServing,
    instance: str,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the metrics while supervise runs; push them once at the end if asked."""
    from .._metrics.server import serve_metrics

    config = metrics.config
    try:
        async with trio.open_nursery() as nursery:
            if metrics.sock is not None:

                def health() -> dict[str, str]:
                    return {name: program.state.value for name, program in sup.programs.items()}

                address = await nursery.start(
                    partial(serve_metrics, path=config.path), metrics.sock, metrics.registry, health
                )
                if config.port == 0:
                    warn(f"metrics at {address.url}")
            task_status.started()
            await trio.sleep_forever()  # until supervise ends and cancels this
    finally:
        if config.pushgateway is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                await _push(config.pushgateway, metrics.registry, instance)


async def _push(url: str, registry: CollectorRegistry, instance: str) -> None:
    from prometheus_client import push_to_gateway

    push = partial(
        push_to_gateway,
        url,
        job="supervise",
        registry=registry,
        grouping_key={"instance": instance},
    )
    try:
        await trio.to_thread.run_sync(push)
    except Exception as exc:  # the run is over either way: say so, exit as the child did
        warn(f"pushgateway {url}: push failed: {exc}")


def _cli_routes(args: argparse.Namespace) -> list[FileRouteConfig]:
    """The routes of --events, --notify, --route, --webhook and --exec.

    Raises:
        ConfigError: naming the flag and what is wrong with it.
    """
    specs: list[tuple[str, dict[str, Any]]] = []
    if args.events:
        # Lossless like the log it replaces: a full queue waits, never drops.
        specs.append(
            (
                "--events",
                {
                    "name": "events",
                    "sink": {"type": "file", "path": args.events},
                    "overflow": "block",
                    "queue": 16384,
                },
            )
        )
    try:
        for number, spec in enumerate(args.notify, 1):
            values = {"events": DEFAULT_NOTIFY_EVENTS, "sink": parse_sink_spec(spec)}
            specs.append(("--notify", {"name": _numbered("notify", number), **values}))
        for number, text in enumerate(args.route, 1):
            specs.append(
                ("--route", {"name": _numbered("route", number), **parse_route_shortcut(text)})
            )
    except ValueError as exc:
        raise ConfigError("--notify/--route", str(exc)) from None
    for number, url in enumerate(args.webhook, 1):
        sink = {"type": "webhook", "url": url}
        if os.environ.get("SUPERVISE_WEBHOOK_SECRET"):
            sink["secret_env"] = "SUPERVISE_WEBHOOK_SECRET"
        specs.append(
            ("--webhook", {"name": _numbered("webhook", number), "sink": sink, "durable": True})
        )
    for number, command in enumerate(args.exec, 1):
        sink = {"type": "command", "command": command}
        values = {"events": DEFAULT_NOTIFY_EVENTS, "sink": sink}
        specs.append(("--exec", {"name": _numbered("exec", number), **values}))
    routes = []
    for flag, values in specs:
        try:
            routes.append(FileRouteConfig.model_validate(values))
        except ValidationError as error:
            first = error.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"] if part not in _SINK_TAGS)
            raise ConfigError(f"{flag} {values['name']}: {where}", first["msg"]) from None
    return routes


_SINK_TAGS = ("file", "tmux", "command", "webhook", "redis")


def _numbered(kind: str, number: int) -> str:
    return kind if number == 1 else f"{kind}-{number}"


# Several programs share the terminal: none gets keystrokes or echo.
_DETACHED = TerminalSettings()


def _program_outputs(
    configs: list[ProgramConfig],
    output: trio.abc.SendStream,
    terminal: TerminalSettings,
    single: bool,
) -> dict[str, trio.abc.SendStream]:
    if single:
        return {configs[0].program_name: output}
    names = [config.program_name for config in configs]
    prefixes = program_prefixes(names, colour=terminal.output_is_terminal)
    lock = trio.Lock()
    return {name: PrefixedOutput(output, lock, prefixes[name]) for name in names}


def _control_socket(instance: str | None, program: str) -> Path | None:
    """Where to listen for ``supervise ctl``; None to run without.

    A directory others could write to is refused (they could hijack the
    answers); one that cannot be created (no writable home, say) only costs
    the control socket, not the supervision.
    """
    if instance is None:
        validate_instance_name(program, "--instance (by default the program's name)")
    directory = control_dir()
    try:
        prepare_control_dir(directory)
    except ConfigError as exc:
        if directory.is_dir():
            raise
        warn(f"{exc}; running without `supervise ctl`")
        return None
    return _socket_path(directory, instance, program)


def _socket_path(directory: Path, instance: str | None, program: str) -> Path:
    """The control socket: the instance asked for, else the first free default.

    An explicit name that is in use is an error (reported by the server); a
    default one (the program's name) moves on to ``name-2``, ``name-3`` ...
    so several one-program supervisors of the same command can run at once.
    """
    if instance is not None:
        return directory / f"{instance}.sock"
    for number in itertools.count(1):
        name = program if number == 1 else f"{program}-{number}"
        path = directory / f"{name}.sock"
        if not path.exists() or not socket_answers(path, timeout=1.0):
            return path
    raise AssertionError("unreachable")


def _reporter(name: str) -> Callable[[str], None]:
    def report(message: str) -> None:
        warn(f"{name}: {message}")

    return report


def _parse(
    argv: Sequence[str],
) -> tuple[list[ProgramConfig], SupervisorConfig | None, argparse.Namespace]:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    values = _flag_values(args)
    if values.get("name") == "":
        raise ConfigError("--name", "must not be empty")
    if args.journal == "":
        raise ConfigError("--journal", "must not be empty (use --no-journal to run without)")
    if args.instance is not None:
        validate_instance_name(args.instance, "--instance")
    if args.config:
        if command or values:
            parser.error("--config runs the file's programs: give no COMMAND or program flags")
        config = load_config(args.config)
        if args.instance is None:
            args.instance = config.instance
        return list(config.programs.values()), config, args
    if not command:
        parser.error("no command given (usage: supervise [options] -- COMMAND [ARGS...])")
    values["command"] = command
    return [ProgramConfig.checked("", values, _flag_names(parser))], None, args


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``supervise`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    fill_closed_standard_fds()
    install_log_handler()
    try:
        if argv[:1] == ["check-config"]:
            return _check_config(argv[1:])
        if argv[:1] == ["ctl"]:
            from . import ctl as _ctl  # only the client: keeps `supervise ctl` quick

            return _ctl.main(argv[1:])
        if argv[:1] == ["events"]:
            from . import events as _events_cli

            return _events_cli.main(argv[1:])
        configs, file_config, args = _parse(argv)
        routes = _cli_routes(args)
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else USAGE_ERROR
    except ConfigError as exc:
        warn(str(exc))
        return USAGE_ERROR
    # Read the terminal's modes before raw mode changes them: the child's pty
    # gets the user's own settings (echo, line editing, newline translation).
    terminal = _terminal_settings()
    single = file_config is None
    raw = terminal.input_is_terminal and single
    output: trio.abc.SendStream = open_output_stream(1)
    # On a terminal shared with stderr, notices wait for the child's line to end.
    gate = NoticeGate() if same_terminal(1, 2) else None
    if gate is not None:
        output = LineAwareOutput(output, gate)
    stdin: trio.abc.ReceiveStream | None = None
    if single:
        with contextlib.suppress(OSError):  # stdin may be closed
            stdin = open_input_stream(0)
    try:
        socket_path = _control_socket(args.instance, configs[0].program_name)
        sup, metrics = _build(
            configs, file_config, routes, args, terminal, output, stdin, socket_path
        )
    except ConfigError as exc:
        warn(str(exc))
        return USAGE_ERROR
    # Everything imported so far lives as long as the process: keep it out of
    # the collector's way, so full collections stay cheap while frames flow.
    gc.freeze()
    try:
        with (
            raw_terminal(0) if raw else contextlib.nullcontext(),
            holding_notices(gate) if gate is not None else contextlib.nullcontext(),
        ):
            return trio.run(_run, sup, single, terminal, output, stdin, socket_path, metrics, gate)
    except (SinkError, ConfigError, BaseExceptionGroup) as exc:
        error = _find_error(exc)
        if error is None:
            raise
        warn(str(error))
        return USAGE_ERROR


def _find_error(exc: BaseException) -> SinkError | ConfigError | None:
    """The error worth one line to the user, unwrapped from exception groups."""
    if isinstance(exc, SinkError | ConfigError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _find_error(inner)
            if found is not None:
                return found
    return None
