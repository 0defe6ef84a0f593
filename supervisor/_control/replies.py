"""Control replies read back on the client's side (a hub, over the socket or the bus).

The control server sends an :class:`AnswerError` as its one-line text; a
client turns the text back into the same kind, so a hub says "already
answered by ..." as supervise itself would. A ``status`` reply carries each
program's :class:`ProgramStatus` as a JSON object; a client gets it back
whole.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping
from typing import Any

from .._core.errors import (
    AlreadyAnsweredError,
    AnswerError,
    ControlError,
    QuestionExpiredError,
    UnknownQuestionError,
)
from .._process.program import ProgramStatus

__all__ = ["answer_error", "pending_options", "result_of", "status_from_reply"]

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


def status_from_reply(name: str, item: Mapping[str, Any]) -> ProgramStatus:
    """One program of a ``status`` reply, named ``name`` (what is missing reads as none)."""
    return ProgramStatus(
        name=name,
        state=str(item.get("state") or ""),
        pid=item.get("pid"),
        uptime=item.get("uptime"),
        restarts=int(item.get("restarts") or 0),
        last_exit=item.get("last_exit"),
        tasks_in_flight=int(item.get("tasks_in_flight") or 0),
        pending_questions=int(item.get("pending_questions") or 0),
    )


def result_of(reply: Any) -> Any:
    """A decoded reply's ``result``; ControlError with its ``error`` if it was refused."""
    if not isinstance(reply, dict) or not reply.get("ok"):
        error = reply.get("error") if isinstance(reply, dict) else None
        raise ControlError(str(error or "the request was refused"))
    return reply.get("result")


def pending_options(items: Any, message_id: str, digest: str) -> list[str] | None:
    """The answer options of ``message_id`` in a ``pending`` reply, if it asks what ``digest`` says.

    None when the question is not pending there, or is pending with other
    content than the card that offers to answer it (see
    :func:`~supervisor.lowlevel.question_digest`). The reply is another
    process's, so anything malformed in it counts as not pending.
    """
    if not isinstance(items, list):
        return None
    for item in items:
        if (
            isinstance(item, Mapping)
            and item.get("message_id") == message_id
            and item.get("digest") == digest
        ):
            options = item.get("options")
            if isinstance(options, list) and all(isinstance(o, str) for o in options):
                return options
    return None
