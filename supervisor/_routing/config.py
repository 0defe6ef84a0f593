"""Routes: which events go to which sink, and how hard to try.

A route is configuration (:class:`RouteConfig`, a ``[[routes]]`` table of
supervise.toml or an SDK call) plus a compiled :class:`RouteMatcher`. This
module is sans-IO: it decides *whether* an event belongs to a route and
*how* its delivery is retried; :mod:`supervisor._routing.router` does the
waiting and the sending, and :mod:`supervisor._routing.factory` turns a sink's
settings into the adapter that talks to tmux, a program, a URL or a file.

::

    [[routes]]
    name = "failures-to-mgr"
    events = ["task_failed", "process_state"]
    programs = ["loop*"]
    filter = 'data.namespace == "prod"'
    sink = { type = "tmux", target = "mgr", action = "notify" }
    ttl = 600
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .._core.errors import ConfigError, FilterError
from .._core.events import Event
from .._core.filter import compile_filter
from .._core.limits import BackoffDelay, BackoffSettings, Count, Seconds
from .._core.match import glob_matcher

if TYPE_CHECKING:
    pass

__all__ = [
    "DEFAULT_NOTIFY_EVENTS",
    "CommandSinkConfig",
    "FileRouteConfig",
    "FileSinkConfig",
    "RedisSinkConfig",
    "RetryConfig",
    "RouteConfig",
    "RouteMatcher",
    "SinkConfig",
    "TmuxSinkConfig",
    "WebhookSinkConfig",
    "parse_route_shortcut",
    "parse_sink_spec",
    "sink_secret_env",
]

TMUX_DEFAULT_TTL = 3600.0
"""How long a tmux route waits for its session to appear, unless told."""

DEFAULT_NOTIFY_EVENTS = (
    "task_failed",
    "task_complete",
    "question",
    "approval_request",
    "approval_ignored",
)
"""What ``--notify`` sends: what a person wants to be told about."""

_EVENT_GLOB = re.compile(r"^[A-Za-z0-9_.*?-]+$")
_ROUTE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")


class _Settings(BaseModel):
    # inf and nan are never a usable number of seconds or entries.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, defer_build=True)


class RetryConfig(BackoffSettings):
    """How a failed delivery is retried before it becomes a dead letter.

    Attributes:
        max_attempts: deliveries tried per event, the first included; 0
            tries for ever (the default of durable routes, so a webhook that
            is down for an hour still gets every event once it is back).
            None: 0 for durable routes and routes with a ttl, 5 for the
            others.
        initial: seconds before the first retry.
        factor: growth of the delay per failed attempt.
        cap: the longest delay between attempts.
        jitter: as for restarts (``equal``: between half and all the delay).
    """

    max_attempts: Count | None = Field(default=None, ge=0)
    initial: BackoffDelay = 0.5


class FileSinkConfig(_Settings):
    """Append events as JSON Lines to ``path``, rotated at ``max_bytes`` (0: never)."""

    type: Literal["file"] = "file"
    path: Path
    max_bytes: int = Field(default=0, ge=0, le=2**62)
    backups: Count = Field(default=5, ge=0)

    @field_validator("path")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()


class TmuxSinkConfig(_Settings):
    """Tell a tmux session, window or pane (``notify``, ``command`` or ``data``)."""

    type: Literal["tmux"] = "tmux"
    target: str = Field(min_length=1)
    action: Literal["notify", "command", "data"] = "notify"
    command: str | None = None
    allow_raw_command: bool = False
    socket_name: str | None = None
    socket_path: str | None = None
    data_dir: Path | None = None

    @model_validator(mode="after")
    def _command_needs_template(self) -> TmuxSinkConfig:
        if self.action == "command" and not self.command:
            raise ValueError("action 'command' needs a command template")
        return self


class CommandSinkConfig(_Settings):
    """Run a program per event: the event JSON on stdin, ``IPC_*`` in its environment."""

    type: Literal["command"] = "command"
    command: Annotated[tuple[str, ...], Field(min_length=1)]
    shell: bool = False
    timeout: Seconds = Field(default=30.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        # A string is one shell command line with shell = true, else it is
        # split like a shell would split it; a list with shell = true is
        # joined back into one line.
        if not isinstance(value, dict):
            return value
        command = value.get("command")
        if value.get("shell"):
            if isinstance(command, list | tuple) and command:
                command = shlex.join(str(part) for part in command)
            if isinstance(command, str):
                value = {**value, "command": (command,)}
        elif isinstance(command, str):
            value = {**value, "command": tuple(shlex.split(command))}
        return value


class WebhookSinkConfig(_Settings):
    """POST each event's JSON to ``url``, signed with a shared secret.

    The secret is better kept out of the file: ``secret_env`` names the
    environment variable that holds it.
    """

    type: Literal["webhook"] = "webhook"
    url: str = Field(min_length=1)
    secret: str | None = Field(default=None, repr=False)
    secret_env: str | None = None
    timeout: Seconds = Field(default=10.0, gt=0)
    headers: dict[str, str] = Field(default_factory=dict)

    def resolved_secret(self) -> str | None:
        """The secret, from the file or the environment.

        Raises:
            ConfigError: ``secret_env`` names a variable that is not set (an
                unsigned request would be accepted by nobody, silently).
        """
        if self.secret is not None:
            return self.secret
        if self.secret_env is not None:
            value = os.environ.get(self.secret_env)
            if not value:
                raise ConfigError("secret_env", f"${self.secret_env} is not set")
            return value
        return None


class RedisSinkConfig(_Settings):
    """XADD each event to a Redis Stream, for consumers on other machines.

    Attributes:
        url: ``redis://[:password@]host[:port][/db]`` (or ``rediss://``); the
            password is better given through ``password_env``.
        stream: the stream key; ``{program}`` and ``{event}`` in it are
            replaced per event (``ipc:{program}``).
        maxlen: keep about this many entries (``MAXLEN ~``); 0: no trimming.
        password_env: the environment variable holding the password.
        timeout: seconds a command may take.
    """

    type: Literal["redis"] = "redis"
    url: str = Field(default="redis://127.0.0.1:6379/0", pattern=r"^rediss?://")
    stream: str = Field(default="ipc:events", min_length=1)
    maxlen: int = Field(default=100_000, ge=0, le=2**62)
    password_env: str | None = None
    timeout: Seconds = Field(default=5.0, gt=0)


SinkConfig: TypeAlias = Annotated[
    FileSinkConfig | TmuxSinkConfig | CommandSinkConfig | WebhookSinkConfig | RedisSinkConfig,
    Field(discriminator="type"),
]


def sink_secret_env(sink: object) -> tuple[str, ...]:
    """The environment variables a sink's settings read a secret from.

    A webhook's ``secret_env`` and a Redis stream's ``password_env``:
    supervise keeps them from the programs it runs.
    """
    names = (getattr(sink, "secret_env", None), getattr(sink, "password_env", None))
    return tuple(name for name in names if isinstance(name, str))


class RouteConfig(_Settings):
    """One route: which events, from which programs, to which sink, how reliably.

    Attributes:
        name: names the route in errors, ``ctl dead`` and the journal (a
            durable route's progress is kept under this name).
        events: event-name globs (``task_*``); the default takes every event.
        programs: program-name globs.
        filter: an expression over the event's fields (see
            :mod:`supervisor._core.filter`), e.g. ``data.namespace == "prod"``.
        sink: where the events go; None when the route is given a sink
            object of its own (the SDK's ``route``, ``on`` and the Telegram
            bot).
        durable: journal-backed: nothing is ever dropped, and events not yet
            delivered when supervise dies are delivered after it restarts.
        queue: events held for a lagging sink (memory only; a durable route
            falls back to reading the journal when it overflows).
        overflow: what a full queue of a non-durable route does:
            ``drop-oldest`` (counted and reported) or ``block``, which holds
            up the child's events (never its output) until the sink catches
            up.
        coalesce: event names of which only the latest per task (and
            program) is kept while the sink lags, e.g. ``progress_update``.
        retry: how failed deliveries are retried (by default 5 attempts;
            until ``ttl`` when there is one; for ever when durable).
        ttl: seconds after receipt an event may still be delivered; older
            ones become dead letters (a tmux session that never appears).
            tmux routes default to an hour.
    """

    name: str
    events: tuple[str, ...] = ("*",)
    programs: tuple[str, ...] = ("*",)
    filter: str | None = None
    sink: SinkConfig | None = None
    durable: bool = False
    queue: Count = Field(default=1000, ge=1)
    overflow: Literal["drop-oldest", "block"] = "drop-oldest"
    coalesce: tuple[str, ...] = ()
    retry: RetryConfig = RetryConfig()
    ttl: Seconds | None = Field(default=None, gt=0)

    @field_validator("name")
    @classmethod
    def _name_usable(cls, value: str) -> str:
        if not _ROUTE_NAME.match(value):
            raise ValueError(
                f"route name {value!r} must start with a letter or digit and use only "
                "letters, digits, '_', '.', ':' and '-'"
            )
        return value

    @field_validator("events", "programs", "coalesce", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @field_validator("filter")
    @classmethod
    def _filter_parses(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                compile_filter(value)
            except FilterError as exc:
                raise ValueError(f"filter {value!r}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _tmux_waits_for_its_session(self) -> RouteConfig:
        # A tmux session is often started after supervise: keep trying for an
        # hour rather than giving up after a few seconds of retries.
        if self.ttl is None and isinstance(self.sink, TmuxSinkConfig):
            object.__setattr__(self, "ttl", TMUX_DEFAULT_TTL)
        return self

    @property
    def max_attempts(self) -> int:
        """Attempts per event; 0 is unlimited (until ``ttl``, if any)."""
        if self.retry.max_attempts is not None:
            return self.retry.max_attempts
        return 0 if self.durable or self.ttl is not None else 5


class FileRouteConfig(RouteConfig):
    """A ``[[routes]]`` table or a command-line route: its sink is described here."""

    sink: SinkConfig


class RouteMatcher:
    """Whether an event belongs to a route: event globs, program globs, filter."""

    def __init__(self, config: RouteConfig) -> None:
        self._events = glob_matcher(config.events)
        self._programs = glob_matcher(config.programs)
        self._filter = compile_filter(config.filter) if config.filter else None
        self.everything = self._events is None and self._programs is None and self._filter is None
        """The route takes every event: no need to ask."""

    def __call__(self, event: Event) -> bool:
        if self._events is not None and not self._events(event.event):
            return False
        if self._programs is not None and not self._programs(event.program):
            return False
        return self._filter is None or self._filter(event)


# -- the command line's short forms ------------------------------------------------


def parse_sink_spec(spec: str) -> dict[str, Any]:
    """A sink's settings from ``tmux:TARGET[:ACTION]``, ``file:PATH``,
    ``webhook:URL``, ``exec:COMMAND`` or ``redis:[URL#]STREAM``.

    Raises:
        ValueError: an unknown kind or an empty target; the message says
            which forms exist.
    """
    kind, colon, rest = spec.partition(":")
    if not colon or not rest:
        raise ValueError(
            f"bad sink {spec!r} (expected tmux:SESSION[:ACTION], file:PATH, webhook:URL, "
            "exec:COMMAND or redis:[URL#]STREAM)"
        )
    if kind == "tmux":
        target, _, action = rest.rpartition(":")
        if action in ("notify", "command", "data") and target:
            return {"type": "tmux", "target": target, "action": action}
        return {"type": "tmux", "target": rest}
    if kind == "file":
        return {"type": "file", "path": rest}
    if kind == "webhook":
        return {"type": "webhook", "url": rest}
    if kind == "exec":
        return {"type": "command", "command": rest}
    if kind == "redis":
        # redis:STREAM or redis:redis://host:port/db#STREAM
        url, hash_, stream = rest.rpartition("#")
        if hash_:
            return {"type": "redis", "url": url, "stream": stream}
        if rest.startswith(("redis://", "rediss://")):
            return {"type": "redis", "url": rest}
        return {"type": "redis", "stream": rest}
    raise ValueError(
        f"unknown sink kind {kind!r} in {spec!r} (kinds: tmux, file, webhook, exec, redis)"
    )


def parse_route_shortcut(text: str) -> dict[str, Any]:
    """``--route 'task_*,question=tmux:mgr:notify'``: event globs, then a sink."""
    events, equals, spec = text.partition("=")
    globs = tuple(glob.strip() for glob in events.split(",") if glob.strip())
    if not equals or not globs:
        raise ValueError(f"bad route {text!r} (expected EVENTS=SINK, e.g. 'task_*=tmux:mgr')")
    for glob in globs:
        if not _EVENT_GLOB.match(glob):
            raise ValueError(
                f"bad route {text!r}: {glob!r} is not an event-name glob "
                "(letters, digits, '_', '.', '-', '*' and '?')"
            )
    return {"events": globs, "sink": parse_sink_spec(spec)}
