"""One kept-open tmux control-mode connection, for delivery agents with a backlog.

Each tmux request of a one-shot ``ts-ipc send`` is a ``tmux`` process (a
few milliseconds each, most of it process start). A delivery agent that
works through a backlog (a session that appears with 1,000 messages waiting
for it) would spend almost all its time starting processes: a confirmed
command costs four to six requests. ``tmux -C`` (control mode) takes
commands on stdin and answers each in a ``%begin`` / ``%end`` (or
``%error``) block, ~0.1 ms a request, so :func:`supervisor._ipc.tmux.run_tmux`
sends its requests here while a :class:`ControlConnection` is in use.

The connection attaches to an existing session as a client with the
``ignore-size`` and ``no-output`` flags: it never resizes a window and is
sent no pane output. Notifications skip it (it is not a person's client).
When its session ends, the client is gone; the next request starts another
(or, with no session left, falls back to one process per request, which
also reports "no server" the usual way).

Arguments travel as one command line, each argument in single quotes
(``'`` written as ``'\\''``), so tmux's parser sees words, never
operators, variables, ``~`` or comments. A request whose arguments hold a
line break cannot travel on one line: :meth:`ControlConnection.run` returns
None for it and the caller starts a process instead.
"""

from __future__ import annotations

import logging
import re
import subprocess
import threading
from collections.abc import Callable, Sequence

from .._core.errors import TmuxError

__all__ = ["ControlConnection", "command_line"]

logger = logging.getLogger(__name__)

_BLOCK_END = re.compile(rb"^%(end|error) (\d+) (\d+) (\d+)$")
_BLOCK_BEGIN = re.compile(rb"^%begin (\d+) (\d+) (\d+)$")


def command_line(args: Sequence[str]) -> str:
    """``args`` as one tmux command line; a lone ``;`` stays a separator.

    An argument that the argv form protects with a final ``\\;`` (see
    :func:`supervisor._ipc.tmux.argument`) is quoted as its plain ``;`` text.
    """
    words = []
    for arg in args:
        if arg == ";":
            words.append(";")
            continue
        if arg.endswith("\\;"):
            arg = arg[:-2] + ";"
        words.append("'" + arg.replace("'", "'\\''") + "'")
    return " ".join(words)


class ControlConnection:
    """A control-mode client, started on first use; thread-safe (one request at a time)."""

    def __init__(self, argv: Callable[..., list[str]]) -> None:
        self._argv = argv
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None

    def run(self, args: Sequence[str], timeout: float = 10) -> tuple[bool, bytes] | None:
        """Send one request; (succeeded, output), or None to use a process instead.

        A request of several commands (``a ; b``) is sent a command a line:
        control mode answers each command of a line in a block of its own
        and skips the rest after a failure, so one per line keeps replies
        and requests paired. As in a process, the first failure ends it.
        """
        if any("\n" in arg or "\r" in arg for arg in args):
            return None
        commands: list[list[str]] = [[]]
        for arg in args:
            if arg == ";":
                commands.append([])
            else:
                commands[-1].append(arg)
        with self._lock:
            process = self._ensure()
            if process is None:
                return None
            output = b""
            sent = False
            try:
                assert process.stdin is not None
                for command in commands:
                    line = command_line(command).encode("utf-8", "surrogateescape")
                    sent = True
                    process.stdin.write(line + b"\n")
                    process.stdin.flush()
                    succeeded, text = self._answer(process)
                    output += text
                    if not succeeded:
                        return False, output
            except (OSError, TmuxError) as exc:
                logger.info("tmux control connection lost: %s", exc)
                self._stop()
                if sent:
                    # Part of it may have happened (keys typed): doing it
                    # again in a process could type them twice.
                    raise TmuxError(
                        f"the tmux control connection ended mid-request: {exc}"
                    ) from None
                return None
            return True, output

    def close(self) -> None:
        with self._lock:
            self._stop()

    def __enter__(self) -> ControlConnection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _ensure(self) -> subprocess.Popen[bytes] | None:
        if self._process is not None and self._process.poll() is None:
            return self._process
        self._stop()
        listed = subprocess.run(
            self._argv("list-sessions", "-F", "#{session_id}"), capture_output=True, check=False
        )
        sessions = listed.stdout.split() if listed.returncode == 0 else []
        if not sessions:
            return None
        try:
            process = subprocess.Popen(
                self._argv(
                    "-C",
                    "attach-session",
                    "-f",
                    "ignore-size,no-output",
                    "-t",
                    sessions[0].decode(),
                ),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        except OSError:
            return None
        self._process = process
        # The attach itself is answered with an empty block; wait for it.
        try:
            self._answer(process)
        except TmuxError:
            self._stop()
            return None
        return process

    def _answer(self, process: subprocess.Popen[bytes]) -> tuple[bool, bytes]:
        """Read up to the end of the next reply block; notifications around it are skipped."""
        assert process.stdout is not None
        number = None
        output: list[bytes] = []
        while True:
            raw = process.stdout.readline()
            if not raw:
                raise TmuxError("the control client ended")
            line = raw.rstrip(b"\n")
            if number is None:
                begin = _BLOCK_BEGIN.match(line)
                if begin:
                    number = begin.group(2)
                elif line.startswith(b"%exit"):
                    raise TmuxError("the control client was detached")
                continue
            end = _BLOCK_END.match(line)
            if end and end.group(3) == number:
                body = b"".join(part + b"\n" for part in output)
                return end.group(1) == b"end", body
            output.append(line)

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        try:
            if process.stdin is not None:
                process.stdin.close()
        except OSError:
            pass
        try:
            process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
