"""A program running under ``supervise`` in a tmux pane, reached through its control socket.

Typing into such a pane would reach supervise's terminal, not the program:
supervise runs its child on a pty of its own and decides what to forward.
So a command for it goes through supervise's control socket instead
(``{"cmd": "input"}``, see :mod:`supervisor._control.server`), which writes
the text to the child's stdin through the same writer answers use.

``ts-ipc`` is a short-lived command, so this is a blocking client on the
plain ``socket`` module that imports neither trio nor pydantic: only the
standard library and :mod:`supervisor._paths`. Sockets are trusted as
``supervise ctl`` trusts them: only in a directory that is ours and not
writable by others, only a socket of ours, reached through the directory
that was checked (not its path again, which could be swapped meanwhile).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._core.errors import ConfigError, InputError
from .._paths import check_private_dir, check_private_file, control_dir

__all__ = ["MAX_INPUT", "InputError", "SupervisedPane", "find_supervised", "write_input"]

logger = logging.getLogger(__name__)

MAX_INPUT = 65536
"""The longest text, in UTF-8 bytes, that one ``input`` request may carry."""

# sun_path holds 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 107
# Far more than any reply to info or input; a peer sending more is not supervise.
_MAX_REPLY = 1 << 20


@dataclass(frozen=True)
class SupervisedPane:
    """A supervise instance that runs in a tmux pane.

    Attributes:
        instance: its instance name.
        socket_path: its control socket.
        programs: the names of the programs it runs, in its order.
    """

    instance: str
    socket_path: Path
    programs: tuple[str, ...]


def find_supervised(
    tmux_socket: str, pane_id: str, *, directory: Path | None = None, timeout: float = 0.5
) -> SupervisedPane | None:
    """The supervise instance started in tmux pane ``pane_id`` of server ``tmux_socket``.

    Every control socket in ``directory`` (by default :func:`control_dir`)
    is asked for its ``info``; sockets left by a supervise that died, ones
    that do not answer within ``timeout`` and ones that are not ours are
    skipped. The tmux sockets are compared by their real paths, so
    ``/tmp/tmux-1000/default`` and a symlinked spelling of it match.

    Returns:
        The instance, or None when no supervise runs in that pane (a pane
        can be typed into directly then).
    """
    where = directory if directory is not None else control_dir()
    try:
        check_private_dir(where, follow=False)
    except ConfigError as exc:
        if os.path.lexists(where):
            # A directory others control may hold their sockets: never use one.
            logger.warning("not looking for supervised programs: %s", exc)
        return None
    wanted = os.path.realpath(tmux_socket)
    for path in sorted(where.glob("*.sock")):
        try:
            info = _request(path, {"cmd": "info"}, timeout)
        except InputError as exc:
            logger.debug("skipping control socket %s: %s", path, exc)
            continue
        if not isinstance(info, dict):
            continue
        socket_path, pane = info.get("tmux_socket"), info.get("tmux_pane")
        if not isinstance(socket_path, str) or pane != pane_id:
            continue
        if os.path.realpath(socket_path) != wanted:
            continue
        instance, programs = info.get("instance"), info.get("programs")
        if not isinstance(instance, str) or not isinstance(programs, list):
            continue
        return SupervisedPane(instance, path, tuple(str(name) for name in programs))
    return None


def write_input(
    target: SupervisedPane,
    text: str,
    *,
    program: str | None = None,
    enter: bool = True,
    timeout: float = 5.0,
) -> int:
    """Type ``text`` into a supervised program's stdin; return the bytes written.

    The text arrives literally, no shell being involved; Enter follows
    unless ``enter`` is false. ``program`` may be left out when the
    instance runs only one.

    Raises:
        InputError: supervise refused (no such program, it is not running,
            the text is too long), or could not be reached or did not reply
            within ``timeout`` (then the text may or may not have been typed).
    """
    try:
        size = len(text.encode())
    except UnicodeEncodeError:
        raise InputError("the text is not valid Unicode (it holds a lone surrogate)") from None
    if size > MAX_INPUT:
        raise InputError(f"text longer than {MAX_INPUT} bytes")
    request: dict[str, Any] = {"cmd": "input", "text": text, "enter": enter}
    if program is not None:
        request["program"] = program
    result = _request(target.socket_path, request, timeout)
    written = result.get("written") if isinstance(result, dict) else None
    if not isinstance(written, int):
        raise InputError(f"supervise instance {target.instance!r} sent a malformed reply")
    return written


def _request(path: Path, request: dict[str, Any], timeout: float) -> Any:
    """Send one request and return its result, all within ``timeout`` seconds.

    Raises:
        InputError: supervise answered with an error (its line, as it is);
            or, naming the instance, the socket is not ours, nothing
            listens, or no well-formed reply came in time.
    """
    deadline = time.monotonic() + timeout
    line = json.dumps(request, ensure_ascii=False).encode() + b"\n"
    with _connect(path, timeout) as sock:
        try:
            sock.sendall(line)
            reply = bytearray()
            while not reply.endswith(b"\n"):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                sock.settimeout(remaining)
                data = sock.recv(65536)
                if not data:
                    raise _unreachable(path, "closed the connection without a reply")
                reply += data
                if len(reply) > _MAX_REPLY:
                    raise _unreachable(path, "sent a reply longer than any supervise sends")
        except TimeoutError:
            raise _unreachable(path, f"no reply within {timeout:g}s") from None
        except OSError as exc:
            raise _unreachable(path, f"went away: {exc.strerror or exc}") from None
    try:
        answer = json.loads(reply)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise _unreachable(path, "sent a reply that is not a JSON object")
    if not answer.get("ok"):
        raise InputError(" ".join(str(answer.get("error", "request refused")).split()))
    return answer.get("result")


def _unreachable(path: Path, problem: str) -> InputError:
    return InputError(f"supervise instance {path.stem!r}: {problem}")


def _connect(path: Path, timeout: float) -> socket.socket:
    """A connection to the control socket ``path``, made only if it is ours.

    As ``supervise ctl`` does: the directory is opened without following a
    symlink and checked through its descriptor, and the socket is checked
    and connected to inside that very directory (``/proc/self/fd``).
    """
    try:
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise _unreachable(path, f"cannot open {path.parent}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if info.st_uid != os.getuid() or info.st_mode & 0o022:
            raise _unreachable(path, f"{path.parent} is not a private directory of ours")
        proc = Path(f"/proc/self/fd/{fd}")
        short = len(os.fsencode(proc / path.name)) <= _MAX_SOCKET_PATH
        address = (proc if short and proc.is_dir() else path.parent) / path.name
        try:
            if check_private_file(address, kind="a socket") is None:
                raise _unreachable(path, "not running (no control socket)")
        except ConfigError as exc:
            raise _unreachable(path, f"{path}: {exc.problem}") from None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(str(address))
        except TimeoutError:
            sock.close()
            raise _unreachable(path, f"no answer within {timeout:g}s") from None
        except OSError as exc:
            sock.close()
            raise _unreachable(path, f"not running ({exc.strerror or exc})") from None
        return sock
    finally:
        os.close(fd)
