"""The Telegram adapter against a real HTTP server standing in for the Bot API.

In-process tests run a Supervisor with the bot's route and poller; one test
runs the real ``supervise --telegram`` command. Every child asks or reports
something real and reads its answer from stdin.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from conftest import SUPERVISE, child, finish, popen
from telegram_stub import Stub, callback_update, telegram_stub, text_update

from adapters.telegram import TelegramBot
from supervisor import ProgramConfig, Supervisor, TelegramConfig
from supervisor.testing import wait_until

CHAT = 111
ALICE = 5
MALLORY = 666


def bot_config(stub: Stub, **overrides: Any) -> TelegramConfig:
    settings: dict[str, Any] = {
        "token": stub.token,
        "chat_id": CHAT,
        "allowed_users": ("@alice",),
        "api_url": stub.api_url,
        "poll_timeout": 1,
        "per_chat_interval": 0.05,
        **overrides,
    }
    return TelegramConfig.model_validate(settings)


@dataclass
class Running:
    sup: Supervisor
    bot: TelegramBot
    stub: Stub
    reports: list[str]

    async def calls(self, method: str, count: int, timeout: float = 15) -> list[dict[str, Any]]:
        return await self.stub.wait_for_calls_async(method, count, timeout)

    def ok_calls(self, method: str) -> list[dict[str, Any]]:
        return [call for call in self.stub.calls(method) if call["status"] == 200]


@asynccontextmanager
async def running(stub: Stub, *programs: ProgramConfig, **settings: Any) -> AsyncIterator[Running]:
    reports: list[str] = []
    sup = Supervisor(
        programs,
        outputs={program.program_name: None for program in programs},
        exit_when_settled=False,
        report=reports.append,
        drain_timeout=2,
    )
    bot = TelegramBot(sup, bot_config(stub, **settings), report=reports.append)
    for route in bot.route_configs():
        sup.add_route(route, bot.sink)
    sup.add_service(bot.run)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        try:
            yield Running(sup, bot, stub, reports)
        finally:
            nursery.cancel_scope.cancel()


def asker(kind: str, out: Path, timeout: float = 30, name: str = "asker") -> ProgramConfig:
    return ProgramConfig(
        command=tuple(child("ask", kind, str(timeout), str(out))), name=name, pty=False
    )


async def until(predicate: Any, within: float = 15) -> None:
    await wait_until(predicate, timeout=within, interval=0.02)


def buttons(call: dict[str, Any]) -> list[tuple[str, str]]:
    markup = call["params"].get("reply_markup") or {}
    return [
        (b["text"], b["callback_data"]) for row in markup.get("inline_keyboard", []) for b in row
    ]


async def test_approval_tapped_by_an_allowed_user_reaches_the_child(tmp_path: Path) -> None:
    """A stranger's tap is refused and reaches nothing; Alice's Approve writes y;
    the message shows who decided and loses its buttons; a late tap is told."""
    out = tmp_path / "answer"
    with telegram_stub() as stub:
        async with running(stub, asker("approval", out)) as run:
            (sent,) = await run.calls("sendMessage", 1)
            assert sent["params"]["parse_mode"] == "HTML"
            assert "rm -rf build/ &lt;all&gt;" in sent["params"]["text"]
            choices = buttons(sent)
            assert [label for label, _ in choices] == ["✅ Approve", "❌ Deny"]
            assert all(len(data.encode()) <= 64 for _, data in choices)
            tg_id = 1  # the stand-in numbers a chat's messages from 1
            approve, deny = (data for _, data in choices)

            stub.inject(
                [
                    callback_update(
                        approve,
                        message_id=tg_id,
                        chat_id=CHAT,
                        user_id=MALLORY,
                        username="mallory",
                        query_id="m1",
                    )
                ]
            )
            (refusal,) = await run.calls("answerCallbackQuery", 1)
            assert refusal["params"]["show_alert"] is True
            assert refusal["params"]["callback_query_id"] == "m1"
            assert run.reports == [
                "telegram: refused a tap from @mallory (id 666) (not on the allow-list)"
            ]
            # Once the bot is idle again, the question is still open: the
            # refused tap answered nothing, so nothing was written to the child.
            await trio.testing.wait_all_tasks_blocked()
            assert [q.message_id for q in run.sup.programs["asker"].pending_questions()]
            assert not out.exists()

            stub.inject(
                [
                    callback_update(
                        approve,
                        message_id=tg_id,
                        chat_id=CHAT,
                        user_id=ALICE,
                        username="alice",
                        query_id="a1",
                    )
                ]
            )
            answers = await run.calls("answerCallbackQuery", 2)
            assert answers[1]["params"]["text"] == "Approved ✅"
            await until(out.exists)
            await until(lambda: out.read_text() == "y\n")
            await until(lambda: stub.messages()[0]["reply_markup"] is None)
            (message,) = stub.messages()
            card, timer = sent["params"]["text"].rsplit("\n", 1)
            assert re.fullmatch(r"⏳ <b>\d+(\.\d)?s</b> to answer", timer), timer
            # The verdict takes the place of the time left.
            assert message["text"].startswith(card + "\n\n✅ <b>approve</b> by ")
            assert "@alice" in message["text"]

            stub.inject(
                [
                    callback_update(
                        deny,
                        message_id=tg_id,
                        chat_id=CHAT,
                        user_id=ALICE,
                        username="alice",
                        query_id="a2",
                    )
                ]
            )
            answers = await run.calls("answerCallbackQuery", 3)
            assert answers[2]["params"]["text"] == "Already answered by telegram:@alice (approve)."
            assert out.read_text() == "y\n"


async def test_a_refused_user_is_named_by_id_as_well(tmp_path: Path) -> None:
    """A username can change hands; the id cannot: refusals name the id, alone
    when there is no username, and a username cannot break the notice's line."""
    out = tmp_path / "answer"
    with telegram_stub() as stub:
        async with running(stub, asker("approval", out)) as run:
            (question,) = await run.calls("sendMessage", 1)
            approve = buttons(question)[0][1]
            stub.inject(
                [callback_update(approve, message_id=1, chat_id=CHAT, user_id=4242, query_id="x")]
            )
            await run.calls("answerCallbackQuery", 1)
            stub.inject(
                [
                    text_update(
                        "/stop asker", chat_id=CHAT, user_id=77, username="eve\nsupervise: ok"
                    )
                ]
            )
            sent = await run.calls("sendMessage", 2)
            assert sent[1]["params"]["text"] == "🚫 @evesupervise: ok (id 77) may not use /stop."
            assert run.reports == [
                "telegram: refused a tap from id 4242 (not on the allow-list)",
                "telegram: refused /stop from @evesupervise: ok (id 77) (not on the allow-list)",
            ]
            assert not out.exists()


async def test_an_answer_from_another_channel_updates_the_chat(tmp_path: Path) -> None:
    out = tmp_path / "answer"
    with telegram_stub() as stub:
        async with running(stub, asker("question", out)) as run:
            (sent,) = await run.calls("sendMessage", 1)
            assert [label for label, _ in buttons(sent)] == ["ISO 8601", "MM/DD/YYYY"]
            program = run.sup.programs["asker"]
            await until(lambda: bool(program.pending_questions()))
            (pending,) = program.pending_questions()
            await run.sup.answer(pending.message_id, "us", by="ctl")
            await until(lambda: stub.messages()[0]["reply_markup"] is None)
            assert "💬 <b>us</b> by ctl at " in stub.messages()[0]["text"]
            assert out.read_text() == "us\n"


async def test_a_timeout_is_shown_and_the_buttons_go(tmp_path: Path) -> None:
    out = tmp_path / "answer"
    with telegram_stub() as stub:
        async with running(stub, asker("approval", out, timeout=0.5)) as run:
            await run.calls("sendMessage", 1)
            await until(
                lambda: bool(stub.messages()) and stub.messages()[0]["reply_markup"] is None
            )
            assert "⌛ <b>Timed out</b> after" in stub.messages()[0]["text"]
            assert ": deny applied" in stub.messages()[0]["text"]
            await until(out.exists)
            assert out.read_text() == "n\n"  # the default: deny, written as n


async def test_a_429_storm_loses_no_message() -> None:
    frames = ProgramConfig(command=tuple(child("frames", "4")), name="gen", pty=False)
    with telegram_stub() as stub:
        stub.fail("sendMessage", 429, count=3, retry_after=1)
        async with running(stub, frames, events=("task_complete",)) as run:
            await until(lambda: len(run.ok_calls("sendMessage")) == 4, within=30)
            calls = stub.calls("sendMessage")
    statuses = [call["status"] for call in calls]
    assert statuses == [429, 429, 429, 200, 200, 200, 200]
    texts = [call["params"]["text"] for call in calls if call["status"] == 200]
    assert [text.split("</b>")[0] for text in texts] == [f"✅ <b>T-{i}" for i in range(4)]
    # Telegram's retry_after was honoured: a second between the refusals.
    times = [call["time"] for call in calls]
    assert times[1] - times[0] >= 0.95
    assert times[2] - times[1] >= 0.95


async def test_progress_updates_edit_one_message() -> None:
    """200 progress updates of one task: one message, far fewer edits than updates."""
    frames = ProgramConfig(
        command=tuple(child("frames", "200", "progress_update")), name="gen", pty=False
    )
    with telegram_stub() as stub:
        async with running(stub, frames, per_chat_interval=0.2) as run:
            await until(lambda: any("step 199" in m["text"] for m in stub.messages()), within=30)
            sends = [c for c in stub.calls("sendMessage") if "⏳" in c["params"]["text"]]
            edits = stub.calls("editMessageText")
    assert len(sends) == 1
    assert len(edits) <= 20, len(edits)
    stats = {s.name: s for s in run.sup.route_stats()}
    assert stats["telegram"].coalesced >= 150


TASK_LIFE = """
from supervisor import emit
import sys
emit.loop_start("web")
emit.task_start("FEAT-7", "Add login", namespace="web")
emit.emit("progress_update", {"taskId": "FEAT-7", "phase": "end"})
emit.emit("progress_update", {"taskId": "FEAT-7", "phase": "run", "message": "writing tests"})
emit.task_complete("FEAT-7", "Add login", duration=1.5, namespace="web")
emit.task_start("FEAT-8", "Fix bug", namespace="web")
emit.task_failed("FEAT-8", "Fix bug", error="tests failed", namespace="web")
emit.loop_end("web")
sys.stdin.read()
"""


async def test_a_task_is_one_message_edited_through_its_life() -> None:
    """Started, its step (the description, never a bare phase word), then done or failed."""
    life = ProgramConfig(command=(sys.executable, "-c", TASK_LIFE), name="loop", pty=False)
    with telegram_stub() as stub:
        async with running(stub, life, events=("task_*", "progress_update", "loop_*")):

            def final() -> list[str] | None:
                texts = [m["text"] for m in stub.messages()][1:-1]
                done = len(texts) == 2 and "✅" in texts[0] and "❌" in texts[1]
                return texts if done and "Loop ended" in stub.messages()[-1]["text"] else None

            await until(final)
            texts = final()
            sends = stub.calls("sendMessage")
            edits = [c["params"]["text"] for c in stub.calls("editMessageText")]
            summary = stub.messages()[-1]["text"]
    assert texts is not None
    assert len(sends) == 4  # the loop's start, one per task, the loop's end
    assert re.fullmatch(r"🏁 <b>Loop ended</b> · web\n1 completed · 1 failed · \S+", summary)
    assert texts[0].startswith("✅ <b>FEAT-7</b> Add login\n<i>took ")
    assert texts[1].startswith("❌ <b>FEAT-8</b> Fix bug\n<pre>tests failed</pre>")
    assert "▶️ <b>FEAT-7</b> Add login\n⏳ <b>FEAT-7</b> writing tests" in edits
    assert not any(" end" in text for text in edits)  # the bare phase word was no news


BUSY_LOOP = """
from supervisor import emit
import sys
emit.loop_start("web")
for i in range(1, 7):
    emit.task_start(f"FEAT-{i}", f"task {i}", namespace="web")
    if i == 4:
        emit.task_failed(f"FEAT-{i}", f"task {i}", error="boom", namespace="web")
    else:
        emit.task_complete(f"FEAT-{i}", f"task {i}", duration=0.1, namespace="web")
emit.loop_end("web")
sys.stdin.read()
"""


async def test_a_digest_gathers_routine_news_and_never_holds_a_failure() -> None:
    busy = ProgramConfig(command=(sys.executable, "-c", BUSY_LOOP), name="loop", pty=False)
    with telegram_stub() as stub:
        async with running(stub, busy, digest=60):

            def digest() -> str | None:
                texts = [m["text"] for m in stub.messages() if m["text"].startswith("🗞")]
                return texts[0] if texts and "Loop ended" in texts[0] else None

            await until(digest)
            text = digest()
            others = [m["text"] for m in stub.messages() if not m["text"].startswith("🗞")]
    assert text is not None
    (failure,) = others  # a failure, at once, in a message of its own
    assert failure.startswith("❌ <b>FEAT-4</b> task 4\n<pre>boom</pre>\n<i>after ")
    lines = text.splitlines()
    assert lines[0] == "🗞 <b>loop</b>"
    assert lines[1] == "🚀 <b>Loop started</b> · web"
    assert sum(line.startswith("✅") for line in lines) == 5
    assert lines[-1].startswith("🏁 <b>Loop ended</b> · web · 5 completed · 1 failed · ")


async def test_chat_commands(tmp_path: Path) -> None:
    out = tmp_path / "answer"
    with telegram_stub() as stub:
        async with running(stub, asker("approval", out)) as run:
            await run.calls("sendMessage", 1)
            stub.inject([text_update("/status", chat_id=CHAT, user_id=MALLORY, username="mallory")])
            sent = await run.calls("sendMessage", 2)
            status_line = r"• <b>asker</b> (starting|running) pid \d+ · 0 task\(s\) · 1 pending"
            assert re.match(r"<b>Programs</b>\n" + status_line, sent[1]["params"]["text"])
            stub.inject([text_update("/pending", chat_id=CHAT, user_id=ALICE, username="alice")])
            sent = await run.calls("sendMessage", 3)
            assert (
                sent[2]["params"]["text"]
                == "<b>Waiting for an answer</b>\n• asker: rm -rf build/ &lt;all&gt;"
            )
            stub.inject(
                [text_update("/restart asker", chat_id=CHAT, user_id=MALLORY, username="mallory")]
            )
            sent = await run.calls("sendMessage", 4)
            assert sent[3]["params"]["text"] == "🚫 @mallory (id 666) may not use /restart."
            assert run.sup.programs["asker"].restarts == 0
            stub.inject(
                [text_update("/restart asker", chat_id=CHAT, user_id=ALICE, username="alice")]
            )
            sent = await run.calls("sendMessage", 5)
            assert sent[4]["params"]["text"] == "Restarting <b>asker</b>."
            await until(lambda: run.sup.programs["asker"].restarts == 1)
            stub.inject([text_update("/stop nope", chat_id=CHAT, user_id=ALICE, username="alice")])
            # Among the restart's news and its question asked again:
            await until(
                lambda: any("no program named 'nope'" in m["text"] for m in stub.messages())
            )


async def test_a_refusal_other_than_429_is_a_dead_letter() -> None:
    frames = ProgramConfig(command=tuple(child("frames", "1")), name="gen", pty=False)
    with telegram_stub() as stub:
        stub.fail("sendMessage", 400, count=1, description="Bad Request: chat not found")
        async with running(stub, frames, events=("task_complete",)) as run:
            await until(lambda: run.sup.route_stats()[0].dead == 1)
            (letter,) = await run.sup.dead_letters("telegram")
    assert letter.error == "telegram sendMessage: HTTP 400: Bad Request: chat not found"
    assert letter.attempts == 1


def test_supervise_telegram_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real command: approval in the chat, a tap, y on the child's stdin, the
    message edited; the token appears nowhere."""
    out, events = tmp_path / "answer", tmp_path / "events.jsonl"
    with telegram_stub(token="4242:SECRET-TOKEN") as stub:
        monkeypatch.setenv("TELEGRAM_BOT_TOKEN", stub.token)
        monkeypatch.setenv("TELEGRAM_CHAT_ID", str(CHAT))
        monkeypatch.setenv("TELEGRAM_ALLOWED_USERS", f"{ALICE}")
        proc = popen(
            [
                *SUPERVISE,
                "--telegram",
                "--telegram-api-url",
                stub.api_url,
                "--events",
                str(events),
                "--",
                *child("ask", "approval", "30", str(out)),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        (sent,) = stub.wait_for_calls("sendMessage", 1, timeout=20)
        approve = buttons(sent)[0][1]
        stub.inject(
            [callback_update(approve, message_id=1, chat_id=CHAT, user_id=ALICE, query_id="q")]
        )
        status, stdout, stderr = finish(proc, timeout=30)
        assert status == 0, stderr
        assert out.read_text() == "y\n"
        edited = stub.wait_for_calls("editMessageText", 1)
        assert "✅ <b>approve</b> by 5" in edited[0]["params"]["text"]
    assert b"READY" in stdout
    assert b"SECRET-TOKEN" not in stderr
    assert "SECRET-TOKEN" not in events.read_text()
    answered = [json.loads(line) for line in events.read_text().splitlines()]
    assert any(
        e["event"] == "question_answered" and e["data"]["by"] == "telegram:5" for e in answered
    )


def test_bad_token_errors_never_show_the_token() -> None:
    """401 from the Bot API: one reported line, with the token masked."""
    with telegram_stub(token="1:RIGHT") as stub:
        env_token = "777:WRONG-SECRET"
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("TELEGRAM_BOT_TOKEN", env_token)
            patch.setenv("TELEGRAM_CHAT_ID", str(CHAT))
            proc = popen(
                [*SUPERVISE, "--telegram", "--telegram-api-url", stub.api_url, "--", "sleep", "1"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            status, _, stderr = finish(proc, timeout=30)
    assert status == 0
    assert b"WRONG-SECRET" not in stderr
    assert b"telegram deleteWebhook: HTTP 401: Unauthorized (polling again with backoff)" in stderr


async def test_a_terminal_answer_and_an_ignored_denial_reach_the_chat() -> None:
    """A deny typed into the program edits the approval card (by stdin, the
    terminal's channel when input is piped), and the task that runs anyway
    is announced loudly."""
    keys, keyboard = trio.testing.memory_stream_one_way_pair()
    reports: list[str] = []
    loop = ProgramConfig(command=tuple(child("hostile", "ignores_denial")), name="loop")

    def texts(marker: str) -> list[dict[str, Any]]:
        return [m for m in stub.messages() if marker in m["text"]]

    with telegram_stub() as stub:
        sup = Supervisor(
            [loop],
            outputs={"loop": None},
            input=keyboard,
            exit_when_settled=False,
            report=reports.append,
            drain_timeout=2,
        )
        bot = TelegramBot(sup, bot_config(stub), report=reports.append)
        for route in bot.route_configs():
            sup.add_route(route, bot.sink)
        sup.add_service(bot.run)
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                await nursery.start(sup.run)
                await until(lambda: bool(sup.programs["loop"].pending_questions()))
                await until(lambda: bool(texts("Approval needed")))
                await keys.send_all(b"n\n")
                await until(lambda: bool(texts("Denied, but it went on")))
                await until(lambda: texts("Approval needed")[0]["reply_markup"] is None)
                await until(lambda: "It went on anyway" in texts("Approval needed")[0]["text"])
                nursery.cancel_scope.cancel()
        (card,) = texts("Approval needed")
        (loud,) = texts("Denied, but it went on")
    assert "❌ <b>deny</b> by stdin at " in card["text"]
    assert card["text"].endswith("🚨 <b>It went on anyway</b> (it sent progress_update)")
    assert "DEMO-005" in loud["text"]
    assert "denied by stdin" in loud["text"]
    assert any("DEMO-005 goes on although its approval was denied by stdin" in r for r in reports)


async def test_a_second_poller_on_the_token_is_named_with_what_to_do(tmp_path: Path) -> None:
    """Telegram ends a long poll with 409 when another program polls the same
    token: the bot says so, points to ``supervise hub``, and keeps polling."""
    with telegram_stub() as stub:
        async with running(stub, asker("approval", tmp_path / "answer")) as run:
            await run.calls("getUpdates", 1)

            def conflicted() -> bool:
                return any("409 Conflict" in report for report in run.reports)

            # Another program's poll on the same token ends the bot's long poll
            # if it is held at that moment (not between two of the bot's polls).
            def held() -> bool:
                return any(call["status"] is None for call in stub.calls("getUpdates"))

            with trio.fail_after(20):
                while not conflicted():
                    await until(held)
                    rival = await trio.to_thread.run_sync(
                        lambda: stub.call("getUpdates", timeout=0)
                    )
                    assert rival.status_code == 200
                    await until(lambda: conflicted() or not held(), within=5)
            (report,) = [r for r in run.reports if "409" in r]
            assert "another program polls this bot token" in report
            assert "supervise hub" in report
            assert stub.token not in report
            polls = len(run.stub.calls("getUpdates"))
            await run.calls("getUpdates", polls + 1)  # it polls on


async def test_a_tap_answers_only_the_version_of_the_question_its_card_shows(
    tmp_path: Path,
) -> None:
    """A button's data names the question and fingerprints what its card asks:
    data with another fingerprint (an older card, or made up) answers nothing
    and leaves the real card alone; the card's own button still works."""
    out = tmp_path / "answer"
    with telegram_stub() as stub:
        async with running(stub, asker("question", out)) as run:
            (sent,) = await run.calls("sendMessage", 1)
            (_, _), (_, us) = buttons(sent)
            kind, index, digest, message_id = us.split(":", 3)
            assert (kind, index) == ("q", "1")
            assert [q.message_id for q in run.sup.programs["asker"].pending_questions()] == [
                message_id
            ]
            forged = f"q:1:{'A' * len(digest)}:{message_id}"
            stub.inject(
                [
                    callback_update(
                        forged, message_id=1, chat_id=CHAT, user_id=ALICE, username="alice"
                    )
                ]
            )
            (told,) = await run.calls("answerCallbackQuery", 1)
            assert told["params"]["text"] == "This request is no longer open."
            await trio.testing.wait_all_tasks_blocked()
            assert not out.exists()
            assert stub.messages()[0]["reply_markup"] is not None  # the card still asks
            assert not run.stub.calls("editMessageText")

            stub.inject(
                [
                    callback_update(
                        us,
                        message_id=1,
                        chat_id=CHAT,
                        user_id=ALICE,
                        username="alice",
                        query_id="u",
                    )
                ]
            )
            await until(lambda: out.exists() and out.read_text() == "us\n")
