"""The sink factory: a route's settings in, an adapter out.

This is the one module of the package that names the first-party adapters:
the routing layer below it knows only the :class:`~supervisor.sinks.Sink`
protocol, and the adapters know only the public ``supervisor`` names, so the
arrow from the package to ``adapters`` is drawn once, here. Each adapter is
imported on first use: a run that writes to a file never pays for httpx or
coredis.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .._core.errors import ConfigError
from .config import (
    CommandSinkConfig,
    FileSinkConfig,
    RedisSinkConfig,
    RouteConfig,
    TmuxSinkConfig,
    WebhookSinkConfig,
)

if TYPE_CHECKING:
    from ..sinks import Sink

__all__ = ["build_route_sink", "build_sink"]


def build_route_sink(route: RouteConfig) -> Sink:
    """The adapter ``route.sink`` describes.

    Raises:
        ConfigError: naming ``routes.NAME.sink``: it is missing, or the
            adapter refused it.
    """
    where = f"routes.{route.name}.sink"
    if route.sink is None:
        raise ConfigError(where, "required")
    try:
        return build_sink(route.sink)
    except ConfigError as exc:
        raise ConfigError(where, exc.problem) from None


def build_sink(
    config: FileSinkConfig
    | TmuxSinkConfig
    | CommandSinkConfig
    | WebhookSinkConfig
    | RedisSinkConfig,
) -> Sink:
    """The adapter for ``config``, imported on first use.

    Raises:
        ConfigError: the adapter refused the settings (a command that is not
            found, a tmux target that cannot be one, a bad URL).
    """
    if isinstance(config, FileSinkConfig):
        from adapters.file import FileSink

        return FileSink(config.path, max_bytes=config.max_bytes, backups=config.backups)
    if isinstance(config, TmuxSinkConfig):
        from adapters.tmux import TmuxSink

        return TmuxSink(
            config.target,
            config.action,
            socket_name=config.socket_name,
            socket_path=config.socket_path,
            command=config.command,
            allow_raw_command=config.allow_raw_command,
            data_dir=config.data_dir,
        )
    if isinstance(config, CommandSinkConfig):
        from adapters.command import CommandSink

        return CommandSink(config.command, shell=config.shell, timeout=config.timeout)
    if isinstance(config, RedisSinkConfig):
        from adapters.redis_stream import RedisStreamSink

        password = None
        if config.password_env is not None:
            password = os.environ.get(config.password_env)
            if not password:
                raise ConfigError("password_env", f"${config.password_env} is not set")
        return RedisStreamSink(
            config.url,
            config.stream,
            maxlen=config.maxlen,
            password=password,
            timeout=config.timeout,
        )
    from adapters.webhook import WebhookSink

    return WebhookSink(
        config.url,
        secret=config.resolved_secret(),
        timeout=config.timeout,
        headers=config.headers,
    )
