"""Talking to the user's tmux server, synchronously and without a shell.

``ts-ipc`` is a short-lived command: each tmux request is one ``tmux``
process run with an argument list (never a command string), answered in a
few milliseconds. Which server: ``$TS_IPC_TMUX_SOCKET`` (a socket path, as
``tmux -S``) if set, else whatever plain ``tmux`` would use (``$TMUX``
inside a session, else the default socket under ``$TMUX_TMPDIR``).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import NamedTuple

from .._core.errors import NoSessionError, NotAcceptedError, TmuxError
from .control_mode import ControlConnection

__all__ = [
    "SHELLS",
    "NoSessionError",
    "NotAcceptedError",
    "Pane",
    "TmuxError",
    "notify",
    "pane_of",
    "run_tmux",
    "tmux_command",
    "type_line",
]


def tmux_command(*args: str, environ: Mapping[str, str] = os.environ) -> list[str]:
    """The argv that runs ``tmux ARGS`` against ts-ipc's server."""
    program = "tmux"  # found on PATH by exec, as a shell would
    socket = environ.get("TS_IPC_TMUX_SOCKET", "")
    prefix = [program, "-S", socket] if socket else [program]
    return [*prefix, *args]


_connection: ControlConnection | None = None
"""While set (:func:`kept_connection`), requests go through this control client."""


@contextmanager
def kept_connection() -> Iterator[ControlConnection]:
    """Send this thread's and every other thread's tmux requests over one control client.

    For delivery agents (``ts-ipc serve``, supervise): a backlog costs a
    tenth of a millisecond a request instead of a process each.
    """
    global _connection
    connection = ControlConnection(tmux_command)
    previous, _connection = _connection, connection
    try:
        yield connection
    finally:
        _connection = previous
        connection.close()


def run_tmux(
    *args: str, input: bytes | None = None, timeout: float = 10
) -> subprocess.CompletedProcess[bytes]:
    """Run one tmux request; a tmux that cannot start is a :class:`TmuxError`."""
    connection = _connection
    if connection is not None and input is None:
        answer = connection.run(args, timeout)
        if answer is not None:
            succeeded, output = answer
            if succeeded:
                return subprocess.CompletedProcess(list(args), 0, output, b"")
            return subprocess.CompletedProcess(list(args), 1, b"", output)
    try:
        return subprocess.run(
            tmux_command(*args), input=input, capture_output=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TmuxError(f"tmux {args[0] if args else ''}: {exc}") from None


SHELLS = frozenset({"sh", "bash", "zsh", "dash", "ksh", "mksh", "ash", "fish", "tcsh", "csh"})
"""Programs whose being in the foreground means the pane waits at a prompt."""

_PANE_FORMAT = "\t".join(
    (
        "#{pane_id}",
        "#{pane_current_command}",
        "#{alternate_on}",
        "#{pane_in_mode}",
        "#{cursor_x}",
        "#{cursor_y}",
        "#{history_size}",
        "#{socket_path}",
    )
)


class Pane(NamedTuple):
    """What a pane is doing, from one ``display-message``."""

    id: str
    command: str
    alternate: bool
    in_mode: bool
    cursor: tuple[int, int]
    """(absolute line, column): the line counts the history above the screen."""
    socket_path: str

    @property
    def at_prompt(self) -> bool:
        return self.command in SHELLS and not self.alternate and not self.in_mode

    def busy_reason(self) -> str:
        if self.in_mode:
            return "the pane is in copy mode"
        if self.alternate:
            return f"the pane runs a full-screen program ({self.command})"
        return f"the pane is running {self.command!r}, not a shell prompt"


def argument(text: str) -> str:
    """Protect one argument from tmux's command parsing (a final ``;`` separates commands)."""
    return text[:-1] + "\\;" if text.endswith(";") else text


def escape_format(text: str) -> str:
    """``display-message`` expands formats: ``#(cmd)`` would run cmd. ``##`` is a ``#``."""
    return text.replace("#", "##")


def _failure(result: subprocess.CompletedProcess[bytes], what: str) -> TmuxError:
    reason = result.stderr.decode("utf-8", "replace").strip().splitlines()
    text = reason[0] if reason else f"exit status {result.returncode}"
    lowered = text.lower()
    if (
        "can't find" in lowered
        or "no such session" in lowered
        or "no server running" in lowered
        or "error connecting" in lowered
        or "no such file" in lowered
    ):
        return NoSessionError(f"{what}: {text}")
    return TmuxError(f"{what}: {text}")


def session_target(session: str) -> str:
    """The session's active pane, matched by exact name (plain ``mgr`` would match ``mgr2``)."""
    return f"={session}:"


def pane_of(session: str) -> Pane:
    """The session's active pane and what it is doing.

    Raises:
        NoSessionError: no such session, or no server.
        TmuxError: tmux failed otherwise.
    """
    result = run_tmux("display-message", "-p", "-t", session_target(session), _PANE_FORMAT)
    if result.returncode != 0:
        raise _failure(result, f"session {session!r}")
    try:
        return _parse_pane(result.stdout)
    except NoSessionError:
        raise NoSessionError(f"session {session!r}: can't find session") from None


def pane_by_id(pane_id: str) -> Pane:
    result = run_tmux("display-message", "-p", "-t", pane_id, _PANE_FORMAT)
    if result.returncode != 0:
        raise _failure(result, f"pane {pane_id}")
    return _parse_pane(result.stdout)


def _parse_pane(output: bytes) -> Pane:
    fields = output.decode("utf-8", "replace").rstrip("\n").split("\t")
    if len(fields) != 8:
        raise TmuxError(f"unexpected display-message output: {output[:200]!r}")
    pane_id, command, alternate, in_mode, x, y, history, socket_path = fields
    if not pane_id:
        # tmux 3.3 answers a target that does not exist with empty formats.
        raise NoSessionError("no such session or pane")
    return Pane(
        id=pane_id,
        command=command,
        alternate=alternate == "1",
        in_mode=in_mode == "1",
        cursor=(int(history or 0) + int(y or 0), int(x or 0)),
        socket_path=socket_path,
    )


def clients_of(session: str) -> list[str]:
    """The names of the clients attached to ``session``."""
    listed = run_tmux(
        "list-clients", "-t", f"={session}", "-F", "#{client_control_mode}\t#{client_name}"
    )
    if listed.returncode != 0:
        raise _failure(listed, f"session {session!r}")
    # Control-mode clients (ts-ipc's own among them) are programs, not people.
    lines = listed.stdout.decode("utf-8", "replace").splitlines()
    return [line[2:] for line in lines if line.startswith("0\t")]


def sessions_and_clients() -> tuple[set[str], dict[str, list[str]]]:
    """Every session's name, and the clients attached to each: two requests in one."""
    result = run_tmux(
        "list-sessions", "-F", "S\t#{session_name}", ";", "list-clients", "-F",
        "C\t#{client_session}\t#{client_control_mode}\t#{client_name}",
    )  # fmt: skip
    if result.returncode != 0:
        raise _failure(result, "list-sessions")
    sessions: set[str] = set()
    clients: dict[str, list[str]] = {}
    for line in result.stdout.decode("utf-8", "replace").splitlines():
        fields = line.split("\t")
        if fields[0] == "S" and len(fields) == 2:
            sessions.add(fields[1])
        elif fields[0] == "C" and len(fields) == 4 and fields[2] == "0":
            clients.setdefault(fields[1], []).append(fields[3])
    return sessions, clients


def _notify_args(session: str, text: str, source: str, clients: list[str]) -> list[str]:
    target = session_target(session)
    args = [
        "set-option", "-t", target, "@ipc_last", argument(text), ";",
        "set-option", "-t", target, "@ipc_last_from", argument(source),
    ]  # fmt: skip
    for client in clients:
        shown = argument(escape_format(text))
        args += [";", "display-message", "-c", client, "-t", target, "--", shown]
    return args


def notify_many(notes: list[tuple[str, str, str, list[str]]]) -> None:
    """Several notifications (session, text, source, clients) in one tmux request."""
    args: list[str] = []
    for session, text, source, clients in notes:
        if args:
            args.append(";")
        args += _notify_args(session, text, source, clients)
    result = run_tmux(*args)
    if result.returncode != 0:
        raise _failure(result, "notify")


def notify(session: str, text: str, source: str, clients: list[str] | None = None) -> int:
    """Show ``text`` on every client of ``session``; store it in ``@ipc_last``.

    Only the session's own clients see it (``display-message`` without
    ``-c`` would pick whichever client was active last, perhaps another
    session's). ``clients`` saves a request when the caller just listed
    them. Returns how many clients were shown the message.
    """
    if clients is None:
        clients = clients_of(session)
    result = run_tmux(*_notify_args(session, text, source, clients))
    if result.returncode != 0:
        raise _failure(result, f"session {session!r}")
    return len(clients)


def set_session_option(session: str, name: str, value: str) -> None:
    """Best effort: a session that does not exist simply does not get it."""
    run_tmux("set-option", "-t", session_target(session), name, argument(value))


def type_line(pane: Pane, text: str, *, enter_attempts: int = 3, settle: float = 0.5) -> int:
    """Type ``text`` literally into ``pane``, press Enter, confirm the pane took it.

    The text goes in as literal keys (``send-keys -l``; a multi-line text as
    a bracketed paste, so a shell or an editor that asked for bracketed
    paste takes it as one input rather than running each line). Enter is a
    separate step, sent once the pane has echoed the text: a program that
    sees Enter arrive in the same burst as a long text may take it as part
    of a paste and never run it. Accepted means the cursor left the place
    where the typed text ended, or another program took the foreground;
    otherwise Enter is pressed again, at most ``enter_attempts`` times.

    Returns:
        How many times Enter was pressed.

    Raises:
        NotAcceptedError: the pane never moved after the last Enter.
        TmuxError: tmux refused a request.
    """
    before = pane.cursor
    if "\n" in text or "\r" in text:
        buffer = f"ts-ipc-{os.getpid()}"
        loaded = run_tmux("load-buffer", "-b", buffer, "-", input=text.encode())
        if loaded.returncode != 0:
            raise _failure(loaded, "load-buffer")
        seen = _act_and_look(pane, "paste-buffer", "-p", "-d", "-r", "-b", buffer, "-t", pane.id)
    else:
        seen = _act_and_look(pane, "send-keys", "-t", pane.id, "-l", "--", argument(text))
    typed = _moved(seen, pane, before) or _wait_for_move(pane, before, settle) if text else pane
    for attempt in range(1, enter_attempts + 1):
        seen = _act_and_look(pane, "send-keys", "-t", pane.id, "Enter")
        if _moved(seen, typed, typed.cursor) or _moved(
            _wait_for_move(typed, typed.cursor, settle), typed, typed.cursor
        ):
            return attempt
    raise NotAcceptedError(
        f"pane {pane.id} did not take Enter ({enter_attempts} tries, the cursor never moved)"
    )


def _act_and_look(pane: Pane, *action: str) -> Pane:
    """Run ``action`` and read the pane's state in the same tmux request (one process)."""
    result = run_tmux(*action, ";", "display-message", "-p", "-t", pane.id, _PANE_FORMAT)
    if result.returncode != 0:
        raise _failure(result, f"pane {pane.id}")
    return _parse_pane(result.stdout)


def _moved(now: Pane, pane: Pane, position: tuple[int, int]) -> Pane | None:
    return now if now.cursor != position or now.command != pane.command else None


def _wait_for_move(pane: Pane, position: tuple[int, int], timeout: float) -> Pane:
    """Poll the pane until its cursor leaves ``position`` or its program changes."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        now = pane_by_id(pane.id)
        if now.cursor != position or now.command != pane.command:
            return now
        if time.monotonic() >= deadline:
            return now
        time.sleep(delay)
        delay = min(delay * 2, 0.02)
