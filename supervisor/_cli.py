"""The ``supervise`` command line.

``main(argv)`` parses options, sets up supervise's terminal and streams, runs
the program under trio and returns the exit status: the child's own, 128+N if
signal N killed it, 127/126 if it could not be started, 2 for bad usage.
``trio.run`` is called only here.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Sequence

import trio

from adapters.file import FileSink

from . import __version__
from ._child import shell_status
from ._config import ProgramConfig, parse_size
from ._errors import ConfigError, SinkError, SpawnError
from ._events import Event, FrameInvalidData
from ._supervisor import ProgramRunner, TerminalSettings
from ._terminal import (
    open_input_stream,
    open_output_stream,
    raw_terminal,
    terminal_modes,
    warn,
    window_size,
)
from .sinks import Sink, send_batch

__all__ = ["build_parser", "main"]

USAGE_ERROR = 2
# Events wait here for the sinks; the decoder never waits unless the sinks
# fall this far behind.
_EVENT_BUFFER = 16384
# At most this many events go to a sink in one call.
_BATCH = 1024
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="supervise",
        usage="supervise [options] -- COMMAND [ARGS...]",
        description=(
            "Run COMMAND under a pseudo-terminal, pass its output through untouched "
            "minus the __IPC_START__...__IPC_END__ frames, and turn the frames into "
            "events. Exits with COMMAND's exit status."
        ),
    )
    parser.add_argument("--events", metavar="PATH", help="append every event to PATH as JSON Lines")
    parser.add_argument(
        "--name", default="", help="program name in events (default: COMMAND's basename)"
    )
    parser.add_argument(
        "--no-pty",
        dest="pty",
        action="store_false",
        help="use pipes instead of a pty; the child's stderr goes to supervise's stderr",
    )
    parser.add_argument(
        "--keep-frames",
        action="store_true",
        help="leave frames in the passthrough (to nest one supervisor under another)",
    )
    parser.add_argument(
        "--max-frame-bytes",
        type=_size,
        default="1M",
        metavar="SIZE",
        help="larger frame payloads are reported as invalid and shown as output (default 1M)",
    )
    parser.add_argument(
        "--stop-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="after a stop signal, SIGKILL the child's group this much later (default 10)",
    )
    parser.add_argument(
        "--forward-eof",
        action="store_true",
        help="pass the end of supervise's stdin on to the child (default: keep its input open)",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="do not report invalid frames on stderr"
    )
    parser.add_argument("--version", action="version", version=f"supervise {__version__}")
    parser.add_argument("command", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def _terminal_settings() -> TerminalSettings:
    input_is_terminal = os.isatty(0)
    output_is_terminal = os.isatty(1)
    return TerminalSettings(
        modes=terminal_modes(0) or terminal_modes(1),
        size=window_size(0, 1, 2),
        output_is_terminal=output_is_terminal,
        input_is_terminal=input_is_terminal,
    )


async def _deliver(
    receive: trio.MemoryReceiveChannel[Event], sinks: list[Sink], quiet: bool
) -> None:
    """Hand events to every sink, a batch at a time; a failing sink is reported, not fatal."""
    failed: set[str] = set()
    reporter = _InvalidFrameReporter()
    async with receive:
        async for first in receive:
            batch = [first]
            with contextlib.suppress(trio.WouldBlock):
                while len(batch) < _BATCH:
                    batch.append(receive.receive_nowait())
            if not quiet:
                for event in batch:
                    if event.event == "frame_invalid":
                        reporter.report(event.data)
            for sink in sinks:
                try:
                    await send_batch(sink, batch)
                except SinkError as exc:
                    if sink.name not in failed:
                        failed.add(sink.name)
                        warn(f"{exc} (further failures of this sink are not reported)")


class _InvalidFrameReporter:
    """One stderr line per invalid frame, at most one a second: a child spewing
    garbage must not bury its own output under our warnings."""

    def __init__(self, interval: float = 1.0) -> None:
        self._interval = interval
        self._last = -interval
        self._unreported = 0

    def report(self, data: FrameInvalidData) -> None:
        now = time.monotonic()
        if now - self._last < self._interval:
            self._unreported += 1
            return
        more = f" ({self._unreported} more not shown)" if self._unreported else ""
        warn(f"invalid frame at byte {data.offset} ({data.reason}): {data.detail}{more}")
        self._last = now
        self._unreported = 0


async def _forward_signals(signals: AsyncIterator[int], runner: ProgramRunner) -> None:
    async for signum in signals:
        if signum == signal.SIGWINCH:
            size = window_size(0, 1, 2)
            if size is not None:
                runner.resize(*size)
        else:
            runner.request_stop(signum)


async def _run(
    config: ProgramConfig, terminal: TerminalSettings, events_path: str | None, quiet: bool
) -> int:
    sinks: list[Sink] = []
    if events_path:
        file_sink = FileSink(events_path)
        file_sink.open()
        sinks.append(file_sink)
    output = open_output_stream(1)
    try:
        stdin: trio.abc.ReceiveStream | None = open_input_stream(0)
    except OSError:
        stdin = None  # stdin is closed
    send, receive = trio.open_memory_channel[Event](_EVENT_BUFFER)
    runner = ProgramRunner(config, events=send, output=output, input=stdin, terminal=terminal)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_deliver, receive, sinks, quiet)
            async with send:
                with trio.open_signal_receiver(*_STOP_SIGNALS, signal.SIGWINCH) as signals:
                    async with trio.open_nursery() as signal_nursery:
                        signal_nursery.start_soon(_forward_signals, signals, runner)
                        returncode = await runner.run()
                        signal_nursery.cancel_scope.cancel()
        if runner.output_lost:
            warn("standard output was closed; stopped the child")
    finally:
        with trio.CancelScope(shield=True):
            for sink in sinks:
                await sink.aclose()
            await output.aclose()
            if stdin is not None:
                await stdin.aclose()
    return shell_status(returncode)


def _parse(argv: Sequence[str]) -> tuple[ProgramConfig, argparse.Namespace]:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        parser.error("no command given (usage: supervise [options] -- COMMAND [ARGS...])")
    values = {
        "command": command,
        "name": args.name,
        "pty": args.pty,
        "keep_frames": args.keep_frames,
        "max_frame_bytes": args.max_frame_bytes,
        "stop_timeout": args.stop_timeout,
        "forward_eof": args.forward_eof,
    }
    flags = {field: "--" + field.replace("_", "-") for field in values}
    flags["command"] = "COMMAND"
    config = ProgramConfig.checked("", values, flags)
    return config, args


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``supervise`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    try:
        config, args = _parse(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else USAGE_ERROR
    except ConfigError as exc:
        warn(str(exc))
        return USAGE_ERROR
    # Read the terminal's modes before raw mode changes them: the child's pty
    # gets the user's own settings (echo, line editing, newline translation).
    terminal = _terminal_settings()
    # Everything imported so far lives as long as the process: keep it out of
    # the collector's way, so full collections stay cheap while frames flow.
    gc.freeze()
    try:
        with raw_terminal(0) if terminal.input_is_terminal else contextlib.nullcontext():
            return trio.run(_run, config, terminal, args.events, args.quiet)
    except (SpawnError, SinkError, BaseExceptionGroup) as exc:
        error = _find_error(exc)
        if error is None:
            raise
        warn(str(error))
        return error.exit_status if isinstance(error, SpawnError) else USAGE_ERROR


def _find_error(exc: BaseException) -> SpawnError | SinkError | None:
    """The error worth one line to the user, unwrapped from exception groups."""
    if isinstance(exc, SpawnError | SinkError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _find_error(inner)
            if found is not None:
                return found
    return None
