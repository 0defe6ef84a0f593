"""``supervise hub``: the Telegram bot for every supervise instance on this machine or bus.

    supervise hub [--config FILE] [--telegram-api-url URL] [--state FILE] [--interval SECONDS]
                  [--bus URL [--lease SECONDS]]

The bot's settings come from ``--config``'s ``[telegram]`` table and the
environment, as for ``supervise --telegram`` (``TELEGRAM_BOT_TOKEN``,
``TELEGRAM_CHAT_ID``, ``TELEGRAM_ALLOWED_USERS``). While the hub runs it holds
``control_dir()/hub.lock``; a ``supervise --telegram`` started meanwhile
says so and leaves the chat to the hub instead of polling the same token.
Stop it with Ctrl-C or SIGTERM: it has nothing to drain, since every event
it has not handled is still in its instance's journal (or, with ``--bus``,
in the stream). With ``--bus`` several hubs may run: one leads, the others
stand by (see :mod:`adapters.redis_hub`).
"""

from __future__ import annotations

import argparse
import fnmatch
import signal
import tomllib
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TypeVar

import trio
from pydantic import BaseModel, ValidationError

from .._config import BusConfig, TelegramConfig
from .._core.errors import ConfigError, SinkError
from .._core.events import Event
from .._hub.fleet import Fleet, FleetBackend, HubLock, HubState
from .._paths import prepare_control_dir, state_dir
from .terminal import warn

__all__ = ["main"]

USAGE_ERROR = 2
T = TypeVar("T", bound=BaseModel)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="supervise hub",
        description="One Telegram bot for every supervise instance on this machine"
        " (or, with --bus, on every machine that publishes to one Redis).",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="a supervise.toml whose [telegram] table sets the bot (else the environment)",
    )
    parser.add_argument(
        "--telegram-api-url", metavar="URL", help="the Bot API's base URL (tests, proxies)"
    )
    parser.add_argument(
        "--state",
        type=Path,
        metavar="FILE",
        help="where the last handled seq of each instance is kept (default: STATE_DIR/hub.json)",
    )
    parser.add_argument(
        "--bus",
        metavar="URL",
        help="serve the instances that publish to this Redis (redis://HOST:6379/0), on any"
        " machine, instead of this machine's control sockets (default: --config's [bus] url)",
    )
    parser.add_argument(
        "--interval", type=float, default=1.0, metavar="SECONDS", help="look for instances (1)"
    )
    parser.add_argument(
        "--lease",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="with --bus: how long a hub that died keeps the lead before a standby takes it (10)",
    )
    return parser


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = TelegramConfig()
        if args.config is not None:
            config = _table(args.config, "telegram", TelegramConfig) or config
            bus = _table(args.config, "bus", BusConfig)
            if args.bus is None and bus is not None:
                args.bus = bus.url
        if args.telegram_api_url:
            config = config.model_copy(update={"api_url": args.telegram_api_url})
        config = config.resolved()
        directory = state_dir()
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        state = HubState(args.state or directory / "hub.json")
        from .._paths import control_dir

        prepare_control_dir(control_dir())
        lock = HubLock()
        lock.acquire()
    except ConfigError as exc:
        warn(str(exc))
        return USAGE_ERROR
    try:
        trio.run(partial(_serve, config, state, args))
    finally:
        lock.release()
    return 0


def _table(path: Path, name: str, model: type[T]) -> T | None:
    """The ``[name]`` table of a supervise.toml, checked (the hub runs no programs of its own)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(str(path), f"not a TOML file: {exc}") from None
    table = data.get(name)
    if table is None:
        return None
    try:
        return model.model_validate(table)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in (name, *error["loc"]))
        raise ConfigError(str(path), f"{key}: {error['msg']}") from None


async def _serve(config: TelegramConfig, state: HubState, args: argparse.Namespace) -> None:
    from adapters.telegram import URGENT_EVENTS, TelegramBot

    bot: TelegramBot | None = None

    async def deliver(event: Event) -> bool:
        assert bot is not None
        if not any(fnmatch.fnmatchcase(event.event, pattern) for pattern in config.events):
            return False  # not for the chat
        attempt = 0
        while True:
            try:
                await bot.deliver(event)
                return True
            except SinkError as exc:
                if not exc.retryable:
                    warn(f"hub: {event.program}: {exc} (not sent)")
                    return True
                attempt += 1
                if attempt == 1:
                    warn(f"hub: {exc} (retrying)")
                await trio.sleep(exc.retry_after or min(30.0, 0.5 * 2**attempt))

    try:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                if args.bus is not None:
                    from adapters.redis_hub import BusBackend, BusHub

                    hub = BusHub(args.bus, deliver, lease=args.lease, report=warn)
                    bot = TelegramBot(BusBackend(hub), config, report=warn)
                    hub.while_leading = bot.run
                    leading = await nursery.start(hub.serve)
                    role = "leading" if leading else "standing by"
                    warn(f"hub: serving every supervise instance on the bus, {role} (Ctrl-C stops)")
                else:
                    fleet = Fleet(deliver, state, interval=args.interval, urgent=URGENT_EVENTS)
                    bot = TelegramBot(FleetBackend(fleet), config, report=warn)
                    await nursery.start(bot.run)
                    await nursery.start(fleet.serve)
                    warn("hub: serving every supervise instance here (Ctrl-C stops)")
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break
    finally:
        if bot is not None:
            with trio.CancelScope(shield=True):
                await bot.aclose()
