"""ts-ipc against a real tmux server on a private socket, with real shells.

Each test gets its own tmux server (a private ``TMUX_TMPDIR``, no ``TMUX``
inherited) and its own ts-ipc state (``TS_IPC_HOME``); the server is killed
at the end. ts-ipc runs as the real command, a process per call.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from conftest import ROOT, eventually, popen

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

T = TypeVar("T")
TS_IPC = [sys.executable, "-m", "supervisor._ipc.cli"]


class Env:
    """One private tmux server and one ts-ipc home."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.home = tmp_path / "ipc"
        self.started = 0
        sockets = tmp_path / "tmux"
        sockets.mkdir(mode=0o700)
        self.env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "TMUX_PANE")}
        self.env.update(
            TMUX_TMPDIR=str(sockets),
            TS_IPC_HOME=str(self.home),
            PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            PS1="$ ",
            XDG_RUNTIME_DIR=str(tmp_path / "run"),
        )
        (tmp_path / "run").mkdir(mode=0o700)

    def start(self, argv: list[str]) -> subprocess.Popen[bytes]:
        """A background process in this environment, stopped at the end of the test."""
        with open(self.tmp / f"stderr-{self.started}", "wb") as errors:
            self.started += 1
            return popen(argv, env=self.env, stdout=subprocess.DEVNULL, stderr=errors)

    def tmux(self, *args: str, check: bool = True) -> str:
        result = subprocess.run(
            ["tmux", "-f", os.devnull, *args], env=self.env, capture_output=True, timeout=10
        )
        if check:
            assert result.returncode == 0, result.stderr
        return result.stdout.decode()

    def session(self, name: str) -> None:
        self.tmux("new-session", "-d", "-s", name, "-x", "200", "-y", "50", "env", "PS1=$ ", "sh")
        eventually(lambda: "$" in self.screen(name) or None)

    def running(self, name: str) -> str:
        """The pane's foreground program."""
        return self.tmux(
            "display-message", "-p", "-t", f"={name}:", "#{pane_current_command}"
        ).strip()

    def screen(self, name: str) -> str:
        return self.tmux("capture-pane", "-p", "-J", "-t", f"={name}:")

    def ipc(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*TS_IPC, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def queue(self) -> list[dict[str, Any]]:
        result = self.ipc("queue", "--json", "-n", "10000")
        assert result.returncode == 0, result.stderr
        return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture
def ipc(tmp_path: Path) -> Iterator[Env]:
    env = Env(tmp_path)
    try:
        yield env
    finally:
        env.tmux("kill-server", check=False)


def test_command_runs_in_the_session(ipc: Env) -> None:
    ipc.session("mgr")
    out = ipc.tmp / "out"
    result = ipc.ipc("send", "blacklist", "mgr", f"echo ok-$((1+2)) > {out}", "command")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"✓ msg-\S+ delivered to mgr \[command\] \(keys\)\n", result.stdout)
    assert eventually(lambda: out.exists() and out.read_text()) == "ok-3\n"
    (message,) = ipc.queue()
    assert (message["state"], message["attempts"], message["via"]) == ("delivered", 1, "keys")


HOSTILE = 'it\'s "quoted" $(touch PWNED) `touch PWNED2` ; && | \\ # é漢字 $HOME'


def test_hostile_multi_line_text_arrives_literally(ipc: Env) -> None:
    ipc.session("mgr")
    out = ipc.tmp / "out"
    message = f"cat > {out} <<'EOF'\n{HOSTILE}\nsecond line\nEOF"
    result = ipc.ipc("send", "me", "mgr", message)
    assert result.returncode == 0, result.stderr
    eventually(lambda: out.exists() and out.read_text().endswith("second line\n"))
    assert out.read_text() == f"{HOSTILE}\nsecond line\n"
    assert not (ROOT / "PWNED").exists()
    assert not (ipc.tmp / "PWNED").exists()


def test_a_session_that_appears_later_gets_its_messages_in_order(ipc: Env) -> None:
    out = ipc.tmp / "out"
    for index in range(3):
        result = ipc.ipc("send", "me", "late", f"echo {index} >> {out}")
        assert result.returncode == 0, result.stderr
        assert "queued for late" in result.stdout
        assert "does not exist yet" in result.stdout
    assert [m["state"] for m in ipc.queue()] == ["queued"] * 3
    ipc.tmux("new-session", "-d", "-s", "unrelated", "sh")  # a server, but not the session
    serve = ipc.start([*TS_IPC, "serve", "--interval", "0.1"])
    ipc.session("late")
    eventually(lambda: all(m["state"] == "delivered" for m in ipc.queue()))
    assert eventually(lambda: (out.exists() and out.read_text() == "0\n1\n2\n") or None)
    serve.terminate()
    assert serve.wait(timeout=10) == 0


def test_a_busy_pane_is_not_typed_into(ipc: Env) -> None:
    ipc.session("mgr")
    ipc.tmux("send-keys", "-t", "=mgr:", "sleep 30", "Enter")
    eventually(lambda: ipc.running("mgr") == "sleep")
    failed = ipc.ipc("send", "me", "mgr", "echo FIRST", "--if-busy", "fail")
    assert failed.returncode == 1
    assert "failed [command] mgr: the pane is running 'sleep', not a shell prompt" in failed.stdout
    waiting = ipc.ipc("send", "me", "mgr", "echo SECOND")
    assert waiting.returncode == 0
    assert "queued" in waiting.stdout
    assert "SECOND" not in ipc.screen("mgr")
    assert "FIRST" not in ipc.screen("mgr")
    states = [(m["state"], m["last_error"]) for m in ipc.queue()]
    assert states[1] == ("queued", "waiting: the pane is running 'sleep', not a shell prompt")
    ipc.tmux("send-keys", "-t", "=mgr:", "C-c")
    eventually(lambda: ipc.running("mgr") == "sh")
    delivered = ipc.ipc("deliver")
    assert "delivered" in delivered.stdout
    assert eventually(lambda: "SECOND" in ipc.screen("mgr").split("echo SECOND", 1)[-1] or None)


def test_notification_sets_the_status_option_and_runs_no_format(ipc: Env) -> None:
    ipc.session("mgr")
    text = "deployed #(touch PWNED) v1.2;"
    result = ipc.ipc("send", "ci", "mgr", text, "notification")
    assert result.returncode == 0, result.stderr
    assert ipc.tmux("show-options", "-t", "=mgr:", "-v", "@ipc_last") == text + "\n"
    assert ipc.tmux("show-options", "-t", "=mgr:", "-v", "@ipc_last_from") == "ci\n"
    assert not (ROOT / "PWNED").exists()


def test_data_is_stored_for_the_session_to_read(ipc: Env) -> None:
    result = ipc.ipc("send", "a", "nobody-yet", '{"status": "ok"}', "data")
    assert result.returncode == 0, result.stderr
    read = ipc.ipc("read", "nobody-yet")
    (line,) = read.stdout.splitlines()
    record = json.loads(line)
    assert (record["from"], record["message"]) == ("a", '{"status": "ok"}')
    path = ipc.home / "data" / "nobody-yet.jsonl"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(ipc.home.stat().st_mode) == 0o700
    assert stat.S_IMODE((ipc.home / "ipc.sqlite3").stat().st_mode) == 0o600


def test_publish_fans_out_one_record_per_subscriber(ipc: Env) -> None:
    for name in ("mgr", "planka", "safework"):
        ipc.session(name)
    out = ipc.tmp / "out"
    assert ipc.ipc("subscribe", "mgr", "deploy*", "notify").returncode == 0
    assert ipc.ipc("subscribe", "planka", "deployment", "data").returncode == 0
    assert ipc.ipc("subscribe", "safework", "deployment", "command").returncode == 0
    assert ipc.ipc("subscribe", "mgr", "error").returncode == 0  # notify by default
    listing = ipc.ipc("subscriptions").stdout
    assert "  ● mgr\n    → deploy* (notify)\n    → error (notify)\n" in listing
    published = ipc.ipc("publish", "blacklist", "deployment", f"echo v1.2.3 > {out}")
    assert published.returncode == 0, published.stderr
    assert published.stdout.count("delivered") == 3
    records = ipc.queue()
    assert sorted((m["to"], m["type"], m["state"]) for m in records) == [
        ("mgr", "notification", "delivered"),
        ("planka", "data", "delivered"),
        ("safework", "command", "delivered"),
    ]
    assert eventually(lambda: out.exists() and out.read_text()) == "v1.2.3\n"
    log = ipc.ipc("events", "50").stdout
    assert re.search(
        r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00 PUBLISH blacklist \[deployment\] → planka$",
        log,
        re.MULTILINE,
    )
    assert ipc.ipc("unsubscribe", "mgr", "deploy*").returncode == 0
    assert ipc.ipc("publish", "x", "deployment", "again").stdout.count("delivered") == 2


def test_a_filter_narrows_a_subscription(ipc: Env) -> None:
    ipc.session("mgr")
    prod = 'data.message matches "*prod*"'
    wanted = ipc.ipc("subscribe", "mgr", "error", "data", "--filter", prod)
    assert wanted.returncode == 0, wanted.stderr
    bad = ipc.ipc("subscribe", "mgr", "error", "--filter", "data.message ==")
    assert bad.returncode == 2
    assert bad.stderr.startswith("ts-ipc: --filter: ")
    assert len(bad.stderr.splitlines()) == 1
    assert "no subscribers" in ipc.ipc("publish", "db", "error", "staging down").stdout
    assert "delivered" in ipc.ipc("publish", "db", "error", "prod down").stdout
    (line,) = ipc.ipc("read", "mgr").stdout.splitlines()
    assert json.loads(line)["message"] == "prod down"


def test_the_log_has_the_original_format_and_json(ipc: Env) -> None:
    ipc.session("mgr")
    ipc.ipc("send", "claude-blacklist", "mgr", "true", "command")
    lines = ipc.ipc("events", "2").stdout.splitlines()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00 SEND claude-blacklist → mgr \[command\] msg-\S+",
        lines[0],
    )
    assert re.fullmatch(r"\S+ DELIVER mgr \[command\] msg-\S+", lines[1])
    records = [json.loads(line) for line in ipc.ipc("events", "2", "--json").stdout.splitlines()]
    assert [r["action"] for r in records] == ["SEND", "DELIVER"]
    assert records[0]["from"] == "claude-blacklist"
    assert records[1]["via"] == "keys"


def test_a_message_expires_after_its_ttl_with_the_reason(ipc: Env) -> None:
    ipc.ipc("send", "me", "never", "hello", "notification", "--ttl", "0.2")
    time.sleep(0.3)  # the ttl must pass: this is the behaviour under test
    ipc.ipc("deliver")
    (message,) = ipc.queue()
    assert message["state"] == "expired"
    reason = "ttl of 0.2 s passed: session 'never' does not exist yet"
    assert message["last_error"].startswith(reason)


def test_concurrent_senders_lose_nothing(ipc: Env) -> None:
    script = (
        "import sys\n"
        "from supervisor._ipc.cli import main\n"
        "for i in range(40):\n"
        "    assert main(['send', sys.argv[1], 'box', f'{sys.argv[1]}-{i}', 'data']) == 0\n"
    )
    procs = [ipc.start([sys.executable, "-c", script, name]) for name in ("a", "b", "c")]
    for proc in procs:
        assert proc.wait(timeout=60) == 0
    lines = [json.loads(line)["message"] for line in ipc.ipc("read", "box").stdout.splitlines()]
    assert sorted(lines) == sorted(f"{n}-{i}" for n in "abc" for i in range(40))
    for name in "abc":
        mine = [line for line in lines if line.startswith(f"{name}-")]
        assert mine == [f"{name}-{i}" for i in range(40)]  # each sender's order kept
    assert {m["state"] for m in ipc.queue()} == {"delivered"}


def test_send_imports_neither_trio_nor_pydantic(ipc: Env) -> None:
    ipc.session("mgr")
    script = (
        "import sys\n"
        "from supervisor._ipc.cli import main\n"
        "assert main(['send', 'a', 'mgr', 'true']) == 0\n"
        "assert main(['publish', 'a', 'deployment', 'x']) == 0\n"
        "heavy = {'trio', 'pydantic'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], env=ipc.env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr


def test_supervise_ipc_is_the_same_command(ipc: Env) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "supervisor", "ipc", "send", "a", "b", "x", "data"],
        env=ipc.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "delivered to b [data]" in result.stdout
    usage = subprocess.run(
        [sys.executable, "-m", "supervisor", "ipc", "send", "a"],
        env=ipc.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert usage.returncode == 2
    assert "usage: supervise ipc send" in usage.stderr


def test_a_supervised_programs_failures_reach_a_subscribed_session(ipc: Env) -> None:
    ipc.session("mgr")
    assert ipc.ipc("subscribe", "mgr", "task_fail*", "data").returncode == 0
    assert ipc.ipc("subscribe", "ops", "task_failed", "command").returncode == 0
    child = [sys.executable, str(ROOT / "examples" / "fake_loopwork.py")]
    loop = [*child, "--tasks", "3", "--fail-every", "3", "--delay", "0", "--question-every", "0"]
    supervised = ipc.start([sys.executable, "-m", "supervisor", "--name", "loop", "--", *loop])
    assert supervised.wait(timeout=60) == 0
    (line,) = ipc.ipc("read", "mgr").stdout.splitlines()
    record = json.loads(line)
    assert (record["from"], record["event"]) == ("loop", "task_failed")
    assert json.loads(record["message"])["data"]["taskId"] == "FEAT-003"
    refused = [m for m in ipc.queue() if m["to"] == "ops"]
    assert [(m["state"], m["type"]) for m in refused] == [("failed", "command")]
    assert "comes from a supervised program's event" in refused[0]["last_error"]


def test_run_stops_at_the_first_failure_and_exits_with_its_status(ipc: Env) -> None:
    ipc.session("build")
    ipc.session("deploy")
    assert ipc.ipc("subscribe", "build", "step_finished", "data").returncode == 0
    out = ipc.tmp / "out"
    steps = [f"build:echo built > {out}", "deploy:sh -c 'exit 3'", f"build:echo never >> {out}"]
    assert ipc.ipc("workflow", "ship", *steps).returncode == 0
    result = ipc.ipc("run", "ship")
    assert result.returncode == 3, result.stderr
    assert out.read_text() == "built\n"
    table = result.stdout.splitlines()
    assert table[0].split() == ["STEP", "SESSION", "STATUS", "EXIT", "DURATION"]
    assert table[2].split()[:4] == ["step-2", "deploy", "failed", "3"]
    assert table[3].split()[:3] == ["step-3", "build", "not"]
    finished = [
        json.loads(json.loads(line)["message"])
        for line in ipc.ipc("read", "build").stdout.splitlines()
    ]
    assert [(f["step"], f["exit_code"]) for f in finished] == [("step-1", 0), ("step-2", 3)]
    assert all(f["duration"] >= 0 for f in finished)
    log = ipc.ipc("events", "100").stdout
    assert re.search(r" WORKFLOW ship finished exit 3 run run-\S+$", log, re.MULTILINE)
    missing = ipc.ipc("run", "nope")
    assert missing.returncode == 2
    assert missing.stderr == "ts-ipc: no workflow named 'nope' (workflows: ship)\n"


def test_a_supervised_run_routes_its_events_through_supervise(ipc: Env) -> None:
    ipc.session("work")
    assert ipc.ipc("workflow", "check", "work:true", "work:false").returncode == 0
    events = ipc.tmp / "events.jsonl"
    run = [*TS_IPC, "run", "check"]
    supervised = ipc.start(
        [sys.executable, "-m", "supervisor", "--events", str(events), "--", *run]
    )
    assert supervised.wait(timeout=60) == 1
    seen = [json.loads(line) for line in events.read_text().splitlines()]
    steps = [
        (e["data"]["step"], e["data"]["exit_code"]) for e in seen if e["event"] == "step_finished"
    ]
    assert steps == [("step-1", 0), ("step-2", 1)]
    (end,) = [e for e in seen if e["event"] == "workflow_finished"]
    assert end["data"]["exit_code"] == 1


def test_pipeline_subscribes_to_the_sources_deployments_only(ipc: Env) -> None:
    ipc.session("safework")
    result = ipc.ipc("pipeline", "blacklist", "safework")
    assert result.returncode == 0, result.stderr
    flow = (ipc.home / "workflows" / "deploy-blacklist-to-safework.toml").read_text()
    assert [line for line in flow.splitlines() if line.startswith("session")] == [
        'session = "blacklist"',
        'session = "blacklist"',
        'session = "safework"',
        'session = "safework"',
    ]
    assert "no subscribers" in ipc.ipc("publish", "other", "deployment", "v1").stdout
    assert "delivered" in ipc.ipc("publish", "blacklist", "deployment", "v2").stdout


def test_migrate_imports_the_originals_subscriptions_and_workflows(ipc: Env) -> None:
    origin = ipc.tmp / "original"
    (origin / "workflows").mkdir(parents=True)
    (origin / "subscriptions.json").write_text(
        json.dumps(
            {
                "deployment": [{"session": "claude-manager", "action": "notify"}, "claude-planka"],
                "health_check": {"claude-blacklist": "command"},
            }
        )
    )
    (origin / "workflows" / "deploy-full.json").write_text(
        json.dumps(
            {
                "name": "deploy-full",
                "steps": [
                    "claude-blacklist:npm run build",
                    {"session": "claude-manager", "command": "docker ps"},
                ],
            }
        )
    )
    (origin / "claude-fortinet.data").write_text('{"status": "ok"}\n')
    result = ipc.ipc("migrate", "--from", str(origin))
    assert result.returncode == 0, result.stderr
    listing = [json.loads(line) for line in ipc.ipc("subscriptions", "--json").stdout.splitlines()]
    assert sorted((s["session"], s["event"], s["action"]) for s in listing) == [
        ("claude-blacklist", "health_check", "command"),
        ("claude-manager", "deployment", "notify"),
        ("claude-planka", "deployment", "notify"),
    ]
    flow = (ipc.home / "workflows" / "deploy-full.toml").read_text()
    assert 'command = "npm run build"' in flow
    assert 'command = "docker ps"' in flow
    (line,) = ipc.ipc("read", "claude-fortinet").stdout.splitlines()
    assert json.loads(line)["message"] == '{"status": "ok"}'
    (origin / "subscriptions.json").write_text('{"deployment": [42]}')
    broken = ipc.ipc("migrate", "--from", str(origin))
    assert broken.returncode == 2
    where = origin / "subscriptions.json"
    expected = f"ts-ipc: {where}: deployment[0]: expected a session name or an object\n"
    assert broken.stderr == expected


def test_a_backlog_of_notifications_is_delivered_together_each_with_its_record(ipc: Env) -> None:
    for index in range(5):
        assert ipc.ipc("send", "ci", "late", f"note {index}", "notification").returncode == 0
    ipc.session("late")
    delivered = ipc.ipc("deliver")
    assert delivered.stdout.count("delivered to late [notification]") == 5
    assert [m["state"] for m in ipc.queue()] == ["delivered"] * 5
    assert ipc.tmux("show-options", "-t", "=late:", "-v", "@ipc_last") == "note 4\n"


def test_a_command_for_a_supervised_pane_goes_to_the_programs_stdin(ipc: Env) -> None:
    out = ipc.tmp / "lines.jsonl"
    recorder = str(ROOT / "tests" / "children" / "line_recorder.py")
    supervised = [sys.executable, "-m", "supervisor", "--instance", "agent", "--"]
    ipc.tmux(
        "new-session", "-d", "-s", "agent", "-x", "200", "-y", "50",
        *supervised, sys.executable, recorder, str(out),
    )  # fmt: skip
    eventually(lambda: "READY" in ipc.screen("agent"))
    result = ipc.ipc("send", "mgr", "agent", HOSTILE)
    assert result.returncode == 0, result.stderr
    assert "(stdin:agent)" in result.stdout
    lines = eventually(lambda: [json.loads(x) for x in out.read_text().splitlines()][1:] or None)
    assert lines == [{"line": HOSTILE}]
    assert not (ROOT / "PWNED").exists()


def test_a_running_supervise_delivers_to_a_session_that_appears(ipc: Env) -> None:
    ipc.ipc("subscribe", "nobody", "nothing")  # ts-ipc state exists: supervise is an agent
    supervised = ipc.start([sys.executable, "-m", "supervisor", "--", "sleep", "60"])
    result = ipc.ipc("send", "me", "late", "hello", "notification")
    assert "queued" in result.stdout
    ipc.session("late")
    eventually(lambda: ipc.queue()[-1]["state"] == "delivered")
    assert ipc.tmux("show-options", "-t", "=late:", "-v", "@ipc_last") == "hello\n"
    supervised.terminate()
    assert supervised.wait(timeout=20) == 143


PROMPT = "while True:\n    print('GOT ' + repr(input('agent> ')), flush=True)\n"


def test_a_program_listed_in_prompt_programs_is_typed_into_and_confirmed(ipc: Env) -> None:
    ipc.tmux(
        "new-session", "-d", "-s", "agent", "-x", "200", "-y", "50",
        sys.executable, "-c", PROMPT,
    )  # fmt: skip
    eventually(lambda: "agent>" in ipc.screen("agent"))
    running = ipc.running("agent")
    busy = ipc.ipc("send", "me", "agent", "hello", "--if-busy", "fail")
    assert busy.returncode == 1
    assert f"the pane is running {running!r}, not a shell prompt" in busy.stdout
    ipc.home.mkdir(exist_ok=True)
    (ipc.home / "settings.toml").write_text(f"prompt_programs = [{json.dumps(running)}]\n")
    sent = ipc.ipc("send", "me", "agent", "fix the build; don't push")
    assert sent.returncode == 0, sent.stderr
    assert "delivered to agent [command] (keys)" in sent.stdout
    assert eventually(lambda: 'GOT "fix the build; don\'t push"' in ipc.screen("agent") or None)
    (ipc.home / "settings.toml").write_text("prompt_programs = 3\n")
    broken = ipc.ipc("send", "me", "agent", "x")
    assert broken.returncode == 1
    assert "settings.toml: prompt_programs: expected a list of program names" in broken.stdout


def test_what_strangers_wrote_cannot_drive_the_terminal(ipc: Env) -> None:
    """ESC and C1 controls in stored text are printed escaped; JSON output stays exact."""
    hostile = "\x1b[2J\x1b]0;owned\x07 red\x9b31m"
    assert ipc.ipc("send", "me", "box", hostile, "data").returncode == 0
    for args in (("queue",), ("events", "5"), ("read", "box"), ("queue", "--json")):
        shown = ipc.ipc(*args).stdout
        assert not any(ch in shown for ch in "\x1b\x07\x9b"), (args, shown)
    assert "\\u001b[2J" in ipc.ipc("queue").stdout
    (record,) = ipc.queue()
    assert record["message"] == hostile  # escaped on screen, exact as data
    (line,) = ipc.ipc("read", "box").stdout.splitlines()
    assert json.loads(line)["message"] == hostile
