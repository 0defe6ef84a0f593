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

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._state import ProcessState, Trigger

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
        state: the state the process was in.
        trigger: the trigger that was refused.
    """

    def __init__(self, state: ProcessState, trigger: Trigger) -> None:
        super().__init__(f"cannot {trigger.action} (trigger {trigger.name}) while {state.value}")
        self.state = state
        self.trigger = trigger


class SinkError(SupervisorError):
    """A sink failed to deliver an event.

    Attributes:
        sink: the name of the sink.
    """

    def __init__(self, sink: str, problem: str) -> None:
        super().__init__(f"sink {sink}: {problem}")
        self.sink = sink
