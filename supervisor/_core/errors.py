"""The exceptions ipc-supervisor raises.

Every exception the package raises is here, under one root. Catch the level
you care about::

    SupervisorError
    ├── ConfigError (also a ValueError): bad options or configuration
    ├── FilterError (also a ValueError): a filter expression that does not parse
    ├── SpawnError: the child could not be started
    ├── StateTransitionError: a trigger that the process state does not allow
    ├── SinkError: a subscriber failed to take an event
    ├── AnswerError (also a ValueError): an answer was refused, nothing written
    │   ├── UnknownQuestionError: no such question
    │   ├── AlreadyAnsweredError: someone answered first
    │   ├── QuestionExpiredError: timed out, or its program exited
    │   └── InvalidResponseError: not an answer the question accepts
    ├── ControlError: a control request that cannot be carried out
    ├── UnknownNameError (also a LookupError): no program or route of that name
    ├── UsageError (also a RuntimeError): the SDK was used out of order
    │   └── SupervisorNotRunningError: needs the running supervisor
    └── IpcError: a ts-ipc request that could not be carried out
        ├── TmuxError: tmux could not be run, or refused a request
        │   ├── NoSessionError: the session (or the whole tmux server) does not exist
        │   └── NotAcceptedError: the text was typed, the pane never took the Enter
        ├── InputError: a supervised program's stdin did not take the text
        ├── WorkflowError (also a ValueError): a workflow file or definition is wrong
        └── MigrationError (also a ValueError): a file of the original ts-ipc is unreadable

The Telegram adapter's ``BotApiError`` is a :class:`SinkError`. Private
control-flow exceptions (a parser's ``_TooDeep``, the control socket's
``_RequestError``, ``supervise ctl``'s ``CtlError``, ts-ipc's ``_ArgumentError``,
``_StepError`` and ``_Cycle``) never leave their module.

A child that exits, or writes a malformed frame, is not an exception: it is
an event (``process_exit``, ``frame_invalid``).
"""

from __future__ import annotations

import enum
import json

__all__ = [
    "AlreadyAnsweredError",
    "AnswerError",
    "ConfigError",
    "ControlError",
    "FilterError",
    "InputError",
    "InvalidResponseError",
    "IpcError",
    "MigrationError",
    "NoSessionError",
    "NotAcceptedError",
    "QuestionExpiredError",
    "SinkError",
    "SpawnError",
    "StateTransitionError",
    "SupervisorError",
    "SupervisorNotRunningError",
    "TmuxError",
    "UnknownNameError",
    "UnknownQuestionError",
    "UsageError",
    "WorkflowError",
]


class SupervisorError(Exception):
    """Root of every error this package raises."""


class ConfigError(SupervisorError, ValueError):
    """An option or configuration value is wrong.

    Attributes:
        where: the option, or file and dotted key, that is wrong.
    """

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem


class SpawnError(SupervisorError):
    """The child could not be started.

    Attributes:
        command: the program that was to run.
        exit_status: what a shell would exit with (127 not found, 126 not
            executable), which ``supervise`` exits with too.
    """

    def __init__(self, command: str, problem: str, exit_status: int) -> None:
        super().__init__(f"{command}: {problem}")
        self.command = command
        self.problem = problem
        self.exit_status = exit_status


class StateTransitionError(SupervisorError):
    """A trigger arrived that the current process state does not allow.

    This is a bug in the caller (the supervisor asked for something illegal),
    not something a child can cause; it replaces supervisord's
    ``AssertionError``.

    Attributes:
        state: the :class:`~supervisor.ProcessState` the process was in.
        trigger: the :class:`~supervisor.lowlevel.Trigger` that was refused.
    """

    # Typed as enums, not as the state module's classes: that module raises
    # this error, and the errors module imports nothing of the core.
    def __init__(self, state: enum.Enum, trigger: enum.Enum) -> None:
        action = getattr(trigger, "action", trigger.name.lower())
        super().__init__(f"cannot {action} (trigger {trigger.name}) while {state.value}")
        self.state = state
        self.trigger = trigger


class SinkError(SupervisorError):
    """A sink failed to deliver an event.

    The router retries a failed delivery with backoff unless the sink says
    that retrying cannot help (a webhook's 404, a malformed target): then
    the event goes straight to the route's dead letters.

    Attributes:
        sink: the name of the sink.
        problem: what went wrong, in one line.
        retryable: whether the same delivery may succeed later.
        retry_after: seconds the far end asked us to wait (HTTP
            ``Retry-After``), used instead of the backoff delay when set.
    """

    def __init__(
        self,
        sink: str,
        problem: str,
        *,
        retryable: bool = True,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"sink {sink}: {problem}")
        self.sink = sink
        self.problem = problem
        self.retryable = retryable
        self.retry_after = retry_after


class FilterError(SupervisorError, ValueError):
    """A filter expression does not parse; the message names the position.

    The caller names where the filter came from (``routes.NAME.filter``)
    when it turns this into a :class:`ConfigError`.
    """


class AnswerError(SupervisorError, ValueError):
    """An answer was refused; nothing was written to the child.

    Subclasses: :class:`UnknownQuestionError`, :class:`AlreadyAnsweredError`,
    :class:`QuestionExpiredError`, :class:`InvalidResponseError`.

    Attributes:
        message_id: the question the answer was for.
        problem: what is wrong, without the question id.
    """

    def __init__(self, message_id: str, problem: str) -> None:
        super().__init__(f"question {message_id}: {problem}")
        self.message_id = message_id
        self.problem = problem


class UnknownQuestionError(AnswerError):
    """No question with this id is pending or remembered."""

    def __init__(self, message_id: str) -> None:
        super().__init__(message_id, "no such question")


class AlreadyAnsweredError(AnswerError):
    """Someone answered first.

    Attributes:
        by: who answered first, e.g. ``ctl`` or ``telegram:@alice``.
        response: what they answered, as given.
    """

    def __init__(self, message_id: str, by: str, response: str) -> None:
        super().__init__(message_id, f"already answered by {by} ({_quote(response)})")
        self.by = by
        self.response = response


class QuestionExpiredError(AnswerError):
    """The question timed out, or its program exited, before this answer.

    Attributes:
        reason: ``timed out`` or ``<program> exited``.
    """

    def __init__(self, message_id: str, reason: str) -> None:
        super().__init__(message_id, f"expired ({reason})")
        self.reason = reason


class InvalidResponseError(AnswerError):
    """The response is not one the question accepts.

    Attributes:
        response: the refused response, as given.
        allowed: the accepted words, or empty when any single line is
            accepted (a question without options).
    """

    def __init__(self, message_id: str, response: str, allowed: tuple[str, ...]) -> None:
        if allowed:
            problem = f"{_quote(response)} is not an answer; use one of: {', '.join(allowed)}"
        else:
            problem = f"{_quote(response)} is not an answer; it must be a single line"
        super().__init__(message_id, problem)
        self.response = response
        self.allowed = allowed


def _quote(text: str) -> str:
    # JSON quoting escapes newlines, so error messages stay on one line.
    return json.dumps(text, ensure_ascii=False)


class ControlError(SupervisorError):
    """A control request that cannot be carried out (e.g. start a running program)."""


class UnknownNameError(SupervisorError, KeyError):
    """No program, or no route, has this name (a KeyError, so a LookupError too).

    Attributes:
        kind: ``program`` or ``route``.
        name: the name asked for.
        known: the names there are.
    """

    def __init__(self, kind: str, name: str, known: tuple[str, ...]) -> None:
        listed = ", ".join(known) or "none"
        super().__init__(f"no {kind} named {name!r} ({kind}s: {listed})")
        self.kind = kind
        self.name = name
        self.known = known

    def __str__(self) -> str:  # not KeyError's repr()-quoted form: one plain line
        return str(self.args[0])


class UsageError(SupervisorError, RuntimeError):
    """The SDK was used out of order (a route added after ``run()``, a second run)."""


class SupervisorNotRunningError(UsageError):
    """What needs the running supervisor (its router, its journal) was asked
    for before :meth:`Supervisor.run` started it."""


class IpcError(SupervisorError):
    """A ts-ipc request that could not be carried out; the message is one line."""


class TmuxError(IpcError):
    """tmux could not be run or refused a request."""


class NoSessionError(TmuxError):
    """The session (or the whole tmux server) does not exist: worth waiting for."""


class NotAcceptedError(TmuxError):
    """The text was typed but the pane never took the Enter."""


class InputError(IpcError):
    """The text could not be given to a supervised program's stdin."""


class WorkflowError(IpcError, ValueError):
    """A workflow file or definition is not valid."""


class MigrationError(IpcError, ValueError):
    """A file of the original ts-ipc that cannot be read; the message names it."""
