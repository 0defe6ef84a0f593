"""A control reply's refusal, read back as the error it was.

The control server sends an :class:`AnswerError` as its one-line text; a
client on the other side of the socket (or of the Redis bus) turns the text
back into the same kind, so a hub says "already answered by ..." as
supervise itself would.
"""

from __future__ import annotations

import contextlib
import json
import re

from .._core.errors import (
    AlreadyAnsweredError,
    AnswerError,
    QuestionExpiredError,
    UnknownQuestionError,
)

__all__ = ["answer_error"]

_ALREADY = re.compile(r"already answered by (\S+) \((.*)\)$")
_EXPIRED = re.compile(r"expired \((.*)\)$")


def answer_error(message_id: str, text: str) -> AnswerError:
    """The control socket's one-line refusal as the AnswerError kind it names."""
    problem = text.removeprefix(f"question {message_id}: ")
    if match := _ALREADY.search(problem):
        response = match.group(2)
        with contextlib.suppress(ValueError):
            response = json.loads(response)
        return AlreadyAnsweredError(message_id, match.group(1), str(response))
    if match := _EXPIRED.search(problem):
        return QuestionExpiredError(message_id, match.group(1))
    if problem == "no such question":
        return UnknownQuestionError(message_id)
    return AnswerError(message_id, problem)
