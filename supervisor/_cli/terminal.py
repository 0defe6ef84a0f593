"""supervise's own terminal: raw mode, window size, and its one-line notices.

The standard streams themselves are opened by :mod:`supervisor._process.streams`.

Every library module logs through :mod:`logging`; :func:`install_log_handler`
is what turns the ``supervisor`` logger's records into those notices, so the
engine never writes to fd 2 itself.
"""

from __future__ import annotations

import logging
import os
import sys
import termios
import tty
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

from .._process.spawn import TerminalSettings

if TYPE_CHECKING:
    from .notices import NoticeGate

__all__ = [
    "NoticeHandler",
    "holding_notices",
    "install_log_handler",
    "raw_terminal",
    "terminal_modes",
    "terminal_settings",
    "warn",
    "window_size",
]


def terminal_modes(fd: int) -> list[Any] | None:
    """termios attributes of ``fd``, or None if it is not a terminal."""
    if not os.isatty(fd):
        return None
    try:
        return termios.tcgetattr(fd)
    except termios.error:
        return None


def window_size(*fds: int) -> tuple[int, int] | None:
    """(rows, columns) of the first terminal among ``fds``, if any."""
    for fd in fds:
        with suppress(OSError):
            size = os.get_terminal_size(fd)
            if size.lines > 0 and size.columns > 0:
                return size.lines, size.columns
    return None


def terminal_settings() -> TerminalSettings:
    """What the child's pty copies from supervise's own terminal, read now.

    Read before raw mode changes them: the child gets the user's own
    settings (echo, line editing, newline translation).
    """
    return TerminalSettings(
        modes=terminal_modes(0) or terminal_modes(1),
        size=window_size(0, 1, 2),
        output_is_terminal=os.isatty(1),
        input_is_terminal=os.isatty(0),
    )


@contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """Put the terminal on ``fd`` in raw mode; restore it on every exit path.

    Raw mode hands every keystroke (Control-C included) to the child's pty,
    whose own line discipline then echoes, edits lines and raises signals
    exactly as the user's terminal would without supervise.
    """
    saved = termios.tcgetattr(fd)
    tty.setraw(fd, termios.TCSANOW)
    try:
        yield
    finally:
        with suppress(termios.error):
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)


_notice_gate: NoticeGate | None = None


@contextmanager
def holding_notices(gate: NoticeGate) -> Iterator[None]:
    """While inside, ``warn`` lets ``gate`` hold notices until the child's line ends."""
    global _notice_gate
    previous, _notice_gate = _notice_gate, gate
    try:
        yield
    finally:
        _notice_gate = previous
        gate.flush()


def warn(message: str) -> None:
    """Print one line on stderr, ``supervise: message``.

    Ends with ``\\r\\n`` on a terminal, which may be in raw mode. Inside
    ``holding_notices`` the line may wait for the end of the child's line.
    """
    ending = "\r\n" if os.isatty(2) else "\n"
    data = f"supervise: {message}{ending}".encode(errors="replace")
    gate = _notice_gate
    if gate is not None and gate.hold(data):
        return
    with suppress(OSError):
        if sys.stderr is not None:  # None when supervise started with stderr closed
            sys.stderr.flush()
        os.write(2, data)


class NoticeHandler(logging.Handler):
    """Prints each record of the library's loggers as one ``supervise: ...`` line."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            warn(record.getMessage())
        except Exception:  # a handler never raises into the code that logged
            self.handleError(record)


def install_log_handler() -> NoticeHandler:
    """Route the ``supervisor`` and ``adapters`` loggers to supervise's notices.

    Warnings and above are shown (what the library reports for a person to
    act on); the loggers stop propagating, so a root handler set up by
    something else in the process does not print each line twice.
    """
    handler = NoticeHandler(logging.WARNING)
    for name in ("supervisor", "adapters"):
        logger = logging.getLogger(name)
        logger.handlers = [h for h in logger.handlers if not isinstance(h, NoticeHandler)]
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return handler
