"""supervise hub: one Telegram bot for several supervise instances on one machine.

Real processes throughout: supervise instances, the hub, and the Bot API
stand-in (a real HTTP server on 127.0.0.1).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from conftest import SUPERVISE, child, eventually, finish, popen, read_until, supervise
from hypothesis import given
from hypothesis import strategies as st
from telegram_stub import Stub, callback_update, telegram_stub, text_update

from supervisor._core.errors import (
    AlreadyAnsweredError,
    AnswerError,
    QuestionExpiredError,
    UnknownQuestionError,
)
from supervisor._core.events import Event
from supervisor._hub.fleet import display_name
from supervisor._routing.journal import Journal, journal_path
from supervisor.lowlevel import answer_error
from supervisor.testing import wait_until_sync

T = TypeVar("T")
CHAT = 111
ALICE = 5


def buttons(message: dict[str, Any]) -> list[tuple[str, str]]:
    markup = message.get("reply_markup") or message.get("params", {}).get("reply_markup") or {}
    return [
        (b["text"], b["callback_data"]) for row in markup.get("inline_keyboard", []) for b in row
    ]


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stub]:
    with telegram_stub() as running:
        monkeypatch.setenv("TELEGRAM_BOT_TOKEN", running.token)
        monkeypatch.setenv("TELEGRAM_CHAT_ID", str(CHAT))
        monkeypatch.setenv("TELEGRAM_ALLOWED_USERS", str(ALICE))
        yield running


def start_hub(stub: Stub, *extra: str) -> subprocess.Popen[bytes]:
    hub = popen(
        [*SUPERVISE, "hub", "--telegram-api-url", stub.api_url, "--interval", "0.2", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert hub.stderr is not None
    os.set_blocking(hub.stderr.fileno(), True)
    line = hub.stderr.readline()
    assert b"hub: serving every supervise instance here" in line, line
    return hub


def start_instance(
    name: str, *command: str, telegram: str | None = None
) -> subprocess.Popen[bytes]:
    flags = ["--telegram", "--telegram-api-url", telegram] if telegram else []
    return popen(
        [*SUPERVISE, "--instance", name, *flags, "--", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_one_chat_for_two_instances_each_tap_reaches_its_own_child(
    stub: Stub, tmp_path: Path
) -> None:
    hub = start_hub(stub)
    outs = {name: tmp_path / f"{name}.answer" for name in ("alpha", "beta")}
    instances = {
        name: start_instance(name, *child("ask", "approval", "60", str(out)), telegram=stub.api_url)
        for name, out in outs.items()
    }
    for proc in instances.values():
        read_until(proc, b"READY")

    def two_asked() -> list[dict[str, Any]] | None:
        found = [m for m in stub.messages() if buttons(m)]
        return found if len(found) == 2 else None

    asked = eventually(two_asked)
    by_origin = {}
    for message in asked:
        match = re.search(r"(alpha|beta)/ask", message["text"])
        assert match, message["text"]
        by_origin[match.group(1)] = message
    assert set(by_origin) == {"alpha", "beta"}
    approve = next(data for label, data in buttons(by_origin["beta"]) if "pprove" in label)
    stub.inject(
        [
            callback_update(
                approve, message_id=by_origin["beta"]["message_id"], chat_id=CHAT, user_id=ALICE
            )
        ]
    )
    status, _, _ = finish(instances["beta"], timeout=30)
    assert status == 0
    assert outs["beta"].read_text() == "y\n"
    assert not outs["alpha"].exists()  # the other child got nothing
    stub.inject([text_update("/status", chat_id=CHAT, user_id=ALICE)])
    # The reply waits its turn behind the chat's one message a second, and
    # asks each instance (5 s at most each). One full-suite run gave none
    # within 20 s (cause not found): the bound is wider now, and what the
    # chat had is in the message if it never comes.

    def status_reply() -> str:
        texts = [str(m["text"]) for m in stub.messages()]
        return next((text for text in texts if text.startswith("<b>Programs")), "")

    status_text = wait_until_sync(
        status_reply,
        timeout=60,
        interval=0.05,
        message=lambda: f"no /status reply; the chat had {[m['text'] for m in stub.messages()]}",
    )
    assert "alpha/ask" in status_text
    deny = next(data for label, data in buttons(by_origin["alpha"]) if "eny" in label)
    stub.inject(
        [
            callback_update(
                deny,
                message_id=by_origin["alpha"]["message_id"],
                chat_id=CHAT,
                user_id=ALICE,
                query_id="q2",
            )
        ]
    )
    status, _, stderr = finish(instances["alpha"], timeout=30)
    assert status == 0
    assert outs["alpha"].read_text() == "n\n"
    # They left the chat to the hub: each said so, and none polled the token.
    assert b"a supervise hub (pid" in stderr
    hub.send_signal(signal.SIGTERM)
    assert finish(hub)[0] == 0


def handled_seq() -> int | None:
    path = Path(os.environ["XDG_STATE_HOME"]) / "ipc-supervisor" / "hub.json"
    try:
        return int(json.loads(path.read_text())["loop"])
    except (OSError, ValueError, KeyError):
        return None


def journaled_seq(instance: str) -> int:
    journal = Journal.open(journal_path(instance), readonly=True)
    try:
        return journal.last_seq()
    finally:
        journal.close()


def test_a_hub_killed_and_restarted_loses_and_repeats_nothing(stub: Stub, tmp_path: Path) -> None:
    """kill -9 mid-run; the instance ends while no hub runs; the next hub sends the rest."""
    fast = tmp_path / "hub.toml"
    fast.write_text('[telegram]\nper_chat_interval = 0.02\nevents = ["task_complete"]\n')
    hub = start_hub(stub, "--config", str(fast))
    command = [
        "python",
        str(Path(__file__).resolve().parent.parent / "examples" / "fake_loopwork.py"),
        "--tasks",
        "12",
        "--delay",
        "0.25",
        "--fail-every",
        "0",
        "--question-every",
        "0",
        "--plain-lines",
        "0",
    ]
    instance = start_instance("loop", *command)

    def completed() -> list[str]:
        return [
            m["text"]
            for m in stub.messages()
            if "FEAT-" in m["text"] and ("✅" in m["text"] or "complete" in m["text"].lower())
        ]

    eventually(lambda: len(completed()) >= 3)
    # Kill it between two events, not in the middle of a send (a message
    # Telegram got whose reply the hub never read is the one it may repeat):
    # the instance is paused, and the hub has recorded all it journaled.
    instance.send_signal(signal.SIGSTOP)
    eventually(lambda: handled_seq() == journaled_seq("loop"))
    hub.send_signal(signal.SIGKILL)
    instance.send_signal(signal.SIGCONT)
    hub.wait(timeout=10)
    seen_at_kill = len(completed())
    assert seen_at_kill < 12
    assert finish(instance, timeout=60)[0] == 0  # it ends while no hub runs
    hub = start_hub(stub, "--config", str(fast))
    eventually(lambda: len(completed()) >= 12)
    tasks = [re.search(r"FEAT-\d+", text).group(0) for text in completed()]  # type: ignore[union-attr]
    assert sorted(tasks) == sorted(set(tasks))  # none twice
    assert len(set(tasks)) == 12  # none lost
    hub.send_signal(signal.SIGTERM)
    assert finish(hub)[0] == 0


def test_a_card_sent_before_the_hub_was_killed_is_answered_by_the_next_hub(
    stub: Stub, tmp_path: Path
) -> None:
    """kill -9 after the question's card went out: the next hub sends no second
    card, carries out a tap on the first one, and gives it its verdict."""
    hub = start_hub(stub)
    out = tmp_path / "answer"
    instance = start_instance("loop", *child("ask", "question", "60", str(out)))
    read_until(instance, b"READY")
    card = eventually(lambda: next((m for m in stub.messages() if buttons(m)), None))
    eventually(lambda: handled_seq() == journaled_seq("loop"))
    hub.send_signal(signal.SIGKILL)
    hub.wait(timeout=10)
    hub = start_hub(stub)
    us = next(data for label, data in buttons(card) if "MM/DD" in label)
    shown = "❓ Which date format?\nloop/ask\n⏳ 59 s to answer"  # as Telegram gives it
    stub.inject(
        [
            callback_update(
                us, message_id=card["message_id"], chat_id=CHAT, user_id=ALICE, text=shown
            )
        ]
    )
    status, _, _ = finish(instance, timeout=30)
    assert status == 0
    assert out.read_text() == "us\n"

    def edited() -> dict[str, Any] | None:
        return next(
            (
                m
                for m in stub.messages()
                if m["message_id"] == card["message_id"] and not buttons(m)
            ),
            None,
        )

    verdict = eventually(edited)["text"]
    assert verdict.startswith("❓ Which date format?\nloop/ask\n\n")
    assert "⏳" not in verdict
    assert "us" in verdict
    assert len([m for m in stub.messages() if "Which date format?" in m["text"]]) == 1
    hub.send_signal(signal.SIGTERM)
    assert finish(hub)[0] == 0


def test_a_second_hub_is_refused(stub: Stub) -> None:
    hub = start_hub(stub)
    second = popen(
        [*SUPERVISE, "hub", "--telegram-api-url", stub.api_url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    status, _, stderr = finish(second)
    assert status == 2
    assert re.fullmatch(rb"supervise: \S+/hub.lock: another hub is running \(pid \d+\)\n", stderr)
    hub.send_signal(signal.SIGTERM)
    assert finish(hub)[0] == 0


def test_fleet_names() -> None:
    assert display_name("loop", "loop") == "loop"
    assert display_name("box", "loop") == "box/loop"
    assert display_name("box", "") == "box"


@given(
    message_id=st.text(alphabet="abcdef0123456789-", min_size=1, max_size=12),
    by=st.sampled_from(["ctl", "telegram:@alice", "sdk"]),
    response=st.text(min_size=0, max_size=20),
)
def test_refusals_keep_their_kind_across_the_socket(
    message_id: str, by: str, response: str
) -> None:
    """What the instance refused, the hub raises as the same AnswerError kind and fields."""
    for original in (
        AlreadyAnsweredError(message_id, by, response),
        QuestionExpiredError(message_id, "timed out"),
        UnknownQuestionError(message_id),
    ):
        rebuilt = answer_error(message_id, str(original))
        assert type(rebuilt) is type(original)
        assert str(rebuilt) == str(original)
        if isinstance(original, AlreadyAnsweredError):
            assert isinstance(rebuilt, AlreadyAnsweredError)
            assert (rebuilt.by, rebuilt.response) == (by, response)
    other = answer_error(message_id, f"question {message_id}: something else")
    assert type(other) is AnswerError


def test_restart_and_stop_reach_the_named_instance_for_allowed_users(stub: Stub) -> None:
    hub = start_hub(stub)
    service = start_instance("svc", "sleep", "60")
    eventually(lambda: "svc/sleep" in status_of_chat(stub))
    stub.inject([text_update("/stop svc/sleep", chat_id=CHAT, user_id=666, username="mallory")])
    eventually(lambda: any("may not use /stop" in m["text"] for m in stub.messages()))
    stub.inject([text_update("/restart svc/sleep", chat_id=CHAT, user_id=ALICE)])
    eventually(lambda: any(m["text"] == "Restarting <b>svc/sleep</b>." for m in stub.messages()))

    def restarts() -> bool:
        shown = supervise("ctl", "--instance", "svc", "status", timeout=10)
        return re.search(rb"^sleep +running .* 1 +", shown.stdout, re.MULTILINE) is not None

    eventually(restarts)
    stub.inject([text_update("/restart nope/x", chat_id=CHAT, user_id=ALICE)])
    eventually(lambda: any("no program named 'nope/x'" in m["text"] for m in stub.messages()))
    service.terminate()
    assert finish(service)[0] == 143
    hub.send_signal(signal.SIGTERM)
    assert finish(hub)[0] == 0


def status_of_chat(stub: Stub) -> str:
    stub.inject([text_update("/status", chat_id=CHAT, user_id=ALICE)])
    time.sleep(0.3)  # the reply is polled for by the caller's eventually()
    found = [m["text"] for m in stub.messages() if m["text"].startswith("<b>Programs")]
    return found[-1] if found else ""


async def test_the_questions_a_hub_remembers_are_bounded(tmp_path: Path) -> None:
    """A child that asks without end cannot grow the hub: the oldest origins go."""
    from supervisor._core.messages import parse_message
    from supervisor._hub.fleet import MAX_QUESTIONS, Fleet, HubState

    async def deliver(event: Event) -> bool:
        return False

    fleet = Fleet(deliver, HubState(tmp_path / "hub.json"), directory=tmp_path)
    for seq in range(1, MAX_QUESTIONS + 51):
        message = parse_message(
            {"type": "ipc", "event": "question", "data": {"question": "?"}, "messageId": f"q{seq}"}
        )
        await fleet._handle("box", Event(seq, "loop", 0, "child", message))
    assert fleet.instance_of(f"q{MAX_QUESTIONS + 50}") is None  # "box" is not running
    assert len(fleet._asked) == MAX_QUESTIONS
    assert "q50" not in fleet._asked
    assert fleet._asked[f"q{MAX_QUESTIONS + 50}"] == "box"
