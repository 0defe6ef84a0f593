"""Shared helpers: run the real ``supervise`` command on real child programs."""

from __future__ import annotations

import atexit
import functools
import inspect
import io
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import hypothesis
import pytest
import trio

from supervisor.testing import python_child, wait_until_sync

# The suite runs four workers on two cores, so one example's wall time says
# more about the neighbours than about the code; every test is bounded by
# faulthandler_timeout and the I/O tests by trio.fail_after instead.
hypothesis.settings.register_profile("suite", deadline=None)
hypothesis.settings.load_profile("suite")

# A run started as a background job of a shell without job control (a CI
# script's `cmd &`) inherits SIGINT and SIGQUIT ignored, and exec hands that
# to every child: the tests stop programs with these signals, as a person
# at a terminal would, so each run starts them at their defaults.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
if signal.getsignal(signal.SIGQUIT) == signal.SIG_IGN:
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)

ROOT = Path(__file__).resolve().parent.parent
CHILDREN = Path(__file__).resolve().parent / "children"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "loopwork"
SUPERVISE = [sys.executable, "-m", "supervisor"]


T = TypeVar("T")
_started: list[subprocess.Popen[bytes]] = []


def popen(
    argv: list[str], *, env: dict[str, str] | None = None, **options: Any
) -> subprocess.Popen[bytes]:
    """Start a process that the test's teardown stops if the test did not.

    ``env``: its whole environment (default :func:`clean_env`); it runs in
    the project's root unless ``cwd`` says otherwise.
    """
    options.setdefault("cwd", ROOT)
    proc = subprocess.Popen(argv, env=clean_env() if env is None else env, **options)
    _started.append(proc)
    return proc


@pytest.fixture(autouse=True)
def _stop_leftover_processes() -> Iterator[None]:
    """Every process a test starts is stopped by that test, even when it fails.

    SIGTERM first: supervise passes it on to its child's group, so nothing is
    orphaned; SIGKILL if that does not end it.
    """
    yield
    while _started:
        proc = _started.pop()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def child(name: str, *args: str) -> list[str]:
    """Command line running ``tests/children/NAME.py`` with this interpreter."""
    return python_child(CHILDREN / f"{name}.py", *args)


def supervise(
    *args: str,
    input: bytes | None = None,
    timeout: float = 60,
    stdin: int | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m supervisor ARGS`` to completion and capture its output.

    ``check-config`` starts no child, so it runs in this process through
    ``main([...])`` (the same code, without paying for a fresh interpreter);
    everything else is a real subprocess.
    """
    if args[:1] == ("check-config",) and input is None and stdin is None:
        return _main_in_process(list(args))
    return subprocess.run(
        [*SUPERVISE, *args],
        input=input,
        stdin=stdin if input is None else None,
        capture_output=True,
        timeout=timeout,
        cwd=ROOT,
        env=clean_env(),
        check=False,
    )


def _main_in_process(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
    """``main(argv)`` with fds 1 and 2 captured, in the project's directory, as a run would be."""
    from supervisor._cli.main import main

    loggers = [logging.getLogger(name) for name in ("supervisor", "adapters")]
    logger_state = [(lg.handlers[:], lg.propagate, lg.level) for lg in loggers]
    saved_env = os.environ.copy()
    os.environ.update({"XDG_RUNTIME_DIR": RUNTIME_DIR})
    os.environ.pop("TMUX", None)
    os.environ.pop("TMUX_PANE", None)
    cwd = os.getcwd()
    captured = [tempfile.TemporaryFile() for _ in range(2)]  # noqa: SIM115 - closed by _read_all
    saved = [os.dup(1), os.dup(2)]
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.chdir(ROOT)
        for fd, file in zip((1, 2), captured, strict=True):
            os.dup2(file.fileno(), fd)
        # pytest points sys.stdout/err at its own files, not at fds 1 and 2.
        streams = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = (
            io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), write_through=True) for fd in (1, 2)
        )
        try:
            status = main(argv)
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 2
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            sys.stdout, sys.stderr = streams
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in zip((1, 2), saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        for lg, (handlers, propagate, level) in zip(loggers, logger_state, strict=True):
            lg.handlers, lg.propagate, lg.level = handlers, propagate, level
    out, err = (_read_all(file) for file in captured)
    return subprocess.CompletedProcess([*SUPERVISE, *argv], status, out, err)


def _read_all(file: Any) -> bytes:
    with file:
        file.seek(0)
        data: bytes = file.read()
    return data


# Control sockets of the supervisors the tests start live here, not in the
# user's runtime directory (a short path: unix socket paths are limited).
RUNTIME_DIR = tempfile.mkdtemp(prefix="ipcrt")
atexit.register(shutil.rmtree, RUNTIME_DIR, True)


@pytest.fixture(autouse=True)
def _private_state_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each test's journals live in a state directory of its own, never the user's."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))


def clean_env() -> dict[str, str]:
    """The environment for children: no tmux, the project importable, private sockets."""
    env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "TMUX_PANE")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["XDG_RUNTIME_DIR"] = RUNTIME_DIR
    return env


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def read_until(proc: subprocess.Popen[bytes], marker: bytes, timeout: float = 20) -> bytes:
    """Read the process's stdout until ``marker`` appears (the READY handshake)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {marker!r} in {seen!r}"
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            data = os.read(fd, 65536)
            assert data, f"EOF before {marker!r}: {seen!r}"
            seen += data
    return seen


def eventually(check: Callable[[], T | None], timeout: float = 20) -> T:
    """Poll ``check`` (every 20 ms) until it gives a true value; that value."""
    found = wait_until_sync(check, timeout=timeout, interval=0.02, message=f"{check} never held")
    assert found is not None
    return found


def finish(proc: subprocess.Popen[bytes], timeout: float = 20) -> tuple[int, bytes, bytes]:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, err


@pytest.fixture
def fixtures_dir() -> Path:
    """The real loopwork captures, kept in the repository (see their README)."""
    return FIXTURES


#: Every trio test ends within this many seconds, whatever it waits on.
TRIO_TEST_BOUND = 60.0


def _bounded(test: Callable[..., Awaitable[object]]) -> Callable[..., Awaitable[object]]:
    """``test`` run inside ``trio.fail_after``: a hung wait fails, it does not hang."""

    @functools.wraps(test)
    async def run(*args: Any, **kwargs: Any) -> object:
        with trio.fail_after(TRIO_TEST_BOUND):
            return await test(*args, **kwargs)

    return run


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Bound every async test in time before pytest-trio wraps it to run.

    A fixture cannot do this (pytest-trio runs fixtures in their own tasks, and
    a cancel scope cannot span tasks), so the test function itself is wrapped.
    Hypothesis tests are left alone: their inner test is swapped separately.
    So are tests on ``autojump_clock``: there the bound would be virtual time,
    which the clock jumps to at once (``faulthandler_timeout`` bounds them).
    """
    test = getattr(item, "obj", None)
    on_mock_clock = "autojump_clock" in getattr(item, "fixturenames", ())
    if inspect.iscoroutinefunction(test) and not hasattr(test, "hypothesis") and not on_mock_clock:
        item.obj = _bounded(test)  # type: ignore[attr-defined]
    yield
