"""The Redis Streams bus: instances on "other hosts" and a hub, with a real redis-server."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import trio
from conftest import SUPERVISE, child, clean_env, eventually, finish, popen, read_until
from coredis.response.types import StreamPending
from telegram_stub import Stub, callback_update, text_update
from test_hub import ALICE, CHAT, buttons
from test_hub import stub as stub
from test_redis_stream import RedisServer
from test_redis_stream import server as server

from adapters.redis_bus import text

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="redis-server is not installed"
)
ROOT = Path(__file__).resolve().parent.parent


def start_hub(
    stub: Stub,
    server: RedisServer,
    *extra: str,
    elsewhere: Path | None = None,
    bus_flag: bool = True,
) -> subprocess.Popen[bytes]:
    """A hub; ``elsewhere``: as on another machine (its own control and state directories).

    ``bus_flag``: given ``--bus`` (else its ``--config`` must have a ``[bus]`` table).
    """
    argv = [*SUPERVISE, "hub", "--telegram-api-url", stub.api_url, *extra]
    if bus_flag:
        argv += ["--bus", server.url]
    env = clean_env()
    if elsewhere is not None:
        env.update(XDG_RUNTIME_DIR=str(elsewhere / "run"), XDG_STATE_HOME=str(elsewhere / "state"))
    hub = popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert hub.stderr is not None
    line = hub.stderr.readline()
    assert b"hub: serving" in line, line
    if b"standing by" in line:
        hub.stderr.close()  # nothing more is read from it; a standby says little
    return hub


def on_host(host: str, instance: str, server: RedisServer, *command: str) -> list[str]:
    return [*SUPERVISE, "--bus", server.url, "--host", host, "--instance", instance, "--", *command]


def machine(root: Path) -> dict[str, Any]:
    """popen() options for a process as on another machine: its own working,
    runtime and state directories (no control socket, journal or hub of ours).

    The runtime directory is under the suite's short one: a socket's path
    must fit in 108 bytes, which a pytest tmp_path often does not.
    """
    for name in ("state", "work"):
        (root / name).mkdir(mode=0o700, parents=True, exist_ok=True)
    env = clean_env()
    run = tempfile.mkdtemp(prefix="m", dir=env["XDG_RUNTIME_DIR"])
    env.update(XDG_RUNTIME_DIR=run, XDG_STATE_HOME=str(root / "state"))
    return {"env": env, "cwd": root / "work"}


def loop(tasks: int, delay: float) -> list[str]:
    script = str(ROOT / "examples" / "fake_loopwork.py")
    return [
        sys.executable, script, "--tasks", str(tasks), "--delay", str(delay),
        "--fail-every", "0", "--question-every", "0", "--plain-lines", "0",
    ]  # fmt: skip


def completed(stub: Stub) -> list[str]:
    found = [re.search(r"FEAT-\d+", m["text"]) for m in stub.messages() if "✅" in m["text"]]
    return [match.group(0) for match in found if match]


def fast(tmp_path: Path) -> str:
    """A [telegram] table for tests: quick pacing, task results only."""
    config = tmp_path / "hub.toml"
    config.write_text('[telegram]\nper_chat_interval = 0.02\nevents = ["task_complete"]\n')
    return str(config)


def test_events_published_while_redis_is_down_arrive_when_it_is_back(
    stub: Stub, server: RedisServer, tmp_path: Path
) -> None:
    hub = start_hub(stub, server, "--config", fast(tmp_path))
    instance = popen(
        on_host("h1", "loop", server, *loop(10, 0.3)),
        stdout=subprocess.DEVNULL,
        **machine(tmp_path / "h1"),
    )
    eventually(lambda: len(completed(stub)) >= 2)
    server.stop()
    server.start()  # same port, empty: the journal holds what Redis did not take
    assert finish(instance, timeout=60)[0] == 0
    eventually(lambda: len(set(completed(stub))) == 10, timeout=30)
    assert sorted(completed(stub)) == sorted(set(completed(stub)))
    hub.send_signal(signal.SIGTERM)
    code, _, err = finish(hub)
    assert code == 0, err


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
    config = tmp_path / "nightly.toml"
    command = ", ".join(f'"{part}"' for part in loop(3, 0.05))
    config.write_text(
        f"[programs.loop]\ncommand = [{command}]\n\n"
        f'[bus]\nurl = "{server.url}"\nhost = "rack7"\nmaxlen = 500000\n\n'
        '[telegram]\nper_chat_interval = 0.02\nevents = ["task_complete"]\n'
    )
    # The hub takes the same file: its [bus] url and its [telegram] table.
    hub = start_hub(stub, server, "--config", str(config), bus_flag=False)
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
    bad.write_text(
        f'[programs.loop]\ncommand = ["true"]\n\n[bus]\nurl = "{server.url}"\nmaxlen = -1\n'
    )
    checked = subprocess.run(
        [*SUPERVISE, "check-config", str(bad)], capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 2
    assert checked.stderr.startswith(f"supervise: {bad}: bus.maxlen: ")
    hub.send_signal(signal.SIGTERM)
    assert finish(hub)[0] == 0


def chat_reply(stub: Stub, command: str, starts: str, user_id: int = ALICE) -> str:
    """Send ``command`` to the chat; the first new message starting with ``starts``."""
    before = len(stub.messages())
    stub.inject([text_update(command, chat_id=CHAT, user_id=user_id, username="x")])
    reply: str = eventually(
        lambda: next(
            (m["text"] for m in stub.messages()[before:] if m["text"].startswith(starts)), None
        ),
        timeout=30,
    )
    return reply


def test_approvals_status_pending_restart_and_stop_cross_the_bus(
    stub: Stub, server: RedisServer, tmp_path: Path
) -> None:
    hub = start_hub(stub, server)
    out = tmp_path / "answer"
    asker = popen(
        on_host("builder", "api", server, *child("ask", "approval", "60", str(out))),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **machine(tmp_path / "builder"),
    )
    service = popen(
        on_host("rack7", "svc", server, "sleep", "60"),
        stdout=subprocess.DEVNULL,
        **machine(tmp_path / "rack7"),
    )
    read_until(asker, b"READY")

    def both_listed() -> str | None:
        shown = chat_reply(stub, "/status", "<b>Programs")
        return shown if "rack7/svc/sleep" in shown and "builder/api/ask" in shown else None

    shown = eventually(both_listed, timeout=30)
    assert re.search(r"rack7/svc/sleep</b> running pid \d+", shown), shown
    pending = chat_reply(stub, "/pending", "<b>Waiting")
    assert "builder/api/ask: " in pending
    refused = chat_reply(stub, "/stop rack7/svc/sleep", "🚫", user_id=666)
    assert "may not use /stop" in refused
    assert chat_reply(stub, "/restart rack7/svc/sleep", "Restarting") == (
        "Restarting <b>rack7/svc/sleep</b>."
    )
    assert "1 restart(s)" in chat_reply(stub, "/status", "<b>Programs").split("rack7/svc")[1]
    assert "no program named 'rack7/svc/nope'" in chat_reply(stub, "/restart rack7/svc/nope", "⚠️")
    # An instance that stops replying is listed as such, not left out.
    service.send_signal(signal.SIGSTOP)
    try:
        assert re.search(r"rack7/svc</b> no reply", chat_reply(stub, "/status", "<b>Programs"))
    finally:
        service.send_signal(signal.SIGCONT)
    stopping = chat_reply(stub, "/stop rack7/svc/sleep", "Stopping")
    assert stopping == "Stopping <b>rack7/svc/sleep</b>."
    finish(service)  # its one program stopped: the instance ends, as supervise does
    assert "rack7/svc" not in chat_reply(stub, "/status", "<b>Programs")
    card = eventually(lambda: next((m for m in stub.messages() if buttons(m)), None))
    assert "builder/api/ask" in card["text"]  # where it comes from
    approve = next(data for label, data in buttons(card) if "pprove" in label)
    stub.inject(
        [callback_update(approve, message_id=card["message_id"], chat_id=CHAT, user_id=ALICE)]
    )
    assert finish(asker, timeout=30)[0] == 0
    assert out.read_text() == "y\n"
    (tap,) = stub.wait_for_calls("answerCallbackQuery", 1)
    assert tap["params"]["text"] == "Approved ✅"  # the instance's own verdict, over the bus
    hub.send_signal(signal.SIGTERM)
    assert finish(hub)[0] == 0


async def _answer_over_the_bus(server: RedisServer, stream: str, message_id: str) -> None:
    """What another hub does: a request on the instance's control stream."""
    async with server.client() as client:
        request = {"cmd": "answer", "message_id": message_id, "response": "deny", "by": "hub-b"}
        await client.xadd(
            stream, {"id": "r1", "reply_to": "ipc:replies:hub-b", "request": json.dumps(request)}
        )


def test_the_first_answer_wins_across_hubs_and_the_child_gets_one(
    stub: Stub, server: RedisServer, tmp_path: Path
) -> None:
    hub = start_hub(stub, server)
    out, events = tmp_path / "answer", tmp_path / "events.jsonl"
    ask = shlex.join(child("ask", "approval", "60", str(out)))
    argv = on_host("builder", "api", server, "sh", "-c", f"{ask}; echo ANSWERED; exec sleep 60")
    argv.insert(argv.index("--"), f"--events={events}")
    asker = popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    read_until(asker, b"READY")
    card = eventually(lambda: next((m for m in stub.messages() if buttons(m)), None))
    asked = next(
        json.loads(line) for line in events.read_text().splitlines() if '"approval_request"' in line
    )
    trio.run(_answer_over_the_bus, server, "ipc:control:builder:api", asked["messageId"])
    read_until(asker, b"ANSWERED")
    approve = next(data for label, data in buttons(card) if "pprove" in label)
    stub.inject(
        [callback_update(approve, message_id=card["message_id"], chat_id=CHAT, user_id=ALICE)]
    )
    (tap,) = stub.wait_for_calls("answerCallbackQuery", 1)
    assert tap["params"]["text"] == "Already answered by hub-b (deny)."
    assert out.read_text() == "n\n"
    asker.terminate()
    finish(asker)
    answered = [line for line in events.read_text().splitlines() if '"question_answered"' in line]
    assert len(answered) == 1  # one answer was written to the child, the first
    assert '"by":"hub-b"' in answered[0]
    hub.send_signal(signal.SIGTERM)
    assert finish(hub)[0] == 0


async def _pending_entries(server: RedisServer) -> int:
    async with server.client() as client:
        summary = await client.xpending("ipc:events", "hub")
        assert isinstance(summary, StreamPending)
        return summary.pending


def test_one_poller_per_token_and_a_standby_takes_over_from_a_killed_hub(
    stub: Stub, server: RedisServer, tmp_path: Path
) -> None:
    config = fast(tmp_path)
    first = start_hub(stub, server, "--config", config, "--lease", "2")
    second = start_hub(
        stub, server, "--config", config, "--lease", "2", elsewhere=tmp_path / "second"
    )
    instance = popen(on_host("h1", "loop", server, *loop(12, 0.3)), stdout=subprocess.DEVNULL)
    eventually(lambda: len(completed(stub)) >= 3, timeout=30)
    # Kill the leader at a moment it holds no entry unacknowledged: frozen,
    # it cannot send anything more, so whatever it sent it acknowledged.
    for _ in range(500):
        first.send_signal(signal.SIGSTOP)
        if trio.run(_pending_entries, server) == 0:
            break
        first.send_signal(signal.SIGCONT)
        time.sleep(0.01)  # let it finish what it holds
    else:
        pytest.fail("the leader always held an unacknowledged entry")
    first.kill()
    first.wait(timeout=10)
    killed_at = time.monotonic()
    assert finish(instance, timeout=60)[0] == 0
    eventually(lambda: len(set(completed(stub))) == 12, timeout=60)
    assert sorted(completed(stub)) == sorted(set(completed(stub)))  # none twice
    # Telegram ends a poll with 409 when a newer one comes: only the dead
    # hub's last poll, held open when it was killed, may have been ended so.
    conflicts = [c for c in stub.calls("getUpdates") if c["status"] == 409]
    assert all(c["time"] < killed_at for c in conflicts), conflicts
    assert len(conflicts) <= 1
    again = start_hub(stub, server, "--config", config, "--lease", "2")
    for hub in (second, again):
        hub.send_signal(signal.SIGTERM)
        assert finish(hub)[0] == 0


def test_a_card_the_killed_leader_sent_is_answered_through_the_standby(
    stub: Stub, server: RedisServer, tmp_path: Path
) -> None:
    """The leader sends a question's card and dies; the standby that takes
    over carries out a tap on that card, on the instance across the bus."""
    first = start_hub(stub, server, "--lease", "2")
    second = start_hub(stub, server, "--lease", "2", elsewhere=tmp_path / "second")
    out = tmp_path / "answer"
    instance = popen(
        on_host("h1", "loop", server, *child("ask", "question", "60", str(out))),
        stdout=subprocess.PIPE,
        **machine(tmp_path / "h1"),
    )
    read_until(instance, b"READY")
    card = eventually(lambda: next((m for m in stub.messages() if buttons(m)), None), timeout=30)
    first.kill()
    first.wait(timeout=10)
    us = next(data for label, data in buttons(card) if "MM/DD" in label)
    stub.inject([callback_update(us, message_id=card["message_id"], chat_id=CHAT, user_id=ALICE)])
    status, _, _ = finish(instance, timeout=60)
    assert status == 0
    assert out.read_text() == "us\n"
    second.send_signal(signal.SIGTERM)
    assert finish(second)[0] == 0


def test_an_instance_on_the_bus_leaves_telegram_to_the_hub(
    stub: Stub, server: RedisServer, tmp_path: Path
) -> None:
    argv = on_host("h1", "solo", server, "true")
    argv[len(SUPERVISE) : len(SUPERVISE)] = ["--telegram", "--telegram-api-url", stub.api_url]
    code, _, err = finish(popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    assert code == 0
    assert b"with --bus, Telegram is the bus hub's" in err
    assert stub.calls("getUpdates") == []


async def _requests_answered(server: RedisServer) -> dict[str, dict[str, Any]]:
    """Bad requests on an instance's control stream, then a good one; the replies by id."""
    stream, replies = "ipc:control:h1:svc", "ipc:replies:t"
    async with server.client() as client:
        with trio.fail_after(20):
            while not await client.exists(["ipc:instance:h1:svc"]):
                await trio.sleep(0.05)  # its reader has started
        status = json.dumps({"cmd": "status"})
        sent = [
            # Sent, as far as the instance can tell, in 1970: not carried out late.
            ({"id": "old", "reply_to": replies, "request": status}, "1000-0"),
            ({"id": "text", "reply_to": replies, "request": "restart everything"}, None),
            ({"id": "list", "reply_to": replies, "request": "[1]"}, None),
            ({"id": "input", "reply_to": replies, "request": json.dumps({"cmd": "input"})}, None),
            ({"id": "nowhere", "reply_to": "elsewhere", "request": status}, None),
            ({"id": "fine", "reply_to": replies, "request": status}, None),
        ]
        for fields, identifier in sent:
            await client.xadd(stream, fields, identifier=identifier)
        found: dict[str, dict[str, Any]] = {}
        with trio.fail_after(20):
            while "fine" not in found:
                for entry in await client.xrange(replies):
                    values = {text(k): text(v) for k, v in entry.field_values.items()}
                    found[values["id"]] = json.loads(values["reply"])
                await trio.sleep(0.05)
        assert not await client.exists(["elsewhere"])  # a reply goes only to a reply stream
        return found


def test_bad_requests_on_the_bus_get_a_one_line_refusal_and_change_nothing(
    server: RedisServer, tmp_path: Path
) -> None:
    service = popen(
        on_host("h1", "svc", server, "sleep", "60"),
        stdout=subprocess.DEVNULL,
        **machine(tmp_path / "h1"),
    )
    replies = trio.run(_requests_answered, server)
    assert set(replies) == {"old", "text", "list", "input", "fine"}
    assert replies["old"]["ok"] is False
    assert re.fullmatch(r"status: sent \d+ s ago, too late to carry out", replies["old"]["error"])
    assert replies["text"] == {"ok": False, "error": "request is not JSON"}
    assert replies["list"] == {"ok": False, "error": "request must be a JSON object"}
    assert replies["input"]["error"].startswith('"input" is not carried over the bus (carried: ')
    assert replies["fine"]["ok"] is True
    (program,) = replies["fine"]["result"]
    assert program["name"] == "sleep"
    assert program["state"] == "running"
    assert program["restarts"] == 0  # nothing was carried out but the status
    service.terminate()
    assert finish(service)[0] == 143


async def _add_entries(server: RedisServer, entries: list[dict[str, str]]) -> None:
    async with server.client() as client:
        for fields in entries:
            await client.xadd("ipc:events", fields)


def test_entries_that_are_not_events_are_passed_over_and_the_hub_goes_on(
    stub: Stub, server: RedisServer, tmp_path: Path
) -> None:
    hub = start_hub(stub, server, "--config", fast(tmp_path))
    bad = [{"json": "not an event"}, {"event": "task_complete"}, {"json": '{"seq": "x"}'}]
    trio.run(_add_entries, server, bad)
    instance = popen(
        on_host("h1", "loop", server, *loop(3, 0.05)),
        stdout=subprocess.DEVNULL,
        **machine(tmp_path / "h1"),
    )
    assert finish(instance, timeout=60)[0] == 0
    eventually(lambda: len(completed(stub)) == 3, timeout=30)
    assert trio.run(_pending_entries, server) == 0  # the bad ones were acknowledged too
    hub.send_signal(signal.SIGTERM)
    code, _, err = finish(hub)
    assert code == 0
    assert len(re.findall(rb"hub: ipc:events \d+-\d+ is not an event: ", err)) == 3, err
