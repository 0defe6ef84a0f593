"""The child process: spawn it (under a pty or on pipes), read, write, signal, reap.

This is the only module that touches the child's file descriptors. Both kinds
of child look the same to the rest of the package (:class:`Child`).

Why it is built this way:

* The pty child is forked by pexpect (which wraps ptyprocess), but pexpect's
  blocking calls (``expect``, ``terminate``, ``wait``, ``close``'s sleep) are
  never used: the master side is read through ``trio.lowlevel.FdStream`` and
  the child is reaped through a pidfd, so no thread per read is needed.
* The pty's modes are set in the child before ``exec`` (pexpect's
  ``preexec_fn``), so not even the child's first write can race them: when
  supervise's stdout is not a terminal, ``ONLCR`` is cleared so ``\\n`` stays
  ``\\n``; when its stdin is not a terminal, echo is off so what supervise
  writes to the child is never echoed into the output.
* The child leads its own session and process group, so signals go to the
  group and take its helpers with it.
"""

from __future__ import annotations

import errno
import math
import os
import shutil
import signal
import stat
import termios
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

import pexpect
import trio

from .._core.errors import SpawnError
from .holders import FileId, holders, pipe_id, pty_slave_id
from .reaper import forget_child, register_child, spawning

__all__ = ["Child", "ChildSpec", "open_child", "resolve_command"]

READ_SIZE = 65536
# Control-D: the pty line discipline's end-of-file character by default.
_VEOF = b"\x04"


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


def _exec_error(argv0: str, exc: BaseException) -> SpawnError:
    code = getattr(exc, "errno", None)
    text = os.strerror(code) if isinstance(code, int) else str(exc)
    status = 127 if code == errno.ENOENT else 126
    return SpawnError(argv0, text, status)


class Child(ABC):
    """A running child, whichever way it was started.

    Attributes:
        pid: the child's pid, which is also its process group id.
        argv: the command line that was run.
        started_at: ``time.monotonic()`` when it was started.
        output_id: the identity of the child's output (the pty's slave or the
            stdout pipe), to find who still holds it after the child exits.
    """

    def __init__(self, pid: int, argv: Sequence[str], output_id: FileId | None) -> None:
        self.pid = pid
        self.argv = tuple(argv)
        self.started_at = time.monotonic()
        self.returncode: int | None = None
        self.output_id = output_id
        self._wait_lock = trio.Lock()

    def output_holders(self) -> set[int]:
        """supervise's descendants that still hold the child's output open."""
        return holders(self.output_id)

    @abstractmethod
    async def receive_some(self) -> bytes:
        """Next bytes of the child's output; ``b""`` at end of output."""

    @abstractmethod
    async def send_all(self, data: bytes | bytearray) -> None:
        """Write to the child's stdin."""

    @abstractmethod
    async def send_eof(self) -> None:
        """Make the child's next read of stdin see end of file."""

    def resize(self, rows: int, columns: int) -> None:  # noqa: B027 - optional
        """Set the window size (a pty child only; pipes have none)."""

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the child's process group, if it still exists."""
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)

    async def wait(self) -> int:
        """Wait for the child to exit and reap it.

        Returns:
            The return code: the exit status, or ``-N`` if signal N killed it.
        """
        async with self._wait_lock:
            if self.returncode is None:
                self.returncode = await self._reap()
        return self.returncode

    @abstractmethod
    async def _reap(self) -> int: ...

    @abstractmethod
    async def _close_fds(self) -> None: ...

    async def aclose(self) -> None:
        """Kill the process group if the child still runs, reap it, close fds."""
        with trio.CancelScope(shield=True):
            if self.returncode is None:
                self.signal(signal.SIGKILL)
                await self.wait()
            await self._close_fds()


async def _wait_pid(pid: int) -> int:
    """Reap ``pid`` without blocking the event loop (pidfd, else polling)."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = -1
    try:
        if pidfd >= 0:
            await trio.lowlevel.wait_readable(pidfd)
            # The pidfd is readable: the child has exited, so this returns at once.
            _, status = os.waitpid(pid, 0)  # noqa: ASYNC222
            return os.waitstatus_to_exitcode(status)
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)  # noqa: ASYNC222 - never blocks
            if done:
                return os.waitstatus_to_exitcode(status)
            await trio.sleep(0.02)
    finally:
        if pidfd >= 0:
            trio.lowlevel.notify_closing(pidfd)
            os.close(pidfd)


def _is_pty_eof(error: BaseException | None) -> bool:
    # Linux reports "every slave end closed" as EIO on the master.
    return isinstance(error, OSError) and error.errno == errno.EIO


class PtyChild(Child):
    """A child on a pseudo-terminal forked by pexpect."""

    def __init__(self, process: pexpect.spawn, argv: Sequence[str]) -> None:
        super().__init__(process.pid, argv, pty_slave_id(process.child_fd))
        self._process = process
        self._master = trio.lowlevel.FdStream(os.dup(process.child_fd))
        self._last_sent = b"\n"
        self._eof_seen = False

    async def receive_some(self) -> bytes:
        if self._eof_seen:
            await trio.lowlevel.checkpoint()
            return b""
        try:
            data = await self._master.receive_some(READ_SIZE)
        except trio.BrokenResourceError as exc:
            if _is_pty_eof(exc.__cause__):
                return b""
            raise
        return self._read_more(data)

    def _read_more(self, data: bytes) -> bytes:
        """Take what else is already waiting, without a scheduler round-trip.

        A pty hands its master about 4 KiB per read; a child writing fast has
        more queued. Reading it now, in one go, costs a system call per piece
        instead of a trip through trio's scheduler per piece.
        """
        parts = [data]
        total = len(data)
        fd = self._master.fileno()
        while total < READ_SIZE:
            try:
                more = os.read(fd, READ_SIZE - total)
            except BlockingIOError:
                break
            except OSError as exc:
                if not _is_pty_eof(exc):
                    raise
                self._eof_seen = True
                break
            if not more:
                break
            parts.append(more)
            total += len(more)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def send_all(self, data: bytes | bytearray) -> None:
        if data:
            await self._master.send_all(data)
            self._last_sent = bytes(data[-1:])

    async def send_eof(self) -> None:
        # In canonical mode Control-D only means end of file at the start of
        # a line; after other input the first one just ends the line.
        await self.send_all(_VEOF if self._last_sent in (b"\n", b"\r") else _VEOF * 2)

    def resize(self, rows: int, columns: int) -> None:
        with suppress(OSError):
            self._process.setwinsize(rows, columns)

    async def _reap(self) -> int:
        return await _wait_pid(self.pid)

    async def _close_fds(self) -> None:
        await self._master.aclose()
        # Reaped already: tell pexpect so its close() neither sleeps nor
        # signals a pid that may have been reused.
        self._process.ptyproc.terminated = True
        self._process.ptyproc.delayafterclose = 0
        self._process.close()


class PipeChild(Child):
    """A child on pipes (``--no-pty``): stdout is parsed, stderr inherited."""

    def __init__(self, process: trio.Process, argv: Sequence[str]) -> None:
        assert isinstance(process.stdout, trio.lowlevel.FdStream)
        super().__init__(process.pid, argv, pipe_id(process.stdout.fileno()))
        self._process = process
        self._input_closed = False

    async def receive_some(self) -> bytes:
        assert self._process.stdout is not None
        try:
            return bytes(await self._process.stdout.receive_some(READ_SIZE))
        except trio.ClosedResourceError:
            return b""

    async def send_all(self, data: bytes | bytearray) -> None:
        assert self._process.stdin is not None
        if not self._input_closed and data:
            await self._process.stdin.send_all(data)

    async def send_eof(self) -> None:
        if not self._input_closed:
            self._input_closed = True
            assert self._process.stdin is not None
            await self._process.stdin.aclose()

    async def _reap(self) -> int:
        return await self._process.wait()

    async def _close_fds(self) -> None:
        for stream in (self._process.stdin, self._process.stdout):
            if stream is not None:
                await stream.aclose()


# Signals supervise handles. Between fork and exec the child is a copy of
# supervise: if one arrived there (the pty's first resize sends SIGWINCH),
# trio's handler would run in the copy and can deadlock it before exec.
# They stay blocked across the fork and are reset in the child first.
_HANDLED_SIGNALS = frozenset(
    {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGWINCH, signal.SIGCHLD}
)


def _pty_preexec(spec: ChildSpec, unblock: set[int | signal.Signals]) -> Any:
    modes: list[Any] = list(spec.terminal_modes or ())

    def configure_pty() -> None:
        # Runs in the child after fork, with the pty slave as fds 0-2 and the
        # handled signals still blocked. Default dispositions first (exec
        # keeps SIG_IGN, and a Python handler must never run here), then
        # unblock: exec keeps the signal mask too.
        for signum in (*_HANDLED_SIGNALS, signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, unblock)
        attrs: list[Any] = list(modes) if modes else termios.tcgetattr(0)
        if not spec.translate_newlines:
            attrs[1] &= ~termios.ONLCR
        if not spec.echo:
            attrs[3] &= ~(termios.ECHO | termios.ECHONL)
        termios.tcsetattr(0, termios.TCSANOW, attrs)

    return configure_pty


def _spawn_pty(spec: ChildSpec, program: str) -> PtyChild:
    rows, columns = spec.dimensions
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, _HANDLED_SIGNALS)
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
        raise _exec_error(spec.argv[0], exc) from exc
    finally:
        # Signals that came meanwhile are delivered now, to supervise.
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    # pexpect names argv[0] by its resolved path; keep what the user typed.
    return PtyChild(process, spec.argv)


async def _spawn_pipes(spec: ChildSpec, program: str) -> PipeChild:
    import subprocess

    try:
        process = await trio.lowlevel.open_process(
            [program, *spec.argv[1:]],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=dict(spec.env) if spec.env is not None else None,
            cwd=spec.cwd,
            start_new_session=True,
            restore_signals=True,
        )
    except OSError as exc:
        raise _exec_error(spec.argv[0], exc) from exc
    return PipeChild(process, spec.argv)


def _check_spawnable(spec: ChildSpec) -> str:
    """Fail early, with the shell's exit statuses, on what exec would refuse."""
    if not spec.argv:
        raise SpawnError("''", "empty command", 127)
    program = resolve_command(spec.argv[0], spec.env)
    if spec.cwd is not None and not os.path.isdir(spec.cwd):
        raise SpawnError(spec.argv[0], f"working directory {spec.cwd!r} does not exist", 127)
    return program


@asynccontextmanager
async def open_child(spec: ChildSpec) -> AsyncIterator[Child]:
    """Start the child; on exit, kill it if it still runs, reap it, close fds.

    Raises:
        SpawnError: the command cannot be found (exit_status 127) or
            executed (126).
    """
    program = _check_spawnable(spec)
    child: Child
    with spawning():
        child = _spawn_pty(spec, program) if spec.use_pty else await _spawn_pipes(spec, program)
        register_child(child.pid)
    try:
        yield child
    finally:
        await child.aclose()
        forget_child(child.pid)


def describe_returncode(returncode: int) -> tuple[int | None, int | None]:
    """Split a return code into (exit_code, signal); one of them is None."""
    if returncode < 0:
        return None, -returncode
    return returncode, None


def shell_status(returncode: int) -> int:
    """The status a shell reports: the exit code, or 128+N for signal N."""
    return 128 - returncode if returncode < 0 else returncode


def uptime(child: Child) -> float:
    """Seconds since the child started, rounded to milliseconds."""
    return math.floor((time.monotonic() - child.started_at) * 1000) / 1000
