"""The exceptions ipc-supervisor raises.

Catch the level you care about::

    SupervisorError
    ├── ConfigError (also a ValueError): bad options or configuration
    ├── SpawnError: the child could not be started
    ├── StateTransitionError: a trigger that the process state does not allow
    └── SinkError: a subscriber failed to take an event

A child that exits, or writes a malformed frame, is not an exception: it is
an event (``process_exit``, ``frame_invalid``).
"""

from __future__ import annotations

import enum

__all__ = ["ConfigError", "SinkError", "SpawnError", "StateTransitionError", "SupervisorError"]


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
