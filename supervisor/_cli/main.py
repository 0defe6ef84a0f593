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
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio
from pydantic import ValidationError

from .._supervisor import Supervisor

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
from .._config import (
    BusConfig,
    JournalConfig,
    MetricsConfig,
    ProgramConfig,
    SupervisorConfig,
    TelegramConfig,
    load_config,
)
from .._control.server import (
    RequestsInFlight,
    serve_control,
)
from .._core.errors import ConfigError, SinkError
from .._core.state import ProcessState
from .._paths import (
    control_dir,
    default_socket_path,
    ipc_home,
    prepare_control_dir,
    validate_instance_name,
)
from .._process.child import shell_status
from .._process.prefix import PrefixedOutput, program_prefixes
from .._process.reaper import become_subreaper, run_orphan_reaper, stop_orphans
from .._process.spawn import TerminalSettings
from .._process.streams import fill_closed_standard_fds, open_input_stream, open_output_stream
from .._routing.config import (
    DEFAULT_NOTIFY_EVENTS,
    FileRouteConfig,
    parse_route_shortcut,
    parse_sink_spec,
)
from .._routing.factory import build_route_sink
from .early import (
    early_control_path,
    early_terminal,
    release_early_metrics,
    take_early_control,
    take_early_metrics,
)
from .notices import LineAwareOutput, NoticeGate, same_terminal
from .parser import build_parser
from .terminal import (
    holding_notices,
    install_log_handler,
    raw_terminal,
    terminal_settings,
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


_NOT_PROGRAM_FLAGS = frozenset(
    {"config", "instance", "events", "quiet", "command", "notify", "route", "webhook", "exec"}
    | {"no_journal", "journal", "metrics_port", "metrics_host", "metrics_path"}
    | {"no_namespace_label", "pushgateway", "telegram", "telegram_api_url", "bus", "host"}
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
                    listening = take_early_control(socket_path)
                    await control_nursery.start(
                        partial(serve_control, requests=requests, listening=listening),
                        socket_path,
                        sup,
                    )
                if metrics is not None:
                    await control_nursery.start(_serve_metrics_and_push, sup, metrics, sup.instance)
                if notices is not None:
                    await control_nursery.start(notices.serve)
                if (ipc_home() / "ipc.sqlite3").exists():
                    # This user has ts-ipc state: publish to it, deliver for it.
                    from .._ipc.agent import serve_ipc_agent

                    await control_nursery.start(serve_ipc_agent, sup)
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
    keep_metrics = metrics.port is not None or metrics.pushgateway is not None
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
        keep_metrics=keep_metrics,
        namespace_label=metrics.namespace_label,
    )
    bus = file_config.bus if file_config is not None else None
    _add_telegram(sup, file_config, args, on_bus=bool(args.bus or bus is not None))
    if args.bus or bus is not None:
        url = args.bus or (bus.url if bus is not None else "")
        _add_bus(
            sup,
            url,
            args.host or (bus.host if bus is not None else None),
            bus.maxlen if bus is not None else BusConfig.model_fields["maxlen"].default,
        )
    if not keep_metrics:
        return sup, None
    from .._metrics.listen import bind_metrics_socket

    sock = None
    if metrics.port is not None:
        # Bound before the child started early, if it did (see early.py).
        sock = take_early_metrics(metrics.host, metrics.port)
        release_early_metrics()
        if sock is None:
            sock = bind_metrics_socket(metrics.host, metrics.port)
    return sup, _MetricsServing(sup, metrics, sock)


_BUS_DRAIN = 10.0


def _add_bus(sup: Supervisor, url: str, host: str | None, maxlen: int) -> None:
    """--bus: a durable route to Redis Streams, and the reader of this instance's requests."""
    from adapters.redis_bus import bus_route_sink, default_host, serve_bus_requests

    where = host or default_host()
    sink = bus_route_sink(url, where, sup.instance, maxlen=maxlen)
    # Redis back after an outage: the backlog goes within seconds, and a run
    # that ends waits a little for it (what is left goes with the next run).
    sup.route("bus", sink, durable=True, retry={"max_attempts": 0, "initial": 0.2, "cap": 2.0})
    sup.add_service(partial(serve_bus_requests, url, where, sup.instance, sup))
    sup.drain_timeout = max(sup.drain_timeout, _BUS_DRAIN)


def _add_telegram(
    sup: Supervisor,
    file_config: SupervisorConfig | None,
    args: argparse.Namespace,
    *,
    on_bus: bool,
) -> None:
    """With --telegram or a [telegram] table: the bot's route and its poller."""
    config = file_config.telegram if file_config is not None else None
    if config is None and not (args.telegram or args.telegram_api_url):
        return
    if on_bus:
        # The hub on the bus owns the bot: a second poller would fight it.
        warn("with --bus, Telegram is the bus hub's (supervise hub --bus): leaving the chat to it")
        return
    from .._hub.fleet import hub_running

    hub = hub_running()
    if hub is not None:
        # Two pollers on one token fight (Telegram answers 409 to the second):
        # the hub follows this instance's events and answers its questions.
        warn(
            f"a supervise hub (pid {hub}) serves Telegram here; this instance leaves the chat to it"
        )
        return
    config = config or TelegramConfig()
    if args.telegram_api_url:
        config = config.model_copy(update={"api_url": args.telegram_api_url})
    from adapters.telegram import TelegramBot  # only when asked: httpx is not free to import

    bot = TelegramBot(sup, config.resolved(), report=warn)
    for route in bot.route_configs():
        sup.add_route(route, bot.sink)
    sup.add_service(bot.run)
    # At one message a second, the last news of a run needs time to go out
    # (a second Control-C stops waiting).
    sup.drain_timeout = max(sup.drain_timeout, _TELEGRAM_DRAIN)


@dataclasses.dataclass
class _MetricsServing:
    """The metrics of a run: their config, socket, and registry once one is needed.

    The registry (and prometheus_client with it) is made at the first
    scrape or push, not at start: supervise's counters run from the start
    either way.
    """

    sup: Supervisor
    config: MetricsConfig
    sock: socket.socket | None
    _registry: CollectorRegistry | None = None

    def registry(self) -> CollectorRegistry:
        if self._registry is None:
            from prometheus_client import CollectorRegistry

            self._registry = CollectorRegistry(auto_describe=False)
            self.sup.register_metrics(self._registry)
        return self._registry


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
    """Serve the metrics while supervise runs; push them once at the end if asked.

    The server and the registry are loaded when the first scrape arrives
    (see :mod:`supervisor._metrics.server`).
    """
    from .._metrics.server import MetricsAddress, serve_metrics, wait_for_first_scrape

    config = metrics.config

    def health() -> dict[str, str]:
        return {name: program.state.value for name, program in sup.programs.items()}

    try:
        task_status.started()
        if metrics.sock is not None:
            sock = metrics.sock
            if config.port == 0:
                host, port = sock.getsockname()[:2]
                warn(f"metrics at {MetricsAddress(host, port, config.path).url}")
            await wait_for_first_scrape(sock)
            await serve_metrics(sock, metrics.registry(), health, path=config.path)
        await trio.sleep_forever()  # until supervise ends and cancels this
    finally:
        if config.pushgateway is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                await _push(config.pushgateway, metrics.registry(), instance)


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
    early = early_control_path()
    if early is not None:
        return early  # bound before the child started early
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
    if instance is not None:
        # An explicit name that is in use is an error (the server reports it).
        return directory / f"{instance}.sock"
    return default_socket_path(directory, program)


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
        if argv[:1] == ["hub"]:
            from . import hub as _hub_cli

            return _hub_cli.main(argv[1:])
        configs, file_config, args = _parse(argv)
        routes = _cli_routes(args)
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else USAGE_ERROR
    except ConfigError as exc:
        warn(str(exc))
        return USAGE_ERROR
    # Read the terminal's modes before raw mode changes them: the child's pty
    # gets the user's own settings (echo, line editing, newline translation).
    terminal = early_terminal() or terminal_settings()
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
