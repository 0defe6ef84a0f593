"""Which frames may act, and the person at the terminal as a channel.

Each test runs a hostile or loopwork-like child (``tests/children/hostile.py``)
under a real pty (and pipes where it matters), and proves what supervise
wrote to the child by the child's own report: it prints ``GOT:<line>`` for
the first line it reads, and the test's marker line shows up there only if
supervise wrote nothing before it.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pexpect
import pytest
import trio
import trio.testing
from conftest import FIXTURES, SUPERVISE, child, clean_env

from supervisor import Event, ProgramConfig, QuestionExpiredError, Supervisor, UnknownQuestionError
from supervisor.testing import CapturingSink, wait_until, wait_until_sync


class Collect(trio.abc.SendStream):
    """A program's output, kept in memory."""

    def __init__(self) -> None:
        self.data = bytearray()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        self.data += data

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


@dataclass
class Run:
    sup: Supervisor
    output: Collect
    sink: CapturingSink
    keys: trio.testing.MemorySendStream | trio.abc.SendStream

    def names(self) -> list[str]:
        return [event.event for event in self.sink.events]

    def first(self, name: str) -> Event:
        return next(event for event in self.sink.events if event.event == name)

    async def until(self, predicate: Callable[[], bool]) -> None:
        await wait_until(predicate, timeout=30)

    async def seen(self, name: str) -> Event:
        await self.until(lambda: name in self.names())
        return self.first(name)

    async def output_has(self, text: bytes) -> None:
        await self.until(lambda: text in self.output.data)


@asynccontextmanager
async def supervised(scenario: str, *, pty: bool = True, **settings: object) -> AsyncIterator[Run]:
    """The child under an SDK Supervisor whose stdin the test types into."""
    send, receive = trio.testing.memory_stream_one_way_pair()
    output = Collect()
    config = ProgramConfig.model_validate(
        {"command": child("hostile", scenario), "name": "loop", "pty": pty, **settings}
    )
    sup = Supervisor([config], outputs={"loop": output}, input=receive, report=lambda _: None)
    sink = CapturingSink()
    sup.route("all", sink)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sup.run)
            yield Run(sup, output, sink, send)
            await send.aclose()


async def type_line(run: Run, text: str) -> None:
    await run.keys.send_all(text.encode() + b"\n")


# -- 3. which frames may act ----------------------------------------------------------


@pytest.mark.parametrize("pty", [True, False], ids=["pty", "pipes"])
async def test_a_relayed_approval_is_shown_and_not_answerable(pty: bool) -> None:
    """Repro: an agent's approval_request inside a line the runner relays. It
    stays on screen, becomes frame_untrusted, is counted, is not pending, and
    nothing reaches the real ``[Y/n]`` prompt before the person types."""
    async with supervised("relayed", pty=pty) as run:
        untrusted = await run.seen("frame_untrusted")
        await run.output_has(b"git push --force? [Y/n] ")
        program = run.sup.programs["loop"]
        assert program.pending_questions() == []
        with pytest.raises(UnknownQuestionError):
            await run.sup.answer("m-relayed", "approve")
        await type_line(run, "MARK")
        await run.output_has(b"GOT:")
    assert b"GOT:MARK" in run.output.data
    assert b'note __IPC_START__{"type": "ipc", "event": "approval_request"' in run.output.data
    assert untrusted.data.event == "approval_request"
    assert untrusted.data.position == "mid_line"
    assert untrusted.data.messageId == "m-relayed"
    assert "other text on its line" in untrusted.data.reason
    assert "approval_request" not in run.names()
    assert run.sup.results == {"loop": 0}


async def test_a_question_sent_again_with_other_content_cannot_be_answered() -> None:
    """Repro: an approval the person was shown, sent again under its messageId
    with another description. Answering the id would approve what they never
    saw, so both versions are withdrawn: the answer is refused, nothing
    reaches the prompt, and every channel hears of the withdrawal."""
    async with supervised("switched") as run:
        withdrawn = await run.seen("question_withdrawn")
        await run.output_has(b"[Y/n] ")
        assert run.sup.programs["loop"].pending_questions() == []
        with pytest.raises(QuestionExpiredError, match="different content"):
            await run.sup.answer("m-switch", "approve")
        await type_line(run, "MARK")
        await run.output_has(b"GOT:")
    assert b"GOT:MARK" in run.output.data
    assert withdrawn.data.messageId == "m-switch"
    assert withdrawn.data.kind == "approval_request"
    assert run.names().count("approval_request") == 2  # both stay on record
    assert run.names().index("question_withdrawn") > run.names().index("approval_request")


async def test_actionable_frames_never_refuses_even_line_start_frames() -> None:
    async with supervised("moved_on", actionable_frames="never") as run:
        untrusted = await run.seen("frame_untrusted")
        assert untrusted.data.position == "line_start"
        await run.output_has(b"[y/N] ")
        await type_line(run, "MARK")
    assert b"GOT:MARK" in run.output.data
    # A refused frame alone on its line keeps its line end on screen.
    assert b'"messageId": "m-moved"}__IPC_END__\nContinue' in run.output.data


def test_every_real_loopwork_frame_is_accepted_where_it_stood(tmp_path: Path) -> None:
    """The captured loopwork run through supervise: its 23 frames are events,
    the approval (at a line start) is answerable, the one frame after an AI
    CLI line without a newline is accepted and marked mid_line, and the
    agent's relayed ``log`` frame too."""
    if not (FIXTURES / "pty.raw").is_file():
        pytest.skip("loopwork captures not found")
    events_file = tmp_path / "events.jsonl"
    done = subprocess.run(
        [
            *SUPERVISE,
            "--no-journal",
            "--events",
            str(events_file),
            "--",
            "cat",
            str(FIXTURES / "pty.raw"),
        ],
        capture_output=True,
        timeout=60,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    frames = [e for e in events if e["source"] == "child"]
    assert len(frames) == 24  # loopwork's 23 and the agent's relayed log frame
    mid_line = [
        (e["event"], e["data"].get("stepId")) for e in frames if e["position"] == "mid_line"
    ]
    assert sorted(mid_line) == [("log", None), ("progress_update", "cli_spawn_start")]
    assert [e["event"] for e in events if e["event"] == "frame_untrusted"] == []
    assert "approval_request" in [e["event"] for e in frames]


async def test_an_answer_never_goes_to_a_prompt_the_program_left() -> None:
    """The program asks, waits at ``[Y/n]``, then moves on to ``[y/N]`` by
    itself: the question is withdrawn, a late answer is refused, nothing is
    written to the new prompt."""
    async with supervised("moved_on") as run:
        withdrawn = await run.seen("question_withdrawn")
        await run.output_has(b"Delete the backups too? [y/N] ")
        with pytest.raises(QuestionExpiredError, match="wrote past its prompt"):
            await run.sup.answer("m-moved", "approve")
        await type_line(run, "MARK")
        await run.output_has(b"GOT:")
    assert b"GOT:MARK" in run.output.data
    assert withdrawn.data.messageId == "m-moved"
    assert "question_answered" not in run.names()


# -- 4. the person at the terminal ----------------------------------------------------


async def test_an_answer_typed_into_the_program_settles_the_question() -> None:
    """Keystrokes that answer the prompt are an answer by ``stdin``: no timeout
    later, and no stray default written into the program."""
    async with supervised("terminal") as run:
        await run.output_has(b"[Y/n] ")
        await run.until(lambda: bool(run.sup.programs["loop"].pending_questions()))
        await type_line(run, "y")
        answered = await run.seen("question_answered")
        await run.output_has(b"CLEAN")
    assert (answered.data.by, answered.data.response, answered.data.written) == ("stdin", "y", "")
    assert answered.data.decision == "approve"
    assert "question_timeout" not in run.names()
    assert b"GOT:y" in run.output.data


def test_the_person_at_the_terminal_answers_and_is_named(tmp_path: Path) -> None:
    """Under a real terminal: typing ``n`` Enter at the prompt settles the
    approval as answered by ``terminal`` (a deny), and supervise types nothing
    more, even after the frame's timeout."""
    events_file = tmp_path / "events.jsonl"
    argv = [
        *SUPERVISE,
        "--no-journal",
        "--events",
        str(events_file),
        "--",
        *child("hostile", "terminal"),
    ]
    session = pexpect.spawn(argv[0], argv[1:], env=clean_env(), timeout=20)
    try:
        session.expect_exact("[Y/n] ")
        wait_until_sync(lambda: b'"approval_request"' in _read(events_file), timeout=10)
        session.send("n\r")
        session.expect_exact("GOT:n")
        session.expect(["CLEAN", "STRAY:.*"])
        verdict = session.after
        session.expect(pexpect.EOF)
    finally:
        session.close(force=True)
    assert verdict == b"CLEAN"
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    (answered,) = [e for e in events if e["event"] == "question_answered"]
    assert answered["data"]["by"] == "terminal"
    assert answered["data"]["decision"] == "deny"
    assert not [e for e in events if e["event"] == "question_timeout"]


def _read(path: Path) -> bytes:
    return path.read_bytes() if path.exists() else b""


async def test_the_default_answer_lands_before_the_programs_own_timeout() -> None:
    """A 2 s approval nobody answers gets ``n`` 1 s early: before the program's
    timer gives up and runs the task."""
    async with supervised("timed") as run:
        timed_out = await run.seen("question_timeout")
        await run.until(
            lambda: re.search(rb"GOT:\w* after [\d.]+\r?\n", run.output.data) is not None
        )
    found = re.search(rb"GOT:(\w*) after ([\d.]+)", bytes(run.output.data))
    assert found is not None
    assert found.group(1) == b"n"
    assert 0.8 <= float(found.group(2)) < 1.8
    assert timed_out.data.default == "deny"


@pytest.mark.parametrize("action", ["report", "stop"])
async def test_a_denied_task_that_goes_on_is_reported(action: str) -> None:
    """loopwork runs a task whose approval was denied: ``approval_ignored``
    names the task and who denied it; with ``stop`` the program is stopped."""
    async with supervised("ignores_denial", on_approval_ignored=action) as run:
        await run.output_has(b"[Y/n] ")
        await run.until(lambda: bool(run.sup.programs["loop"].pending_questions()))
        (pending,) = run.sup.programs["loop"].pending_questions()
        assert pending.task_id == "DEMO-005"
        await run.sup.answer("m-denied", "deny")
        ignored = await run.seen("approval_ignored")
        if action == "report":
            await run.output_has(b"READY")
            run.sup.stop()
    assert b"GOT:n" in run.output.data
    assert (ignored.data.taskId, ignored.data.by, ignored.data.action) == (
        "DEMO-005",
        "sdk",
        action,
    )
    assert ignored.data.event == "progress_update"
    assert run.names().count("approval_ignored") == 1
    states = [e.data.to for e in run.sink.events if e.event == "process_state"]
    if action == "stop":
        # The test never stopped it, and the child would have slept 30 s more.
        assert states[-2:] == ["stopping", "stopped"]
        assert run.sup.results == {"loop": -15}
    else:
        assert b"READY" in run.output.data
        assert "stopping" in states  # by the test's stop()


def test_ctl_pending_says_what_who_and_how_long(tmp_path: Path) -> None:
    """``ctl pending`` names the operation, the program and its task, and the time left."""
    events_file = tmp_path / "events.jsonl"
    env = clean_env()
    proc = subprocess.Popen(
        [
            *SUPERVISE,
            "--instance",
            "pend",
            "--name",
            "loop",
            "--events",
            str(events_file),
            "--",
            *child("hostile", "ignores_denial"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        wait_until_sync(lambda: b'"approval_request"' in _read(events_file), timeout=20)
        shown = subprocess.run(
            [*SUPERVISE, "ctl", "--instance", "pend", "pending"],
            capture_output=True,
            timeout=20,
            env=env,
            check=False,
        )
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
    lines = shown.stdout.decode().splitlines()
    assert lines[:4] == [
        "m-denied",
        "  asked by:  loop, task DEMO-005",
        "  kind:      approval_request",
        "  operation: Destroy it",
    ]
    assert re.fullmatch(r"  time left: 2\ds \(waiting \ds\)", lines[-1])
