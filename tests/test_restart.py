"""Keeping programs alive with real children: restart policies, backoff, give-up, stops.

Timing assertions compare the ``received_at`` stamps of events (milliseconds)
and allow a loaded machine plenty of slack above every delay; the exact
delays chosen are checked through the ``restart N after X.XXs`` reasons.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import SUPERVISE, child, finish, pid_alive, popen, read_until, supervise

from supervisor.testing import wait_until_sync

Event = dict[str, Any]

# Slack for scheduling and spawning on a loaded machine, in milliseconds.
SLACK_MS = 5000
# received_at is whole milliseconds: allow for rounding on both ends.
ROUNDING_MS = 2


def read_events(path: Path) -> list[Event]:
    """The complete lines of an --events file, parsed (a line being written is left out)."""
    if not path.exists():
        return []
    lines = path.read_text().split("\n")[:-1]
    return [json.loads(line) for line in lines]


def of(events: list[Event], name: str) -> list[Event]:
    return [e for e in events if e["event"] == name]


def transitions(events: list[Event]) -> list[tuple[str, str]]:
    return [(e["data"]["from"], e["data"]["to"]) for e in of(events, "process_state")]


def restart_reasons(events: list[Event]) -> list[str]:
    return [
        e["data"]["reason"]
        for e in of(events, "process_state")
        if e["data"]["reason"].startswith("restart ")
    ]


def restart_delays(events: list[Event]) -> list[float]:
    """The delays supervise chose, from ``restart N after X.XXs`` reasons."""
    delays = []
    for reason in restart_reasons(events):
        match = re.fullmatch(r"restart \d+ after (\d+\.\d\d)s", reason)
        assert match, reason
        delays.append(float(match.group(1)))
    return delays


def backoff_waits_ms(events: list[Event]) -> list[int]:
    """Milliseconds from each move into BACKOFF to the start that ends it."""
    waits = []
    since: int | None = None
    for event in of(events, "process_state"):
        if event["data"]["to"] == "backoff":
            since = event["received_at"]
        elif event["data"]["to"] == "starting" and since is not None:
            waits.append(event["received_at"] - since)
            since = None
    return waits


def gaps_ms(events: list[Event]) -> list[int]:
    """Milliseconds between successive process_start events."""
    starts = [e["received_at"] for e in of(events, "process_start")]
    return [later - earlier for earlier, later in itertools.pairwise(starts)]


def wait_for_events(
    path: Path, done: Callable[[list[Event]], bool], timeout: float = 20
) -> list[Event]:
    """Poll an --events file until ``done(events)``; there is no stdout handshake for states."""

    def finished() -> list[Event] | None:
        events = read_events(path)
        return events if done(events) else None

    found = wait_until_sync(
        finished,
        timeout=timeout,
        interval=0.02,
        message=lambda: f"gave up waiting; events so far: {read_events(path)}",
    )
    assert found is not None
    return found


def entered(state: str, program: str | None = None) -> Callable[[list[Event]], bool]:
    def done(events: list[Event]) -> bool:
        return any(
            e["data"]["to"] == state and program in (None, e["program"])
            for e in of(events, "process_state")
        )

    return done


def start(*args: str) -> subprocess.Popen[bytes]:
    return popen(
        [*SUPERVISE, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def assert_gone(pids: list[int]) -> None:
    """Every pid has exited (allowing a moment for reaping)."""
    with contextlib.suppress(AssertionError):
        wait_until_sync(lambda: not any(pid_alive(pid) for pid in pids), interval=0.05)
    alive = [pid for pid in pids if pid_alive(pid)]
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    assert alive == []


def toml_list(argv: list[str]) -> str:
    """A command line as a TOML array (a JSON string is a TOML basic string)."""
    return "[" + ", ".join(json.dumps(arg) for arg in argv) + "]"


# -- failed starts ---------------------------------------------------------


def test_crash_loop_backs_off_exponentially_then_gives_up(tmp_path: Path) -> None:
    """A child that keeps failing to start is retried after 0.1, 0.2, 0.4 s, then FATAL."""
    events_path = tmp_path / "events.jsonl"
    counter = tmp_path / "runs"
    result = supervise(
        "--events", str(events_path),
        "--restart", "on-failure",
        "--start-seconds", "5",
        "--backoff-initial", "0.1",
        "--backoff-factor", "2",
        "--backoff-jitter", "none",
        "--max-failures", "4",
        "--", *child("restart_runs", str(counter), "0:1"),
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr == b"supervise: FATAL: gave up after 4 failed starts within 300s\n"
    assert [line.split(b" PID ")[0] for line in result.stdout.splitlines()] == [
        b"RUN 1", b"RUN 2", b"RUN 3", b"RUN 4",
    ]  # fmt: skip
    assert counter.read_text() == "4"
    events = read_events(events_path)
    assert len(of(events, "process_start")) == 4
    assert [e["data"]["exit_code"] for e in of(events, "process_exit")] == [1, 1, 1, 1]
    assert transitions(events) == [
        ("stopped", "starting"),
        *[("starting", "backoff"), ("backoff", "starting")] * 3,
        ("starting", "backoff"),
        ("backoff", "fatal"),
    ]
    assert of(events, "process_state")[-1]["data"]["reason"] == "4 failed starts within 300s"
    assert restart_reasons(events) == [
        "restart 1 after 0.10s",
        "restart 2 after 0.20s",
        "restart 3 after 0.40s",
    ]
    # The waits really happen and grow; each start follows its wait.
    waits = backoff_waits_ms(events)
    assert len(waits) == 3
    for wait, base in zip(waits, (100, 200, 400), strict=True):
        assert base - ROUNDING_MS <= wait < base + SLACK_MS
    assert waits == sorted(waits)
    gaps = gaps_ms(events)
    assert len(gaps) == 3
    assert all(gap >= wait - ROUNDING_MS for gap, wait in zip(gaps, waits, strict=True))
    assert gaps[-1] >= 350


def test_equal_jitter_waits_at_least_half_the_base(tmp_path: Path) -> None:
    """With equal jitter each delay lies in [base/2, base], and the wait is at least base/2."""
    events_path = tmp_path / "events.jsonl"
    result = supervise(
        "--events", str(events_path),
        "--restart", "on-failure",
        "--start-seconds", "5",
        "--backoff-initial", "0.2",
        "--backoff-factor", "2",
        "--backoff-jitter", "equal",
        "--max-failures", "4",
        "--", *child("restart_runs", str(tmp_path / "runs"), "0:1"),
    )  # fmt: skip
    assert result.returncode == 1
    events = read_events(events_path)
    bases = (0.2, 0.4, 0.8)
    delays = restart_delays(events)
    assert len(delays) == 3
    for delay, base in zip(delays, bases, strict=True):
        assert base / 2 - 0.005 <= delay <= base + 0.005
    waits = backoff_waits_ms(events)
    gaps = gaps_ms(events)
    for wait, gap, base in zip(waits, gaps, bases, strict=True):
        assert base * 500 - ROUNDING_MS <= wait < base * 1000 + SLACK_MS
        assert gap >= base * 500 - ROUNDING_MS


@pytest.mark.parametrize(
    "give_up",
    [["--max-failures", "0"], ["--max-failures", "2", "--failure-window", "0.2"]],
    ids=["never", "failures-outside-window"],
)
def test_keeps_retrying_while_give_up_rule_does_not_trip(
    tmp_path: Path, give_up: list[str]
) -> None:
    """max-failures 0 never gives up, nor do failures spread wider than the window."""
    events_path = tmp_path / "events.jsonl"
    proc = start(
        "--events", str(events_path),
        "--restart", "on-failure",
        "--start-seconds", "5",
        "--backoff-initial", "0.3",
        "--backoff-factor", "1",
        "--backoff-jitter", "none",
        *give_up,
        "--", *child("restart_runs", str(tmp_path / "runs"), "0:1"),
    )  # fmt: skip
    # The default rule would have given up after 5 failed starts.
    wait_for_events(events_path, lambda events: len(of(events, "process_start")) >= 6)
    proc.send_signal(signal.SIGTERM)
    _, _, err = finish(proc)
    assert b"FATAL" not in err
    states = [to for _, to in transitions(read_events(events_path))]
    assert "fatal" not in states
    assert states[-1] == "stopped"


# -- exits after a good start ------------------------------------------------


def test_on_failure_clean_exit_runs_once(tmp_path: Path) -> None:
    """Under on-failure, exit 0 after a good start ends supervision: one run, exit 0."""
    events_path = tmp_path / "events.jsonl"
    counter = tmp_path / "runs"
    result = supervise(
        "--events", str(events_path),
        "--restart", "on-failure",
        "--start-seconds", "0.2",
        "--backoff-initial", "0.05",
        "--", *child("restart_runs", str(counter), "0.6:0"),
    )  # fmt: skip
    assert result.returncode == 0
    assert result.stderr == b""
    assert counter.read_text() == "1"
    events = read_events(events_path)
    assert len(of(events, "process_start")) == 1
    assert transitions(events) == [
        ("stopped", "starting"),
        ("starting", "running"),
        ("running", "exited"),
    ]


def test_always_restarts_a_clean_exit_until_stopped(tmp_path: Path) -> None:
    """Under always, exit 0 is restarted; SIGTERM then stops it for good, leaving no process."""
    events_path = tmp_path / "events.jsonl"
    proc = start(
        "--events", str(events_path),
        "--restart", "always",
        "--start-seconds", "0.1",
        "--backoff-initial", "0.05",
        "--", *child("restart_runs", str(tmp_path / "runs"), "0.3:0"),
    )  # fmt: skip
    seen = read_until(proc, b"RUN 2 PID ")
    if not re.search(rb"RUN 2 PID \d+\n", seen):
        seen += read_until(proc, b"\n")  # the rest of the RUN 2 line
    proc.send_signal(signal.SIGTERM)
    status, out, _ = finish(proc)
    pids = [int(pid) for pid in re.findall(rb"RUN \d+ PID (\d+)", seen + out)]
    assert len(pids) >= 2
    assert_gone(pids)
    # The second run was stopped by our signal, or had just exited 0.
    assert status in (0, 128 + signal.SIGTERM)
    events = read_events(events_path)
    assert len(of(events, "process_start")) >= 2
    assert of(events, "process_exit")[0]["data"]["exit_code"] == 0
    steps = transitions(events)
    assert steps[:4] == [
        ("stopped", "starting"),
        ("starting", "running"),
        ("running", "exited"),
        ("exited", "starting"),
    ]
    assert steps[-1][1] == "stopped"
    assert "fatal" not in [to for _, to in steps]


def test_long_run_resets_the_backoff(tmp_path: Path) -> None:
    """After a run of reset_after seconds the next delay is back to initial."""
    events_path = tmp_path / "events.jsonl"
    counter = tmp_path / "runs"
    result = supervise(
        "--events", str(events_path),
        "--restart", "on-failure",
        "--start-seconds", "0.5",
        "--backoff-initial", "0.05",
        "--backoff-factor", "8",
        "--backoff-jitter", "none",
        "--backoff-reset-after", "1",
        # fast fail, fast fail, 1.2 s then fail, then a good run that exits 0
        "--", *child("restart_runs", str(counter), "0:1", "0:1", "1.2:1", "0.7:0"),
    )  # fmt: skip
    assert result.returncode == 0
    assert counter.read_text() == "4"
    events = read_events(events_path)
    # Without the reset the third delay would be 0.05 * 8**2 = 3.20 s.
    assert restart_reasons(events) == [
        "restart 1 after 0.05s",
        "restart 2 after 0.40s",
        "restart 3 after 0.05s",
    ]
    assert transitions(events) == [
        ("stopped", "starting"),
        ("starting", "backoff"),
        ("backoff", "starting"),
        ("starting", "backoff"),
        ("backoff", "starting"),
        ("starting", "running"),
        ("running", "exited"),
        ("exited", "starting"),
        ("starting", "running"),
        ("running", "exited"),
    ]
    exits = of(events, "process_exit")
    assert exits[2]["data"]["uptime"] >= 1.2
    long_exit = exits[2]["received_at"]
    restart = of(events, "process_state")[7]
    assert restart["data"]["to"] == "starting"
    assert restart["received_at"] - long_exit < 2500


# -- stops -------------------------------------------------------------------


def test_stop_during_backoff(tmp_path: Path) -> None:
    """SIGTERM while waiting out a long backoff delay ends supervise at once, STOPPED."""
    events_path = tmp_path / "events.jsonl"
    proc = start(
        "--events", str(events_path),
        "--restart", "on-failure",
        "--backoff-initial", "30",
        "--", *child("restart_runs", str(tmp_path / "runs"), "0:1"),
    )  # fmt: skip
    wait_for_events(events_path, entered("backoff"))
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    finish(proc)
    assert time.monotonic() - began < 10
    events = read_events(events_path)
    assert len(of(events, "process_start")) == 1
    assert transitions(events)[-1] == ("backoff", "stopped")


def test_stop_during_starting_is_not_a_failure(tmp_path: Path) -> None:
    """A stop before start_seconds have passed ends STOPPED, with no backoff and no retry."""
    events_path = tmp_path / "events.jsonl"
    proc = start(
        "--events", str(events_path),
        "--restart", "on-failure",
        "--start-seconds", "30",
        "--", *child("signals", "--report", "SIGTERM"),
    )  # fmt: skip
    read_until(proc, b"READY")
    proc.send_signal(signal.SIGTERM)
    status, out, _ = finish(proc)
    assert status == 0
    assert out.endswith(b"got SIGTERM\n")
    events = read_events(events_path)
    assert len(of(events, "process_start")) == 1
    assert transitions(events) == [
        ("stopped", "starting"),
        ("starting", "stopping"),
        ("stopping", "stopped"),
    ]


# -- several programs --------------------------------------------------------


def write_config(tmp_path: Path, programs: dict[str, str]) -> Path:
    """A config file with one ``[programs.NAME]`` table per entry."""
    path = tmp_path / "supervise.toml"
    path.write_text("".join(f"[programs.{name}]\n{body}\n" for name, body in programs.items()))
    return path


def program(argv: list[str], *settings: str) -> str:
    """The body of a ``[programs.NAME]`` table: the command, then one setting a line."""
    return "\n".join([f"command = {toml_list(argv)}", *settings])


def test_programs_output_is_prefixed_and_padded(tmp_path: Path) -> None:
    """Each line gets ``name | `` with names padded to the longest; all exit 0, so exit 0."""
    events_path = tmp_path / "events.jsonl"
    path = write_config(
        tmp_path,
        {
            "a": program(child("restart_lines", "alpha", "3"), 'restart = "no"'),
            "longer": program(child("restart_lines", "beta", "2"), 'restart = "no"'),
        },
    )
    result = supervise("--config", str(path), "--events", str(events_path))
    assert result.returncode == 0
    assert result.stderr == b""
    lines = result.stdout.decode().splitlines()
    assert [line for line in lines if line.startswith("a ")] == [
        "a      | alpha 1",
        "a      | alpha 2",
        "a      | alpha 3",
    ]
    assert [line for line in lines if line.startswith("longer ")] == [
        "longer | beta 1",
        "longer | beta 2",
    ]
    assert len(lines) == 5
    events = read_events(events_path)
    assert sorted(e["program"] for e in of(events, "process_start")) == ["a", "longer"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


def test_one_program_failing_makes_exit_1(tmp_path: Path) -> None:
    """If any program ends with a non-zero status, supervise exits 1, not that status."""
    path = write_config(
        tmp_path,
        {
            "ok": program(child("restart_lines", "fine", "1"), 'restart = "no"'),
            "bad": program(child("restart_lines", "oops", "1", "3"), 'restart = "no"'),
        },
    )
    result = supervise("--config", str(path))
    assert result.returncode == 1
    assert sorted(result.stdout.splitlines()) == [b"bad | oops 1", b"ok  | fine 1"]


def test_program_fatal_is_reported_with_its_name(tmp_path: Path) -> None:
    """A program that gives up is named in the FATAL line; the others still finish."""
    events_path = tmp_path / "events.jsonl"
    crash = child("restart_runs", str(tmp_path / "runs"), "0:2")
    path = write_config(
        tmp_path,
        {
            "crash": program(
                crash,
                "start_seconds = 5",
                "give_up = { max_failures = 2 }",
                'backoff = { initial = 0.05, jitter = "none" }',
            ),
            "fine": program(child("restart_lines", "fine", "1"), 'restart = "no"'),
        },
    )
    result = supervise("--config", str(path), "--events", str(events_path))
    assert result.returncode == 1
    assert result.stderr == b"supervise: crash: FATAL: gave up after 2 failed starts within 300s\n"
    assert b"fine  | fine 1\n" in result.stdout
    events = read_events(events_path)
    last = {e["program"]: e["data"]["to"] for e in of(events, "process_state")}
    assert last == {"crash": "fatal", "fine": "exited"}


def test_stop_all_programs_each_with_its_stop_signal(tmp_path: Path) -> None:
    """SIGTERM to supervise stops every program, running or in backoff; all STOPPED, exit 0."""
    events_path = tmp_path / "events.jsonl"
    path = write_config(
        tmp_path,
        {
            "waiter": program(child("signals", "--report", "SIGINT"), 'stop_signal = "INT"'),
            "crash": program(
                child("restart_runs", str(tmp_path / "runs"), "0:1"), "backoff = { initial = 30 }"
            ),
        },
    )
    proc = start("--config", str(path), "--events", str(events_path))
    read_until(proc, b"waiter | READY")
    wait_for_events(events_path, entered("backoff", "crash"))
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    status, out, err = finish(proc)
    assert time.monotonic() - began < 10
    assert status == 0
    assert err == b""
    # The waiter got its own stop signal, not the SIGTERM supervise received.
    assert b"waiter | got SIGINT\n" in out
    events = read_events(events_path)
    last = {e["program"]: e["data"]["to"] for e in of(events, "process_state")}
    assert last == {"waiter": "stopped", "crash": "stopped"}
    assert_gone([e["data"]["pid"] for e in of(events, "process_start")])


def test_stop_while_waiting_to_restart_after_an_exit(tmp_path: Path) -> None:
    """A stop during the delay before restarting an EXITED program ends it STOPPED; exit 0."""
    events_path = tmp_path / "events.jsonl"
    path = write_config(
        tmp_path,
        {
            "loop": program(
                child("restart_runs", str(tmp_path / "runs"), "0.4:1"),
                "start_seconds = 0.1",
                "backoff = { initial = 30 }",
            )
        },
    )
    proc = start("--config", str(path), "--events", str(events_path))
    wait_for_events(events_path, entered("exited"))
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    status, _, err = finish(proc)
    assert time.monotonic() - began < 10
    events = read_events(events_path)
    assert len(of(events, "process_start")) == 1
    assert transitions(events)[-1] == ("exited", "stopped")
    assert err == b""
    assert status == 0


# -- lost tasks --------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "runs"),
    [
        ([], 1),
        (["--restart", "on-failure", "--backoff-initial", "0.05", "--max-failures", "2"], 2),
    ],
    ids=["once", "restarted"],
)
def test_task_lost_when_child_is_killed(tmp_path: Path, flags: list[str], runs: int) -> None:
    """A task started but not finished when SIGKILL ends the child fails as lost, each run."""
    events_path = tmp_path / "events.jsonl"
    result = supervise("--events", str(events_path), *flags, "--", *child("restart_lost_task"))
    assert result.returncode == 128 + signal.SIGKILL
    assert result.stdout == b"working\n" * runs
    events = [e for e in read_events(events_path) if e["event"] != "process_state"]
    assert [e["event"] for e in events] == [
        "process_start",
        "task_start",
        "process_exit",
        "task_failed",
    ] * runs
    for lost in of(events, "task_failed"):
        assert lost["source"] == "supervisor"
        assert lost["data"]["taskId"] == "T-LOST"
        assert lost["data"]["lost"] is True
        assert lost["data"]["error"] == "killed by signal 9 (SIGKILL)"
    for exit_event in of(events, "process_exit"):
        assert exit_event["data"]["signal"] == signal.SIGKILL
        assert exit_event["data"]["exit_code"] is None
