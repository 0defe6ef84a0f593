"""Processes that outlive the child: daemons holding its output, orphans, stop signals.

A child may leave a daemon behind in a session of its own (``setsid``), out
of reach of its process group's signals, still writing to the output it
inherited. supervise must still exit with the child's status, stop the
daemon, and obey stop signals while it does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import SUPERVISE, clean_env, finish, pid_alive, popen, read_until, supervise

# The child: start DAEMON in a session of its own (its argument: the child's
# pid), then exit 5 while the daemon goes on writing to the same output.
CHILD = 'setsid sh -c "$1" daemon "$$" & sleep 0.2; exit 5'
TICKING = 'echo "DAEMON $$ END"; while :; do echo tick; sleep 0.3; done'
IGNORES_TERM = f'trap "" TERM; {TICKING}'
# Says when the child has been reaped, so the test knows supervise is in the
# wait after the child's exit; says when it gets SIGTERM.
WAITS_FOR_THE_CHILD = (
    'trap "echo GOT-TERM; exit 0" TERM; echo "DAEMON $$ END";'
    ' while kill -0 "$1" 2>/dev/null; do sleep 0.05; done; echo CHILD-GONE;'
    " while :; do echo tick; sleep 0.1; done"
)


def _daemon_pid(output: bytes) -> int:
    return int(output.split(b"DAEMON ")[1].split()[0])


def _assert_gone(pid: int) -> None:
    """The daemon no longer runs (killed here if it does, so the test leaves nothing)."""
    alive = pid_alive(pid)
    if alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, f"daemon {pid} outlived supervise"


def _flags(use_pty: bool) -> list[str]:
    return [] if use_pty else ["--no-pty"]


def _start(use_pty: bool, daemon: str, *flags: str) -> tuple[subprocess.Popen[bytes], int, bytes]:
    """supervise running CHILD with ``daemon``; return it, the daemon's pid, the output so far."""
    proc = popen(
        [*SUPERVISE, *_flags(use_pty), *flags, "--", "sh", "-c", CHILD, "child", daemon],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    seen = read_until(proc, b" END\n")
    return proc, _daemon_pid(seen), seen


@pytest.mark.parametrize("use_pty", [True, False], ids=["pty", "no-pty"])
def test_a_setsid_daemon_holding_the_output_is_stopped(use_pty: bool) -> None:
    """supervise exits with the child's status although a daemon keeps writing its output."""
    proc, daemon, _ = _start(use_pty, TICKING)
    try:
        status, out, err = finish(proc)
    finally:
        _assert_gone(daemon)
    assert status == 5, err
    assert b"tick" in out
    # With --no-pty the daemon's shell shares supervise's stderr, and may
    # report its `sleep` killed ("Terminated"); supervise itself says nothing.
    assert err.replace(b"Terminated\n", b"") == b""


@pytest.mark.parametrize("use_pty", [True, False], ids=["pty", "no-pty"])
def test_a_daemon_ignoring_sigterm_is_killed(use_pty: bool) -> None:
    """SIGTERM, then SIGKILL after --stop-timeout, for a daemon that ignores SIGTERM."""
    proc, daemon, _ = _start(use_pty, IGNORES_TERM, "--stop-timeout", "1")
    try:
        status, _, err = finish(proc)
    finally:
        _assert_gone(daemon)
    assert status == 5, err


def _start_waiting(use_pty: bool, daemon: str, *flags: str) -> tuple[subprocess.Popen[bytes], int]:
    """supervise with a daemon that outlives the child; return once the child is reaped."""
    proc, pid, seen = _start(use_pty, daemon, *flags)
    if b"CHILD-GONE" not in seen:
        try:
            read_until(proc, b"CHILD-GONE")
        except BaseException:
            _assert_gone(pid)
            raise
    return proc, pid


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
@pytest.mark.parametrize("use_pty", [True, False], ids=["pty", "no-pty"])
def test_a_stop_signal_after_the_childs_exit_stops_the_daemon(
    use_pty: bool, signum: signal.Signals
) -> None:
    """A stop signal in the wait after the child's exit reaches the daemon holding the output."""
    proc, daemon = _start_waiting(use_pty, WAITS_FOR_THE_CHILD, "--stop-timeout", "60")
    try:
        proc.send_signal(signum)
        status, out, err = finish(proc)
    finally:
        _assert_gone(daemon)
    assert b"GOT-TERM" in out
    assert status == 5, err


@pytest.mark.parametrize("use_pty", [True, False], ids=["pty", "no-pty"])
def test_a_second_sigint_after_the_childs_exit_kills_the_daemon(use_pty: bool) -> None:
    """Two Control-Cs kill a daemon that ignores SIGTERM, without waiting for --stop-timeout."""
    daemon_script = WAITS_FOR_THE_CHILD.replace("echo GOT-TERM; exit 0", "echo GOT-TERM")
    proc, daemon = _start_waiting(use_pty, daemon_script, "--stop-timeout", "600")
    try:
        proc.send_signal(signal.SIGINT)
        read_until(proc, b"GOT-TERM")  # the first one was passed on, and ignored
        proc.send_signal(signal.SIGINT)
        status, _, err = finish(proc)
    finally:
        _assert_gone(daemon)
    assert status == 5, err


def test_a_stop_signal_while_orphans_are_stopped_kills_them(tmp_path: Path) -> None:
    """An orphan that ignores SIGTERM, not holding the output, is killed on a stop signal.

    Without one supervise waits --stop-timeout for it; with one it must not
    leave it running either.
    """
    marker = tmp_path / "term"
    orphan = (
        f'trap "echo TERM >> {marker}" TERM; echo "DAEMON $$ END" > {marker}.pid;'
        " while :; do sleep 0.05; done"
    )
    child_script = (
        'setsid sh -c "$1" orphan </dev/null >/dev/null 2>&1 &'
        f" while [ ! -s {marker}.pid ]; do sleep 0.05; done; exit 5"
    )
    proc = popen(
        [*SUPERVISE, "--stop-timeout", "600", "--", "sh", "-c", child_script, "child", orphan],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # until supervise's SIGTERM has reached the orphan
        assert marker.exists(), "the orphan never got SIGTERM"
        proc.send_signal(signal.SIGTERM)
        status, _, err = finish(proc)
    finally:
        daemon = _daemon_pid((tmp_path / "term.pid").read_bytes())
        _assert_gone(daemon)
    assert status == 5, err


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ('{ "A=B" = "x" }', "'A=B' is not an environment variable name (it contains '=')"),
        (
            '{ "A\\u0000" = "x" }',
            r"'A\x00' is not an environment variable name (it contains a NUL byte)",
        ),
        ('{ "" = "x" }', "an environment variable name is empty"),
        ('{ A = "x\\u0000y" }', "the value of A contains a NUL byte"),
    ],
    ids=["equals-in-name", "nul-in-name", "empty-name", "nul-in-value"],
)
def test_env_entries_that_cannot_exist_are_refused(tmp_path: Path, env: str, problem: str) -> None:
    """Refused when the file is read, by check-config and by a run, before anything starts."""
    marker = tmp_path / "started"
    config = tmp_path / "bad.toml"
    config.write_text(f'[programs.p]\ncommand = ["touch", "{marker}"]\nenv = {env}\n')
    expected = f"supervise: {config}: programs.p.env: {problem}\n".encode()
    for args in (["check-config", str(config)], ["--config", str(config)]):
        result = supervise(*args, timeout=30)
        assert result.returncode == 2
        assert result.stderr == expected
    assert not marker.exists()


def test_env_override_that_cannot_exist_is_refused(tmp_path: Path) -> None:
    """The same for an environment override of the program's env table."""
    config = tmp_path / "ok.toml"
    config.write_text('[programs.p]\ncommand = "true"\n')
    result = subprocess.run(
        [*SUPERVISE, "check-config", str(config)],
        capture_output=True,
        env={**clean_env(), "SUPERVISE_PROGRAMS__P__ENV": '{ "A=B" = "x" }'},
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"supervise: {config}: programs.p.env: ".encode())
    assert result.stderr.endswith(b"'A=B' is not an environment variable name (it contains '=')\n")
