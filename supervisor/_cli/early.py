"""Start the command before the rest of supervise is imported.

``supervise -- CMD`` spends ~200 ms importing trio, pydantic and its own
models before it can start CMD, and CMD (``npx loopwork`` boots for a
second) would wait for all of it. Here, right after the command line is
parsed and before anything heavy is imported, CMD is forked onto its pty
(:func:`supervisor._process.spawn.prestart`); its output waits in the pty
until the program's runner adopts it.

Only when the command line leaves no doubt about what the child gets, and
no setting that could still be refused: a command, and options from
:data:`_EARLY_OPTIONS` (none of them brings a secret supervise withholds
from the child, none is a number pydantic could refuse; the metrics flags
are checked here as :class:`~supervisor._config.MetricsConfig` checks
them). Anything else (a config file, Telegram, a route, a Pushgateway,
``--no-pty``) starts the child the usual way, once everything is checked.
The instance's control socket is bound here too, before the child starts,
so the child (or anyone) can reach it from the child's first moment;
connections wait in its backlog until the run serves them. So is the
metrics socket with ``--metrics-port``: a port that is taken still stops
supervise before its child starts, and a scrape that comes early waits in
the socket's backlog. The runner adopts the early child only if the
spec it computes from the validated configuration is equal
(:func:`~supervisor._process.spawn.take_prestarted`), and what goes wrong
after the start (the journal cannot be opened, say) kills the early child's
group (:func:`~supervisor._process.spawn.discard_prestarted`).
"""

from __future__ import annotations

import argparse
import os
import re
import socket
from contextlib import suppress
from pathlib import Path

from .._core.errors import ConfigError
from .._core.program_name import default_program_name
from .._metrics.listen import BACKLOG, bind_metrics_socket
from .._paths import (
    bind_control_socket,
    control_dir,
    default_socket_path,
    instance_name_problem,
    prepare_control_dir,
    working_directory,
)
from .._process.spawn import (
    ChildSpec,
    TerminalSettings,
    become_subreaper,
    child_environment,
    prestart,
)
from .terminal import terminal_settings

__all__ = [
    "early_control_path",
    "early_terminal",
    "release_early_control",
    "release_early_metrics",
    "start_early",
    "take_early_control",
    "take_early_metrics",
]

# Options that leave the child's spec as the command line says and that the
# configuration cannot refuse once argparse has taken them (the metrics
# flags once _bind_metrics has checked them).
_EARLY_OPTIONS = frozenset(
    {"command", "name", "cwd", "env", "instance", "events", "quiet", "no_journal", "journal"}
    | {"keep_frames", "forward_eof", "actionable_frames", "on_approval_ignored", "restart"}
    | {"stall_action", "task_timeout_action", "answers.approve", "answers.deny"}
    | {"answers.approval_timeout", "backoff.jitter", "log.timestamps"}
    | {"metrics_port", "metrics_host", "metrics_path", "no_namespace_label"}
)
# What MetricsConfig accepts as a metrics path.
_METRICS_PATH = re.compile(r"^/[^?#]*$")
_DEFAULT_METRICS_HOST = "127.0.0.1"

# The control socket bound for the early child's instance, until the run
# serves it: `supervise ctl` can connect from the child's first moment on.
_control: tuple[Path, socket.socket, os.stat_result] | None = None


_terminal: TerminalSettings | None = None

# The metrics socket bound before the early child started: the (host, port)
# asked for (port 0: any), and the socket, until the run's server takes it.
_metrics: tuple[tuple[str, int], socket.socket] | None = None


def early_terminal() -> TerminalSettings | None:
    """supervise's terminal as the early child's pty copied it, if one started.

    The run reuses it: read again, a window resized meanwhile would make the
    specs differ and the child start twice.
    """
    return _terminal


def early_control_path() -> Path | None:
    """The control socket bound before the child started early, if any."""
    return _control[0] if _control is not None else None


def take_early_control(path: Path) -> socket.socket | None:
    """The listening socket bound at ``path`` early, for the control server to serve."""
    global _control
    if _control is None or _control[0] != path:
        return None
    listening = _control[1]
    _control = None
    return listening


def release_early_control() -> None:
    """Close and remove the early control socket if no control server took it."""
    global _control
    if _control is None:
        return
    control, _control = _control, None
    _release_control_socket(control)


def _release_control_socket(control: tuple[Path, socket.socket, os.stat_result]) -> None:
    """Close the listening socket and remove its file, if the file is still ours."""
    path, listening, bound = control
    listening.close()
    # Only our own file: never one another instance bound after ours went.
    with suppress(OSError):
        now = os.stat(path)
        if (now.st_dev, now.st_ino) == (bound.st_dev, bound.st_ino):
            os.unlink(path)


def take_early_metrics(host: str, port: int) -> socket.socket | None:
    """The metrics socket bound early for ``host`` and ``port`` (as asked), if any."""
    global _metrics
    if _metrics is None or _metrics[0] != (host, port):
        return None
    sock = _metrics[1]
    _metrics = None
    return sock


def release_early_metrics() -> None:
    """Close the early metrics socket if no metrics server took it."""
    global _metrics
    if _metrics is not None:
        _metrics[1].close()
        _metrics = None


def _bind_metrics(args: argparse.Namespace) -> bool:
    """Bind the metrics socket the flags ask for; False if the flags could be refused."""
    global _metrics
    port: int | None = getattr(args, "metrics_port", None)
    host: str | None = getattr(args, "metrics_host", None)
    path: str | None = getattr(args, "metrics_path", None)
    if path is not None and _METRICS_PATH.match(path) is None:
        return False
    if port is None:
        return True  # a host or a path alone serves nothing
    if not 0 <= port <= 65535:
        return False
    address = (host if host is not None else _DEFAULT_METRICS_HOST, port)
    try:
        sock = bind_metrics_socket(*address)
    except ConfigError:
        return False  # the usual start says so, before any child starts
    # Listening already: a scrape from the child's first moment waits in the
    # backlog until the server takes the socket over, never refused.
    sock.listen(BACKLOG)
    _metrics = (address, sock)
    return True


def start_early(parser: argparse.ArgumentParser, args: argparse.Namespace) -> bool:
    """Start the command of ``args`` now if nothing can change it; whether it started."""
    global _control, _terminal
    early = _early_spec(parser, args)
    if early is None:
        return False
    if not _bind_metrics(args):
        _release_control_socket(early[2])
        return False
    spec, terminal, _control = early
    # What the child orphans from its first moment (a daemon it forks off
    # with setsid) is re-parented to supervise, to be stopped with it.
    become_subreaper()
    if prestart(spec):
        _terminal = terminal
        return True
    release_early_control()  # the usual start reports what is wrong
    release_early_metrics()
    return False


def _early_spec(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> tuple[ChildSpec, TerminalSettings, tuple[Path, socket.socket, os.stat_result]] | None:
    given = {
        dest
        for dest, value in vars(args).items()
        if dest in _EARLY_OPTIONS or value != parser.get_default(dest)
    }
    if not given <= _EARLY_OPTIONS:
        return None
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    name = getattr(args, "name", None)
    if not command or not command[0] or name == "" or args.journal == "":
        return None  # errors the full command line reports
    cwd = Path(args.cwd).expanduser() if getattr(args, "cwd", None) is not None else None
    program = name or default_program_name(command, working_directory(cwd))
    if instance_name_problem(args.instance or program) is not None:
        return None
    directory = control_dir()
    try:
        prepare_control_dir(directory)
        if args.instance is not None:
            path = directory / f"{args.instance}.sock"
        else:
            path = default_socket_path(directory, program)
        # Another supervise taking the same name now makes this fail.
        listening = bind_control_socket(path)
        bound = os.stat(path)
    except (ConfigError, OSError):
        return None  # the usual start says what is wrong, or runs without `ctl`
    env = child_environment(dict(getattr(args, "env", ())), (), (), path.stem)
    terminal = terminal_settings()
    spec = ChildSpec.for_program(
        command, env, str(cwd) if cwd is not None else None, True, terminal
    )
    return spec, terminal, (path, listening, bound)
