"""What a child is started with, how a pty child is forked, and starting one early.

This module imports neither trio nor pydantic, so that ``supervise -- CMD``
can exec CMD before the rest of supervise is imported.

Why start early: importing trio, pydantic and supervise's own models takes
~200 ms, and the command (``npx loopwork`` takes a second to boot) would
wait for all of it. The command line's launcher (:mod:`supervisor._cli.early`)
forks the child as soon as its arguments are parsed, when they leave no doubt
about what the child gets (its command, environment, working directory and
pty); :func:`prestart` keeps it here. The pty holds its output (the child
blocks on a full pty, nothing is lost) until the program's runner adopts it
with :func:`take_prestarted`, which hands it over only if the spec the runner
computed from the validated configuration is *equal* to the one it was
started with; otherwise the early child is killed and a fresh one started.
If supervise does not get that far (an unwritable journal, say),
:func:`discard_prestarted` kills its process group and reaps it.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import os
import shutil
import signal
import stat
import sys
import termios
import time
from collections.abc import Collection, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from functools import cache
from typing import Any

import pexpect

from .._core.errors import SpawnError

__all__ = [
    "RELAY_PIPE_BYTES",
    "RELAY_PROGRAM",
    "SUPERVISOR_ENV",
    "ChildSpec",
    "Relay",
    "TerminalSettings",
    "become_subreaper",
    "check_spawnable",
    "child_environment",
    "discard_prestarted",
    "exec_error",
    "libc",
    "prestart",
    "prestarted_pids",
    "resolve_command",
    "spawn_pty",
    "spawn_relay",
    "stop_relay",
    "take_prestarted",
]

logger = logging.getLogger("supervisor")

SUPERVISOR_ENV = "IPC_SUPERVISOR"
"""The variable naming, in a child's environment, the supervise instance that
reads its stdout: a program can tell that its frames have a reader."""

_PR_SET_CHILD_SUBREAPER = 36


@dataclass(frozen=True)
class TerminalSettings:
    """What the child's pty should look like, from supervise's own streams.

    Attributes:
        modes: termios attributes of supervise's terminal, copied to the pty.
        size: (rows, columns) for the pty.
        output_is_terminal: keep ``\\n`` to ``\\r\\n`` translation.
        input_is_terminal: let the pty echo (a person is typing).
    """

    modes: Sequence[Any] | None = None
    size: tuple[int, int] | None = None
    output_is_terminal: bool = False
    input_is_terminal: bool = False


@dataclass(frozen=True)
class ChildSpec:
    """How to start a child.

    Attributes:
        argv: program and arguments.
        env: the full environment, or None to inherit supervise's.
        cwd: working directory, or None for supervise's.
        use_pty: run under a pseudo-terminal (else stdin/stdout are pipes and
            stderr is inherited).
        terminal_modes: termios attributes of supervise's own terminal, to
            copy onto the pty so the child sees the same settings.
        translate_newlines: keep the pty's ``ONLCR`` (``\\n`` written as
            ``\\r\\n``); right only when the output goes to a terminal.
        echo: let the pty echo input; right only when a person types it.
        dimensions: (rows, columns) of the pty.
    """

    argv: Sequence[str]
    env: Mapping[str, str] | None = None
    cwd: str | None = None
    use_pty: bool = True
    terminal_modes: Sequence[Any] | None = None
    translate_newlines: bool = False
    echo: bool = False
    dimensions: tuple[int, int] = (24, 80)

    @classmethod
    def for_program(
        cls,
        argv: Sequence[str],
        env: Mapping[str, str] | None,
        cwd: str | None,
        use_pty: bool,
        terminal: TerminalSettings,
    ) -> ChildSpec:
        """The spec of a program's child on a terminal like ``terminal``."""
        return cls(
            argv=tuple(argv),
            env=env,
            cwd=cwd,
            use_pty=use_pty,
            terminal_modes=terminal.modes,
            translate_newlines=terminal.output_is_terminal,
            echo=terminal.input_is_terminal,
            dimensions=terminal.size or (24, 80),
        )


def child_environment(
    overrides: Mapping[str, str],
    pass_env: Collection[str],
    withheld: Collection[str],
    instance: str | None,
) -> dict[str, str] | None:
    """A child's whole environment, or None to inherit supervise's as is.

    Args:
        overrides: the program's ``env``: variables it sets (any, secrets too).
        pass_env: withheld variables the program inherits after all.
        withheld: variables of supervise's environment the child must not
            inherit (the secrets supervise itself uses).
        instance: the supervise instance reading the child's frames, given
            as :data:`SUPERVISOR_ENV` unless ``overrides`` sets it. Ours even
            when supervise itself runs under another supervise.
    """
    dropped = set(withheld).difference(pass_env).intersection(os.environ)
    added = dict(overrides)
    if instance is not None and SUPERVISOR_ENV not in overrides:
        added[SUPERVISOR_ENV] = instance
    if not added and not dropped:
        return None
    inherited = {key: value for key, value in os.environ.items() if key not in dropped}
    return {**inherited, **added}


def resolve_command(argv0: str, env: Mapping[str, str] | None = None) -> str:
    """Find the program to run the way a shell would, or raise SpawnError.

    Raises:
        SpawnError: with exit_status 127 when there is no such program, 126
            when it exists but cannot be executed.
    """
    if not argv0:
        raise SpawnError("''", "empty command", 127)
    if "/" in argv0:
        candidate: str | None = argv0
        if not os.path.lexists(argv0):
            raise SpawnError(argv0, "No such file or directory", 127)
    else:
        path = (env if env is not None else os.environ).get("PATH", os.defpath)
        candidate = shutil.which(argv0, mode=os.X_OK, path=path)
        if candidate is None or os.path.isdir(candidate):
            present = shutil.which(argv0, mode=os.F_OK, path=path)
            if present is None:
                raise SpawnError(argv0, "command not found", 127)
            candidate = present
    assert candidate is not None
    try:
        mode = os.stat(candidate).st_mode
    except OSError as exc:
        raise SpawnError(argv0, exc.strerror or str(exc), 127) from exc
    if stat.S_ISDIR(mode):
        raise SpawnError(argv0, "Is a directory", 126)
    if not os.access(candidate, os.X_OK):
        raise SpawnError(argv0, "Permission denied", 126)
    return candidate


def check_spawnable(spec: ChildSpec) -> str:
    """Fail early, with the shell's exit statuses, on what exec would refuse."""
    if not spec.argv:
        raise SpawnError("''", "empty command", 127)
    program = resolve_command(spec.argv[0], spec.env)
    if spec.cwd is not None and not os.path.isdir(spec.cwd):
        raise SpawnError(spec.argv[0], f"working directory {spec.cwd!r} does not exist", 127)
    return program


def exec_error(argv0: str, exc: BaseException) -> SpawnError:
    code = getattr(exc, "errno", None)
    text = os.strerror(code) if isinstance(code, int) else str(exc)
    status = 127 if code == errno.ENOENT else 126
    return SpawnError(argv0, text, status)


# Signals supervise handles. Between fork and exec the child is a copy of
# supervise: if one arrived there (the pty's first resize sends SIGWINCH),
# trio's handler would run in the copy and can deadlock it before exec.
# They stay blocked across the fork and are reset in the child first.
HANDLED_SIGNALS = frozenset(
    {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGWINCH, signal.SIGCHLD}
)


def _pty_preexec(spec: ChildSpec, unblock: set[int | signal.Signals]) -> Any:
    modes: list[Any] = list(spec.terminal_modes or ())

    def configure_pty() -> None:
        # Runs in the child after fork, with the pty slave as fds 0-2 and the
        # handled signals still blocked. Default dispositions first (exec
        # keeps SIG_IGN, and a Python handler must never run here), then
        # unblock: exec keeps the signal mask too.
        for signum in (*HANDLED_SIGNALS, signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, unblock)
        attrs: list[Any] = list(modes) if modes else termios.tcgetattr(0)
        if not spec.translate_newlines:
            attrs[1] &= ~termios.ONLCR
        if not spec.echo:
            attrs[3] &= ~(termios.ECHO | termios.ECHONL)
        termios.tcsetattr(0, termios.TCSANOW, attrs)

    return configure_pty


def spawn_pty(spec: ChildSpec, program: str) -> pexpect.spawn:
    """Fork ``spec``'s child on a new pty and exec ``program`` in it.

    Raises:
        SpawnError: exec failed (exit_status 127 or 126).
    """
    rows, columns = spec.dimensions
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
    try:
        process = pexpect.spawn(
            program,
            list(spec.argv[1:]),
            env=dict(spec.env) if spec.env is not None else None,
            cwd=spec.cwd,
            preexec_fn=_pty_preexec(spec, mask),
            dimensions=(rows, columns),
        )
    except (OSError, pexpect.ExceptionPexpect) as exc:
        raise exec_error(spec.argv[0], exc) from exc
    finally:
        # Signals that came meanwhile are delivered now, to supervise.
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    # pexpect leaves the master inheritable: a process supervise starts
    # later with posix_spawn (another program's relay) would hold this pty
    # open, and could read or type into it.
    os.set_inheritable(process.child_fd, False)
    return process


@cache
def libc() -> ctypes.CDLL:
    """The C library, for the calls Python does not wrap (prctl, ptsname_r).

    The process's own symbols include libc's, so nothing is searched for:
    ``ctypes.util.find_library`` runs ``ldconfig -p`` in a subprocess and its
    import alone costs ~10 ms of every start.

    Raises:
        OSError: the symbols cannot be loaded.
    """
    return ctypes.CDLL(None, use_errno=True)


def become_subreaper() -> bool:
    """Ask Linux to re-parent orphaned descendants to this process."""
    try:
        c_library = libc()
        return bool(c_library.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


# -- the output relay ----------------------------------------------------------

RELAY_PROGRAM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "relay.py")
# The relay's pipe: as large as an unprivileged process may make it, so a
# burst of supervise's work never holds the child up (where the kernel
# refuses, the pipe keeps its default 64 KiB).
RELAY_PIPE_BYTES = 1 << 20


@dataclass(frozen=True)
class Relay:
    """A running output relay (:mod:`supervisor._process.relay`).

    Attributes:
        pid: the relay process, which its starter reaps.
        output: the read end of the pipe it copies the pty to.
    """

    pid: int
    output: int


def spawn_relay(master: int) -> Relay | None:
    """Start a relay copying the pty ``master`` to a new pipe; None if it cannot start.

    ``posix_spawn``, not ``subprocess``: nothing here may reap it behind its
    owner's back, and it is cheap even from a large process. Its standard
    streams are ``/dev/null`` (it must not hold supervise's stdout open) and
    it leads a process group of its own.
    """
    if not _runs_python_scripts(sys.executable) or not os.path.exists(RELAY_PROGRAM):
        logger.debug("no output relay (no interpreter or no relay program)")
        return None
    read_end, write_end = os.pipe()
    try:
        if min(master, write_end) <= 2:  # only when supervise's own streams were closed
            raise OSError(errno.EBADF, "a standard stream's descriptor")
        with suppress(OSError):
            fcntl.fcntl(read_end, fcntl.F_SETPIPE_SZ, RELAY_PIPE_BYTES)
        was_inheritable = os.get_inheritable(master)
        os.set_inheritable(master, True)
        os.set_inheritable(write_end, True)
        try:
            pid = os.posix_spawn(
                sys.executable,
                [sys.executable, "-I", "-S", RELAY_PROGRAM, str(master), str(write_end)],
                os.environ,
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                    (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
                ],
                setpgroup=0,
            )
        finally:
            os.set_inheritable(master, was_inheritable)
    except OSError as exc:
        os.close(read_end)
        logger.debug("no output relay (%s)", exc)
        return None
    finally:
        os.close(write_end)
    return Relay(pid, read_end)


def _runs_python_scripts(executable: str | None) -> bool:
    """Whether ``executable`` is a Python interpreter (not an application embedding one)."""
    name = os.path.basename(executable or "")
    return name.startswith(("python", "pypy")) and os.access(executable or "", os.X_OK)


def stop_relay(relay: Relay) -> None:
    """Kill and reap a relay nobody reads (blocking, but it dies at once)."""
    with suppress(OSError):
        os.kill(relay.pid, signal.SIGKILL)
    with suppress(ChildProcessError):
        os.waitpid(relay.pid, 0)
    with suppress(OSError):
        os.close(relay.output)


# -- the child started before supervise was ready ----------------------------


@dataclass(frozen=True)
class Prestarted:
    """A pty child started early, waiting for its runner.

    Attributes:
        spec: what it was started with.
        process: pexpect's handle on it.
        started_at: ``time.monotonic()`` when it was forked.
    """

    spec: ChildSpec
    process: pexpect.spawn
    started_at: float
    relay: Relay | None = None


_prestarted: Prestarted | None = None


def prestart(spec: ChildSpec) -> bool:
    """Start ``spec``'s pty child now; the first runner with an equal spec adopts it.

    Returns:
        Whether it started. A command that cannot be started is left to the
        runner, which reports it as usual (it fails again the same way).
    """
    global _prestarted
    if _prestarted is not None or not spec.use_pty:
        return False
    try:
        process = spawn_pty(spec, check_spawnable(spec))
    except SpawnError:
        return False
    # Its relay too: the child's output then flows while supervise imports.
    _prestarted = Prestarted(spec, process, time.monotonic(), spawn_relay(process.child_fd))
    return True


def prestarted_pids() -> set[int]:
    """The pids of the child started early and of its relay, until they are adopted."""
    early = _prestarted
    if early is None:
        return set()
    return {early.process.pid} | ({early.relay.pid} if early.relay is not None else set())


def take_prestarted(spec: ChildSpec) -> Prestarted | None:
    """The child started early, if it was started with exactly ``spec``.

    A child started with another spec (the validated configuration said
    otherwise: a bug in what the early start may assume) is killed, so it
    never runs on beside the right one.
    """
    global _prestarted
    early, _prestarted = _prestarted, None
    if early is None:
        return None
    if early.spec == spec:
        return early
    logger.warning("%s was started before its settings were final; starting it again", spec.argv[0])
    _kill(early)
    return None


def discard_prestarted() -> None:
    """Kill and reap the child started early, if no runner adopted it.

    supervise stopped before it could supervise the child (a bad setting it
    could check only after the child started): the child does not run on
    unsupervised.
    """
    global _prestarted
    early, _prestarted = _prestarted, None
    if early is not None:
        _kill(early)


def _kill(early: Prestarted) -> None:
    with suppress(OSError):
        os.killpg(early.process.pid, signal.SIGKILL)
    with suppress(ChildProcessError):
        os.waitpid(early.process.pid, 0)
    if early.relay is not None:
        stop_relay(early.relay)
    early.process.ptyproc.terminated = True
    early.process.ptyproc.delayafterclose = 0
    early.process.close()
