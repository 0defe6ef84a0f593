"""ts-ipc's way to a supervised program: supervise's ``info`` and ``input`` commands.

Real ``supervise`` processes, outside tmux and inside a pane of a private
tmux server (its own ``-L`` socket in a private ``TMUX_TMPDIR``, killed at
the end), with a child that records every line reaching its stdin.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from conftest import (
    ROOT,
    RUNTIME_DIR,
    SUPERVISE,
    child,
    clean_env,
    eventually,
    finish,
    pid_alive,
    popen,
)

from supervisor._ipc.supervised import (
    MAX_INPUT,
    InputError,
    SupervisedPane,
    find_supervised,
    write_input,
)
from supervisor._paths import control_dir

TMUX = shutil.which("tmux")
needs_tmux = pytest.mark.skipif(TMUX is None, reason="tmux is not installed")
PROGRAM = "recorder"
HOSTILE = [
    "it's",
    'say "hi"',
    "$(echo no)",
    "`echo no`",
    "a; echo no",
    "true && echo no",
    "é漢字",
    "'\"$(echo no)`echo no`; && é漢字 \\ $HOME %s #{pane_id}",
]

T = TypeVar("T")


@pytest.fixture(autouse=True)
def _runtime_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    """Look for control sockets where the supervise processes the tests start put them."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", RUNTIME_DIR)


def instance_name() -> str:
    return f"ipc-{uuid.uuid4().hex[:10]}"


def recorded(out: Path) -> list[dict[str, Any]]:
    if not out.exists():
        return []
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def lines(out: Path) -> list[str]:
    return [entry["line"] for entry in recorded(out) if "line" in entry]


def request(instance: str, body: dict[str, Any]) -> dict[str, Any]:
    """One raw JSON Lines request to the instance's control socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(control_dir() / f"{instance}.sock"))
        sock.sendall(json.dumps(body).encode() + b"\n")
        reply = b""
        while not reply.endswith(b"\n"):
            data = sock.recv(65536)
            assert data, f"closed without a reply: {reply!r}"
            reply += data
    answer: dict[str, Any] = json.loads(reply)
    return answer


def start(out: Path, *options: str) -> tuple[subprocess.Popen[bytes], str]:
    """supervise (outside tmux) running the recorder; returns once it can be controlled."""
    instance = instance_name()
    proc = popen(
        [
            *SUPERVISE,
            "--instance",
            instance,
            "--name",
            PROGRAM,
            *options,
            "--",
            *child("line_recorder", str(out)),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    eventually(lambda: recorded(out) != [])
    eventually(lambda: (control_dir() / f"{instance}.sock").exists())
    wait_running(instance)
    return proc, instance


def wait_running(instance: str) -> None:
    """Until the program is running: the child may have started before supervise's run."""

    def running() -> bool:
        try:
            (status,) = request(instance, {"cmd": "status"})["result"]
        except ConnectionRefusedError:  # bound, not listening yet
            return False
        return bool(status["state"] == "running")

    eventually(lambda: running() or None)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    finish(proc)


def pane_of(instance: str) -> SupervisedPane:
    return SupervisedPane(instance, control_dir() / f"{instance}.sock", (PROGRAM,))


# -- info ------------------------------------------------------------------------


def test_info_outside_tmux_names_the_instance_and_no_pane(tmp_path: Path) -> None:
    """Started outside tmux, supervise says so: its pid and programs, tmux fields null."""
    proc, instance = start(tmp_path / "out")
    try:
        reply = request(instance, {"cmd": "info"})
    finally:
        stop(proc)
    assert reply == {
        "ok": True,
        "result": {
            "instance": instance,
            "pid": proc.pid,
            "tmux_socket": None,
            "tmux_pane": None,
            "programs": [PROGRAM],
            "first_seq": 1,
            "journal": True,
        },
    }


# -- inside a real tmux pane --------------------------------------------------------


@pytest.fixture
def tmux_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., str]]:
    """A private tmux server; yields ``run(*args) -> stdout``; killed at the end."""
    tmpdir = Path(tempfile.mkdtemp(prefix="tmx"))  # short: socket paths are limited
    monkeypatch.delenv("TMUX", raising=False)
    monkeypatch.delenv("TMUX_PANE", raising=False)
    monkeypatch.setenv("TMUX_TMPDIR", str(tmpdir))
    name = f"ipcsup-{uuid.uuid4().hex[:12]}"

    def run(*args: str) -> str:
        assert TMUX is not None
        env = {**clean_env(), "TMUX_TMPDIR": str(tmpdir)}
        done = subprocess.run(
            [TMUX, "-L", name, "-f", os.devnull, *args],
            capture_output=True,
            timeout=15,
            env=env,
            check=True,
        )
        return done.stdout.decode()

    try:
        yield run
    finally:
        assert TMUX is not None
        subprocess.run(
            [TMUX, "-L", name, "kill-server"],
            capture_output=True,
            timeout=15,
            check=False,
            env={**clean_env(), "TMUX_TMPDIR": str(tmpdir)},
        )
        shutil.rmtree(tmpdir, ignore_errors=True)


@needs_tmux
def test_find_supervised_finds_the_instance_in_its_pane(
    tmux_server: Callable[..., str], tmp_path: Path
) -> None:
    """supervise records the pane it runs in; ts-ipc finds it there, and only there."""
    out, instance = tmp_path / "out", instance_name()
    command = [
        "env",
        f"PYTHONPATH={ROOT}",
        f"XDG_RUNTIME_DIR={RUNTIME_DIR}",
        f"XDG_STATE_HOME={os.environ['XDG_STATE_HOME']}",
        sys.executable,
        "-m",
        "supervisor",
        "--instance",
        instance,
        "--name",
        PROGRAM,
        "--",
        *child("line_recorder", str(out)),
    ]
    tmux_server("new-session", "-d", "-s", "work", "-x", "200", "-y", "50", shlex.join(command))
    tmux_server("new-window", "-d", "-t", "=work:")  # a second pane, running a shell
    socket_path, pane = tmux_server(
        "display-message", "-p", "-t", "=work:0", "#{socket_path} #{pane_id}"
    ).split()
    other = tmux_server("display-message", "-p", "-t", "=work:1", "#{pane_id}").strip()
    eventually(lambda: recorded(out) != [])
    found = eventually(lambda: find_supervised(socket_path, pane))
    wait_running(instance)
    pid = request(instance, {"cmd": "info"})["result"]["pid"]
    try:
        assert found == SupervisedPane(instance, control_dir() / f"{instance}.sock", (PROGRAM,))
        assert find_supervised(socket_path, other) is None
        assert find_supervised(str(tmp_path / "another-server"), pane) is None
        # Another spelling of the same socket is the same server.
        alias = tmp_path / "alias"
        alias.symlink_to(Path(socket_path).parent, target_is_directory=True)
        assert find_supervised(str(alias / Path(socket_path).name), pane) == found
        # Typed through the control socket, not into the pane: it still arrives.
        assert write_input(found, "through the socket") == len("through the socket") + 1
        eventually(lambda: lines(out) == ["through the socket"])
        assert recorded(out)[0] == {"IPC_SUPERVISOR": instance}
    finally:
        tmux_server("kill-session", "-t", "=work")
        eventually(lambda: not pid_alive(pid))


def test_find_supervised_skips_stale_and_foreign_sockets(tmp_path: Path) -> None:
    """A socket nobody listens on, or a directory others may write to, is never used."""
    directory = tmp_path / "ctl"
    directory.mkdir(mode=0o700)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(directory / "dead.sock"))
    stale.close()  # the file stays, nothing listens
    assert find_supervised("/tmp/x", "%0", directory=directory) is None
    directory.chmod(0o777)
    assert find_supervised("/tmp/x", "%0", directory=directory) is None
    assert find_supervised("/tmp/x", "%0", directory=tmp_path / "none") is None


# -- input -----------------------------------------------------------------------


@pytest.mark.parametrize("pty", [True, False], ids=["pty", "no-pty"])
def test_write_input_delivers_hostile_text_literally(tmp_path: Path, pty: bool) -> None:
    """Quotes, substitutions, separators and non-ASCII text reach the child exactly."""
    out = tmp_path / "out"
    proc, instance = start(out, *([] if pty else ["--no-pty"]))
    target = pane_of(instance)
    try:
        for text in HOSTILE:
            assert write_input(target, text) == len(text.encode()) + 1
        assert write_input(target, "no ", enter=False, program=PROGRAM) == 3
        assert write_input(target, "enter") == 6
        expected = [*HOSTILE, "no enter"]
        eventually(lambda: len(lines(out)) >= len(expected))
        assert lines(out) == expected
        assert not (tmp_path / "no").exists()
    finally:
        stop(proc)


def test_input_errors_are_one_line(tmp_path: Path) -> None:
    """Refusals: an unknown program, text that is not a string, text that is too long."""
    out = tmp_path / "out"
    proc, instance = start(out)
    target = pane_of(instance)
    try:
        with pytest.raises(InputError) as caught:
            write_input(target, "x", program="nope")
        assert str(caught.value) == f"no program named 'nope' (programs: {PROGRAM})"
        with pytest.raises(InputError, match=f"^text longer than {MAX_INPUT} bytes$"):
            write_input(target, "é" * (MAX_INPUT // 2 + 1))
        # The same refusals from the server itself, for any client.
        refusals = [
            request(instance, {"cmd": "input", "text": 3}),
            request(instance, {"cmd": "input"}),
            request(instance, {"cmd": "input", "text": "x", "enter": "yes"}),
            request(instance, {"cmd": "input", "text": "\x1b" * (MAX_INPUT + 1)}),
        ]
        assert [reply.get("error") for reply in refusals] == [
            "field 'text' must be a string",
            "missing field 'text'",
            "field 'enter' must be true or false",
            f"text longer than {MAX_INPUT} bytes",
        ]
        # The longest text passes (its request is far longer, escaped).
        longest = "\x1b" * 10 + "y" * (MAX_INPUT - 10)
        reply = request(instance, {"cmd": "input", "text": longest, "enter": False})
        assert reply == {"ok": True, "result": {"program": PROGRAM, "written": MAX_INPUT}}
        gone = SupervisedPane("gone", tmp_path / "gone.sock", (PROGRAM,))
        with pytest.raises(InputError, match=r"^supervise instance 'gone': "):
            write_input(gone, "x")
    finally:
        stop(proc)
    assert lines(out) == []


# -- the child's environment -------------------------------------------------------------


def test_children_see_the_instance_in_ipc_supervisor(tmp_path: Path) -> None:
    """A child knows which supervise reads its frames, unless its config says otherwise."""
    proc, instance = start(tmp_path / "a")
    stop(proc)
    assert recorded(tmp_path / "a")[0] == {"IPC_SUPERVISOR": instance}
    proc, _ = start(tmp_path / "b", "--env", "IPC_SUPERVISOR=mine")
    stop(proc)
    assert recorded(tmp_path / "b")[0] == {"IPC_SUPERVISOR": "mine"}


# -- the client stays light -------------------------------------------------------------


def test_the_client_imports_neither_trio_nor_pydantic() -> None:
    """ts-ipc is a short-lived command: finding a supervised pane must not load trio or pydantic."""
    code = (
        "import supervisor._ipc.supervised, sys; "
        "assert 'trio' not in sys.modules and 'pydantic' not in sys.modules, "
        "sorted(m for m in sys.modules if m.startswith(('trio', 'pydantic', 'supervisor')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=30, env=clean_env(), check=False
    )
    assert done.returncode == 0, done.stderr.decode()
