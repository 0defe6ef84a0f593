"""Names and files only this user may control: instance names, private directories.

An instance name becomes a file name (its journal, its control socket), so
it is checked once, here, for every command that takes one. A directory or
file that holds events or answers must be ours and not writable by anyone
else: whoever can write there can read every event, or plant a file (a
symlink, a journal, a socket) that supervise would then trust.
"""

from __future__ import annotations

import itertools
import os
import socket
import stat
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path

from ._core.errors import ConfigError

__all__ = [
    "MAX_INSTANCE_NAME",
    "MAX_SOCKET_PATH",
    "bind_control_socket",
    "check_private_dir",
    "check_private_file",
    "control_dir",
    "default_socket_path",
    "instance_name_problem",
    "ipc_home",
    "prepare_control_dir",
    "socket_answers",
    "state_dir",
    "validate_instance_name",
    "working_directory",
]

MAX_INSTANCE_NAME = 100
"""The longest instance name, in characters (a socket path is limited to 107 bytes)."""
MAX_SOCKET_PATH = 107
"""The longest unix socket path Linux binds, in bytes (sun_path holds 108 with its NUL)."""


def instance_name_problem(name: str) -> str | None:
    """What makes ``name`` unfit to name an instance's files, or None if nothing.

    Refused: the empty name, names longer than :data:`MAX_INSTANCE_NAME`,
    names starting with ``.`` (``..``, hidden files), containing ``/``, NUL
    or any control or other non-printable character (which would also
    garble the terminal when the name is shown).
    """
    if not name:
        return "it is empty"
    if len(name) > MAX_INSTANCE_NAME:
        return f"it is longer than {MAX_INSTANCE_NAME} characters"
    if name.startswith("."):
        return "it starts with '.'"
    if "/" in name:
        return "it contains '/'"
    if not name.isprintable():
        return "it contains a control character"
    return None


def validate_instance_name(name: str, where: str = "instance") -> str:
    """Return ``name`` if it can name an instance's files (:func:`instance_name_problem`).

    Raises:
        ConfigError: naming ``where`` the name came from, and what is wrong.
    """
    problem = instance_name_problem(name)
    if problem is not None:
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise ConfigError(where, f"{shown!r} is not an instance name: {problem}")
    return name


def _owned_privately(where: str, info: os.stat_result, what: str) -> None:
    if info.st_uid != os.getuid():
        raise ConfigError(where, f"{what} belongs to uid {info.st_uid}; refusing to use it")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(where, f"{what} is writable by others; refusing to use it")


def check_private_dir(path: Path, *, follow: bool = True) -> os.stat_result:
    """Check that ``path`` is a directory of ours that nobody else can write to.

    Args:
        path: the directory.
        follow: accept a symlink to such a directory; off, a symlink itself
            is refused (it could be swapped for one to somebody else's).

    Raises:
        ConfigError: it does not exist, is not a directory, is a symlink
            (``follow`` off), belongs to another user or is writable by others.
    """
    where = str(path)
    try:
        info = os.stat(path) if follow else os.lstat(path)
    except OSError as exc:
        raise ConfigError(where, f"cannot use: {exc.strerror or exc}") from None
    if stat.S_ISLNK(info.st_mode):
        raise ConfigError(where, "is a symlink; refusing to follow it")
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(where, "is not a directory")
    _owned_privately(where, info, "the directory")
    return info


def check_private_file(path: Path, *, kind: str = "a regular file") -> os.stat_result | None:
    """Check what is at ``path`` without following a symlink; None if nothing is.

    Args:
        path: the file.
        kind: ``a regular file`` or ``a socket``: what it must be.

    Raises:
        ConfigError: it is a symlink, not of ``kind``, belongs to another
            user or is writable by others.
    """
    where = str(path)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(where, f"cannot use: {exc.strerror or exc}") from None
    if stat.S_ISLNK(info.st_mode):
        raise ConfigError(where, "is a symlink; refusing to follow it")
    expected = stat.S_ISSOCK if kind == "a socket" else stat.S_ISREG
    if not expected(info.st_mode):
        raise ConfigError(where, f"is not {kind}; refusing to use it")
    _owned_privately(where, info, "the file")
    return info


def state_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """Where journals live: ``$XDG_STATE_HOME/ipc-supervisor``.

    By default ``~/.local/state/ipc-supervisor``. A relative
    ``XDG_STATE_HOME`` is ignored, as the XDG specification asks.
    """
    state = environ.get("XDG_STATE_HOME", "")
    if not os.path.isabs(state):
        home = environ.get("HOME") or str(Path.home())
        state = os.path.join(home, ".local", "state")
    return Path(state) / "ipc-supervisor"


def control_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """Where control sockets live: ``$XDG_RUNTIME_DIR/ipc-supervisor``.

    Without ``XDG_RUNTIME_DIR`` (no login session, e.g. cron or a container),
    ``$XDG_STATE_HOME/ipc-supervisor``, by default
    ``~/.local/state/ipc-supervisor``. Relative values are ignored, as the XDG
    specification asks.
    """
    runtime = environ.get("XDG_RUNTIME_DIR", "")
    if os.path.isabs(runtime):
        return Path(runtime) / "ipc-supervisor"
    return state_dir(environ)


def prepare_control_dir(path: Path) -> None:
    """Create ``path`` (mode 0700) or check that only we can write to it.

    Whoever can write to the directory can replace our socket with their
    own and receive the answers meant for our programs. A symlink is refused
    as ``supervise ctl`` refuses it: it could be swapped for one to somebody
    else's directory.

    Raises:
        ConfigError: it cannot be created, is a symlink, is not ours, or
            others may write to it.
    """
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(str(path), f"cannot create: {exc.strerror or exc}") from None
    check_private_dir(path, follow=False)


def ipc_home(environ: Mapping[str, str] = os.environ) -> Path:
    """ts-ipc's directory: ``$TS_IPC_HOME``, else ``STATE_DIR/ipc``.

    ``STATE_DIR`` is supervise's own (``$XDG_STATE_HOME/ipc-supervisor``),
    so supervise instances and ts-ipc find one another without settings.
    """
    home = environ.get("TS_IPC_HOME", "")
    if os.path.isabs(home):
        return Path(home)
    state = environ.get("XDG_STATE_HOME", "")
    if not os.path.isabs(state):
        user_home = environ.get("HOME") or str(Path.home())
        state = os.path.join(user_home, ".local", "state")
    return Path(state) / "ipc-supervisor" / "ipc"


def socket_answers(path: Path, timeout: float = 2.0) -> bool:
    """Whether something accepts connections on the unix socket at ``path``.

    A supervise that was killed leaves its socket file behind; only a live
    one answers. One that does not accept within ``timeout`` (a full
    backlog) is alive, only busy.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(timeout)
        try:
            probe.connect(str(path))
        except TimeoutError:
            return True
        except OSError:
            return False
    return True


def bind_control_socket(path: Path) -> socket.socket:
    """Listen on the control socket at ``path``, readable and writable by us only.

    The directory must exist and be private (:func:`prepare_control_dir`).
    A socket file left by a supervise that died is replaced. Connections
    wait in the backlog until somebody accepts them.

    Raises:
        ConfigError: another supervise is listening there, the path is taken
            by something that is not a socket, is too long, or cannot be bound.
    """
    where = str(path)
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise ConfigError(where, f"socket path is longer than {MAX_SOCKET_PATH} bytes")
    with suppress(FileNotFoundError):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise ConfigError(where, "exists and is not a socket; refusing to replace it")
        if socket_answers(path):
            raise ConfigError(where, "another supervise instance is running there")
        os.unlink(path)  # stale: its supervise died without removing it
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(where)
        # chmod rather than umask: the umask is process-wide and trio's
        # worker threads may be creating files. The 0700 directory keeps
        # others out in between.
        os.chmod(path, 0o600)
        sock.listen()
    except OSError as exc:
        sock.close()
        raise ConfigError(where, f"cannot listen: {exc.strerror or exc}") from None
    except BaseException:
        sock.close()
        raise
    return sock


def default_socket_path(directory: Path, program: str) -> Path:
    """The first free default control socket: ``program``, ``program-2`` ...

    Several one-program supervisors of the same command can run at once.
    """
    for number in itertools.count(1):
        path = directory / f"{program if number == 1 else f'{program}-{number}'}.sock"
        if not path.exists() or not socket_answers(path, timeout=1.0):
            return path
    raise AssertionError("unreachable")


def working_directory(cwd: Path | None) -> str:
    """The directory a program runs in: ``cwd`` from supervise's own, as text.

    Empty when supervise's own working directory was removed.
    """
    try:
        here = os.getcwd()
    except OSError:
        here = ""
    return os.path.join(here, cwd) if cwd is not None else here
