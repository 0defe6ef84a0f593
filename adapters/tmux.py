"""TmuxSink: tell a tmux session about events.

Three actions, chosen per sink:

``notify``
    Show a one-line summary (:func:`supervisor._core.summary.summarize`) on every
    client attached to the target session, and store it in the session's
    user option ``@ipc_last`` (the event name in ``@ipc_last_event``), so a
    status line can show it: ``set -g status-right '#{@ipc_last}'``.
``command``
    Type a command line into the target pane and press Enter. The line comes
    from a template such as ``notify-send {title}``; every value is quoted
    for a POSIX shell, so event text can never add words or operators to it.
``data``
    Append the event's JSON line to ``DATA_DIR/SESSION.jsonl`` and record that
    path in the session's ``@ipc_data_file``, for tmux scripts to read.

tmux is run as a program for each delivery (never through a shell), with
arguments, not a command string. What tmux would otherwise interpret in them
is neutralised: ``#`` is doubled in displayed text (``#(cmd)`` in a format
would run ``cmd``), a trailing ``;`` is escaped (tmux would take it as a
command separator) and ``--`` ends the options. The session part of the
target is matched exactly (``=mgr``): plain ``mgr`` would also match a
session called ``mgr2``.

A session or server that does not exist (yet) is a retryable
:class:`~supervisor.SinkError`, so the router keeps the event until the
session appears or the route's ``ttl`` passes.
"""

from __future__ import annotations

import enum
import errno
import json
import os
import re
import shlex
import shutil
import string
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeAlias

import trio

from supervisor.sinks import ConfigError, Event, SinkError, summarize

__all__ = [
    "MAX_COMMAND_BYTES",
    "PLACEHOLDERS",
    "CommandTemplate",
    "Placeholder",
    "TmuxAction",
    "TmuxSink",
    "TmuxTarget",
    "default_data_dir",
    "escape_format",
    "placeholder_values",
    "terminal_safe",
]

TmuxAction: TypeAlias = Literal["notify", "command", "data"]

PLACEHOLDERS = frozenset(
    {"event", "program", "seq", "source", "message_id", "task_id", "title", "summary", "raw"}
)
"""Placeholder names a command template may use, besides ``data.FIELD[.FIELD...]``."""

MAX_COMMAND_BYTES = 4000
"""The longest line ``command`` types (UTF-8 bytes).

A terminal in canonical mode (a shell without line editing, such as dash)
keeps at most 4095 bytes of a line and drops the rest, which could cut a
quoted value in half and leave the next line inside its quotes.
"""

_DATA_PATH = re.compile(r"^data(?:\.[A-Za-z0-9_-]+)+$")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SURROGATES = re.compile("[\ud800-\udfff]")
_TARGET = re.compile(r"^(?P<session>[^:.]+)(?::(?P<window>[^:.]*)(?:\.(?P<pane>[^:.]+))?)?$")
_OPTION = re.compile(r"^@[A-Za-z0-9_-]+$")

# tmux's messages when the session, window, pane or whole server is not
# there (yet): worth retrying, unlike a refused command.
_MISSING = (
    "can't find session",
    "no such session",
    "can't find window",
    "can't find pane",
    "no server running",
    "error connecting to",
    "server exited",
    "lost server",
)


# -- text that tmux or a terminal would interpret -----------------------------


def escape_format(text: str) -> str:
    """Double every ``#``, so tmux shows ``text`` as written.

    ``display-message`` expands its argument as a format, where ``#(cmd)``
    runs ``cmd`` and ``#{...}`` reads variables; a status line showing an
    option draws ``#[...]`` as a style. ``##`` is a literal ``#`` in both.
    """
    return text.replace("#", "##")


def terminal_safe(text: str) -> str:
    """``text`` with every control character replaced by a space.

    Typed into a pane, a control character is a key: ``C-c`` or ``C-u``
    discards the line typed so far, Tab completes, ``C-j`` submits. Any of
    them would let event text escape its quotes by editing the command line
    around them. Lone surrogates, which cannot be encoded, become U+FFFD.
    """
    return _CONTROLS.sub(" ", _SURROGATES.sub("\ufffd", text))


def _argument(text: str) -> str:
    """Protect one argument from tmux's own parsing of its command line.

    tmux 3.x splits its arguments into commands at any argument ending in
    ``;``, and turns a final ``\\;`` back into ``;``.
    """
    return text[:-1] + "\\;" if text.endswith(";") else text


# -- targets ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TmuxTarget:
    """A parsed ``session[:window[.pane]]`` target.

    Attributes:
        session: the session name (or ``$id``) as written, without a leading ``=``.
        window: the window index or name, or None for the session's current one.
        pane: the pane index, or None for the window's active one.
    """

    session: str
    window: str | None = None
    pane: str | None = None

    @classmethod
    def parse(cls, text: str) -> TmuxTarget:
        """Parse ``mgr``, ``mgr:2``, ``mgr:editor.1`` or ``$3:1``.

        Raises:
            ConfigError: the text is empty, contains control characters, or
                does not have the ``session[:window[.pane]]`` shape.
        """
        match = _TARGET.match(text)
        if match is None or _CONTROLS.search(text) or text.startswith("-"):
            raise ConfigError(
                "target",
                f"{text!r} is not a tmux target (session, session:window or session:window.pane)",
            )
        session = match["session"].removeprefix("=")
        if not session:
            raise ConfigError("target", f"{text!r} has no session name")
        return cls(session, match["window"] or None, match["pane"])

    @property
    def session_target(self) -> str:
        """``=mgr`` (exact match) or ``$3``, for commands that take a session."""
        return self.session if self.session.startswith("$") else f"={self.session}"

    @property
    def pane_target(self) -> str:
        """``=mgr:2.1`` or ``=mgr:``, for commands that take a pane.

        tmux 3.3a refuses ``=mgr`` where it expects a pane, but takes ``=mgr:``.
        """
        pane = f".{self.pane}" if self.pane is not None else ""
        return f"{self.session_target}:{self.window or ''}{pane}"


# -- command templates ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Placeholder:
    """A ``{name}`` in a command template."""

    name: str


class _Quote(enum.Enum):
    """Where a POSIX shell lexer is within a line."""

    NONE = enum.auto()
    ESCAPED = enum.auto()  # after an unquoted backslash
    SINGLE = enum.auto()
    DOUBLE = enum.auto()
    DOUBLE_ESCAPED = enum.auto()  # after a backslash inside double quotes
    BACKTICK = enum.auto()  # inside `...`, which the first unescaped ` ends
    BACKTICK_ESCAPED = enum.auto()
    # A command substitution inside double quotes starts a fresh quoting
    # context that this scanner does not follow, so no placeholder may come
    # after one.
    OPAQUE = enum.auto()


_NEXT_STATE = {
    _Quote.NONE: {
        "\\": _Quote.ESCAPED,
        "'": _Quote.SINGLE,
        '"': _Quote.DOUBLE,
        "`": _Quote.BACKTICK,
    },
    _Quote.SINGLE: {"'": _Quote.NONE},
    _Quote.DOUBLE: {"\\": _Quote.DOUBLE_ESCAPED, '"': _Quote.NONE, "`": _Quote.OPAQUE},
    _Quote.BACKTICK: {"\\": _Quote.BACKTICK_ESCAPED, "`": _Quote.NONE},
}
_AFTER_ESCAPE = {
    _Quote.ESCAPED: _Quote.NONE,
    _Quote.DOUBLE_ESCAPED: _Quote.DOUBLE,
    _Quote.BACKTICK_ESCAPED: _Quote.BACKTICK,
}


def _scan(text: str, state: _Quote) -> tuple[_Quote, bool]:
    """Run a shell's quoting rules over ``text``.

    Returns:
        The state after ``text``, and whether its last character was an
        unquoted, unescaped ``$`` (``$'...'`` is ANSI-C quoting in bash and
        zsh, where a backslash in the value could end the quotes).
    """
    dollar = False
    for char in text:
        if state in _AFTER_ESCAPE:
            state, dollar = _AFTER_ESCAPE[state], False
        elif state is _Quote.OPAQUE or (state is _Quote.DOUBLE and dollar and char == "("):
            state, dollar = _Quote.OPAQUE, False
        else:
            dollar = char == "$" and state in (_Quote.NONE, _Quote.DOUBLE)
            state = _NEXT_STATE[state].get(char, state)
    return state, dollar and state is _Quote.NONE


def _check_placeholder(name: str, allow_raw: bool) -> None:
    if name == "raw" and not allow_raw:
        raise ConfigError(
            "command", "placeholder {raw} needs allow_raw_command (it types the whole event JSON)"
        )
    if name not in PLACEHOLDERS and not _DATA_PATH.match(name):
        known = ", ".join(f"{{{known}}}" for known in sorted(PLACEHOLDERS))
        raise ConfigError(
            "command", f"unknown placeholder {{{name}}} (known: {known}, {{data.FIELD}})"
        )


@dataclass(frozen=True, slots=True)
class CommandTemplate:
    """A shell command line with ``{placeholders}``, checked once, rendered per event.

    Placeholders must stand where a shell word may begin or continue
    outside quotes (``notify-send {title}``, ``--id={task_id}``); inside
    quotes (``"{title}"``), after a backslash or after ``$`` the quoting of
    the value would not hold, so such templates are refused. ``{{`` and
    ``}}`` are literal braces.

    Attributes:
        source: the template as written.
        parts: literal text and placeholders, in order.
    """

    source: str
    parts: tuple[str | Placeholder, ...]

    @classmethod
    def parse(cls, source: str, *, allow_raw: bool = False) -> CommandTemplate:
        """Check and split a template.

        Args:
            source: e.g. ``printf '%s\\n' {title} >> ~/done.txt``.
            allow_raw: whether ``{raw}`` (the event's whole JSON) may be used.

        Raises:
            ConfigError: unknown or misplaced placeholders, ``{raw}`` without
                ``allow_raw``, control characters (a newline would run the
                line early), or quotes left open at the end.
        """
        if not source.strip():
            raise ConfigError("command", "the command template is empty")
        if _CONTROLS.search(source):
            raise ConfigError("command", "the command template must be one line of text")
        try:
            fields = list(string.Formatter().parse(source))
        except ValueError as exc:
            raise ConfigError(
                "command", f"{exc} (write {{{{ and }}}} for literal braces)"
            ) from None
        parts: list[str | Placeholder] = []
        state = _Quote.NONE
        for literal, name, spec, conversion in fields:
            state, dollar = _scan(literal, state)
            if literal:
                parts.append(literal)
            if name is None:
                continue
            if spec or conversion or not name:
                raise ConfigError("command", f"placeholder {{{name}}}: write a bare {{name}}")
            _check_placeholder(name, allow_raw)
            if state is not _Quote.NONE or dollar:
                raise ConfigError(
                    "command",
                    f"placeholder {{{name}}} is inside quotes or backticks, after '\\' "
                    "or '$', or after a command substitution in double quotes; "
                    "values are quoted already, so write it as a bare word",
                )
            parts.append(Placeholder(name))
        if state not in (_Quote.NONE, _Quote.OPAQUE):
            raise ConfigError("command", "the command template ends inside quotes or after '\\'")
        return cls(source, tuple(parts))

    @property
    def names(self) -> frozenset[str]:
        """The placeholder names used."""
        return frozenset(part.name for part in self.parts if isinstance(part, Placeholder))

    def render(self, values: Mapping[str, str]) -> str:
        """The command line, each value made terminal-safe and shell-quoted.

        Pure, so its central promise is testable: for any values,
        ``shlex.split`` of the result gives the template's words with the
        values in place, and nothing more. A name missing from ``values``
        renders as ``''``.
        """
        return "".join(
            part if isinstance(part, str) else shlex.quote(terminal_safe(values.get(part.name, "")))
            for part in self.parts
        )


def _as_text(value: Any) -> str:
    """A JSON value as a command argument: strings as they are, the rest as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _lookup(value: Any, path: Sequence[str]) -> Any:
    for key in path:
        if isinstance(value, dict):
            value = value.get(key)
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return None
    return value


def placeholder_values(event: Event, names: Iterable[str]) -> dict[str, str]:
    """The text of each placeholder in ``names`` for ``event``.

    Values come from the event's JSON form, so ``{data.FIELD}`` sees exactly
    the fields the child sent, under the names it sent them.
    """
    raw = event.to_json()
    fields = json.loads(raw)
    data = fields.get("data")
    values: dict[str, str] = {}
    for name in names:
        if name == "raw":
            value: Any = raw.decode()
        elif name == "summary":
            value = summarize(event)
        elif name == "message_id":
            value = fields.get("messageId")
        elif name == "task_id":
            value = _lookup(data, ["taskId"])
        elif name == "title":
            value = _lookup(data, ["title"])
        elif name.startswith("data."):
            value = _lookup(data, name.split(".")[1:])
        else:
            value = fields.get(name)
        values[name] = _as_text(value)
    return values


# -- the sink ---------------------------------------------------------------------


def default_data_dir() -> Path:
    """``$XDG_STATE_HOME/ipc-supervisor/tmux``, or under ``~/.local/state``."""
    state = os.environ.get("XDG_STATE_HOME") or ""
    base = Path(state) if os.path.isabs(state) else Path.home() / ".local" / "state"
    return base / "ipc-supervisor" / "tmux"


class TmuxSink:
    """Deliver events to a tmux session by notifying, typing a command or writing data.

    Args:
        target: ``session``, ``session:window`` or ``session:window.pane``.
        action: ``notify``, ``command`` or ``data`` (see the module docs).
        socket_name: the server's socket name (``tmux -L``).
        socket_path: the server's socket path (``tmux -S``).
        command: the template ``command`` types, e.g. ``notify-send {title}``.
        allow_raw_command: allow ``{raw}``, the event's whole JSON, in it.
        data_dir: where ``data`` writes; default :func:`default_data_dir`.
        option: the user option ``notify`` sets; ``OPTION_event`` gets the
            event name.
        tmux: the tmux program.
        timeout: seconds one tmux invocation may take.

    Raises:
        ConfigError: a target that cannot be one, a missing or bad template,
            both socket options, a bad option name, or no tmux program.
    """

    def __init__(
        self,
        target: str,
        action: TmuxAction = "notify",
        *,
        socket_name: str | None = None,
        socket_path: str | os.PathLike[str] | None = None,
        command: str | None = None,
        allow_raw_command: bool = False,
        data_dir: str | os.PathLike[str] | None = None,
        option: str = "@ipc_last",
        tmux: str = "tmux",
        timeout: float = 5.0,
    ) -> None:
        self.target = TmuxTarget.parse(target)
        self.action: TmuxAction = action
        self.name = f"tmux:{target}:{action}"
        self.template = _template_for(action, command, allow_raw_command)
        if action == "data" and "/" in self.target.session:
            raise ConfigError("target", "a session name with '/' cannot name a data file")
        self.data_dir = Path(data_dir).expanduser() if data_dir else default_data_dir()
        if not _OPTION.match(option):
            raise ConfigError("option", f"{option!r} is not a tmux user option (@name)")
        self.option = option
        if not timeout > 0:
            raise ConfigError("timeout", "must be more than 0 seconds")
        self.timeout = timeout
        self._argv = [_find_program(tmux), *_socket_arguments(socket_name, socket_path)]
        self._private_server = socket_name is not None or socket_path is not None

    @property
    def data_file(self) -> Path:
        """Where the ``data`` action appends events."""
        return self.data_dir / f"{self.target.session}.jsonl"

    async def send(self, event: Event) -> None:
        """Deliver ``event`` by this sink's action.

        Raises:
            SinkError: retryable when the session or server is missing or
                tmux timed out; not retryable when tmux refused the command.
        """
        if self.action == "notify":
            await self._notify(event)
        elif self.action == "command":
            await self._type_command(event)
        else:
            await self._append_data(event)

    async def aclose(self) -> None:
        """Nothing is held between deliveries."""
        await trio.lowlevel.checkpoint()

    # -- actions

    async def _notify(self, event: Event) -> None:
        pane = self.target.pane_target
        text = escape_format(summarize(event))
        listed = await self._run(
            ["list-clients", "-t", self.target.session_target, "-F", "#{client_name}"]
        )
        # display-message without -c picks the most recently active client,
        # which may be showing another session; with no client at all it
        # silently does nothing. So name each client of this session.
        event_name = escape_format(terminal_safe(event.event))
        commands = [
            ["set-option", "-t", pane, "--", self.option, text],
            ["set-option", "-t", pane, "--", f"{self.option}_event", event_name],
        ]
        commands += [
            ["display-message", "-c", client, "-t", pane, "--", text]
            for client in listed.stdout.decode(errors="replace").splitlines()
            if client
        ]
        await self._run(*commands)

    async def _type_command(self, event: Event) -> None:
        assert self.template is not None
        line = self.template.render(placeholder_values(event, self.template.names))
        size = len(line.encode())
        if size > MAX_COMMAND_BYTES:
            raise SinkError(
                self.name,
                f"the command line would be {size} bytes, over the {MAX_COMMAND_BYTES} "
                "a terminal line holds",
                retryable=False,
            )
        pane = self.target.pane_target
        # One invocation, so the line is never left typed without its Enter.
        await self._run(
            ["send-keys", "-t", pane, "-l", "--", line], ["send-keys", "-t", pane, "Enter"]
        )

    async def _append_data(self, event: Event) -> None:
        path = self.data_file
        # Setting the option doubles as the check that the session exists,
        # before anything is written for it.
        await self._run(
            ["set-option", "-t", self.target.pane_target, "--", "@ipc_data_file", str(path)]
        )
        try:
            _append(path, event.to_json() + b"\n")
        except OSError as exc:
            raise SinkError(
                self.name,
                f"cannot append to {path}: {exc.strerror or exc}",
                retryable=exc.errno not in _PERMANENT_ERRNOS,
            ) from exc
        await trio.lowlevel.checkpoint()

    # -- running tmux

    async def _run(self, *commands: Sequence[str]) -> subprocess.CompletedProcess[bytes]:
        """Run tmux commands in one invocation (``;``-separated), in order.

        tmux stops at the first command that fails, so later ones in the
        same call depend on the earlier ones succeeding.
        """
        argv = list(self._argv)
        for index, command in enumerate(commands):
            if index:
                argv.append(";")
            argv.extend([command[0], *map(_argument, command[1:])])
        with trio.move_on_after(self.timeout):
            try:
                result = await trio.run_process(
                    argv, capture_stdout=True, capture_stderr=True, check=False, env=self._env()
                )
            except OSError as exc:
                raise SinkError(
                    self.name,
                    f"cannot run {self._argv[0]}: {exc.strerror or exc}",
                    retryable=exc.errno not in _PERMANENT_ERRNOS,
                ) from exc
            if result.returncode != 0:
                raise self._failure(result)
            return result
        raise SinkError(self.name, f"tmux did not answer within {self.timeout:g}s")

    def _failure(self, result: subprocess.CompletedProcess[bytes]) -> SinkError:
        lines = result.stderr.decode(errors="replace").strip().splitlines()
        problem = lines[0] if lines else f"tmux exited with status {result.returncode}"
        missing = any(phrase in problem for phrase in _MISSING)
        return SinkError(self.name, problem, retryable=missing)

    def _env(self) -> dict[str, str] | None:
        """The caller's environment, minus ``TMUX`` when the server is named.

        Without ``-L``/``-S`` tmux finds the server through ``TMUX`` (the
        session supervise itself runs in), which is what the user means.
        """
        if not self._private_server:
            return None
        return {k: v for k, v in os.environ.items() if k not in ("TMUX", "TMUX_PANE")}


_PERMANENT_ERRNOS = frozenset(
    {
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENOENT,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.E2BIG,
    }
)


def _template_for(
    action: TmuxAction, command: str | None, allow_raw: bool
) -> CommandTemplate | None:
    if action not in ("notify", "command", "data"):
        raise ConfigError("action", f"{action!r} is not one of notify, command, data")
    if action != "command":
        if command is not None:
            raise ConfigError(
                "command", f"a command template needs action 'command', not {action!r}"
            )
        return None
    if command is None:
        raise ConfigError("command", "action 'command' needs a command template")
    return CommandTemplate.parse(command, allow_raw=allow_raw)


def _socket_arguments(
    socket_name: str | None, socket_path: str | os.PathLike[str] | None
) -> list[str]:
    if socket_name is not None and socket_path is not None:
        raise ConfigError(
            "socket_name", "give socket_name (tmux -L) or socket_path (tmux -S), not both"
        )
    if socket_name is not None:
        if not socket_name or "/" in socket_name:
            raise ConfigError("socket_name", f"{socket_name!r} is not a socket name")
        return ["-L", socket_name]
    if socket_path is not None:
        return ["-S", os.fspath(socket_path)]
    return []


def _find_program(tmux: str) -> str:
    found = shutil.which(tmux)
    if found is None:
        raise ConfigError("tmux", f"{tmux!r} is not an executable program on PATH")
    return found


def _append(path: Path, line: bytes) -> None:
    """Append ``line`` with one ``write``, as :class:`adapters.file.FileSink` does.

    ``O_NONBLOCK`` keeps a FIFO put in the file's place from blocking the
    event loop; a regular file never blocks.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK
    fd = os.open(path, flags, 0o600)
    try:
        view = memoryview(line)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
