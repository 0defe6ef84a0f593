"""The idempotency rules, for any order of events: one answer per question, one delivery per event.

- supervise's question book: whatever answers arrive, from however many
  channels and hubs, repeated or not, and whatever the child asks again, a
  ``messageId`` is answered at most once, by the first answer; every later
  one is refused naming it.
- the hub on the bus: whatever entries a durable route sends again (a
  batch retried whole), each event of each run is delivered once, in order.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.redis_hub import BusHub
from supervisor._core.errors import (
    AlreadyAnsweredError,
    InvalidResponseError,
    QuestionExpiredError,
    UnknownQuestionError,
)
from supervisor._core.events import Event, EventStamper
from supervisor._core.messages import ApprovalRequest, Question, parse_message
from supervisor._core.questions import AnswerVocabulary, QuestionBook

IDS = ["m-1", "m-2", "m-3"]


def prompt(message_id: str, approval: bool, timeout: float) -> ApprovalRequest | Question:
    if approval:
        data: dict[str, Any] = {"requestId": "r", "operation": "deploy", "timeout": timeout}
        event = "approval_request"
    else:
        data = {"question": "Which?", "options": [{"id": "a", "label": "A"}], "timeout": timeout}
        event = "question"
    message = parse_message({"type": "ipc", "event": event, "data": data, "messageId": message_id})
    assert isinstance(message, ApprovalRequest | Question)
    return message


ask = st.tuples(
    st.just("ask"), st.sampled_from(IDS), st.booleans(), st.sampled_from([5.0, 60.0, 0.0])
)
answer = st.tuples(
    st.just("answer"),
    st.sampled_from(IDS),
    st.sampled_from(["approve", "deny", "a", "nonsense"]),
    st.sampled_from(["telegram:@alice", "hub-b", "ctl", "terminal"]),
)
later = st.tuples(st.just("later"), st.floats(min_value=0.0, max_value=30.0))
exited = st.tuples(st.just("exited"))


@settings(max_examples=300)
@given(st.lists(st.one_of(ask, answer, answer, later, exited), max_size=40))
def test_a_question_is_answered_once_by_the_first_answer(steps: list[tuple[Any, ...]]) -> None:
    book = QuestionBook(AnswerVocabulary())
    now = 0.0
    written: dict[str, list[tuple[str, str]]] = {}  # messageId -> [(by, response)] written
    closed: set[str] = set()  # answered or expired: never answerable again
    for step in steps:
        if step[0] == "ask":
            _, message_id, approval, timeout = step
            entry = book.ask("loop", prompt(message_id, approval, timeout), now)
            assert (entry is None) == (message_id in closed)
        elif step[0] == "answer":
            _, message_id, response, by = step
            refused_for: tuple[str, str] | None = None
            try:
                _, event = book.answer(message_id, response, by, now)
            except AlreadyAnsweredError as exc:
                refused_for = (exc.by, exc.response)
            except (QuestionExpiredError, UnknownQuestionError, InvalidResponseError):
                continue
            if refused_for is not None:
                # Refused, naming the first answer, which is the one written.
                assert written[message_id][0] == refused_for
            else:
                assert message_id not in closed
                assert event.data.messageId == message_id
                written.setdefault(message_id, []).append((by, response))
                closed.add(message_id)
        elif step[0] == "later":
            now += step[1]
            for pending, _, _ in book.expire(now):
                closed.add(pending.message_id)
        else:
            for pending in book.forget_program("loop"):
                closed.add(pending.message_id)
        assert all(len(answers) == 1 for answers in written.values()), written
        assert not closed & {p.message_id for p in book.pending()}


def stamped(seq: int, program: str) -> Event:
    message = parse_message({"type": "ipc", "event": "log", "data": {"message": str(seq)}})
    event = EventStamper(program).stamp(message, 1_800_000_000_000 + seq)
    return dataclasses.replace(event, seq=seq)


@st.composite
def resent(draw: st.DrawFn) -> tuple[list[tuple[str, int]], list[tuple[str, str, int]]]:
    """Runs of an instance (seqs 1..n each), the entries as a durable route sends them.

    The route sends batches in order; a batch that failed part way is sent
    again whole, so an entry can come a second time, after the first.
    """
    runs = [(f"run-{i}", draw(st.integers(1, 25))) for i in range(draw(st.integers(1, 3)))]
    entries: list[tuple[str, str, int]] = []
    for run, count in runs:
        seq = 1
        while seq <= count:
            size = draw(st.integers(1, 6))
            batch = list(range(seq, min(count, seq + size - 1) + 1))
            for _ in range(draw(st.sampled_from([1, 1, 1, 2, 3]))):  # sent 1-3 times
                sent = draw(st.integers(1, len(batch)))  # part of the batch got in
                entries += [("h1", run, s) for s in batch[:sent]]
            entries += [("h1", run, s) for s in batch]
            seq = batch[-1] + 1
    return runs, entries


@settings(max_examples=200)
@given(resent())
def test_the_hub_delivers_each_event_of_each_run_once_in_order(
    case: tuple[list[tuple[str, int]], list[tuple[str, str, int]]],
) -> None:
    runs, entries = case
    program = "loop"
    delivered: list[tuple[str, int]] = []
    current = ""

    async def deliver(event: Event) -> bool:
        assert event.program == f"h1/api/{program}"
        delivered.append((current, event.seq))
        return True

    async def feed() -> None:
        nonlocal current
        hub = BusHub("redis://127.0.0.1:1/0", deliver)
        for host, run, seq in entries:
            current = run
            await hub.handle_event(host, "api", run, stamped(seq, program))

    trio.run(feed)
    assert delivered == [(run, seq) for run, count in runs for seq in range(1, count + 1)]
