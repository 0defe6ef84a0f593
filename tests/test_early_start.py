"""``supervise -- CMD`` starts CMD before it imports trio, and never lets it run unsupervised.

Whether the child started before supervise imported trio is shown without a
clock: a ``sitecustomize`` module on supervise's path holds the import of
``trio`` until the child has left a marker (for at most 10 s, or ``GATE_SECONDS``) and writes down
whether the marker came. A supervise that started the child only after its
imports would make the hook wait in vain.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from conftest import RUNTIME_DIR, SUPERVISE, clean_env, finish, pid_alive, popen

from supervisor._cli import early
from supervisor._config import MetricsConfig
from supervisor._process.spawn import (
    ChildSpec,
    discard_prestarted,
    prestart,
    prestarted_pids,
    take_prestarted,
)

_GATE = '''
import os, sys, time

class _HoldTrio:
    """Holds the first import of trio until the child's marker exists."""

    def find_spec(self, name, path=None, target=None):
        if name != "trio" or getattr(self, "done", False):
            return None
        self.done = True
        marker = os.environ["GATE_MARKER"]
        deadline = time.monotonic() + float(os.environ.get("GATE_SECONDS", "10"))
        while not os.path.exists(marker) and time.monotonic() < deadline:
            time.sleep(0.005)
        with open(os.environ["GATE_REPORT"], "w") as report:
            report.write("child first" if os.path.exists(marker) else "trio first")
        return None

sys.meta_path.insert(0, _HoldTrio())
'''


def _gated_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    gate = tmp_path / "gate"
    gate.mkdir()
    (gate / "sitecustomize.py").write_text(_GATE)
    env = clean_env()
    env["PYTHONPATH"] = f"{gate}{os.pathsep}{env['PYTHONPATH']}"
    env["GATE_MARKER"] = str(tmp_path / "marker")
    env["GATE_REPORT"] = str(tmp_path / "report")
    env.update(extra)
    return env


def _name() -> str:
    return f"early-{uuid.uuid4().hex[:8]}"


def _run_child_first(tmp_path: Path, args: list[str]) -> bytes:
    """Run ``supervise ARGS`` gated; check it succeeded with its child started first."""
    proc = popen(
        [*SUPERVISE, *args],
        env=_gated_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    status, out, err = finish(proc)
    assert status == 0, err
    assert (tmp_path / "report").read_text() == "child first"
    return out


def test_the_child_runs_before_supervise_imports_trio(tmp_path: Path) -> None:
    """The default run: the child's marker comes while supervise is still importing."""
    env = _gated_env(tmp_path)
    script = 'touch "$GATE_MARKER"; echo "instance=$IPC_SUPERVISOR"'
    proc = popen(
        [*SUPERVISE, "--name", (name := _name()), "--", "sh", "-c", script],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    status, out, err = finish(proc)
    assert status == 0, err
    assert (tmp_path / "report").read_text() == "child first"
    # The early child is the supervised one: its output is relayed, its
    # environment names this instance, and it ran once.
    assert out == f"instance={name}\n".encode()
    assert err == b""


def test_a_run_with_settings_checked_later_starts_the_child_after_them(tmp_path: Path) -> None:
    """--stop-timeout is a number the configuration checks: no early start then."""
    env = _gated_env(tmp_path, GATE_SECONDS="2")  # waits in vain: not longer than needed
    proc = popen(
        [*SUPERVISE, "--stop-timeout", "3", "--", "sh", "-c", 'touch "$GATE_MARKER"; echo ran'],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    status, out, err = finish(proc)
    assert status == 0, err
    assert (tmp_path / "report").read_text() == "trio first"
    assert out == b"ran\n"


def test_a_refused_setting_after_the_early_start_stops_the_child(tmp_path: Path) -> None:
    """A journal that cannot be opened is found after the start: the child is killed."""
    env = _gated_env(tmp_path)
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    script = 'echo $$ > "$GATE_MARKER.pid"; touch "$GATE_MARKER"; exec sleep 60'
    proc = popen(
        [*SUPERVISE, "--journal", str(blocker / "j.db"), "--", "sh", "-c", script],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    status, out, err = finish(proc)
    assert (tmp_path / "report").read_text() == "child first"
    assert status == 2
    (line,) = err.decode().splitlines()
    assert line.startswith("supervise: "), line
    assert line.endswith("not-a-directory: cannot create: File exists"), line
    pid = int((tmp_path / "marker.pid").read_text())
    assert not pid_alive(pid), "the early child outlived supervise"
    assert out == b""


def test_the_control_socket_answers_from_the_childs_first_moment(tmp_path: Path) -> None:
    """Bound before the child starts: the child finds it, and its request is answered."""
    name = _name()
    sock = Path(RUNTIME_DIR) / "ipc-supervisor" / f"{name}.sock"
    ask = (
        "import json, socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "s.settimeout(20)\n"
        "s.connect(sys.argv[1])\n"
        "open(sys.argv[2], 'w').close()\n"  # the marker: supervise may go on now
        's.sendall(b\'{"cmd": "info"}\\n\')\n'
        "print(json.loads(s.makefile().readline())['result']['instance'])\n"
    )
    script = f'test -S "$1" && echo bound; exec {sys.executable} -c "$2" "$1" "$GATE_MARKER"'
    out = _run_child_first(
        tmp_path, ["--name", name, "--", "sh", "-c", script, "sh", str(sock), ask]
    )
    assert out.decode().splitlines() == ["bound", name]
    assert not sock.exists()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_metrics_answer_from_the_childs_first_moment(tmp_path: Path) -> None:
    """--metrics-port keeps the early start: the socket listens before the child runs."""
    port = _free_port()
    scrape = (
        "import socket, sys\n"
        "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=20)\n"
        "s.sendall(b'GET /metrics HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n')\n"
        "open(sys.argv[2], 'w').close()\n"  # the marker: supervise may import trio now
        "reply = b''.join(iter(lambda: s.recv(65536), b''))\n"
        "print(reply.split(b'\\r\\n')[0].decode())\n"
        "print(b'supervise_program_up{' in reply)\n"
    )
    command = [sys.executable, "-c", scrape, str(port), str(tmp_path / "marker")]
    out = _run_child_first(tmp_path, ["--metrics-port", str(port), "--", *command])
    assert out.decode().splitlines() == ["HTTP/1.1 200 ", "True"]


def test_a_taken_metrics_port_stops_supervise_before_the_child_starts(tmp_path: Path) -> None:
    """The early bind fails: no early start, and the usual start refuses the port."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = popen(
            [*SUPERVISE, "--metrics-port", str(port), "--", "sh", "-c", 'touch "$GATE_MARKER"'],
            env=_gated_env(tmp_path, GATE_SECONDS="1"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        status, out, err = finish(proc)
    assert status == 2
    assert err == f"supervise: metrics port {port} on 127.0.0.1: port is already in use\n".encode()
    assert (tmp_path / "report").read_text() == "trio first"
    assert not (tmp_path / "marker").exists()
    assert out == b""


def test_early_metrics_listen_where_the_configuration_would() -> None:
    """The early bind's default host is MetricsConfig's, so the run takes its socket."""
    defaults = MetricsConfig()
    assert defaults.host == early._DEFAULT_METRICS_HOST
    path_rule = MetricsConfig.model_fields["path"].metadata[0]
    assert path_rule.pattern == early._METRICS_PATH.pattern


def test_an_early_child_started_with_other_settings_is_killed_not_adopted() -> None:
    """The runner's spec differs from the early one: the early child is killed and reaped."""
    early = ChildSpec(argv=("sleep", "60"), env={**os.environ, "IPC_SUPERVISOR": "a"})
    assert prestart(early)
    pids = prestarted_pids()
    assert len(pids) == 2  # the child and its output relay
    assert (
        take_prestarted(dataclasses.replace(early, env={**os.environ, "IPC_SUPERVISOR": "b"}))
        is None
    )
    assert prestarted_pids() == set()
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reaped already, so not a zombie either
        assert not pid_alive(pid)


def test_an_early_child_nobody_adopts_is_discarded() -> None:
    """supervise stopped before its run: the early child does not run on."""
    assert prestart(ChildSpec(argv=("sleep", "60")))
    pids = prestarted_pids()
    assert len(pids) == 2
    discard_prestarted()
    assert prestarted_pids() == set()
    assert not any(pid_alive(pid) for pid in pids)
    assert take_prestarted(ChildSpec(argv=("sleep", "60"))) is None
