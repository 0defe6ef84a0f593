"""Routing through the real ``supervise`` command: config routes, CLI shortcuts,
durable delivery across a ``kill -9``, a webhook that is down and comes back,
and journal replay with ``supervise events`` and ``ctl tail --since``."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, SUPERVISE, child, finish, popen, supervise
from test_webhook import body_of, headers_of, http_stub

from adapters.webhook import verify
from supervisor.testing import wait_until_sync


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def toml_list(argv: list[str]) -> str:
    return json.dumps(argv)


def lines_of(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_durable_route_delivers_after_kill_9(tmp_path: Path) -> None:
    """Events a durable route had not delivered when supervise was killed -9 are
    delivered by the next run, each with its messageId and seq."""
    gate, out, journal = tmp_path / "gate", tmp_path / "out.jsonl", tmp_path / "j.db"
    deliver = f"test -e {gate} && cat >> {out}"

    def config(frames: int) -> Path:
        return write_config(
            tmp_path / f"s{frames}.toml",
            f"""
instance = "durable-test"
drain_timeout = 60
[journal]
path = "{journal}"
[programs.gen]
command = {toml_list(child("frames", str(frames)))}
restart = "no"
pty = false
[[routes]]
name = "hook"
events = ["task_complete"]
durable = true
sink = {{ type = "command", command = {json.dumps(deliver)}, shell = true }}
retry = {{ initial = 0.05, cap = 0.2 }}
""",
        )

    first = popen([*SUPERVISE, "--config", str(config(30))], stdout=subprocess.PIPE)
    # The child is done and the route keeps failing: supervise is draining.
    wait_until_sync(lambda: journal.exists() and _journaled(journal) >= 30, timeout=30)
    time.sleep(0.3)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert not out.exists()

    gate.touch()
    status, _, err = finish(
        popen(
            [*SUPERVISE, "--config", str(config(0))],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        ),
        timeout=60,
    )
    assert status == 0, err
    delivered = lines_of(out)
    assert [event["data"]["taskId"] for event in delivered] == [f"T-{i}" for i in range(30)]
    seqs = [event["seq"] for event in delivered]
    assert seqs == sorted(seqs)
    assert len({event["messageId"] for event in delivered}) == 30


def _journaled(path: Path) -> int:
    import sqlite3

    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return int(db.execute("SELECT count(*) FROM events").fetchone()[0])
    except sqlite3.Error:
        return 0


def test_webhook_that_was_down_gets_every_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--webhook retries through refusals and 503s; every event arrives, signed, in order."""
    monkeypatch.setenv("SUPERVISE_WEBHOOK_SECRET", "s3cret")
    with http_stub(tmp_path, 503, 503, {"status": 429, "headers": {"Retry-After": "1"}}) as stub:
        proc = popen(
            [*SUPERVISE, "--no-pty", "--webhook", stub.url(), "--", *child("frames", "5")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        status, out, err = finish(proc, timeout=60)
        assert status == 0, err
        assert out.endswith(b"DONE\n")
        requests = stub.requests()
    bodies = [body_of(request) for request in requests]
    for request, body in zip(requests, bodies, strict=True):
        assert verify(body, "s3cret", headers_of(request)["x-signature-256"])
    delivered = [json.loads(body) for body in bodies[3:]]
    # The first event was refused three times, then everything went through once.
    assert [json.loads(body)["seq"] for body in bodies[:3]] == [delivered[0]["seq"]] * 3
    assert [e["event"] for e in delivered].count("task_complete") == 5
    assert [e["seq"] for e in delivered] == sorted(e["seq"] for e in delivered)
    assert b"route webhook" in err  # the failure was reported once, then the recovery
    assert err.count(b"retrying") == 1


def test_config_routes_with_filters_and_files(tmp_path: Path) -> None:
    """Routes from [[routes]]: a glob, a program glob and a data filter, each to its file."""
    prod, failed, everything = (tmp_path / f"{n}.jsonl" for n in ("prod", "failed", "all"))
    cfg = write_config(
        tmp_path / "s.toml",
        f"""
[journal]
enabled = false
[programs.a]
command = {toml_list(child("frames", "4", "task_complete", "prod"))}
pty = false
restart = "no"
[programs.b]
command = {toml_list(child("frames", "3", "task_failed", "dev"))}
pty = false
restart = "no"
[[routes]]
name = "prod"
filter = 'data.namespace == "prod"'
sink = {{ type = "file", path = "{prod}" }}
[[routes]]
name = "failed"
events = ["task_f*"]
programs = ["b"]
sink = {{ type = "file", path = "{failed}" }}
[[routes]]
name = "all"
sink = {{ type = "file", path = "{everything}" }}
""",
    )
    result = supervise("--config", str(cfg))
    assert result.returncode == 0, result.stderr
    assert [e["data"]["taskId"] for e in lines_of(prod)] == ["T-0", "T-1", "T-2", "T-3"]
    assert [(e["program"], e["event"]) for e in lines_of(failed)] == [("b", "task_failed")] * 3
    names = [e["event"] for e in lines_of(everything)]
    assert names.count("task_complete") == 4
    assert names.count("task_failed") == 3
    assert names.count("process_exit") == 2


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--route", "task_*"], "--notify/--route: bad route 'task_*' (expected EVENTS=SINK"),
        (["--route", "x=ftp:host"], "unknown sink kind 'ftp' in 'ftp:host'"),
        (["--notify", "tmux:"], "bad sink 'tmux:'"),
        (["--webhook", "ftp://x"], "routes.webhook.sink: the URL must start with http://"),
        (["--exec", "no-such-command-xyz"], "routes.exec.sink: "),
        (["--events", "/no/such/dir/e.jsonl"], "routes.events.sink: cannot open for appending"),
    ],
)
def test_bad_route_flags_are_one_line_errors(flags: list[str], message: str) -> None:
    result = supervise(*flags, "--", "true")
    assert result.returncode == 2
    err = result.stderr.decode()
    assert err.count("\n") == 1, err
    assert message in err


def test_bad_config_route_names_the_route(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "s.toml",
        """
[programs.a]
command = "true"
[[routes]]
name = "ok"
sink = { type = "file", path = "/dev/null" }
[[routes]]
name = "mgr"
sink = { type = "tmux" }
[[routes]]
name = "f"
filter = 'data.x =='
sink = { type = "file", path = "/dev/null" }
""",
    )
    result = supervise("check-config", str(cfg))
    assert result.returncode == 2
    assert result.stderr.decode() == f"supervise: {cfg}: routes.2 (mgr).sink.target: required\n"
    cfg.write_text(
        cfg.read_text().replace(
            'sink = { type = "tmux" }', 'sink = { type = "tmux", target = "m" }'
        )
    )
    result = supervise("check-config", str(cfg))
    assert result.stderr.decode().startswith(
        f"supervise: {cfg}: routes.3 (f).filter: filter 'data.x ==': expected a value"
    )


def test_supervise_events_replays_the_journal(tmp_path: Path) -> None:
    """The journal numbers events across runs; `supervise events --since` replays them."""
    journal = tmp_path / "j.db"
    for _ in range(2):
        result = supervise("--no-pty", "--journal", str(journal), "--", *child("frames", "3"))
        assert result.returncode == 0, result.stderr
    replay = subprocess.run(
        [*SUPERVISE, "events", "--journal", str(journal)],
        capture_output=True,
        check=True,
        cwd=ROOT,
        timeout=60,
    )
    events = [json.loads(line) for line in replay.stdout.splitlines()]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["event"] for e in events].count("task_complete") == 6
    middle = len(events) // 2
    since = subprocess.run(
        [*SUPERVISE, "events", "--journal", str(journal), "--since", str(middle)],
        capture_output=True,
        check=True,
        cwd=ROOT,
        timeout=60,
    )
    assert [json.loads(line) for line in since.stdout.splitlines()] == events[middle:]


def test_no_journal_leaves_no_database(tmp_path: Path) -> None:
    state = Path(os.environ["XDG_STATE_HOME"])
    result = supervise("--no-journal", "--", sys.executable, "-c", "print('hi')")
    assert result.returncode == 0
    assert not list(state.rglob("*.db"))
    result = supervise("--", sys.executable, "-c", "print('hi')")
    assert result.returncode == 0
    assert [p.name for p in state.rglob("*.db")] == [f"{Path(sys.executable).name}.journal.db"]


def test_control_c_ends_the_wait_for_undelivered_events(tmp_path: Path) -> None:
    """At exit supervise waits (drain_timeout) for routes to deliver; once the child is
    gone, Control-C stops that wait. A durable route's events wait for the next run."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    config = write_config(
        tmp_path / "s.toml",
        f"""
drain_timeout = 60
[journal]
path = "{tmp_path / "j.db"}"
[programs.gen]
command = {toml_list(child("frames", "3"))}
pty = false
restart = "no"
[[routes]]
name = "hook"
durable = true
sink = {{ type = "webhook", url = "http://127.0.0.1:{closed_port}/hook" }}
""",
    )
    proc = popen(
        [*SUPERVISE, "--config", str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    wait_until_sync(lambda: _journaled(tmp_path / "j.db") >= 3, timeout=30)
    time.sleep(0.5)
    assert proc.poll() is None  # draining: the hook is down
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    status, _, err = finish(proc, timeout=20)
    assert time.monotonic() - started < 5
    assert status == 0, err
    assert b"route hook: webhook:" in err
