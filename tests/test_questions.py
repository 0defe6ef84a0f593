"""Questions and approvals: the vocabulary decides what is written, the first answer wins."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import FIXTURES
from hypothesis import given
from hypothesis import strategies as st

from supervisor._core.errors import (
    AlreadyAnsweredError,
    AnswerError,
    ConfigError,
    InvalidResponseError,
    QuestionExpiredError,
    SupervisorError,
    UnknownQuestionError,
)
from supervisor._core.events import Event, QuestionAnswered, QuestionTimeout
from supervisor._core.messages import (
    ApprovalRequest,
    Question,
    parse_message,
    validate_payload,
    validate_payload_verbatim,
)
from supervisor._core.questions import (
    AnswerVocabulary,
    QuestionBook,
    answer_margin,
    question_digest,
)
from supervisor.lowlevel import EventStamper, Rejected


def approval(message_id: str = "a-1", **data: Any) -> ApprovalRequest:
    fields = {"requestId": "r1", "operation": "Destroy stale preview environments", **data}
    message = parse_message(
        {"type": "ipc", "event": "approval_request", "data": fields, "messageId": message_id}
    )
    assert isinstance(message, ApprovalRequest)
    return message


def question(message_id: str = "q-1", options: tuple[str, ...] = (), **data: Any) -> Question:
    fields = {"question": "Which?", "options": [{"id": i, "label": i} for i in options], **data}
    message = parse_message(
        {"type": "ipc", "event": "question", "data": fields, "messageId": message_id}
    )
    assert isinstance(message, Question)
    return message


def book(**vocabulary: Any) -> QuestionBook:
    return QuestionBook(AnswerVocabulary(**vocabulary))


@pytest.mark.parametrize(
    ("response", "written"),
    [("approve", "y"), ("deny", "n"), ("APPROVE", "y"), (" Deny ", "n"), ("y", "y"), ("N", "n")],
)
def test_approval_words_map_to_y_and_n(response: str, written: str) -> None:
    """approve/deny and the texts themselves, in any case, map to y/n by default."""
    questions = book()
    questions.ask("loopwork", approval(), 0.0)
    text, event = questions.answer("a-1", response, "ctl", 2.5)
    assert text == written
    assert isinstance(event, QuestionAnswered)
    assert event.event == "question_answered"
    assert event.data.messageId == "a-1"
    assert event.data.response == response
    assert event.data.written == written
    assert event.data.by == "ctl"
    assert event.data.latency == 2.5
    assert event.data.decision == ("approve" if written == "y" else "deny")
    assert len(questions) == 0


def test_configured_texts_are_written() -> None:
    """A configured vocabulary writes its own texts for approve and deny."""
    questions = book(approve="yes", deny="no")
    questions.ask("p", approval("a-1"), 0.0)
    questions.ask("p", approval("a-2"), 0.0)
    assert questions.answer("a-1", "approve", "ctl", 1.0)[0] == "yes"
    assert questions.answer("a-2", "No", "ctl", 1.0)[0] == "no"


@given(st.sampled_from(["deny", "DENY", "Deny", " deny\t", "n"]))
def test_deny_is_never_written_as_the_word(response: str) -> None:
    """Denying writes what the child reads as no, never "deny" (which loopwork approves)."""
    questions = book()
    questions.ask("loopwork", approval(), 0.0)
    text, event = questions.answer("a-1", response, "telegram:@alice", 1.0)
    assert text == "n"
    assert event.data.written == "n"
    assert event.data.decision == "deny"


@pytest.mark.parametrize("response", ["yes", "no", "ok", "", "approved", "y\nn"])
def test_approval_refuses_other_words(response: str) -> None:
    """Only approve, deny and the two texts answer an approval; the error lists them."""
    questions = book()
    questions.ask("loopwork", approval(), 0.0)
    with pytest.raises(InvalidResponseError) as caught:
        questions.answer("a-1", response, "ctl", 1.0)
    assert caught.value.allowed == ("approve", "deny", "y", "n")
    assert str(caught.value).endswith("use one of: approve, deny, y, n")
    assert "\n" not in str(caught.value)
    assert len(questions) == 1  # still pending: a good answer may follow


def test_option_ids_are_validated() -> None:
    """A question with options takes one of its ids (any case) and writes the id itself."""
    questions = book()
    questions.ask("p", question("q-1", ("iso", "US")), 0.0)
    with pytest.raises(InvalidResponseError) as caught:
        questions.answer("q-1", "european", "ctl", 1.0)
    assert str(caught.value) == 'question q-1: "european" is not an answer; use one of: iso, US'
    assert caught.value.allowed == ("iso", "US")
    assert isinstance(caught.value, ValueError)
    assert questions.answer("q-1", "us", "ctl", 1.0)[0] == "US"


def test_ambiguous_case_needs_the_exact_id() -> None:
    """When ids differ only by case, only an exact id is accepted."""
    questions = book()
    questions.ask("p", question("q-1", ("ab", "AB")), 0.0)
    with pytest.raises(InvalidResponseError):
        questions.answer("q-1", "Ab", "ctl", 1.0)
    assert questions.answer("q-1", " AB ", "ctl", 1.0)[0] == "AB"


def test_free_text_is_written_as_is_on_one_line() -> None:
    """A question without options takes any single line, unchanged."""
    questions = book()
    questions.ask("p", question("q-1"), 0.0)
    questions.ask("p", question("q-2"), 0.0)
    with pytest.raises(InvalidResponseError, match="single line"):
        questions.answer("q-1", "two\nlines", "ctl", 1.0)
    assert questions.answer("q-1", "  YYYY-MM-DD ", "ctl", 1.0)[0] == "  YYYY-MM-DD "
    assert questions.answer("q-2", "", "ctl", 1.0)[0] == ""


def test_first_answer_wins() -> None:
    """A second answer is refused with the first answerer and response."""
    questions = book()
    message = approval("1d605c40-aaaa-bbbb-cccc-dddddddddddd")
    questions.ask("loopwork", message, 0.0)
    questions.answer(message.messageId, "approve", "ctl", 1.0)
    with pytest.raises(AlreadyAnsweredError) as caught:
        questions.answer(message.messageId, "deny", "telegram:@alice", 1.1)
    error = caught.value
    assert str(error) == (
        'question 1d605c40-aaaa-bbbb-cccc-dddddddddddd: already answered by ctl ("approve")'
    )
    assert error.by == "ctl"
    assert error.response == "approve"
    assert error.message_id == message.messageId
    assert isinstance(error, AnswerError)
    assert isinstance(error, SupervisorError)


def test_raw_answers_bypass_mapping() -> None:
    """raw=True writes the response exactly, even for approvals and option lists."""
    questions = book()
    questions.ask("p", approval("a-1"), 0.0)
    questions.ask("p", question("q-1", ("a", "b")), 0.0)
    text, event = questions.answer("a-1", "deny", "ctl", 1.0, raw=True)
    assert text == "deny"
    assert event.data.decision is None
    assert questions.answer("q-1", "zzz", "ctl", 1.0, raw=True)[0] == "zzz"


def test_unknown_question() -> None:
    """An id never asked is reported as unknown."""
    with pytest.raises(UnknownQuestionError, match=r"^question nope: no such question$"):
        book().answer("nope", "approve", "ctl", 0.0)


def test_approval_timeout_defaults_to_deny() -> None:
    """An unanswered approval expires with "deny", written as "n"."""
    questions = book()
    questions.ask("loopwork", approval(), 0.0)
    assert questions.next_deadline() == 300.0
    assert questions.expire(299.0) == []
    ((pending, text, event),) = questions.expire(300.0)
    assert pending.message_id == "a-1"
    assert pending.kind == "approval_request"
    assert text == "n"
    assert isinstance(event, QuestionTimeout)
    assert event.event == "question_timeout"
    assert event.data.kind == "approval_request"
    assert event.data.default == "deny"
    assert event.data.waited == 300.0
    assert questions.next_deadline() is None
    with pytest.raises(QuestionExpiredError, match="expired"):
        questions.answer("a-1", "approve", "ctl", 301.0)


def test_approval_timeout_can_approve() -> None:
    """A configured approve-on-timeout writes the approve text."""
    questions = book(approval_timeout_default="approve", approve="Y")
    questions.ask("loopwork", approval(), 0.0)
    ((_, text, event),) = questions.expire(1000.0)
    assert text == "Y"
    assert event.data.default == "approve"


def test_question_timeout_writes_nothing_by_default() -> None:
    """An unanswered question expires with no answer unless an option is configured."""
    questions = book()
    questions.ask("p", question("q-1", ("a", "b")), 0.0)
    ((_, text, event),) = questions.expire(300.0)
    assert text is None
    assert event.data.default is None
    assert event.data.kind == "question"


def test_question_timeout_uses_configured_option() -> None:
    """The configured option is written, but only to a question that offers it."""
    questions = book(question_timeout_default="b")
    questions.ask("p", question("q-1", ("a", "b")), 0.0)
    questions.ask("p", question("q-2", ("x", "y")), 1.0)
    questions.ask("p", question("q-3"), 2.0)
    expired = questions.expire(1000.0)
    assert [(p.message_id, text, e.data.default) for p, text, e in expired] == [
        ("q-1", "b", "b"),
        ("q-2", None, None),
        ("q-3", "b", "b"),
    ]


def test_frame_timeout_beats_default() -> None:
    """The frame's own timeout sets the deadline, less a margin that lands
    before the program's own timer; default_timeout applies otherwise."""
    questions = book(default_timeout=60.0)
    questions.ask("p", approval("a-1", timeout=20), 100.0)
    questions.ask("p", question("q-1"), 100.0)
    questions.ask("p", question("q-2", timeout=0), 100.0)
    assert [p.deadline for p in questions.pending()] == [118.0, 160.0, 160.0]
    assert questions.next_deadline() == 118.0
    assert questions.expire(117.9) == []
    assert [p.message_id for p, _, _ in questions.expire(118.0)] == ["a-1"]
    assert questions.next_deadline() == 160.0


@given(st.floats(min_value=1e-6, max_value=1e9, allow_nan=False))
def test_the_default_answer_lands_before_the_programs_own_timeout(timeout: float) -> None:
    """Whatever timeout a frame names, supervise acts strictly before it ends,
    and waits at least half of it."""
    margin = answer_margin(timeout)
    assert 0 < margin <= timeout / 2
    assert margin <= 5.0
    questions = book()
    questions.ask("p", approval("a", timeout=timeout), 0.0)
    (pending,) = questions.pending()
    assert pending.deadline is not None
    assert timeout / 2 <= pending.deadline < timeout


def test_no_default_timeout_waits_forever() -> None:
    """default_timeout=None leaves questions without a frame timeout pending forever."""
    questions = book(default_timeout=None)
    questions.ask("p", question("q-1"), 0.0)
    assert questions.next_deadline() is None
    assert questions.expire(1e12) == []
    assert questions.answer("q-1", "ok", "sdk", 1e12)[0] == "ok"


def test_answer_past_deadline_is_expired_before_expire_runs() -> None:
    """Once the deadline has come, answers are refused and expire() still applies the default."""
    questions = book()
    questions.ask("p", approval(timeout=10), 0.0)
    with pytest.raises(QuestionExpiredError):
        questions.answer("a-1", "approve", "ctl", 10.0)
    ((_, text, _),) = questions.expire(10.0)
    assert text == "n"


def test_history_is_bounded() -> None:
    """Only the last 1000 answered questions are remembered; older ids become unknown."""
    questions = book()
    for i in range(1500):
        questions.ask("p", question(f"q-{i}"), float(i))
        questions.answer(f"q-{i}", "x", "ctl", float(i))
    with pytest.raises(AlreadyAnsweredError):
        questions.answer("q-500", "x", "ctl", 2000.0)
    with pytest.raises(UnknownQuestionError):
        questions.answer("q-499", "x", "ctl", 2000.0)
    assert len(questions._history) == 1000


@given(st.integers(min_value=0, max_value=30), st.integers(min_value=0, max_value=60))
def test_history_bound_holds_for_any_size(size: int, count: int) -> None:
    """With history=N, the last N resolved questions are remembered and no more."""
    questions = QuestionBook(AnswerVocabulary(), history=size)
    for i in range(count):
        questions.ask("p", question(f"q-{i}"), 0.0)
        if i % 2:
            questions.answer(f"q-{i}", "x", "ctl", 0.0)
    questions.forget_program("p")
    # Answered ones were resolved as they came, the rest when the program exited.
    resolved = [i for i in range(count) if i % 2] + [i for i in range(count) if not i % 2]
    remembered = set(resolved[max(0, len(resolved) - size) :]) if size else set()
    assert len(questions._history) == len(remembered)
    for i in range(count):
        expected: type[AnswerError] = UnknownQuestionError
        if i in remembered:
            expected = AlreadyAnsweredError if i % 2 else QuestionExpiredError
        with pytest.raises(expected):
            questions.answer(f"q-{i}", "x", "ctl", 0.0)


def test_forget_program() -> None:
    """A program's exit removes its questions, and later answers are told it exited."""
    questions = book()
    questions.ask("loopwork", approval("a-1"), 0.0)
    questions.ask("other", question("q-1"), 1.0)
    questions.ask("loopwork", question("q-2"), 2.0)
    gone = questions.forget_program("loopwork")
    assert [p.message_id for p in gone] == ["a-1", "q-2"]
    assert [p.message_id for p in questions.pending()] == ["q-1"]
    assert questions.next_deadline() == 301.0
    with pytest.raises(QuestionExpiredError) as caught:
        questions.answer("a-1", "approve", "ctl", 3.0)
    assert str(caught.value) == "question a-1: expired (loopwork exited)"
    assert caught.value.reason == "loopwork exited"
    assert questions.forget_program("loopwork") == []


def test_pending_is_oldest_first() -> None:
    """pending() lists questions in the order they were asked."""
    questions = book()
    messages: list[Question | ApprovalRequest] = [question("q-1"), approval("a-1"), question("q-2")]
    for i, message in enumerate(messages):
        entry = questions.ask("p", message, float(i))
        assert entry is not None
        assert entry.program == "p"
        assert entry.asked_at == float(i)
    assert [p.message_id for p in questions.pending()] == ["q-1", "a-1", "q-2"]
    assert [p.kind for p in questions.pending()] == ["question", "approval_request", "question"]


@pytest.mark.parametrize(
    "vocabulary",
    [
        {"approve": "n"},
        {"approve": "deny"},
        {"deny": "approve"},
        {"approve": "Y", "deny": "y"},
        {"approve": ""},
        {"deny": "n\n"},
        {"default_timeout": 0},
        {"approval_timeout_default": "maybe"},
    ],
)
def test_ambiguous_vocabulary_is_refused(vocabulary: dict[str, Any]) -> None:
    """A vocabulary that could confuse approval and denial is a ConfigError."""
    with pytest.raises(ConfigError):
        AnswerVocabulary(**vocabulary)


def test_real_loopwork_approval() -> None:
    """Loopwork's captured safety approval (timeout 20 s) is denied with "n" when
    unanswered, 2 s before loopwork's own timer would run the task anyway."""
    raw = (FIXTURES / "pty.raw").read_bytes()
    start = raw.index(b'__IPC_START__{"type":"ipc","version":"1.0","event":"approval_request"')
    payload = raw[start + len(b"__IPC_START__") : raw.index(b"__IPC_END__", start)]
    message = validate_payload(payload)
    assert isinstance(message, ApprovalRequest)
    questions = book()
    entry = questions.ask("loopwork", message, 5.0)
    assert entry is not None
    assert entry.deadline == 23.0
    assert entry.what == "Destroy stale preview environments: Contains critical keywords: destroy"
    ((_, text, event),) = questions.expire(23.0)
    assert text == "n"
    assert event.data.messageId == message.messageId


def test_a_pending_question_sent_again_changed_is_withdrawn_and_closed() -> None:
    """Another description under a pending messageId: neither version is answerable."""
    questions = book()
    questions.ask("loopwork", approval(description="clear the cache"), 0.0)
    assert questions.withdraw_changed(approval(description="clear the cache"), 1.0) is None
    changed = approval(description="wipe the database")
    withdrawn = questions.withdraw_changed(changed, 2.0)
    assert withdrawn is not None
    assert withdrawn.data.messageId == "a-1"
    assert withdrawn.data.kind == "approval_request"
    assert withdrawn.data.waited == 2.0
    assert questions.ask("loopwork", changed, 2.0) is None
    assert questions.pending() == []
    with pytest.raises(QuestionExpiredError, match="different content"):
        questions.answer("a-1", "approve", "ctl", 3.0)


def test_a_question_sent_again_as_another_kind_is_withdrawn() -> None:
    questions = book()
    questions.ask("loopwork", question("same", options=("a", "b")), 0.0)
    assert questions.withdraw_changed(approval("same"), 1.0) is not None
    assert questions.withdraw_changed(question("other"), 1.0) is None  # nothing pending there


_VARIANTS = st.sampled_from(
    [
        ("approval", "clear the cache"),
        ("approval", "wipe the database"),
        ("question", "Which?"),
        ("question", "Deploy where?"),
    ]
)


@given(st.lists(st.tuples(st.sampled_from(["m1", "m2"]), _VARIANTS), max_size=12))
def test_what_is_pending_is_always_what_was_first_shown(
    frames: list[tuple[str, tuple[str, str]]],
) -> None:
    """Whatever a child sends under whatever ids, a pending question holds the
    content first sent under its id, so an answer applies to what was shown."""
    questions = book()
    first: dict[str, Any] = {}
    for index, (message_id, (kind, text)) in enumerate(frames):
        message = (
            approval(message_id, description=text)
            if kind == "approval"
            else question(message_id, question=text)
        )
        first.setdefault(message_id, message)
        questions.withdraw_changed(message, float(index))
        questions.ask("loopwork", message, float(index))
    for pending in questions.pending():
        shown = first[pending.message_id]
        assert type(pending.message) is type(shown)
        assert pending.message.data == shown.data


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def _asking_payloads(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        data: dict[str, Any] = {
            "requestId": draw(st.text(max_size=8)),
            "operation": draw(st.text(max_size=20)),
            "description": draw(st.none() | st.text(max_size=20)),
        }
        event = "approval_request"
    else:
        ids = draw(st.lists(st.text(min_size=1, max_size=6), max_size=3, unique=True))
        data = {"question": draw(st.text(max_size=20)), "options": [{"id": i} for i in ids]}
        event = "question"
    data.update(draw(st.dictionaries(st.sampled_from(["extra", "timeout", "ü"]), _json_values)))
    frame = {"type": "ipc", "event": event, "data": data, "messageId": "m-1"}
    return json.dumps(frame, ensure_ascii=draw(st.booleans())).encode()


@given(_asking_payloads())
def test_a_hub_reading_the_event_line_computes_the_instances_digest(payload: bytes) -> None:
    """The fingerprint a card carries is computed by the hub from the event's
    line; the instance computes it from the frame it validated. They agree,
    whether the line carries the child's bytes or re-serialises the model."""
    result = validate_payload_verbatim(payload)
    if isinstance(result, Rejected):
        return
    message, verbatim = result
    if not isinstance(message, Question | ApprovalRequest):
        return
    for carried in (verbatim, None):
        line = EventStamper("p").stamp(message, 1, "child", "line_start", carried).to_json()
        again = Event.from_json(line).message
        assert isinstance(again, Question | ApprovalRequest)
        assert question_digest(again) == question_digest(message)
