"""The output relay of a pty child: what it keeps, and what happens when it goes.

supervise reads a pty child's output from the pipe of a small relay process
(:mod:`supervisor._process.relay`). These tests run the real ``supervise``
on real children and find the relay among supervise's own children.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio
import trio.testing
from conftest import SUPERVISE, eventually, finish, pid_alive, popen, read_until

from supervisor import ProgramConfig
from supervisor._process import relay, spawn
from supervisor._process.child import PtyChild
from supervisor.lowlevel import EventQueue, ProgramRunner

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")

WAIT_FOR_FILE = (
    "import os, sys, time\n"
    "print('FIRST', os.getpid(), flush=True)\n"
    "while not os.path.exists(sys.argv[1]):\n"
    "    time.sleep(0.01)\n"
    "for i in range(20000):\n"
    "    print(f'line {i:05d} ' + 'x' * 60)\n"
    "print('LAST', flush=True)\n"
)


def relays_of(supervise_pid: int) -> list[int]:
    """The pids of the relays among ``supervise_pid``'s children."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                argv = cmdline.read().split(b"\0")
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        if ppid == supervise_pid and any(arg.endswith(b"relay.py") for arg in argv):
            found.append(int(entry))
    return found


def relay_of(supervise_pid: int) -> int | None:
    """The pid of a relay among ``supervise_pid``'s children, if one runs."""
    return next(iter(relays_of(supervise_pid)), None)


def supervise_until(
    script: str, *args: str, marker: bytes = b"\n", stdin: int = subprocess.DEVNULL
) -> tuple[subprocess.Popen[bytes], bytes, int]:
    """supervise on ``python -c SCRIPT ARGS``, read until ``marker``.

    Returns supervise, what it printed so far, and the pid of its relay.
    """
    proc = popen(
        [*SUPERVISE, "--", sys.executable, "-c", script, *args],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    seen = read_until(proc, marker)
    relay_pid = relay_of(proc.pid)
    assert relay_pid is not None
    return proc, seen, relay_pid


def start_waiting_child(tmp_path: Path) -> tuple[subprocess.Popen[bytes], bytes, int]:
    """A child that prints one line, then 20,000 once ``tmp_path/go`` exists."""
    return supervise_until(WAIT_FOR_FILE, str(tmp_path / "go"))


def test_output_is_relayed_and_the_relay_stops_with_supervise(tmp_path: Path) -> None:
    """A pty child's output comes through the relay, which ends when supervise does."""
    proc, first, relay_pid = start_waiting_child(tmp_path)
    # Its own process group: a Control-C for supervise's group does not reach it.
    assert os.getpgid(relay_pid) == relay_pid
    # It holds the pty's master and its pipe, and none of supervise's streams.
    held = sorted(
        os.readlink(f"/proc/{relay_pid}/fd/{fd}") for fd in os.listdir(f"/proc/{relay_pid}/fd")
    )
    assert held[:3] == ["/dev/null"] * 3
    assert held[3:4] == ["/dev/ptmx"]
    assert [target[:6] for target in held[4:]] == ["pipe:["]
    (tmp_path / "go").touch()
    status, out, err = finish(proc)
    assert status == 0, err
    lines = (first + out).splitlines()
    assert len(lines) == 20002
    assert lines[-1] == b"LAST"
    assert err == b""
    assert not pid_alive(relay_pid)


def test_each_relay_holds_only_its_own_pty(tmp_path: Path) -> None:
    """Two programs: neither relay holds the other's pty (nor could read or type into it)."""
    config = tmp_path / "two.toml"
    ready = "import time; print('READY', flush=True); time.sleep(60)"
    config.write_text(
        f"[programs.first]\ncommand = {json.dumps([sys.executable, '-c', ready])}\n"
        f"[programs.second]\ncommand = {json.dumps([sys.executable, '-c', ready])}\n"
    )
    proc = popen(
        [*SUPERVISE, "--config", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    seen = read_until(proc, b"READY")
    while seen.count(b"READY") < 2:
        seen += read_until(proc, b"READY")

    def both_relays() -> list[int] | None:
        found = relays_of(proc.pid)
        return found if len(found) == 2 else None

    relays = eventually(both_relays)
    for relay_pid in relays:
        held = [
            os.readlink(f"/proc/{relay_pid}/fd/{fd}") for fd in os.listdir(f"/proc/{relay_pid}/fd")
        ]
        assert held.count("/dev/ptmx") == 1, held
    proc.terminate()
    status, _, err = finish(proc)
    assert status == 0, err


def test_a_killed_relay_costs_no_output(tmp_path: Path) -> None:
    """If the relay dies, supervise says so and reads the pty itself: every line arrives."""
    proc, first, relay_pid = start_waiting_child(tmp_path)
    child_pid = int(first.split()[1])
    os.kill(relay_pid, signal.SIGKILL)
    eventually(lambda: not pid_alive(relay_pid))
    (tmp_path / "go").touch()
    status, out, err = finish(proc)
    assert status == 0, err
    lines = (first + out).splitlines()
    assert lines[0].startswith(b"FIRST")
    assert lines[-1] == b"LAST"
    assert [line[5:10] for line in lines[1:-1]] == [b"%05d" % i for i in range(20000)]
    assert err.splitlines() == [
        b"supervise: the output relay of pid %d was killed by signal 9;"
        b" reading the child's output directly" % child_pid
    ]


def test_signals_that_stop_supervise_do_not_stop_the_relay(tmp_path: Path) -> None:
    """SIGTERM to supervise's group: the child is stopped gracefully and its last words arrive."""
    script = (
        "import signal, sys, time\n"
        "def bye(*_):\n"
        "    print('GOODBYE', flush=True)\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "print('READY', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc, _, relay_pid = supervise_until(script, marker=b"READY")
    # The relay ignores what a pkill or a group signal meant for supervise sends it.
    os.kill(relay_pid, signal.SIGTERM)
    os.kill(proc.pid, signal.SIGTERM)
    _, out, err = finish(proc)
    assert b"GOODBYE" in out, (out, err)
    assert b"output relay" not in err


def test_the_relay_ends_when_supervise_is_killed(tmp_path: Path) -> None:
    """kill -9 of supervise: its relay sees the pipe's reader gone and exits."""
    script = "print('READY', flush=True); input()"
    proc, _, relay_pid = supervise_until(script, marker=b"READY", stdin=subprocess.PIPE)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    # Re-parented to init (or to this process's subreaper), it exits by itself.
    eventually(lambda: not pid_alive(relay_pid), timeout=10)


def start_relay() -> tuple[int, int, subprocess.Popen[bytes]]:
    """The relay program on a new pty: the slave, the pipe's read end, the relay."""
    master, slave = os.openpty()
    read_end, write_end = os.pipe()
    process = popen(
        [sys.executable, "-I", "-S", relay.__file__, str(master), str(write_end)],
        pass_fds=(master, write_end),
    )
    os.close(write_end)
    os.close(master)
    return slave, read_end, process


def test_relay_copies_until_the_pty_ends(tmp_path: Path) -> None:
    """The relay program itself, on a real pty: every byte in order, exit 0 at the end."""
    source = tmp_path / "payload"
    payload = os.urandom(300_000).hex().encode()  # 600 kB, far more than the pipe holds
    source.write_bytes(payload)
    slave, read_end, process = start_relay()
    writer = popen(["cat", str(source)], stdout=slave)
    os.close(slave)
    with os.fdopen(read_end, "rb") as pipe:
        received = pipe.read()
    assert process.wait(timeout=20) == relay.END_OF_OUTPUT
    assert writer.wait(timeout=20) == 0
    assert received == payload


def test_relay_exits_when_its_reader_goes(tmp_path: Path) -> None:
    """With the pipe's reader gone and the child silent, the relay does not linger."""
    slave, read_end, process = start_relay()
    os.close(read_end)
    assert process.wait(timeout=20) == relay.READER_GONE
    os.close(slave)


FRAMES_AND_LINES = (
    "import json, sys\n"
    "for i in range(3000):\n"
    "    frame = {'type': 'ipc', 'event': 'log', 'data': {'level': 'info', 'message': str(i)}}\n"
    "    sys.stdout.write('line %04d ' % i + 'y' * 50 + '\\n')\n"
    "    sys.stdout.write('__IPC_START__' + json.dumps(frame) + '__IPC_END__\\n')\n"
)


async def test_without_a_relay_the_pty_is_read_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where no relay can start (no relay program), every byte and frame still arrives."""
    monkeypatch.setattr(spawn, "RELAY_PROGRAM", "/nonexistent/relay.py")
    queue = EventQueue(100_000)
    output = trio.testing.MemorySendStream()
    config = ProgramConfig(command=(sys.executable, "-c", FRAMES_AND_LINES))
    runner = ProgramRunner(config, events=queue, output=output)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(runner.run)
            await runner.spawned.wait()
            assert isinstance(runner._child, PtyChild)
            assert runner._child.relay_pid is None
    lines = output.get_data_nowait().splitlines()
    assert lines == [b"line %04d " % i + b"y" * 50 for i in range(3000)]
    assert runner.stats.frames["log"] == 3000
