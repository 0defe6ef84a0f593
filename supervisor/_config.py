"""Validated settings: one program (:class:`ProgramConfig`), or a file of them.

``supervise -- CMD`` builds a :class:`ProgramConfig` from its flags; ``supervise
--config supervise.toml`` reads a :class:`SupervisorConfig` from TOML (with
``SUPERVISE_...`` environment variables overriding it); SDK users build either
directly. Values are checked here, once, so the running code can trust them,
and a mistake is reported as one line naming the file and the dotted key::

    supervise.toml: programs.loop.restart: must be one of no, on-failure, always
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)
from pydantic_core import ErrorDetails

from ._core.errors import ConfigError
from ._core.frames import DEFAULT_MAX_FRAME_BYTES
from ._core.limits import MAX_COUNT, MAX_NESTING, BackoffSettings, Count, Seconds
from ._core.program_name import default_program_name
from ._core.sizes import parse_size
from ._paths import instance_name_problem, validate_instance_name, working_directory
from ._routing.config import FileRouteConfig, sink_secret_env

__all__ = [
    "AnswersConfig",
    "BackoffConfig",
    "BusConfig",
    "GiveUpConfig",
    "JournalConfig",
    "LogConfig",
    "MetricsConfig",
    "ProgramConfig",
    "RestartPolicy",
    "SupervisorConfig",
    "TelegramConfig",
    "load_config",
    "parse_size",
]

_PROGRAM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ENV_PREFIX = "SUPERVISE_"

RestartPolicy: TypeAlias = Literal["no", "on-failure", "always"]


def _size(value: Any) -> Any:
    return parse_size(value) if isinstance(value, str) else value


def _signal_number(value: Any) -> Any:
    """Accept ``TERM``, ``SIGTERM``, ``term`` or ``15``."""
    if isinstance(value, str) and not value.isdigit():
        name = value.upper()
        name = name if name.startswith("SIG") else f"SIG{name}"
        try:
            return int(signal.Signals[name])
        except KeyError:
            raise ValueError(f"not a signal name: {value!r}") from None
    if isinstance(value, str):
        value = int(value)
    if isinstance(value, int) and value not in {int(s) for s in signal.Signals}:
        raise ValueError(f"not a signal number: {value}")
    return value


def _command(value: Any) -> Any:
    """A command is a list, or a string split the way a shell would."""
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"cannot split command: {exc}") from None
    return value


Size = Annotated[int, BeforeValidator(_size)]
SignalNumber = Annotated[int, BeforeValidator(_signal_number)]


class _Settings(BaseModel):
    # inf and nan are never a usable number of seconds or bytes.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, defer_build=True)


class BackoffConfig(BackoffSettings):
    """Delay between restarts: exponential, capped, jittered, reset after a stable run."""

    reset_after: Seconds = Field(default=60.0, ge=0)


class GiveUpConfig(_Settings):
    """When to stop restarting: ``max_failures`` failed starts within ``window`` seconds.

    ``max_failures = 0`` means never give up.
    """

    max_failures: Count = Field(default=5, ge=0)
    window: Seconds = Field(default=300.0, gt=0)


class AnswersConfig(_Settings):
    """The program's answer vocabulary: what is written to its stdin for each word.

    loopwork's safety prompt reads ``[Y/n]`` and treats anything but ``n`` as
    yes, so approve/deny default to ``y``/``n``: writing the word ``deny``
    would approve.
    """

    approve: str = "y"
    deny: str = "n"
    approval_timeout: Literal["approve", "deny"] = "deny"
    question_timeout: str | None = None
    default_timeout: Seconds = Field(default=300.0, ge=0, description="0 waits forever")


class LogConfig(_Settings):
    """Log file of the program's plain output (frames stripped), whole lines only."""

    path: Path | None = None
    timestamps: bool = False
    max_bytes: Size = Field(default=10 * 1024 * 1024, ge=0, le=2**62, description="0: never rotate")
    backups: Count = Field(default=5, ge=0)

    @field_validator("path")
    @classmethod
    def _expand_home(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None


class ProgramConfig(_Settings):
    """How to run and supervise one program.

    Attributes:
        command: program and arguments (a string is split like a shell would).
        name: the program's name in events (default: what the command runs,
            not its interpreter: ``bun src/index.ts`` in ``loopwork/`` is ``loopwork``).
        cwd: working directory (default: supervise's).
        env: variables added to (or overriding) supervise's environment.
        pass_env: secrets supervise withholds from the child (its Telegram
            token, webhook secrets, Redis passwords) that this program is
            to inherit after all, by variable name.
        pty: run under a pseudo-terminal.
        keep_frames: leave frames in the passthrough (to nest supervisors).
        max_frame_bytes: payloads above this are ``frame_invalid``/``oversize``.
        restart: ``no``, ``on-failure`` (non-zero exit or a signal) or ``always``.
        start_seconds: a run shorter than this is a failed start.
        backoff: delays between restarts.
        give_up: when repeated failed starts make the program FATAL.
        stop_signal: sent to the child's process group to stop it.
        stop_timeout: seconds between the stop signal and SIGKILL.
        stall_timeout: no output and no frame for this long is a stall (0: off).
        stall_action: what a stall does besides the ``process_stalled`` event.
        task_timeout: a task running longer emits ``task_timeout`` (0: off).
        task_timeout_action: what a task timeout does besides its event.
        answers: how answers to the child's questions are written.
        log: the per-program log file of its plain output.
        forward_eof: pass the end of supervise's stdin on to the child.
        actionable_frames: which ``question`` / ``approval_request`` frames
            may make supervise write to the child's stdin: ``line-start``
            (frames that begin a line, where the program writes its own;
            one after other text on its line is usually an AI agent's output
            that the program relays), ``anywhere``, or ``never``. Others are
            shown as output and reported as ``frame_untrusted``.
        on_approval_ignored: what happens when the program goes on with a
            task whose approval was denied, besides the ``approval_ignored``
            event: ``report`` only, or ``stop`` the program.
    """

    command: Annotated[tuple[str, ...], BeforeValidator(_command)] = Field(min_length=1)
    name: str = ""
    cwd: Path | None = None
    env: dict[str, str] = Field(default_factory=dict)
    pass_env: tuple[str, ...] = ()
    pty: bool = True
    keep_frames: bool = False
    max_frame_bytes: Size = Field(default=DEFAULT_MAX_FRAME_BYTES, ge=64, le=1024**3)
    restart: RestartPolicy = "no"
    start_seconds: Seconds = Field(default=1.0, ge=0)
    backoff: BackoffConfig = BackoffConfig()
    give_up: GiveUpConfig = GiveUpConfig()
    stop_signal: SignalNumber = int(signal.SIGTERM)
    stop_timeout: Seconds = Field(default=10.0, ge=0)
    stall_timeout: Seconds = Field(default=0.0, ge=0)
    stall_action: Literal["none", "restart"] = "none"
    task_timeout: Seconds = Field(default=0.0, ge=0)
    task_timeout_action: Literal["none", "restart"] = "none"
    answers: AnswersConfig = AnswersConfig()
    log: LogConfig = LogConfig()
    forward_eof: bool = False
    actionable_frames: Literal["line-start", "anywhere", "never"] = "line-start"
    on_approval_ignored: Literal["report", "stop"] = "report"

    @field_validator("command")
    @classmethod
    def _command_not_blank(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value[0]:
            raise ValueError("the program name is empty")
        return value

    @field_validator("cwd")
    @classmethod
    def _expand_home(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @field_validator("pass_env", mode="before")
    @classmethod
    def _one_name_is_a_list(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @field_validator("pass_env")
    @classmethod
    def _env_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not _ENV_NAME.match(name):
                raise ValueError(f"{name!r} is not an environment variable name")
        return value

    @field_validator("env")
    @classmethod
    def _env_can_exist(cls, value: dict[str, str]) -> dict[str, str]:
        """Refuse what no environment can hold; exec would fail on every start."""
        for key, text in value.items():
            if not key:
                raise ValueError("an environment variable name is empty")
            if "=" in key or "\0" in key:
                bad = "'='" if "=" in key else "a NUL byte"
                raise ValueError(f"{key!r} is not an environment variable name (it contains {bad})")
            if "\0" in text:
                raise ValueError(f"the value of {key} contains a NUL byte")
        return value

    @property
    def program_name(self) -> str:
        """``name``, else what the command runs (see :func:`default_program_name`)."""
        return self.name or default_program_name(self.command, working_directory(self.cwd))

    @classmethod
    def checked(
        cls, source: str, values: Mapping[str, object], names: Mapping[str, str] | None = None
    ) -> ProgramConfig:
        """Build from untrusted values; raise ConfigError naming the bad field.

        Args:
            source: where the values came from (a file name; empty for flags).
            values: the settings, by field name.
            names: what the user calls each field there (``--stop-timeout``),
                so the error names what they typed.
        """
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            raise _config_error(source, error, names) from None


class FileProgramConfig(ProgramConfig):
    """A program in a config file: kept alive by default, as supervisors do."""

    restart: RestartPolicy = "on-failure"


class JournalConfig(_Settings):
    """The event journal: every event, in a SQLite file, for replay and durable routes.

    Attributes:
        enabled: off runs without (no replay; durable routes keep their
            backlog in memory only).
        path: the database (default: ``$XDG_STATE_HOME/ipc-supervisor/
            INSTANCE.journal.db``).
        max_age: seconds an event is kept (events a durable route has not
            delivered yet are kept regardless).
        max_bytes: the most event data kept; the oldest go first.
    """

    enabled: bool = True
    path: Path | None = None
    max_age: Seconds = Field(default=7 * 24 * 3600.0, gt=0)
    max_bytes: Size = Field(default=256 * 1024 * 1024, ge=0, le=2**62, description="0: no limit")

    @field_validator("path")
    @classmethod
    def _expand_home(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None


class MetricsConfig(_Settings):
    """Prometheus metrics: where to serve them, and what to label.

    Attributes:
        port: serve ``/metrics`` and ``/healthz`` on this port (None: do not
            serve; 0: any free port, printed on stderr).
        host: the address to listen on; only this machine by default.
        path: where the metrics are.
        namespace_label: break task metrics down by the task's namespace.
        pushgateway: push the final metrics to this Pushgateway URL when
            supervise ends (for short runs Prometheus might never scrape).
    """

    port: int | None = Field(default=None, ge=0, le=65535)
    host: str = "127.0.0.1"
    path: str = Field(default="/metrics", pattern=r"^/[^?#]*$")
    namespace_label: bool = True
    pushgateway: str | None = Field(default=None, pattern=r"^https?://")


TELEGRAM_EVENTS = (
    "task_start",
    "task_complete",
    "task_failed",
    "loop_start",
    "loop_end",
    "question",
    "approval_request",
    "question_answered",
    "question_timeout",
    "question_withdrawn",
    "approval_ignored",
    "frame_untrusted",
    "progress_update",
    "process_state",
    "process_stalled",
    "task_timeout",
)
"""What the Telegram chat hears about by default."""


class TelegramConfig(_Settings):
    """The Telegram bot: task news in a chat, questions answered with a tap.

    The token is better kept out of the file: by default it is read from
    ``$TELEGRAM_BOT_TOKEN`` (``token_env``), the chat from
    ``$TELEGRAM_CHAT_ID`` and the allow-list from ``$TELEGRAM_ALLOWED_USERS``
    (comma-separated ids or @usernames) when the file does not set them.

    Attributes:
        token: the bot token from @BotFather (prefer ``token_env``).
        token_env: the environment variable holding the token.
        chat_id: the chat to talk in (a user id, or a group's negative id).
        allowed_users: who may answer and use /restart and /stop: user ids or
            ``@usernames``. Empty: only the user of a private chat.
        events: which events go to the chat.
        api_url: the Bot API's base URL (a local Bot API server, or tests).
        poll_timeout: seconds a getUpdates long poll waits.
        per_chat_interval: seconds between two messages to the chat.
        global_rate: messages per second overall.
        digest: for busy fleets, seconds of routine news (tasks started and
            done, loops) gathered into one message per program, edited as it
            fills; 0 (the default) sends each as it comes. Questions,
            approvals, failures and crashes are never held back.
    """

    token: str | None = Field(default=None, repr=False)
    token_env: str = "TELEGRAM_BOT_TOKEN"
    chat_id: int | None = Field(default=None, ge=-(2**63), lt=2**63)
    allowed_users: tuple[int | str, ...] = ()
    events: tuple[str, ...] = TELEGRAM_EVENTS
    api_url: str = Field(default="https://api.telegram.org", pattern=r"^https?://[^/]+")
    poll_timeout: float = Field(default=25.0, ge=0, le=50)
    per_chat_interval: Seconds = Field(default=1.0, ge=0)
    global_rate: float = Field(default=30.0, gt=0, le=MAX_COUNT)
    digest: Seconds = Field(default=0.0, ge=0)

    @field_validator("allowed_users", mode="before")
    @classmethod
    def _split_users(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("allowed_users")
    @classmethod
    def _users_well_formed(cls, value: tuple[int | str, ...]) -> tuple[int | str, ...]:
        users: list[int | str] = []
        for user in value:
            if isinstance(user, str) and user.lstrip("-").isdigit():
                user = int(user)
            if isinstance(user, str) and not re.fullmatch(r"@[A-Za-z0-9_]{3,32}", user):
                raise ValueError(f"{user!r} is neither a user id nor an @username")
            users.append(user)
        return tuple(users)

    def secret_env(self) -> tuple[str, ...]:
        """The environment variables holding this bot's token, kept from the programs.

        ``token_env``, and ``SUPERVISE_TELEGRAM__TOKEN`` (a config file
        override) when the token came from there.
        """
        override = f"{ENV_PREFIX}TELEGRAM__TOKEN"
        overrides = [name for name in os.environ if name.upper() == override]
        return (self.token_env, *overrides)

    def resolved(self, environ: Mapping[str, str] | None = None) -> TelegramConfig:
        """These settings with the token, chat and allow-list from the environment.

        Raises:
            ConfigError: no token, or no chat id, anywhere.
        """
        env = os.environ if environ is None else environ
        token = self.token or env.get(self.token_env)
        if not token:
            raise ConfigError("telegram.token", f"not set (put the bot token in ${self.token_env})")
        chat = self.chat_id
        if chat is None:
            raw = env.get("TELEGRAM_CHAT_ID", "").strip()
            if not raw.lstrip("-").isdigit():
                raise ConfigError(
                    "telegram.chat_id",
                    "not set (set chat_id, or $TELEGRAM_CHAT_ID to the chat's id)",
                )
            chat = int(raw)
        users: Any = self.allowed_users or env.get("TELEGRAM_ALLOWED_USERS", "")
        try:
            return self.model_validate(
                {**self.model_dump(), "token": token, "chat_id": chat, "allowed_users": users}
            )
        except ValidationError as error:
            first = error.errors(include_url=False)[0]
            where = "telegram." + ".".join(str(part) for part in first["loc"][:1])
            raise ConfigError(where, _friendly(first)) from None


class BusConfig(_Settings):
    """The event bus across machines: Redis Streams, read by ``supervise hub --bus``.

    Attributes:
        url: the Redis server (``redis://HOST:6379/0``).
        host: this machine's name on the bus (default: the hostname).
        maxlen: the events stream is trimmed to about this many entries
            (``MAXLEN ~``; 0 never trims). Entries beyond it are dropped
            even if no hub has read them yet, so it bounds how long a hub
            may be away: events/s of the whole fleet times that.
    """

    url: str = Field(pattern=r"^rediss?://")
    host: str | None = Field(default=None, min_length=1, max_length=100, pattern=r"^[^:/\s]+$")
    maxlen: int = Field(default=100_000, ge=0)


class SupervisorConfig(_Settings):
    """A whole ``supervise.toml``.

    Attributes:
        instance: this supervise's name for ``supervise ctl`` (default: the
            file's stem).
        programs: the programs to run, by name.
        routes: where events go (``[[routes]]`` tables), in order.
        journal: the event journal.
        metrics: Prometheus metrics.
        telegram: the Telegram bot (a ``[telegram]`` table turns it on).
        bus: the event bus across machines (a ``[bus]`` table turns it on).
        drain_timeout: seconds supervise waits at exit for routes to deliver
            what they still hold (a durable route's rest is delivered by the
            next run).
    """

    instance: str | None = None
    programs: dict[str, FileProgramConfig] = Field(min_length=1)
    routes: tuple[FileRouteConfig, ...] = ()
    journal: JournalConfig = JournalConfig()
    metrics: MetricsConfig = MetricsConfig()
    telegram: TelegramConfig | None = None
    bus: BusConfig | None = None
    drain_timeout: Seconds = Field(default=5.0, ge=0)

    def secret_env(self) -> tuple[str, ...]:
        """The variables holding secrets of this file's routes and bot, in order.

        No program inherits them unless its ``pass_env`` names them.
        """
        names = [name for route in self.routes for name in sink_secret_env(route.sink)]
        if self.telegram is not None:
            names.extend(self.telegram.secret_env())
        return tuple(dict.fromkeys(names))

    @field_validator("instance")
    @classmethod
    def _instance_name(cls, value: str | None) -> str | None:
        problem = None if value is None else instance_name_problem(value)
        if problem is not None:
            raise ValueError(f"{value!r} is not an instance name: {problem}")
        return value

    @field_validator("routes")
    @classmethod
    def _route_names_unique(cls, value: tuple[FileRouteConfig, ...]) -> tuple[FileRouteConfig, ...]:
        seen: set[str] = set()
        for route in value:
            if route.name in seen:
                raise ValueError(f"two routes are named {route.name!r}")
            seen.add(route.name)
        return value

    @field_validator("programs")
    @classmethod
    def _names_unique(cls, value: dict[str, FileProgramConfig]) -> dict[str, FileProgramConfig]:
        seen: dict[str, str] = {}
        for key, program in value.items():
            name = program.program_name
            if name in seen:
                raise ValueError(f"programs {seen[name]} and {key} share the name {name!r}")
            seen[name] = key
        return value

    @field_validator("programs", mode="before")
    @classmethod
    def _names_and_defaults(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        named: dict[str, Any] = {}
        for key, program in value.items():
            if not _PROGRAM_NAME.match(key):
                raise ValueError(
                    f"program name {key!r} must start with a letter or digit and use "
                    "only letters, digits, '_', '.' and '-'"
                )
            if isinstance(program, dict):
                program = {"name": key, **program}
            named[key] = program
        return named


def _friendly(error: ErrorDetails) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "literal_error":
        expected = str(ctx.get("expected", ""))
        choices = [part.strip(" '\"") for part in re.split(r",| or ", expected) if part.strip()]
        return "must be one of " + ", ".join(choices)
    if kind == "extra_forbidden":
        return "unknown setting"
    if kind == "missing":
        return "required"
    if kind == "too_short" and "min_length" in ctx:
        return f"needs at least {ctx['min_length']} entry"
    if (kind in ("less_than_equal", "less_than") and "le" in ctx) or "lt" in ctx:
        bound = ctx.get("le", ctx.get("lt"))
        word = "at most" if "le" in ctx else "below"
        return f"must be {word} {bound} (got {error.get('input')!r})"
    if kind == "finite_number":
        return f"must be a finite number (got {error.get('input')!r})"
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", error["msg"]))
    message = error["msg"]
    return message[:1].lower() + message[1:]


def _config_error(
    source: str,
    error: ValidationError,
    names: Mapping[str, str] | None = None,
    data: Mapping[str, Any] | None = None,
) -> ConfigError:
    first = error.errors(include_url=False)[0]
    loc = [str(part) for part in first["loc"]]
    if data is not None and len(loc) >= 2 and loc[0] == "routes" and loc[1].isdigit():
        loc[1] = _route_label(data, int(loc[1]))
        # A sink's type picks its settings model: leave its tag out of the path.
        if (
            len(loc) >= 4
            and loc[2] == "sink"
            and loc[3] in ("file", "tmux", "command", "webhook", "redis")
        ):
            del loc[3]
    where = ".".join(loc) or "<config>"
    where = (names or {}).get(where, where)
    return ConfigError(f"{source}: {where}" if source else where, _friendly(first))


def _route_label(data: Mapping[str, Any], index: int) -> str:
    """``routes[2]`` as the user knows it: by its name when it has one."""
    routes = data.get("routes")
    name = None
    if isinstance(routes, list) and index < len(routes) and isinstance(routes[index], dict):
        name = routes[index].get("name")
    return f"{index + 1} ({name})" if isinstance(name, str) else str(index + 1)


def _env_overrides(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    """Apply ``SUPERVISE_PROGRAMS__LOOP__RESTART=always``-style overrides in place.

    The top-level setting is ``SUPERVISE_INSTANCE``.

    ``__`` separates levels; names are matched case-insensitively against
    keys already in the file, else lower-cased. A value is read as a TOML
    value when it parses as one (``10``, ``true``, ``["a", "b"]``), else as
    a string.
    """
    top_level = {name for name in SupervisorConfig.model_fields if name != "programs"}
    for variable, raw in sorted(environ.items()):
        if not variable.startswith(ENV_PREFIX):
            continue
        path = variable[len(ENV_PREFIX) :].split("__")
        if len(path) == 1 and path[0].lower() not in top_level:
            continue  # SUPERVISE_SOMETHING that is not ours
        node = data
        for depth, part in enumerate(path):
            existing = {k.lower(): k for k in node}
            key = existing.get(part.lower(), part.lower())
            if depth == len(path) - 1:
                node[key] = _env_value(variable, raw)
            else:
                child = node.setdefault(key, {})
                if not isinstance(child, dict):
                    break
                node = child


def _nesting(value: object) -> int:
    """How deep arrays and tables nest in a parsed value (a scalar is 0).

    Walked with a stack of its own: the value may be deeper than Python's
    recursion limit allows a recursive walk to go.
    """
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[object] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        if deepest > MAX_NESTING:
            break
        stack.extend((child, depth + 1) for child in children)
    return deepest


class _TooDeep(Exception):
    """Arrays or tables nested deeper than MAX_NESTING."""


def _parse_toml(text: str) -> dict[str, Any]:
    """``tomllib.loads``, refusing nesting deeper than MAX_NESTING.

    tomllib recurses once per level, so a file nested thousands deep ends
    in RecursionError (Python's limit keeps that clean); anything deeper
    than MAX_NESTING that it can parse is refused the same way. Brackets
    inside strings are text, not nesting.

    Raises:
        _TooDeep: nested too deep.
        tomllib.TOMLDecodeError: not TOML.
    """
    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise _TooDeep from None
    if _nesting(data) > MAX_NESTING:
        raise _TooDeep
    return data


def _env_value(variable: str, raw: str) -> Any:
    try:
        return _parse_toml(f"v = {raw}")["v"]
    except _TooDeep:
        raise ConfigError(variable, f"nested deeper than {MAX_NESTING} levels") from None
    except tomllib.TOMLDecodeError:
        return raw


def load_config(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> SupervisorConfig:
    """Read and validate a config file, with environment overrides.

    Raises:
        ConfigError: one line naming the file and the dotted key.
    """
    source = os.fspath(path)
    try:
        with open(path, "rb") as file:
            raw = file.read()
    except OSError as exc:
        raise ConfigError(source, f"cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(source, f"not UTF-8 (byte {exc.start + 1})") from None
    try:
        data = _parse_toml(text)
    except _TooDeep:
        too_deep = f"arrays or tables nested deeper than {MAX_NESTING} levels"
        raise ConfigError(source, too_deep) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, f"invalid TOML: {exc}") from None
    _env_overrides(data, os.environ if environ is None else environ)
    try:
        config = SupervisorConfig.model_validate(data)
    except ValidationError as error:
        raise _config_error(source, error, data=data) from None
    if config.instance is None:
        stem = validate_instance_name(Path(source).stem, f"{source}: instance (the file's stem)")
        config = config.model_copy(update={"instance": stem})
    return config
