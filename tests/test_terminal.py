"""supervise at a real terminal: indistinguishable from the child run directly.

Each test runs supervise under a pty made by pexpect, so supervise's own
stdin and stdout are a terminal, exactly as when a person runs it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pexpect
import pytest
from conftest import ROOT, SUPERVISE, child, clean_env

TIMEOUT = 20


_spawned: list[pexpect.spawn] = []


@pytest.fixture(autouse=True)
def _close_terminals() -> Iterator[None]:
    """Stop whatever a test left running at its terminal, even when it fails."""
    yield
    while _spawned:
        proc = _spawned.pop()
        if not proc.closed:
            proc.close(force=True)


def spawn(argv: list[str], dimensions: tuple[int, int] = (24, 80)) -> pexpect.spawn:
    proc = pexpect.spawn(
        argv[0],
        argv[1:],
        cwd=str(ROOT),
        env=clean_env(),
        timeout=TIMEOUT,
        dimensions=dimensions,
    )
    _spawned.append(proc)
    return proc


def transcript(argv: list[str], keys: bytes) -> tuple[bytes, int | None, int | None]:
    """Run ``argv`` at a terminal, type ``keys`` after READY, return what it showed."""
    proc = spawn(argv)
    try:
        proc.expect(b"name\\? ")
        shown = proc.before + proc.after
        proc.send(keys)
        proc.expect(pexpect.EOF)
        shown += proc.before
    finally:
        proc.close()
    return shown, proc.exitstatus, proc.signalstatus


@pytest.mark.parametrize(
    "keys",
    [b"Ada\r", b"Adx\x7fa Lovelace\r", b"\x15Bob\r"],
    ids=["plain", "backspace", "kill-line"],
)
def test_terminal_session_matches_running_directly(keys: bytes) -> None:
    """Echo, line editing and colours are those of the child alone; frames vanish."""
    direct, direct_status, _ = transcript(child("interactive", "3"), keys)
    supervised, status, _ = transcript([*SUPERVISE, "--", *child("interactive", "3")], keys)
    frame = b'__IPC_START__{"type":"ipc","event":"log","data":{"message":"m"}}__IPC_END__\r\n'
    assert frame in direct
    assert supervised == direct.replace(frame, b"")
    assert (direct_status, status) == (3, 3)


def test_control_c_interrupts_the_child() -> None:
    """Control-C at the terminal reaches the child as SIGINT; supervise exits 130."""
    proc = spawn([*SUPERVISE, "--", *child("signals")])
    proc.expect(b"READY")
    proc.sendcontrol("c")
    proc.expect(pexpect.EOF)
    proc.close()
    assert proc.exitstatus == 130


def test_window_size_is_copied_and_follows_resizes() -> None:
    """The child sees the terminal's size at start and after every resize."""
    proc = spawn([*SUPERVISE, "--", *child("winsize")], dimensions=(30, 100))
    proc.expect(b"SIZE 30x100")
    proc.expect(b"READY")
    proc.setwinsize(40, 120)
    proc.expect(b"SIZE 40x120")
    proc.sendline(b"quit")
    proc.expect(pexpect.EOF)
    proc.close()
    assert proc.exitstatus == 0


@pytest.mark.parametrize(
    "command",
    [["true"], ["sh", "-c", "kill -9 $$"], ["no-such-command-xyz"]],
    ids=["exit", "killed", "not-found"],
)
def test_terminal_is_restored_on_every_exit_path(command: list[str]) -> None:
    """Terminal modes and blocking mode are as before, however supervise ends."""
    supervise = " ".join([*SUPERVISE, "--", *command])
    probe = 'import os; print("BLOCKING", os.get_blocking(0), os.get_blocking(1))'
    check = f"{sys.executable} -c '{probe}'"
    script = f"stty -g; {supervise}; echo STATUS $?; stty -g; {check}"
    proc = spawn(["sh", "-c", script])
    proc.expect(pexpect.EOF)
    proc.close()
    lines = proc.before.decode().replace("\r", "").split("\n")
    modes = [line for line in lines if line.count(":") > 10]
    assert len(modes) == 2, lines
    assert modes[0] == modes[1]
    assert "BLOCKING True True" in lines
