"""CommandSink: real commands get the event on stdin and in their environment,
fail with a useful message, and never outlive their timeout."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import trio
from conftest import pid_alive

import adapters.command
from adapters.command import CommandSink
from supervisor import ConfigError, Event, SinkError
from supervisor._core.messages import parse_message
from supervisor.testing import new_fds, open_fds, wait_until

# Writes what the command received to the file named by its argument.
RECORD = """
import json, os, sys
json.dump({
    "stdin": sys.stdin.read(),
    "env": {k: v for k, v in os.environ.items() if k.startswith(("IPC_", "EXTRA_"))},
    "has_path": "PATH" in os.environ,
    "cwd": os.getcwd(),
}, open(sys.argv[1], "w"))
"""


def make_event(seq: int = 7, event: str = "task_start", data: Any = None, **envelope: Any) -> Event:
    fields = {
        "type": "ipc",
        "event": event,
        "data": {"taskId": "FEAT-1", "title": "Add login"} if data is None else data,
        "timestamp": 1_795_236_690_901,
        "messageId": "msg-7",
        **envelope,
    }
    return Event(seq, "loopwork", 1_795_236_690_950, "child", parse_message(fields))


async def wait_gone(pid: int, timeout: float = 5) -> None:
    """Wait for ``pid`` to be dead (a SIGKILL takes effect asynchronously)."""
    await wait_until(
        lambda: not pid_alive(pid), timeout=timeout, message=f"process {pid} is still alive"
    )


async def test_event_arrives_on_stdin_and_in_environment(tmp_path: Path) -> None:
    """The command gets the event JSON on stdin, IPC_* and env additions, in cwd."""
    out = tmp_path / "received.json"
    sink = CommandSink(
        [sys.executable, "-c", RECORD, str(out)], env={"EXTRA_TOKEN": "t0k"}, cwd=tmp_path
    )
    event = make_event()
    with trio.fail_after(10):
        await sink.send(event)
    received = json.loads(out.read_text())
    assert received["stdin"] == event.to_json().decode() + "\n"
    assert received["env"] == {
        "IPC_EVENT": "task_start",
        "IPC_TASK_ID": "FEAT-1",
        "IPC_PROGRAM": "loopwork",
        "IPC_SEQ": "7",
        "IPC_MESSAGE_ID": "msg-7",
        "EXTRA_TOKEN": "t0k",
    }
    assert received["has_path"]
    assert received["cwd"] == str(tmp_path)
    assert sink.name == f"exec:{os.path.basename(sys.executable)}"


async def test_event_without_task_and_odd_strings(tmp_path: Path) -> None:
    """No taskId gives an empty IPC_TASK_ID; NUL in the child's strings cannot break the run."""
    out = tmp_path / "received.json"
    sink = CommandSink([sys.executable, "-c", RECORD, str(out)])
    with trio.fail_after(10):
        await sink.send(make_event(event="loop_end", data="ipc-demo", messageId="m\x00x"))
    env = json.loads(out.read_text())["env"]
    assert env["IPC_EVENT"] == "loop_end"
    assert env["IPC_TASK_ID"] == ""
    assert env["IPC_MESSAGE_ID"] == "mx"


async def test_shell_form(tmp_path: Path) -> None:
    """With shell=True one string runs under /bin/sh -c, named after its program."""
    sink = CommandSink(
        'printf "%s %s" "$IPC_EVENT" "$IPC_TASK_ID" > out.txt', shell=True, cwd=tmp_path
    )
    assert sink.name == "exec:printf"
    assert CommandSink(["TOKEN=x notify-send hi"], shell=True).name == "exec:notify-send"
    with trio.fail_after(10):
        await sink.send(make_event())
    assert (tmp_path / "out.txt").read_text() == "task_start FEAT-1"


async def test_non_zero_exit_is_retryable_with_last_stderr_line() -> None:
    """A failing command's status and last stderr line make the error; a retry may help."""
    sink = CommandSink(["sh", "-c", "echo first >&2; echo 'disk full' >&2; echo; exit 3"])
    with trio.fail_after(10), pytest.raises(SinkError) as caught:
        await sink.send(make_event())
    assert caught.value.retryable
    assert caught.value.sink == "exec:sh"
    assert caught.value.problem == "exited with status 3: disk full"


async def test_stderr_is_bounded_and_stdout_discarded(capfd: pytest.CaptureFixture[str]) -> None:
    """Megabytes of stderr keep only the tail; nothing reaches supervise's own stdout/stderr."""
    script = (
        "echo to-stdout; head -c 2000000 /dev/zero | tr '\\0' x >&2; printf '\\nthe end\\n' >&2"
    )
    sink = CommandSink(["sh", "-c", script + "; exit 1"])
    with trio.fail_after(10), pytest.raises(SinkError) as caught:
        await sink.send(make_event())
    assert caught.value.problem == "exited with status 1: the end"
    assert capfd.readouterr() == ("", "")


async def test_timeout_kills_the_whole_group(tmp_path: Path) -> None:
    """On timeout the command and a helper that ignores SIGTERM are killed; retryable."""
    script = "echo $$ > leader; (trap '' TERM; exec sleep 1000) & echo $! > helper; wait"
    sink = CommandSink(script, shell=True, timeout=1.0, cwd=tmp_path)
    start = time.monotonic()
    with trio.fail_after(10), pytest.raises(SinkError) as caught:
        await sink.send(make_event())
    # The shell dies of SIGTERM at once, so the rest of the group is killed
    # then, without waiting out the grace period.
    assert time.monotonic() - start < 1.0 + adapters.command._KILL_GRACE
    assert caught.value.retryable
    assert caught.value.problem.startswith("timed out after 1 s; killed")
    await wait_gone(int((tmp_path / "leader").read_text()))
    await wait_gone(int((tmp_path / "helper").read_text()))


async def test_timeout_escalates_to_sigkill(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command that ignores SIGTERM is killed after the grace period."""
    monkeypatch.setattr(adapters.command, "_KILL_GRACE", 0.2)
    script = "trap '' TERM; echo $$ > leader; sleep 1000"
    sink = CommandSink(script, shell=True, timeout=1.0, cwd=tmp_path)
    with trio.fail_after(10), pytest.raises(SinkError, match="timed out"):
        await sink.send(make_event())
    await wait_gone(int((tmp_path / "leader").read_text()))


def test_missing_command_is_a_config_error(tmp_path: Path) -> None:
    """A command not on PATH (or not executable) is refused at construction, by name."""
    with pytest.raises(ConfigError, match="no-such-command-xyz"):
        CommandSink(["no-such-command-xyz", "--flag"])
    script = tmp_path / "hook.sh"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(ConfigError, match="not found or not executable"):
        CommandSink([str(script)])
    with pytest.raises(ConfigError, match="not found"):
        CommandSink(["hook.sh"], env={"PATH": str(tmp_path)})  # not executable


@pytest.mark.parametrize(
    ("argv", "options", "problem"),
    [
        ("notify-send hi", {}, "is a string"),
        ([], {}, "empty"),
        (["sh", "-c", "true"], {"shell": True}, "single string"),
        (["sh"], {"timeout": 0}, "timeout must be positive"),
        (["sh"], {"cwd": "/no/such/dir"}, "not a directory"),
        (["sh", "a\x00b"], {}, "NUL"),
        (["sh"], {"env": {"A=B": "x"}}, "has '='"),
    ],
)
def test_bad_settings_are_config_errors(argv: Any, options: dict[str, Any], problem: str) -> None:
    """Mistakes that would fail every run are refused when the sink is made."""
    with pytest.raises(ConfigError, match=problem):
        CommandSink(argv, **options)


async def test_command_gone_at_run_time_is_not_retryable(tmp_path: Path) -> None:
    """A relative command is found in cwd; once deleted, sending fails for good."""
    script = tmp_path / "hook.sh"
    script.write_text("#!/bin/sh\ntouch ran\n")
    script.chmod(0o755)
    sink = CommandSink(["./hook.sh"], cwd=tmp_path)
    with trio.fail_after(10):
        await sink.send(make_event())
        assert (tmp_path / "ran").exists()
        script.unlink()
        with pytest.raises(SinkError) as caught:
            await sink.send(make_event())
    assert not caught.value.retryable
    assert "cannot start" in caught.value.problem


async def test_shell_cannot_find_command_is_not_retryable() -> None:
    """sh's "not found" (status 127) cannot be mended by retrying."""
    sink = CommandSink("no-such-command-xyz", shell=True)
    with trio.fail_after(10), pytest.raises(SinkError) as caught:
        await sink.send(make_event())
    assert not caught.value.retryable
    assert "status 127" in caught.value.problem


async def test_no_fds_leak() -> None:
    """Runs that succeed and fail leave no descriptor behind."""
    ok = CommandSink(["sh", "-c", "cat > /dev/null"])
    failing = CommandSink(["sh", "-c", "echo no >&2; exit 1"])
    with trio.fail_after(10):
        await ok.send(make_event())
        before = open_fds()
        for _ in range(3):
            await ok.send(make_event())
            with pytest.raises(SinkError):
                await failing.send(make_event())
        await ok.aclose()
    assert new_fds(before) == set()
