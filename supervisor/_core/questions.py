"""Pending questions and approvals: answered once, from any channel.

A child asks with a ``question`` frame (free text, or a choice among
options) or an ``approval_request``. A person may answer from the terminal
(``supervise ctl answer``), from Telegram, or through the SDK, and all of
them may try at once: the first answer wins, later ones are refused with
:class:`AlreadyAnsweredError` naming who answered first. What is written to
the child's stdin is the answer's text followed by ``"\\n"``.

Words are not written as typed. Loopwork's safety prompt reads
``Continue with this operation? [Y/n]`` and treats anything but ``n`` as
yes, so writing the word ``deny`` would *approve* the operation.
:class:`AnswerVocabulary` maps ``approve`` and ``deny`` to what the child
understands (``y`` and ``n`` by default), and answers that are neither are
refused rather than guessed at.

Questions that nobody answers in time expire: an approval gets the
configured default (deny unless told otherwise), a question gets the
configured option or no answer at all. Answers that arrive after that are
refused with :class:`QuestionExpiredError`.

Like the frame decoder this module is sans-IO: no trio, no clock. The caller
passes monotonic seconds (``now``) and writes the returned text itself.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Literal

from .errors import (
    AlreadyAnsweredError,
    AnswerError,
    ConfigError,
    InvalidResponseError,
    QuestionExpiredError,
    UnknownQuestionError,
)
from .events import (
    QuestionAnswered,
    QuestionAnsweredData,
    QuestionKind,
    QuestionTimeout,
    QuestionTimeoutData,
    QuestionWithdrawn,
    QuestionWithdrawnData,
)
from .messages import ApprovalRequest, Question, QuestionData

__all__ = [
    "DEFAULT_HISTORY",
    "AlreadyAnsweredError",
    "AnswerError",
    "AnswerVocabulary",
    "InvalidResponseError",
    "PendingQuestion",
    "QuestionBook",
    "QuestionExpiredError",
    "UnknownQuestionError",
    "answer_margin",
    "question_digest",
]

DEFAULT_HISTORY = 1000
"""How many answered or expired questions a :class:`QuestionBook` remembers."""


def question_digest(message: Question | ApprovalRequest) -> str:
    """A short fingerprint of what a question or approval asks (kind and data).

    A card that offers to answer ``messageId`` carries it, and whoever
    carries out a tap checks it against the question pending under that id
    now: a card for one version of a prompt can never answer another (a new
    run that asks under the same id, a child that changed the text). It is
    computed from the validated model, so the instance and a hub that
    re-read the event from its line agree.
    """
    canonical = json.dumps(
        [message.event, message.data.model_dump(mode="json")],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).digest()
    return base64.urlsafe_b64encode(digest[:9]).decode("ascii")


# -- errors ------------------------------------------------------------------


def _quote(text: str) -> str:
    # JSON quoting escapes newlines, so error messages stay on one line.
    return json.dumps(text, ensure_ascii=False)


# -- vocabulary --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AnswerVocabulary:
    """What is written for each answer, and what happens on timeout.

    Attributes:
        approve: text written for an approval (default ``y``).
        deny: text written for a denial (default ``n``). Loopwork treats any
            answer but ``n`` as yes, so this must be exactly what the child
            reads as no.
        approval_timeout_default: applied to an approval nobody answers.
        question_timeout_default: option id written for a question nobody
            answers, or None to write nothing and only report the timeout.
            It is applied only to questions without options or that offer
            this id, so it can never write a choice the question lacks.
        default_timeout: seconds to wait when the frame names no timeout;
            None waits forever.

    Raises:
        ConfigError: the four approval words (``approve``, ``deny`` and the
            two texts) would not tell approval and denial apart, a text is
            empty or spans lines, or ``default_timeout`` is not positive.
    """

    approve: str = "y"
    deny: str = "n"
    approval_timeout_default: Literal["approve", "deny"] = "deny"
    question_timeout_default: str | None = None
    default_timeout: float | None = 300.0

    def __post_init__(self) -> None:
        for name in ("approve", "deny"):
            text = getattr(self, name)
            if not text.strip() or "\n" in text or "\r" in text:
                raise ConfigError(name, f"must be a non-empty single line, got {_quote(text)}")
        approve, deny = self.approve.strip().lower(), self.deny.strip().lower()
        if approve in ("deny", deny) or deny == "approve":
            raise ConfigError(
                "approve/deny",
                f"{_quote(self.approve)} and {_quote(self.deny)} would be ambiguous",
            )
        if self.approval_timeout_default not in ("approve", "deny"):
            raise ConfigError(
                "approval_timeout_default",
                f'must be "approve" or "deny", got {_quote(str(self.approval_timeout_default))}',
            )
        if self.default_timeout is not None and not self.default_timeout > 0:
            raise ConfigError(
                "default_timeout", f"must be positive or None, got {self.default_timeout}"
            )

    def approval_words(self) -> tuple[str, ...]:
        """The words an approval accepts, as listed in error messages."""
        return tuple(dict.fromkeys(("approve", "deny", self.approve, self.deny)))

    def decide(self, response: str) -> Literal["approve", "deny"] | None:
        """Read an approval answer: ``approve``, ``deny`` or None if neither.

        Accepts ``approve``, ``deny`` and the two texts, ignoring case and
        surrounding whitespace. Nothing else: ``yes``, ``ok`` or ``no`` are
        refused unless configured as the texts.
        """
        word = response.strip().lower()
        if word in ("approve", self.approve.strip().lower()):
            return "approve"
        if word in ("deny", self.deny.strip().lower()):
            return "deny"
        return None

    def text_for(self, decision: Literal["approve", "deny"]) -> str:
        """The text written for a decision."""
        return self.approve if decision == "approve" else self.deny


# -- the book ----------------------------------------------------------------


def answer_margin(timeout: float) -> float:
    """How long before a frame's own ``timeout`` its default answer is applied.

    A program that announces a timeout runs its own timer: loopwork's safety
    prompt gives up after the ``timeout`` it sends and then runs the task.
    A default answer written after that would land in whatever the program
    does next, so supervise applies it earlier: a tenth of the timeout, at
    least 1 s and at most 5 s, and never more than half of it (20 s: 2 s
    early; 5 s: 1 s early; 1 s: 0.5 s early).
    """
    return min(max(0.1 * timeout, 1.0), 5.0, timeout / 2)


@dataclass(slots=True)
class PendingQuestion:
    """A question or approval waiting for an answer.

    Attributes:
        message_id: the frame's ``messageId``, which answers refer to.
        kind: ``question`` or ``approval_request``.
        message: the frame itself.
        asked_at: monotonic seconds when it was received.
        deadline: monotonic seconds when it expires, or None for never. For a
            frame that names its own timeout this is :func:`answer_margin`
            before that timeout ends.
        program: the name of the program that asked.
        task_id: the task it is about: the frame's ``taskId``, else the
            task the program was running when it asked, if known.
        mark: an opaque position in the program's output, given by the
            caller, that :meth:`QuestionBook.withdraw_before` compares.
    """

    message_id: str
    kind: QuestionKind
    message: Question | ApprovalRequest
    asked_at: float
    deadline: float | None
    program: str
    task_id: str | None = None
    mark: int = 0

    @property
    def what(self) -> str:
        """What is asked or to be approved, in one line for lists."""
        data = self.message.data
        if isinstance(data, QuestionData):
            return data.question
        parts = [p for p in (data.operation or data.action, data.description) if p]
        return ": ".join(dict.fromkeys(parts)) or "(no description)"


@dataclass(frozen=True, slots=True)
class _Answered:
    by: str
    response: str


@dataclass(frozen=True, slots=True)
class _Expired:
    reason: str


class QuestionBook:
    """The questions of every supervised program that await an answer.

    Args:
        vocabulary: the words and timeout defaults to apply.
        history: how many answered or expired questions to remember, so a
            late answer is told why it was refused rather than "no such
            question". The oldest are forgotten first.
    """

    def __init__(self, vocabulary: AnswerVocabulary, *, history: int = DEFAULT_HISTORY) -> None:
        if history < 0:
            raise ValueError(f"history must not be negative, got {history}")
        self.vocabulary = vocabulary
        self._history_size = history
        self._pending: dict[str, PendingQuestion] = {}  # in order asked
        self._history: dict[str, _Answered | _Expired] = {}  # oldest first

    def __len__(self) -> int:
        return len(self._pending)

    def ask(
        self,
        program: str,
        message: Question | ApprovalRequest,
        now: float,
        *,
        task_id: str | None = None,
        mark: int = 0,
    ) -> PendingQuestion | None:
        """Record a question or approval request from ``program``.

        The deadline is the frame's ``data.timeout`` less its
        :func:`answer_margin` when the frame names a finite positive timeout,
        else the vocabulary's ``default_timeout`` (None: no deadline). A frame
        whose ``messageId`` is already pending replaces it (the same prompt,
        sent again; a changed one must go through :meth:`withdraw_changed`
        first). One whose ``messageId`` was answered or expired stays
        closed, and None is returned: a ``messageId`` gets at most one answer,
        so a late tap on the first card can never answer a second prompt the
        child asked under the same id.

        Args:
            task_id: the task the program is running, used when the frame
                names none.
            mark: the caller's position in the program's output (see
                :meth:`withdraw_before`).

        Returns:
            The pending entry.
        """
        timeout = message.data.timeout
        if timeout is not None and 0 < timeout < math.inf:
            deadline: float | None = now + timeout - answer_margin(timeout)
        elif self.vocabulary.default_timeout is not None:
            deadline = now + self.vocabulary.default_timeout
        else:
            deadline = None
        if message.messageId in self._history:
            return None
        kind: QuestionKind = "question" if isinstance(message, Question) else "approval_request"
        own_task = getattr(message.data, "taskId", None)
        pending = PendingQuestion(
            message_id=message.messageId,
            kind=kind,
            message=message,
            asked_at=now,
            deadline=deadline,
            program=program,
            task_id=own_task if isinstance(own_task, str) and own_task else task_id,
            mark=mark,
        )
        self._pending.pop(pending.message_id, None)
        self._pending[pending.message_id] = pending
        return pending

    def answer(
        self, message_id: str, response: str, by: str, now: float, *, raw: bool = False
    ) -> tuple[str, QuestionAnswered]:
        """Resolve a pending question with the first answer given.

        Args:
            message_id: the question's ``messageId``.
            response: the answer as given. For an approval, ``approve`` or
                ``deny`` or the vocabulary's texts (any case). For a question
                with options, one of the option ids (any case if that is
                unambiguous). For a question without options, any single line.
            by: who answered, through which channel: ``ctl``,
                ``telegram:@alice``...
            now: monotonic seconds now.
            raw: write ``response`` exactly, without mapping or checking it.

        Returns:
            The text to write to the child's stdin (add ``"\\n"``), and the
            ``question_answered`` message to publish.

        Raises:
            UnknownQuestionError: no such question is pending or remembered.
            AlreadyAnsweredError: someone answered first.
            QuestionExpiredError: it timed out or its program exited (also
                when its deadline has passed but :meth:`expire` has not yet
                been called: the timeout default is about to apply).
            InvalidResponseError: the response is not one it accepts.
        """
        pending = self._pending.get(message_id)
        if pending is None:
            past = self._history.get(message_id)
            if isinstance(past, _Answered):
                raise AlreadyAnsweredError(message_id, past.by, past.response)
            if isinstance(past, _Expired):
                raise QuestionExpiredError(message_id, past.reason)
            raise UnknownQuestionError(message_id)
        if pending.deadline is not None and now >= pending.deadline:
            raise QuestionExpiredError(message_id, "timed out")
        decision: Literal["approve", "deny"] | None = None
        if raw:
            written = response
        elif isinstance(pending.message, ApprovalRequest):
            decision = self.vocabulary.decide(response)
            if decision is None:
                raise InvalidResponseError(message_id, response, self.vocabulary.approval_words())
            written = self.vocabulary.text_for(decision)
        else:
            written = _question_text(message_id, pending.message, response)
        del self._pending[message_id]
        self._remember(message_id, _Answered(by, response))
        event = QuestionAnswered(
            data=QuestionAnsweredData(
                messageId=message_id,
                response=response,
                written=written,
                by=by,
                latency=now - pending.asked_at,
                decision=decision,
            )
        )
        return written, event

    def expire(self, now: float) -> list[tuple[PendingQuestion, str | None, QuestionTimeout]]:
        """Time out every question whose deadline has come.

        Args:
            now: monotonic seconds now; a deadline equal to ``now`` is due.

        Returns:
            For each expired question, earliest deadline first: the entry,
            the text to write (None: write nothing) and the
            ``question_timeout`` message. An approval gets the vocabulary's
            ``approval_timeout_default``; a question its
            ``question_timeout_default`` if the question can take it.
        """
        due = sorted(
            (p for p in self._pending.values() if p.deadline is not None and p.deadline <= now),
            key=lambda p: p.deadline or 0.0,
        )
        results = []
        for pending in due:
            del self._pending[pending.message_id]
            self._remember(pending.message_id, _Expired("timed out"))
            default = self._timeout_default(pending.message)
            if default is None:
                text = None
            elif isinstance(pending.message, ApprovalRequest):
                text = self.vocabulary.text_for(self.vocabulary.approval_timeout_default)
            else:
                text = default
            event = QuestionTimeout(
                data=QuestionTimeoutData(
                    messageId=pending.message_id,
                    kind=pending.kind,
                    default=default,
                    waited=now - pending.asked_at,
                )
            )
            results.append((pending, text, event))
        return results

    def answered_elsewhere(
        self, message_id: str, response: str, by: str, now: float
    ) -> QuestionAnswered | None:
        """Settle a question that was answered where supervise wrote nothing.

        The person at the terminal typed the answer straight into the
        program: it has its answer, so nothing is written, and every other
        channel must hear who answered and stop offering it.

        Returns:
            The ``question_answered`` message (``written`` is empty), or None
            if the question is no longer pending.
        """
        pending = self._pending.pop(message_id, None)
        if pending is None:
            return None
        self._remember(message_id, _Answered(by, response))
        decision = (
            self.vocabulary.decide(response)
            if isinstance(pending.message, ApprovalRequest)
            else None
        )
        return QuestionAnswered(
            data=QuestionAnsweredData(
                messageId=message_id,
                response=response,
                written="",
                by=by,
                latency=now - pending.asked_at,
                decision=decision,
            )
        )

    def withdraw_changed(
        self, message: Question | ApprovalRequest, now: float
    ) -> QuestionWithdrawn | None:
        """Withdraw the pending question ``message`` would change, if it differs.

        A child that sends a pending ``messageId`` again with another kind,
        text, options or timeout would otherwise have the answer meant for
        what the person was shown (a card, ``ctl pending``) applied to what
        it asks now. Neither is answerable after this: the id is closed, so
        :meth:`ask` returns None for ``message`` too. The same frame sent
        again (a retry; its timestamp may differ) changes nothing.

        Returns:
            The ``question_withdrawn`` message, or None when nothing changed.
        """
        pending = self._pending.get(message.messageId)
        if pending is None or (
            type(pending.message) is type(message) and pending.message.data == message.data
        ):
            return None
        reason = "asked again under the same messageId with different content"
        del self._pending[pending.message_id]
        self._remember(pending.message_id, _Expired(reason))
        return QuestionWithdrawn(
            data=QuestionWithdrawnData(
                messageId=pending.message_id,
                kind=pending.kind,
                reason=reason,
                waited=now - pending.asked_at,
            )
        )

    def withdraw_before(
        self, program: str, mark: int, reason: str, now: float
    ) -> list[QuestionWithdrawn]:
        """Withdraw ``program``'s questions asked before output position ``mark``.

        Used when the program has written past the prompt a question was
        waiting at: an answer written now would go to whatever it asks next.

        Returns:
            One ``question_withdrawn`` message per question, oldest first.
        """
        gone = [p for p in self._pending.values() if p.program == program and p.mark < mark]
        withdrawn = []
        for pending in gone:
            del self._pending[pending.message_id]
            self._remember(pending.message_id, _Expired(reason))
            withdrawn.append(
                QuestionWithdrawn(
                    data=QuestionWithdrawnData(
                        messageId=pending.message_id,
                        kind=pending.kind,
                        reason=reason,
                        waited=now - pending.asked_at,
                    )
                )
            )
        return withdrawn

    def next_deadline(self) -> float | None:
        """The earliest deadline of a pending question, or None."""
        deadlines = [p.deadline for p in self._pending.values() if p.deadline is not None]
        return min(deadlines) if deadlines else None

    def pending(self) -> list[PendingQuestion]:
        """The questions awaiting an answer, oldest first."""
        return list(self._pending.values())

    def forget_program(self, program: str) -> list[PendingQuestion]:
        """Drop the questions of a program that exited; nobody can answer them now.

        They are remembered as expired, so a late answer is told why.

        Returns:
            The dropped entries, oldest first.
        """
        gone = [p for p in self._pending.values() if p.program == program]
        for pending in gone:
            del self._pending[pending.message_id]
            self._remember(pending.message_id, _Expired(f"{program} exited"))
        return gone

    # -- internals -----------------------------------------------------------

    def _remember(self, message_id: str, outcome: _Answered | _Expired) -> None:
        self._history[message_id] = outcome
        while len(self._history) > self._history_size:
            del self._history[next(iter(self._history))]

    def _timeout_default(self, message: Question | ApprovalRequest) -> str | None:
        if isinstance(message, ApprovalRequest):
            return self.vocabulary.approval_timeout_default
        option = self.vocabulary.question_timeout_default
        options = message.data.options
        if option is None or (options and option not in {o.id for o in options}):
            return None
        return option


def _question_text(message_id: str, message: Question, response: str) -> str:
    """The text written for an answer to a question, or raise why it is refused."""
    options = message.data.options
    if not options:
        if "\n" in response or "\r" in response:
            raise InvalidResponseError(message_id, response, ())
        return response
    ids = tuple(o.id for o in options)
    word = response.strip()
    if word in ids:
        return word
    folded = [i for i in ids if i.lower() == word.lower()]
    if len(folded) == 1:
        return folded[0]
    raise InvalidResponseError(message_id, response, ids)
