"""The ``supervise`` command on real children: passthrough, events, exit status, signals."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    ROOT,
    SUPERVISE,
    child,
    clean_env,
    eventually,
    finish,
    pid_alive,
    popen,
    read_until,
    supervise,
)

from supervisor.testing import wait_until_sync


def read_events(path: Path, states: bool = False) -> list[dict[str, Any]]:
    """The events of an --events file; without process_state ones unless asked."""
    events = [json.loads(line) for line in path.read_text().splitlines()]
    return [e for e in events if states or e["event"] != "process_state"]


def _transitions(path: Path) -> list[tuple[str, str]]:
    """The state changes in an --events file so far (a line being written is left out)."""
    if not path.exists():
        return []
    lines = path.read_text().split("\n")[:-1]
    events = [json.loads(line) for line in lines]
    return [(e["data"]["from"], e["data"]["to"]) for e in events if e["event"] == "process_state"]


def start(*args: str) -> subprocess.Popen[bytes]:
    return popen(
        [*SUPERVISE, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


# -- exit status -----------------------------------------------------------


@pytest.mark.parametrize("use_pty", [True, False])
@pytest.mark.parametrize(
    ("script", "status"),
    [("exit 0", 0), ("exit 3", 3), ("kill -9 $$", 137), ("kill -TERM $$", 143)],
)
def test_exit_status_is_the_childs(script: str, status: int, use_pty: bool) -> None:
    """supervise exits with the child's status, or 128+N for signal N."""
    flags = [] if use_pty else ["--no-pty"]
    assert supervise(*flags, "--", "sh", "-c", script).returncode == status


def test_command_not_found_exits_127() -> None:
    """A missing command gives one line naming it and status 127."""
    result = supervise("--", "no-such-command-xyz")
    assert result.returncode == 127
    assert result.stderr == b"supervise: no-such-command-xyz: command not found\n"


@pytest.mark.parametrize("path", ["/etc/hostname", "/tmp"])
def test_command_not_executable_exits_126(path: str) -> None:
    """A file that is not executable, or a directory, gives status 126."""
    result = supervise("--", path)
    assert result.returncode == 126
    assert result.stderr.startswith(f"supervise: {path}: ".encode())
    assert result.stderr.count(b"\n") == 1


def test_usage_error_exits_2() -> None:
    """No command, or a bad option value, is a usage error with status 2."""
    assert supervise().returncode == 2
    result = supervise("--max-frame-bytes", "lots", "--", "true")
    assert result.returncode == 2
    assert b"--max-frame-bytes: not a size: 'lots'" in result.stderr
    result = supervise("--stop-timeout", "-1", "--", "true")
    assert result.returncode == 2
    assert result.stderr == (
        b"supervise: --stop-timeout: input should be greater than or equal to 0\n"
    )


@pytest.mark.parametrize(
    ("argv", "status", "says"),
    [
        (["--help"], 0, b"usage: supervise"),
        (["--version"], 0, b"supervise 0.1.0"),
        (["--bogus", "--", "true"], 2, b"unrecognized arguments: --bogus"),
    ],
)
def test_help_version_and_usage_errors_import_neither_trio_nor_pydantic(
    argv: list[str], status: int, says: bytes
) -> None:
    """The parser answers them alone: nothing of the supervisor is imported."""
    probe = (
        "import sys\n"
        "from supervisor._cli.launch import main\n"
        f"sys.argv = ['supervise', *{argv!r}]\n"
        "status = main()\n"
        "heavy = sorted({'trio', 'pydantic', 'supervisor._supervisor'} & set(sys.modules))\n"
        "print('IMPORTED', heavy, file=sys.stderr)\n"
        "sys.exit(status)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, timeout=30, cwd=ROOT
    )
    assert result.returncode == status, result.stderr
    assert says in result.stdout + result.stderr
    assert b"IMPORTED []" in result.stderr


# -- passthrough -----------------------------------------------------------


@pytest.mark.parametrize("use_pty", [True, False])
def test_passthrough_is_byte_identical_minus_frames(use_pty: bool) -> None:
    """Every byte the child writes comes out unchanged (no \\r added), frames removed."""
    flags = [] if use_pty else ["--no-pty"]
    result = supervise(*flags, "--", *child("all_bytes"))
    expected = bytes(range(256)) + b"\nunix\nwindows\r\nold mac\rend\n" + b"tail without newline"
    assert result.returncode == 0
    assert result.stdout == expected


def test_keep_frames_leaves_output_untouched(tmp_path: Path) -> None:
    """With --keep-frames the output is exactly what the child wrote; events still flow."""
    events = tmp_path / "events.jsonl"
    result = supervise("--keep-frames", "--events", str(events), "--", *child("all_bytes"))
    direct = subprocess.run(child("all_bytes"), capture_output=True, check=True, timeout=60).stdout
    assert result.stdout == direct
    assert [e["event"] for e in read_events(events)] == ["process_start", "log", "process_exit"]


def test_events_file_lines(tmp_path: Path) -> None:
    """--events writes one JSON object per event, in order, with seq and program."""
    events = tmp_path / "events.jsonl"
    script = (
        'printf \'a\\n__IPC_START__{"type":"ipc","event":"task_start",'
        '"data":{"taskId":"T1","title":"One"}}__IPC_END__\\nb\\n\'; exit 4'
    )
    result = supervise("--events", str(events), "--name", "demo", "--", "sh", "-c", script)
    assert result.returncode == 4
    assert result.stdout == b"a\nb\n"
    everything = read_events(events, states=True)
    assert [e["seq"] for e in everything] == list(range(1, len(everything) + 1))
    states = [
        (e["data"]["from"], e["data"]["to"]) for e in everything if e["event"] == "process_state"
    ]
    assert states == [("stopped", "starting"), ("starting", "running"), ("running", "exited")]
    lines = read_events(events)
    events_seen = [e["event"] for e in lines]
    assert events_seen == ["process_start", "task_start", "process_exit", "task_failed"]
    assert {e["program"] for e in lines} == {"demo"}
    start_event, task, exit_event, lost = lines
    assert start_event["data"]["argv"] == ["sh", "-c", script]
    assert task["data"] == {"taskId": "T1", "title": "One"}
    assert task["source"] == "child"
    # A frame without timestamp/messageId gets the receipt time and a new id.
    assert task["timestamp"] == task["received_at"]
    assert len(str(task["messageId"])) == 36
    assert exit_event["data"]["exit_code"] == 4
    assert exit_event["data"]["signal"] is None
    # The task never finished: it ends as failed, lost, with the cause.
    assert lost["data"]["taskId"] == "T1"
    assert lost["data"]["lost"] is True
    assert lost["data"]["error"] == "process exited with code 4"


def test_program_name_defaults_to_what_the_command_runs(tmp_path: Path) -> None:
    """Without --name, events carry the command's basename, or, behind a shell
    and an interpreter, the script's."""
    events = tmp_path / "events.jsonl"
    supervise("--events", str(events), "--", "/bin/true")
    assert {e["program"] for e in read_events(events)} == {"true"}
    events = tmp_path / "launched.jsonl"
    script = " ".join(child("frames", "1"))
    result = supervise("--events", str(events), "--", "sh", "-c", f"exec {script}")
    assert result.returncode == 0, result.stderr
    assert {e["program"] for e in read_events(events)} == {"frames"}


def test_invalid_frame_is_visible_counted_and_reported(tmp_path: Path) -> None:
    """A malformed frame stays in the output, becomes frame_invalid, and is named on stderr."""
    events = tmp_path / "events.jsonl"
    bad = "__IPC_START__{nope}__IPC_END__"
    result = supervise("--events", str(events), "--", "printf", f"ok\\n{bad}\\n")
    assert result.stdout == f"ok\n{bad}\n".encode()
    invalid = [e for e in read_events(events) if e["event"] == "frame_invalid"]
    assert len(invalid) == 1
    assert invalid[0]["data"]["reason"] == "json"
    assert invalid[0]["data"]["offset"] == 3
    assert result.stderr.startswith(b"supervise: invalid frame at byte 3 (json): ")
    assert result.stderr.count(b"\n") == 1


def test_events_path_that_cannot_be_opened(tmp_path: Path) -> None:
    """An --events path in a missing directory fails before the child starts."""
    result = supervise("--events", str(tmp_path / "missing" / "e.jsonl"), "--", "true")
    assert result.returncode == 2
    assert b"cannot open for appending" in result.stderr


def test_hundred_mib_with_frames(tmp_path: Path) -> None:
    """100 MiB of output with frames mixed in: exact plain output, every frame counted."""
    sys.path.insert(0, str(ROOT / "tests" / "children"))
    try:
        import bulk
    finally:
        sys.path.pop(0)
    expected = hashlib.sha256()
    frames = written = expected_size = 0
    while written < 100 * 1024 * 1024:
        plain, frame = bulk.block(frames)
        expected.update(plain)
        expected_size += len(plain)
        written += len(plain) + len(frame)
        frames += 1
    proc = popen(
        [*SUPERVISE, "--events", str(tmp_path / "e.jsonl"), "--", *child("bulk", "100")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    got = hashlib.sha256()
    size = 0
    assert proc.stdout is not None
    while chunk := proc.stdout.read(1 << 20):
        got.update(chunk)
        size += len(chunk)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0
    assert err == b""
    assert size == expected_size
    assert got.hexdigest() == expected.hexdigest()
    events = read_events(tmp_path / "e.jsonl")
    assert [e["event"] for e in events].count("task_complete") == frames
    assert [e["seq"] for e in read_events(tmp_path / "e.jsonl", states=True)] == list(
        range(1, frames + 6)
    )


# -- stdin -----------------------------------------------------------------


@pytest.mark.parametrize("use_pty", [True, False])
def test_stdin_is_forwarded_without_echo(use_pty: bool) -> None:
    """Piped stdin reaches the child; nothing is echoed into the output."""
    flags = [] if use_pty else ["--no-pty"]
    result = supervise(*flags, "--", *child("stdin_probe"), input=b"hello\n")
    assert result.stdout.split(b"\n")[0] == b"line: hello"
    assert result.stdout.count(b"hello") == 1


@pytest.mark.parametrize("use_pty", [True, False])
def test_child_input_stays_open_after_stdin_eof(use_pty: bool) -> None:
    """By default the end of supervise's stdin is not passed on."""
    flags = [] if use_pty else ["--no-pty"]
    result = supervise(*flags, "--", *child("stdin_probe"), input=b"hello\n")
    assert result.stdout.endswith(b"stdin: open\n")


@pytest.mark.parametrize("use_pty", [True, False])
def test_forward_eof(use_pty: bool) -> None:
    """--forward-eof makes a filter such as cat work: echo data | supervise -- cat."""
    flags = [] if use_pty else ["--no-pty"]
    result = supervise(*flags, "--forward-eof", "--", "cat", input=b"data\nmore")
    assert result.returncode == 0
    assert result.stdout == b"data\nmore"


def test_no_pty_stderr_is_separate() -> None:
    """With --no-pty the child's stderr goes to supervise's stderr untouched."""
    result = supervise("--no-pty", "--", "sh", "-c", "echo out; echo err >&2")
    assert result.stdout == b"out\n"
    assert result.stderr == b"err\n"


# -- signals ---------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
@pytest.mark.parametrize("use_pty", [True, False])
def test_stop_signals_reach_the_child(signum: signal.Signals, use_pty: bool) -> None:
    """SIGINT, SIGTERM and SIGHUP sent to supervise go to the child's group."""
    flags = [] if use_pty else ["--no-pty"]
    proc = start(*flags, "--", *child("signals", "--report", signum.name))
    read_until(proc, b"READY")
    proc.send_signal(signum)
    status, out, _ = finish(proc)
    assert status == 0
    assert f"got {signum.name}".encode() in out


def test_sigkill_after_stop_timeout() -> None:
    """A child that ignores SIGTERM is killed stop-timeout later."""
    proc = start("--stop-timeout", "0.5", "--", *child("signals", "--ignore", "SIGTERM"))
    read_until(proc, b"READY")
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    status, _, _ = finish(proc)
    assert status == 128 + signal.SIGKILL
    assert 0.4 < time.monotonic() - began < 10


def test_second_sigint_kills_at_once(tmp_path: Path) -> None:
    """A second Control-C does not wait for the stop timeout."""
    events = tmp_path / "events.jsonl"
    proc = start(
        "--stop-timeout",
        "30",
        "--events",
        str(events),
        "--",
        *child("signals", "--ignore", "SIGINT"),
    )
    read_until(proc, b"READY")
    proc.send_signal(signal.SIGINT)
    # The first one has been handled once the program is stopping.
    wait_until_sync(
        lambda: ("running", "stopping") in _transitions(events),
        timeout=20,
        message=lambda: f"the first SIGINT never started the stop: {_transitions(events)}",
    )
    began = time.monotonic()
    proc.send_signal(signal.SIGINT)
    status, _, _ = finish(proc)
    assert status == 128 + signal.SIGKILL
    assert time.monotonic() - began < 10


@pytest.mark.parametrize("use_pty", [True, False])
@pytest.mark.parametrize("how", ["stopped", "exited"])
def test_no_process_left_running(use_pty: bool, how: str) -> None:
    """A helper the child started is stopped when supervise exits, however the child ends."""
    flags = [] if use_pty else ["--no-pty"]
    mode = ["--report", "SIGTERM"] if how == "stopped" else ["--exit"]
    proc = start(*flags, "--", *child("signals", "--grandchild", *mode))
    seen = read_until(proc, b"READY")
    helper = int(seen.split(b"GRANDCHILD ")[1].split()[0])
    if how == "stopped":
        proc.send_signal(signal.SIGTERM)
    status, _, _ = finish(proc)
    assert status == 0
    with contextlib.suppress(AssertionError):
        wait_until_sync(lambda: not pid_alive(helper), interval=0.05)
    alive = pid_alive(helper)
    if alive:
        os.kill(helper, signal.SIGKILL)
    assert not alive


def test_closed_stdout_stops_the_child() -> None:
    """When the reader of supervise's output goes away, the child is stopped."""
    proc = popen(
        [*SUPERVISE, "--", "yes"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    assert proc.stdout.read(4) == b"y\ny\n"
    proc.stdout.close()
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 128 + signal.SIGTERM
    assert err == b"supervise: standard output was closed; stopped the child\n"


def test_invalid_frame_reports_are_rate_limited() -> None:
    """A flood of bad frames gives a line a second on stderr, not a line a frame."""
    script = "i=0; while [ $i -lt 500 ]; do echo __IPC_START__x__IPC_END__; i=$((i+1)); done"
    result = supervise("--", "sh", "-c", script)
    assert result.stdout.count(b"__IPC_START__x__IPC_END__") == 500
    lines = result.stderr.splitlines()
    assert 1 <= len(lines) <= 3
    assert lines[0].startswith(b"supervise: invalid frame at byte 0 (json)")


@pytest.mark.parametrize("use_pty", [True, False])
def test_orphans_that_left_the_group_are_stopped(use_pty: bool) -> None:
    """A helper in its own session, orphaned by a crashing child, does not outlive supervise."""
    flags = [] if use_pty else ["--no-pty"]
    result = supervise(*flags, "--stop-timeout", "2", "--", *child("orphan_maker"))
    assert result.returncode == 3
    helper = int(result.stdout.split(b"HELPER ")[1].split()[0])
    alive = pid_alive(helper)
    if alive:
        os.kill(helper, signal.SIGKILL)
    assert not alive


def test_ctl_answers_and_stops_a_config_run(tmp_path: Path) -> None:
    """supervise ctl, from another process: pending, answer (written as y), status, stop."""
    answer = tmp_path / "answer.txt"
    config = tmp_path / "demo.toml"
    config.write_text(
        "[programs.asker]\n"
        f"command = {json.dumps(child('asker', 'approval', str(answer)))}\n"
        "[programs.sleeper]\n"
        'command = "sleep 60"\n'
    )
    proc = popen(
        [*SUPERVISE, "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    read_until(proc, b"asker   | READY")
    pending = supervise("ctl", "--instance", "demo", "pending")
    assert b"11111111-2222-4333-8444-555555555555" in pending.stdout
    assert b"choices:   approve, deny" in pending.stdout
    answered = supervise("ctl", "answer", "11111111-2222-4333-8444-555555555555", "approve")
    assert answered.returncode == 0, answered.stderr
    assert answered.stdout == b'answered 11111111-2222-4333-8444-555555555555: wrote "y"\n'
    again = supervise("ctl", "answer", "11111111-2222-4333-8444-555555555555", "deny")
    assert again.returncode == 1
    assert b"already answered by ctl" in again.stderr
    # The sleeper counts as running once it has been up for start_seconds (1 s).
    eventually(lambda: b"sleeper  running" in supervise("ctl", "status").stdout)
    stopped = supervise("ctl", "stop", "sleeper")
    assert stopped.stdout == b"sleeper: stopped\n"
    status, _, err = finish(proc)
    assert status == 0, err
    assert answer.read_text() == "y\n"
    assert supervise("ctl", "status").stderr == b"supervise: no supervise instance is running\n"


def test_cwd_and_env_flags(tmp_path: Path) -> None:
    """--cwd and --env set the child's working directory and add to its environment."""
    result = supervise(
        "--cwd",
        str(tmp_path),
        "--env",
        "GREETING=hello world",
        "--env",
        "EMPTY=",
        "--",
        "sh",
        "-c",
        'pwd; echo "$GREETING|$EMPTY|${PYTHONPATH:+inherited}"',
    )
    assert result.stdout.decode().splitlines() == [str(tmp_path), "hello world||inherited"]
    bad = supervise("--env", "NOEQUALS", "--", "true")
    assert bad.returncode == 2
    assert b"--env: expected KEY=VALUE, got 'NOEQUALS'" in bad.stderr


def test_control_directory_problems(tmp_path: Path) -> None:
    """An uncreatable control directory costs only ctl; one others can write to is refused."""
    env = {**clean_env(), "XDG_RUNTIME_DIR": str(tmp_path / "missing" / "deeper")}
    (tmp_path / "missing").write_text("a file, so the directory cannot be made")
    run = subprocess.run(
        [*SUPERVISE, "--", "echo", "hi"],
        capture_output=True,
        env=env,
        cwd=ROOT,
        check=False,
        timeout=60,
    )
    assert (run.returncode, run.stdout) == (0, b"hi\n")
    assert b"running without `supervise ctl`" in run.stderr
    shared = tmp_path / "shared" / "ipc-supervisor"
    shared.mkdir(parents=True)
    shared.chmod(0o777)
    env["XDG_RUNTIME_DIR"] = str(tmp_path / "shared")
    refused = subprocess.run(
        [*SUPERVISE, "--", "echo", "hi"],
        capture_output=True,
        env=env,
        cwd=ROOT,
        check=False,
        timeout=60,
    )
    assert refused.returncode == 2
    assert refused.stdout == b""
    assert refused.stderr.endswith(b"is writable by others; refusing to use it\n")


def _default_signals() -> None:
    """Every signal at its default and none blocked, as a shell's foreground job starts.

    A background job of a shell without job control starts with SIGINT and
    SIGQUIT ignored, and exec passes that on: supervise, like any program,
    hands what it inherited to its child.
    """
    for signum in range(1, signal.NSIG):
        with contextlib.suppress(OSError, ValueError):
            signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


@pytest.mark.parametrize("use_pty", [True, False])
def test_child_starts_with_default_signals(use_pty: bool) -> None:
    """The child gets no blocked and no ignored signals from supervise (or from Python),
    whatever the test runner itself was started with."""
    flags = [] if use_pty else ["--no-pty"]
    result = subprocess.run(
        [*SUPERVISE, *flags, "--", "grep", "-E", "^Sig(Blk|Ign):", "/proc/self/status"],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        cwd=ROOT,
        env=clean_env(),
        preexec_fn=_default_signals,
        check=False,
    )
    lines = result.stdout.decode().split()
    assert lines == ["SigBlk:", "0000000000000000", "SigIgn:", "0000000000000000"], result.stderr


def test_help_from_a_real_interpreter() -> None:
    """``python -m supervisor --help`` in a fresh process prints the usage and exits 0."""
    result = subprocess.run(
        [*SUPERVISE, "--help"], capture_output=True, timeout=60, cwd=ROOT, env=clean_env()
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"usage: supervise [options] -- COMMAND [ARGS...]\n")
    assert b"check-config FILE" in result.stdout
    assert result.stderr == b""
