"""The Redis Streams bus: instances on "other hosts" and a hub, with a real redis-server."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SUPERVISE, child, clean_env, eventually, finish, popen, read_until
from telegram_stub import Stub, callback_update
from test_hub import ALICE, CHAT, buttons
from test_hub import stub as stub
from test_redis_stream import RedisServer
from test_redis_stream import server as server

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="redis-server is not installed"
)
ROOT = Path(__file__).resolve().parent.parent


def start_hub(
    stub: Stub, server: RedisServer, *extra: str, elsewhere: Path | None = None
) -> subprocess.Popen[bytes]:
    """A hub; ``elsewhere``: as on another machine (its own control and state directories)."""
    argv = [*SUPERVISE, "hub", "--telegram-api-url", stub.api_url, "--bus", server.url, *extra]
    env = clean_env()
    if elsewhere is not None:
        env.update(XDG_RUNTIME_DIR=str(elsewhere / "run"), XDG_STATE_HOME=str(elsewhere / "state"))
    hub = popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert hub.stderr is not None
    line = hub.stderr.readline()
    assert b"hub: serving" in line, line
    return hub


def on_host(host: str, instance: str, server: RedisServer, *command: str) -> list[str]:
    return [*SUPERVISE, "--bus", server.url, "--host", host, "--instance", instance, "--", *command]


def loop(tasks: int, delay: float) -> list[str]:
    script = str(ROOT / "examples" / "fake_loopwork.py")
    return [
        sys.executable, script, "--tasks", str(tasks), "--delay", str(delay),
        "--fail-every", "0", "--question-every", "0", "--plain-lines", "0",
    ]  # fmt: skip


def completed(stub: Stub) -> list[str]:
    found = [re.search(r"FEAT-\d+", m["text"]) for m in stub.messages() if "✅" in m["text"]]
    return [match.group(0) for match in found if match]


def test_an_approval_on_another_host_is_shown_with_its_origin_and_answered(
    stub: Stub, server: RedisServer, tmp_path: Path
) -> None:
    hub = start_hub(stub, server)
    out = tmp_path / "answer"
    instance = popen(
        on_host("builder", "api", server, *child("ask", "approval", "60", str(out))),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    read_until(instance, b"READY")
    card = eventually(lambda: next((m for m in stub.messages() if buttons(m)), None))
    assert "builder/api/ask" in card["text"]
    approve = next(data for label, data in buttons(card) if "pprove" in label)
    stub.inject(
        [callback_update(approve, message_id=card["message_id"], chat_id=CHAT, user_id=ALICE)]
    )
    assert finish(instance, timeout=30)[0] == 0
    assert out.read_text() == "y\n"
    hub.send_signal(signal.SIGTERM)
    assert finish(hub)[0] == 0


def fast(tmp_path: Path) -> str:
    """A [telegram] table for tests: quick pacing, task results only."""
    config = tmp_path / "hub.toml"
    config.write_text('[telegram]\nper_chat_interval = 0.02\nevents = ["task_complete"]\n')
    return str(config)


def test_events_published_while_redis_is_down_arrive_when_it_is_back(
    stub: Stub, server: RedisServer, tmp_path: Path
) -> None:
    hub = start_hub(stub, server, "--config", fast(tmp_path))
    instance = popen(on_host("h1", "loop", server, *loop(10, 0.3)), stdout=subprocess.DEVNULL)
    eventually(lambda: len(completed(stub)) >= 2)
    server.stop()
    server.start()  # same port, empty: the journal holds what Redis did not take
    assert finish(instance, timeout=60)[0] == 0
    eventually(lambda: len(set(completed(stub))) == 10, timeout=30)
    assert sorted(completed(stub)) == sorted(set(completed(stub)))
    hub.send_signal(signal.SIGTERM)
    assert finish(hub)[0] == 0


def test_two_hubs_on_one_group_handle_each_event_once(
    stub: Stub, server: RedisServer, tmp_path: Path
) -> None:
    hubs = [
        start_hub(stub, server, "--config", fast(tmp_path)),
        start_hub(stub, server, "--config", fast(tmp_path), elsewhere=tmp_path / "second"),
    ]
    instances = [
        popen(on_host(f"h{i}", f"loop{i}", server, *loop(6, 0.1)), stdout=subprocess.DEVNULL)
        for i in (1, 2)
    ]
    for instance in instances:
        assert finish(instance, timeout=60)[0] == 0
    eventually(lambda: len(completed(stub)) >= 12, timeout=60)
    texts = [m["text"] for m in stub.messages() if "✅" in m["text"]]
    origins = sorted(re.search(r"h\d/loop\d", text).group(0) for text in texts)  # type: ignore[union-attr]
    assert origins == ["h1/loop1"] * 6 + ["h2/loop2"] * 6  # each task once, from its host
    for hub in hubs:
        hub.send_signal(signal.SIGTERM)
        assert finish(hub)[0] == 0


def test_a_bus_table_in_supervise_toml_does_what_the_flags_do(
    stub: Stub, server: RedisServer, tmp_path: Path
) -> None:
    hub = start_hub(stub, server, "--config", fast(tmp_path))
    config = tmp_path / "nightly.toml"
    command = ", ".join(f'"{part}"' for part in loop(3, 0.05))
    config.write_text(
        f'[programs.loop]\ncommand = [{command}]\n\n[bus]\nurl = "{server.url}"\nhost = "rack7"\n'
    )
    assert finish(popen([*SUPERVISE, "--config", str(config)], stdout=subprocess.DEVNULL))[0] == 0
    eventually(lambda: len(completed(stub)) == 3)
    assert all("rack7/nightly/loop" in m["text"] for m in stub.messages() if "✅" in m["text"])
    bad = config.with_name("bad.toml")
    bad.write_text('[programs.loop]\ncommand = ["true"]\n\n[bus]\nurl = "http://x"\n')
    checked = subprocess.run(
        [*SUPERVISE, "check-config", str(bad)], capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 2
    assert checked.stderr.startswith(f"supervise: {bad}: bus.url: ")
    hub.send_signal(signal.SIGTERM)
    assert finish(hub)[0] == 0
