"""The child process: spawn it (under a pty or on pipes), read, write, signal, reap.

This is the only module that touches the child's file descriptors. Both kinds
of child look the same to the rest of the package (:class:`Child`).

Why it is built this way:

* The pty child is forked by pexpect (which wraps ptyprocess), but pexpect's
  blocking calls (``expect``, ``terminate``, ``wait``, ``close``'s sleep) are
  never used: the child is reaped through a pidfd, and its output is read
  from the pipe of a small relay process (:mod:`supervisor._process.relay`
  says why) through ``trio.lowlevel.FdStream``; if the relay cannot start,
  or dies, the master is read directly. Input and window sizes go to the
  master directly.
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
import fcntl
import logging
import math
import os
import signal
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress

import pexpect
import trio

from .holders import FileId, holders, pipe_id, pty_slave_id
from .reaper import forget_child, register_child, spawning
from .spawn import (
    RELAY_PIPE_BYTES,
    ChildSpec,
    Relay,
    check_spawnable,
    exec_error,
    resolve_command,
    spawn_pty,
    spawn_relay,
    take_prestarted,
)

__all__ = ["Child", "ChildSpec", "open_child", "resolve_command"]

READ_SIZE = 65536

logger = logging.getLogger("supervisor")
# Control-D: the pty line discipline's end-of-file character by default.
_VEOF = b"\x04"


class Child(ABC):
    """A running child, whichever way it was started.

    Attributes:
        pid: the child's pid, which is also its process group id.
        argv: the command line that was run.
        started_at: ``time.monotonic()`` when it was started.
        output_id: the identity of the child's output (the pty's slave or the
            stdout pipe), to find who still holds it after the child exits.
    """

    def __init__(
        self,
        pid: int,
        argv: Sequence[str],
        output_id: FileId | None,
        started_at: float | None = None,
    ) -> None:
        self.pid = pid
        self.argv = tuple(argv)
        self.started_at = time.monotonic() if started_at is None else started_at
        self.returncode: int | None = None
        self.output_id = output_id
        self._wait_lock = trio.Lock()

    def output_holders(self) -> set[int]:
        """supervise's descendants that still hold the child's output open."""
        return holders(self.output_id)

    @abstractmethod
    async def receive_some(self, *, gather: bool = False) -> bytes:
        """Next bytes of the child's output; ``b""`` at end of output.

        With ``gather``, also take what else is already queued, up to
        ``READ_SIZE`` (see :meth:`PtyChild._read_more` for when it pays).
        """

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

    def __init__(
        self,
        process: pexpect.spawn,
        argv: Sequence[str],
        started_at: float | None = None,
        relay: Relay | None = None,
    ) -> None:
        super().__init__(process.pid, argv, pty_slave_id(process.child_fd), started_at)
        self._process = process
        self._master = trio.lowlevel.FdStream(os.dup(process.child_fd))
        self._last_sent = b"\n"
        self._eof_seen = False
        self._relay = relay
        self._relayed = trio.lowlevel.FdStream(relay.output) if relay is not None else None

    @property
    def relay_pid(self) -> int | None:
        """The pid of the output relay while there is one."""
        return self._relay.pid if self._relay is not None else None

    async def receive_some(self, *, gather: bool = False) -> bytes:
        if self._relayed is not None:
            data = await self._relayed.receive_some(READ_SIZE)
            if data or await self._relay_ended_cleanly():
                return data
        if self._eof_seen:
            await trio.lowlevel.checkpoint()
            return b""
        try:
            data = await self._master.receive_some(READ_SIZE)
        except trio.BrokenResourceError as exc:
            if _is_pty_eof(exc.__cause__):
                return b""
            raise
        return self._read_more(data) if gather else data

    async def _relay_ended_cleanly(self) -> bool:
        """At the relay's end of pipe: True if the output ended; else read the pty from now on."""
        status = await self._drop_relay(kill=False)
        if status == 0:
            return True
        how = f"was killed by signal {-status}" if status < 0 else f"failed (exit status {status})"
        logger.warning(
            "the output relay of pid %d %s; reading the child's output directly", self.pid, how
        )
        return False

    async def _drop_relay(self, *, kill: bool = True) -> int:
        """Close the relay's pipe, reap the relay (killed first with ``kill``); its status."""
        relay, relayed = self._relay, self._relayed
        self._relay = self._relayed = None
        if relayed is not None:
            await relayed.aclose()
        if relay is None:
            return 0
        with trio.CancelScope(shield=True):
            if kill:
                with suppress(ProcessLookupError):
                    os.kill(relay.pid, signal.SIGKILL)
            try:
                status = await _wait_pid(relay.pid)
            finally:
                forget_child(relay.pid)
        return status

    def _read_more(self, data: bytes) -> bytes:
        """Take what else is already waiting, without a scheduler round-trip.

        A pty hands its master about 4 KiB per read; a child writing fast has
        more queued. Reading it now, in one go, costs a system call per piece
        instead of a trip through trio's scheduler per piece, which pays when
        each batch carries work of its own (frames to validate, journal and
        route). It is a loss on plain output: a read that empties the line
        discipline's 4 KiB buffer waits in the kernel for its flush worker to
        refill it, so back-to-back reads turn the child's writes and
        supervise's reads into one serial ping-pong while the child sits
        blocked on a full pty (64 MiB of plain output took 1.2 s gathered
        against 0.8 s read a piece at a time, the pieces written through
        as they come).
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
        await self._drop_relay()
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

    async def receive_some(self, *, gather: bool = False) -> bytes:
        # A pipe hands over up to READ_SIZE in one read: nothing to gather.
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


def _spawn_pty(spec: ChildSpec) -> PtyChild:
    early = take_prestarted(spec)
    if early is not None:  # started while supervise was still importing
        return PtyChild(early.process, spec.argv, early.started_at, early.relay)
    # pexpect names argv[0] by its resolved path; keep what the user typed.
    process = spawn_pty(spec, check_spawnable(spec))
    return PtyChild(process, spec.argv, relay=spawn_relay(process.child_fd))


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
        raise exec_error(spec.argv[0], exc) from exc
    assert isinstance(process.stdout, trio.lowlevel.FdStream)
    # As large as the relay's pipe, for the same reason: the child writes on
    # while supervise handles a batch of frames, instead of waiting at 64 KiB.
    with suppress(OSError):
        fcntl.fcntl(process.stdout.fileno(), fcntl.F_SETPIPE_SZ, RELAY_PIPE_BYTES)
    return PipeChild(process, spec.argv)


@asynccontextmanager
async def open_child(spec: ChildSpec) -> AsyncIterator[Child]:
    """Start the child; on exit, kill it if it still runs, reap it, close fds.

    Raises:
        SpawnError: the command cannot be found (exit_status 127) or
            executed (126).
    """
    child: Child
    with spawning():
        if spec.use_pty:
            child = _spawn_pty(spec)
            if child.relay_pid is not None:
                register_child(child.relay_pid)
        else:
            child = await _spawn_pipes(spec, check_spawnable(spec))
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
