"""supervise's own standard streams closed or failing: never a traceback.

A closed stdin is an empty stdin; a closed or failing stdout stops the child
as a reader that went away does, with one line on stderr and the child's
exit status; a closed stderr costs only the messages.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, SUPERVISE, clean_env

# Leaves at once with status 4 when stopped, so the status is the child's
# whether supervise stops it or not.
STOPPABLE = 'trap "exit 4" TERM; echo hi; sleep 30 & wait'


def _run(
    args: list[str], *, close: tuple[int, ...] = (), stdout: int | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run supervise with the standard fds in ``close`` closed."""

    def close_fds() -> None:
        for fd in close:
            os.close(fd)

    return subprocess.run(
        [*SUPERVISE, *args],
        stdin=subprocess.DEVNULL,
        stdout=stdout if stdout is not None else subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=close_fds,
        cwd=ROOT,
        env=clean_env(),
        timeout=30,
        check=False,
    )


def _flags(use_pty: bool) -> list[str]:
    return [] if use_pty else ["--no-pty"]


@pytest.mark.parametrize("use_pty", [True, False], ids=["pty", "no-pty"])
def test_closed_stdin_is_an_empty_stdin(use_pty: bool, tmp_path: Path) -> None:
    """`<&-`: the output still goes to stdout (not to a file that took fd 0)."""
    out = tmp_path / "out.txt"
    with out.open("wb") as file:
        result = _run(
            [*_flags(use_pty), "--", "sh", "-c", "echo hi; exit 4"],
            close=(0,),
            stdout=file.fileno(),
        )
    assert result.returncode == 4, result.stderr
    assert out.read_bytes() == b"hi\n"
    assert result.stderr == b""


@pytest.mark.parametrize("use_pty", [True, False], ids=["pty", "no-pty"])
def test_closed_stdin_reaches_the_child_as_end_of_input(use_pty: bool) -> None:
    """With --forward-eof, a closed stdin ends the child's input like an empty one."""
    result = _run([*_flags(use_pty), "--forward-eof", "--", "cat"], close=(0,))
    assert result.returncode == 0, result.stderr
    assert result.stdout == b""


@pytest.mark.parametrize("use_pty", [True, False], ids=["pty", "no-pty"])
def test_closed_stdout_stops_the_child(use_pty: bool) -> None:
    """`>&-`: one line on stderr, the child stopped, its exit status kept."""
    result = _run([*_flags(use_pty), "--", "sh", "-c", STOPPABLE], close=(1,))
    assert result.stderr == b"supervise: standard output was closed; stopped the child\n"
    assert result.returncode == 4


@pytest.mark.parametrize("use_pty", [True, False], ids=["pty", "no-pty"])
def test_full_stdout_stops_the_child(use_pty: bool) -> None:
    """`>/dev/full`: the write error is named, the child stopped, its exit status kept."""
    with open("/dev/full", "wb") as full:
        result = _run([*_flags(use_pty), "--", "sh", "-c", STOPPABLE], stdout=full.fileno())
    assert result.stderr == (
        b"supervise: standard output failed (No space left on device); stopped the child\n"
    )
    assert result.returncode == 4


@pytest.mark.parametrize("use_pty", [True, False], ids=["pty", "no-pty"])
def test_closed_stderr_costs_only_the_messages(use_pty: bool) -> None:
    """`2>&-`: a report for stderr (an invalid frame) neither crashes nor lands in stdout."""
    script = "echo __IPC_START__x__IPC_END__; echo err >&2; exit 4"
    result = _run([*_flags(use_pty), "--", "sh", "-c", script], close=(2,))
    assert result.returncode == 4
    expected = b"__IPC_START__x__IPC_END__\n"
    assert result.stdout == (expected + b"err\n" if use_pty else expected)


def test_closed_stderr_and_a_usage_error() -> None:
    """A usage error with stderr closed still exits 2."""
    result = _run(["--max-frame-bytes", "lots", "--", "true"], close=(2,))
    assert result.returncode == 2
    assert result.stdout == b""
