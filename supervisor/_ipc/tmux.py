"""Talking to the user's tmux server, synchronously and without a shell.

``ts-ipc`` is a short-lived command: each tmux request is one ``tmux``
process run with an argument list (never a command string), answered in a
few milliseconds. Which server: ``$TS_IPC_TMUX_SOCKET`` (a socket path, as
``tmux -S``) if set, else whatever plain ``tmux`` would use (``$TMUX``
inside a session, else the default socket under ``$TMUX_TMPDIR``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping

__all__ = ["TmuxError", "run_tmux", "tmux_command"]


class TmuxError(Exception):
    """tmux could not be run or refused a request; the message is one line."""


def tmux_command(*args: str, environ: Mapping[str, str] = os.environ) -> list[str]:
    """The argv that runs ``tmux ARGS`` against ts-ipc's server."""
    program = shutil.which("tmux") or "tmux"
    socket = environ.get("TS_IPC_TMUX_SOCKET", "")
    prefix = [program, "-S", socket] if socket else [program]
    return [*prefix, *args]


def run_tmux(*args: str, input: bytes | None = None, timeout: float = 10) -> subprocess.CompletedProcess[bytes]:
    """Run one tmux request; a tmux that cannot start is a :class:`TmuxError`."""
    try:
        return subprocess.run(
            tmux_command(*args), input=input, capture_output=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TmuxError(f"tmux {args[0] if args else ''}: {exc}") from None
