"""CommandSink: run a program once per event, with the event on its stdin.

The program gets the event's flat JSON form and a newline on stdin, and the
fields a shell script wants most in its environment, so that a one-liner
such as ``notify-send "$IPC_EVENT" "$IPC_TASK_ID"`` needs no JSON parsing:

=================  ==============================================
``IPC_EVENT``      the event name (``task_failed``)
``IPC_TASK_ID``    ``data.taskId``, or empty when the event has none
``IPC_PROGRAM``    the supervised program's name
``IPC_SEQ``        the event's sequence number in this run
``IPC_MESSAGE_ID`` the message id, a key for spotting a redelivery
=================  ==============================================

Output: the command's stdout is discarded, because supervise's own stdout
carries the supervised child's passthrough output and nothing may be mixed
into it. Its stderr is read, keeping only the last few kilobytes, so that
a failure can be reported with the command's last words.

The command runs in a session of its own. When it runs out of time, the
whole process group gets SIGTERM and, after a grace period or as soon as
the command itself has gone, SIGKILL: helpers it started (a ``curl`` under
a shell script) do not outlive it. A command that exits on its own is not
touched further, so it may leave a background process behind on purpose.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import trio

from supervisor.sinks import ConfigError, Event, SinkError

__all__ = ["CommandSink"]

SHELL = "/bin/sh"

# Seconds between SIGTERM and SIGKILL when a command runs out of time.
_KILL_GRACE = 2.0
# After the command exits, how long to wait for its stderr to reach end of
# file: a background helper that inherited stderr may hold it open for ever.
_STDERR_DRAIN = 1.0
# Enough of stderr to hold its last line, whatever the command writes.
_STDERR_KEEP = 4096
_LINE_MAX = 200
# Errors from starting the command that a retry cannot mend.
_NOT_RUNNABLE = frozenset({errno.ENOENT, errno.EACCES, errno.ENOTDIR, errno.ENOEXEC, errno.ELOOP})
# What /bin/sh exits with when the command it was given cannot run.
_SHELL_NOT_RUNNABLE = frozenset({126, 127})


class CommandSink:
    """Run a command once per event, with the event's JSON on its stdin.

    Args:
        argv: the program and its arguments; with ``shell=True``, a single
            string run by ``/bin/sh -c`` (a one-item list is accepted too).
        shell: run ``argv`` as a shell command line.
        timeout: seconds a run may take before its process group is killed.
        env: variables added to supervise's own environment (not a
            replacement for it, so ``PATH`` and ``HOME`` stay).
        cwd: the directory to run the command in.

    Raises:
        ConfigError: ``argv`` is empty or of the wrong form, its program is
            not found on ``PATH`` (or at its path), ``cwd`` is not a
            directory, or ``timeout`` is not positive.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        shell: bool = False,
        timeout: float = 30.0,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> None:
        self.shell = shell
        self.timeout = timeout
        self.env = dict(env or {})
        self.cwd = Path(cwd) if cwd is not None else None
        if shell:
            command = _shell_command(argv)
            self.argv: tuple[str, ...] = (SHELL, "-c", command)
            self.name = f"exec:{_shell_program(command)}"
        else:
            self.argv = _program_argv(argv)
            self.name = f"exec:{os.path.basename(self.argv[0])}"
        self._check()

    def _check(self) -> None:
        """Fail at start-up, not at the first event, for what can be checked now."""
        if not self.timeout > 0:
            raise ConfigError(self.name, f"timeout must be positive, not {self.timeout}")
        if any("\0" in text for text in (*self.argv, *self.env, *self.env.values())):
            raise ConfigError(self.name, "the command line and env cannot contain NUL")
        if any(not name or "=" in name for name in self.env):
            raise ConfigError(self.name, "an environment variable's name is empty or has '='")
        if self.cwd is not None and not self.cwd.is_dir():
            raise ConfigError(self.name, f"cwd {str(self.cwd)!r} is not a directory")
        program = self.argv[0]
        if _find_program(program, self.cwd, self.env) is None:
            raise ConfigError(self.name, f"command {program!r} not found or not executable")

    async def send(self, event: Event) -> None:
        """Run the command for ``event``; return once it has exited with status 0.

        Raises:
            SinkError: the command exited with another status or was killed
                (retryable), ran out of time (retryable, and killed), or
                could not be started (not retryable when it is missing or
                not executable).
        """
        tail = bytearray()
        try:
            status = await self._run(event, tail)
        except* OSError as failure:
            raise self._start_failed(_first_os_error(failure)) from None
        if status is None:
            raise SinkError(
                self.name, _with_stderr(f"timed out after {self.timeout:g} s; killed", tail)
            )
        if status != 0:
            # sh's 126/127 mean the shell could not run the command it was given.
            retryable = not (self.shell and status in _SHELL_NOT_RUNNABLE)
            raise SinkError(
                self.name, _with_stderr(_describe_status(status), tail), retryable=retryable
            )

    async def _run(self, event: Event, tail: bytearray) -> int | None:
        """Run the command once: its exit status, or None if it ran out of time.

        The status counts as soon as the command has exited, even if the
        timeout strikes while its stderr is still being drained.
        """
        status: int | None = None
        process: trio.Process | None = None
        try:
            with trio.move_on_after(self.timeout):
                async with trio.open_nursery() as nursery:
                    process = await nursery.start(self._start_process, event)
                    assert process.stderr is not None
                    drain = trio.CancelScope()
                    nursery.start_soon(_keep_tail, process.stderr, tail, drain)
                    status = await process.wait()
                    drain.deadline = trio.current_time() + _STDERR_DRAIN
        finally:
            if process is not None and status is None:
                # Cut short (timeout, or the caller's cancellation): the
                # command is gone, reaped by run_process; now whatever of its
                # group survived the SIGTERM goes too.
                _signal_group(process.pid, signal.SIGKILL)
        return status

    async def _start_process(
        self, event: Event, *, task_status: trio.TaskStatus[trio.Process]
    ) -> None:
        """Run the command to its end, reporting the Process once it has started."""
        await trio.run_process(
            self.argv,
            stdin=event.to_json() + b"\n",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            check=False,
            start_new_session=True,
            env=self._environment(event),
            deliver_cancel=_terminate_group,
            cwd=self.cwd,
            task_status=task_status,
        )

    def _environment(self, event: Event) -> dict[str, str]:
        """supervise's environment, the configured additions, then the event's fields."""
        env = {**os.environ, **self.env}
        env.update(
            IPC_EVENT=_env_value(event.event),
            IPC_TASK_ID=_env_value(_task_id(event)),
            IPC_PROGRAM=_env_value(event.program),
            IPC_SEQ=str(event.seq),
            IPC_MESSAGE_ID=_env_value(event.message_id),
        )
        return env

    def _start_failed(self, error: OSError) -> SinkError:
        what = f"cannot start: {error.strerror or error}"
        if error.filename is not None:
            what += f": {error.filename}"
        return SinkError(self.name, what, retryable=error.errno not in _NOT_RUNNABLE)

    async def aclose(self) -> None:
        """Nothing to release: each run ends within ``send``."""
        await trio.lowlevel.checkpoint()


def _program_argv(argv: Sequence[str]) -> tuple[str, ...]:
    if isinstance(argv, str):
        # A string is a Sequence[str] too; taken letter by letter it would
        # run a program called after its first character.
        raise ConfigError("exec", f"{argv!r} is a string: pass a list, or set shell=True")
    if not argv or not argv[0]:
        raise ConfigError("exec", "the command is empty")
    return tuple(argv)


def _shell_command(argv: Sequence[str]) -> str:
    if not isinstance(argv, str):
        if len(argv) != 1:
            raise ConfigError("exec", "with shell=True the command is a single string")
        argv = argv[0]
    if not argv.strip():
        raise ConfigError("exec", "the command is empty")
    return argv


def _shell_program(command: str) -> str:
    """The program a shell command line starts with, for the sink's name.

    Leading ``NAME=value`` assignments are skipped: they may hold secrets.
    """
    for word in command.split():
        name, equals, _ = word.partition("=")
        if equals and name.isidentifier():
            continue
        return os.path.basename(word.strip("'\"")) or "sh"
    return "sh"


def _find_program(program: str, cwd: Path | None, env: Mapping[str, str]) -> str | None:
    """Where the command's program is, looked up as it will be when run.

    That is: on the ``PATH`` the command will get, and a relative path with
    a slash in it relative to ``cwd``.
    """
    if os.sep in program and cwd is not None:
        program = str(cwd / program)
    path = env.get("PATH", os.environ.get("PATH", os.defpath))
    return shutil.which(program, path=path)


async def _keep_tail(
    stream: trio.abc.ReceiveStream, tail: bytearray, drain: trio.CancelScope
) -> None:
    """Read ``stream`` to its end (or until ``drain`` is cancelled), keeping its last bytes."""
    async with stream:
        with drain:
            async for chunk in stream:
                tail += chunk
                del tail[:-_STDERR_KEEP]


async def _terminate_group(process: trio.Process) -> None:
    """run_process's ``deliver_cancel``: SIGTERM to the group, SIGKILL after a grace.

    The command leads a session of its own, so its pid is its group's id.
    run_process stops this once the command itself has exited; the caller
    then sends the rest of the group SIGKILL.
    """
    _signal_group(process.pid, signal.SIGTERM)
    await trio.sleep(_KILL_GRACE)
    _signal_group(process.pid, signal.SIGKILL)


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    # ESRCH: the group has gone already; EPERM: a member changed identity
    # (setuid), which we cannot stop anyway.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _first_os_error(group: BaseExceptionGroup[OSError]) -> OSError:
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    assert isinstance(error, OSError)
    return error


def _task_id(event: Event) -> str:
    data = event.data
    task_id = data.get("taskId") if isinstance(data, Mapping) else getattr(data, "taskId", None)
    return "" if task_id is None else str(task_id)


def _env_value(text: str) -> str:
    """``text`` as an environment value, which cannot hold NUL.

    These strings come from the child's frames, where JSON allows ``\\u0000``.
    """
    return text.replace("\0", "")


def _describe_status(status: int) -> str:
    if status >= 0:
        return f"exited with status {status}"
    try:
        return f"killed by {signal.Signals(-status).name}"
    except ValueError:
        return f"killed by signal {-status}"


def _with_stderr(problem: str, tail: bytearray) -> str:
    """``problem`` followed by the last non-blank line the command wrote to stderr."""
    for line in reversed(bytes(tail).splitlines()):
        text = line.decode("utf-8", "replace").strip()
        if text:
            text = "".join(c if c.isprintable() else "?" for c in text)
            if len(text) > _LINE_MAX:
                text = text[: _LINE_MAX - 3] + "..."
            return f"{problem}: {text}"
    return f"{problem} (nothing on stderr)"
