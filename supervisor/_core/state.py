"""The life cycle of a supervised program, as a pure transition function.

The states use supervisord's vocabulary, so its users recognise them, but
the rules live in one table (:data:`TRANSITIONS`) instead of being spread
over ``_assertInState`` calls in event handlers. :func:`transition` takes the
current :class:`ProcessState` and a :class:`Trigger` and returns the next
state, or raises :class:`~supervisor.StateTransitionError` when the table has
no entry: a refused trigger is a bug in the caller, and saying so loudly is
better than drifting into a state nobody designed.

The module does no I/O, reads no clock and starts no timers. Deciding *when*
a trigger happens (a child has stayed up ``start_seconds``, a backoff delay
has passed, the give-up rule has tripped) is the caller's job; see
:mod:`supervisor._core.backoff` for the delays and the give-up rule.

The usual paths::

    a good run    STOPPED -START-> STARTING -STARTED-> RUNNING -EXITED-> EXITED
    a crash loop  STARTING -EXITED or SPAWN_FAILED-> BACKOFF -START-> STARTING ...
                  ... BACKOFF -GIVE_UP-> FATAL
    a stop        STARTING or RUNNING -STOP-> STOPPING -STOP_DONE-> STOPPED

A STOP during BACKOFF cancels the pending retry and goes straight to
STOPPED. A STOP while STOPPING, STOPPED, EXITED or FATAL changes nothing, so
"stop" can be sent without checking first.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType

from .errors import StateTransitionError

__all__ = ["TRANSITIONS", "ProcessState", "Trigger", "is_alive", "is_settled", "transition"]


class ProcessState(enum.Enum):
    """Where a supervised program is in its life cycle.

    Values are lower-case strings so the state serialises plainly in JSON
    events (``"running"``).
    """

    STOPPED = "stopped"
    """Not running, and nobody asked it to run (the initial state)."""
    STARTING = "starting"
    """Spawned, but not yet up for ``start_seconds``."""
    RUNNING = "running"
    """Up for at least ``start_seconds``: the start counts as successful."""
    BACKOFF = "backoff"
    """A start failed; waiting out a delay before the next attempt."""
    STOPPING = "stopping"
    """A stop was requested and the child has not gone yet."""
    EXITED = "exited"
    """Was running and exited on its own; the restart policy decides what next."""
    FATAL = "fatal"
    """Gave up after too many failed starts; only a request starts it again."""


class Trigger(enum.Enum):
    """What can happen to a program: the inputs of :func:`transition`."""

    START = "start"
    """A start was requested: by a person, by the restart policy, or after a
    backoff delay."""
    STARTED = "started"
    """The child has stayed up ``start_seconds``, so the start succeeded."""
    SPAWN_FAILED = "spawn_failed"
    """The child could not be started at all."""
    EXITED = "exited"
    """The child exited on its own, not because we stopped it."""
    FINISHED = "finished"
    """The child exited cleanly and its policy does not restart it: however
    soon that happened, it is not a failed start."""
    STOP = "stop"
    """A stop was requested."""
    STOP_DONE = "stop_done"
    """The child is gone after a stop."""
    GIVE_UP = "give_up"
    """The give-up rule tripped."""

    @property
    def action(self) -> str:
        """The trigger as a verb phrase, for error messages (``"stop"``)."""
        return _ACTIONS[self]


_ACTIONS: Mapping[Trigger, str] = {
    Trigger.START: "start",
    Trigger.STARTED: "mark as started",
    Trigger.SPAWN_FAILED: "record a failed spawn",
    Trigger.EXITED: "record an exit",
    Trigger.FINISHED: "record a clean finish",
    Trigger.STOP: "stop",
    Trigger.STOP_DONE: "finish stopping",
    Trigger.GIVE_UP: "give up",
}

TRANSITIONS: Mapping[tuple[ProcessState, Trigger], ProcessState] = MappingProxyType(
    {
        # Starting, by request or after a backoff delay.
        (ProcessState.STOPPED, Trigger.START): ProcessState.STARTING,
        (ProcessState.EXITED, Trigger.START): ProcessState.STARTING,
        (ProcessState.FATAL, Trigger.START): ProcessState.STARTING,
        (ProcessState.BACKOFF, Trigger.START): ProcessState.STARTING,
        # How a start ends: it succeeds, or it fails and we wait before
        # retrying. Exiting before start_seconds is a failed start.
        (ProcessState.STARTING, Trigger.STARTED): ProcessState.RUNNING,
        (ProcessState.STARTING, Trigger.EXITED): ProcessState.BACKOFF,
        (ProcessState.STARTING, Trigger.SPAWN_FAILED): ProcessState.BACKOFF,
        (ProcessState.RUNNING, Trigger.EXITED): ProcessState.EXITED,
        (ProcessState.STARTING, Trigger.FINISHED): ProcessState.EXITED,
        (ProcessState.RUNNING, Trigger.FINISHED): ProcessState.EXITED,
        # Stopping. In BACKOFF nothing runs, so a stop just cancels the
        # pending retry. A process that exits by itself while being stopped
        # has done what was asked: that is not a failure.
        (ProcessState.STARTING, Trigger.STOP): ProcessState.STOPPING,
        (ProcessState.RUNNING, Trigger.STOP): ProcessState.STOPPING,
        (ProcessState.BACKOFF, Trigger.STOP): ProcessState.STOPPED,
        (ProcessState.STOPPING, Trigger.STOP_DONE): ProcessState.STOPPED,
        (ProcessState.STOPPING, Trigger.EXITED): ProcessState.STOPPED,
        # Stopping what is stopped, or being stopped, is harmless.
        (ProcessState.STOPPING, Trigger.STOP): ProcessState.STOPPING,
        (ProcessState.STOPPED, Trigger.STOP): ProcessState.STOPPED,
        # An exited program may be waiting to restart; a stop cancels that.
        (ProcessState.EXITED, Trigger.STOP): ProcessState.STOPPED,
        (ProcessState.FATAL, Trigger.STOP): ProcessState.FATAL,
        # Giving up, only from a state with no process.
        (ProcessState.BACKOFF, Trigger.GIVE_UP): ProcessState.FATAL,
        (ProcessState.EXITED, Trigger.GIVE_UP): ProcessState.FATAL,
    }
)
"""Every allowed ``(state, trigger)`` pair and the state it leads to.

A read-only mapping; a pair that is not a key is refused by :func:`transition`.
"""

_ALIVE = frozenset({ProcessState.STARTING, ProcessState.RUNNING, ProcessState.STOPPING})
_SETTLED = frozenset({ProcessState.STOPPED, ProcessState.EXITED, ProcessState.FATAL})


def transition(state: ProcessState, trigger: Trigger) -> ProcessState:
    """Return the state that ``trigger`` leads to from ``state``.

    Args:
        state: the current state.
        trigger: what happened.

    Returns:
        The next state, which may be ``state`` itself (a repeated stop).

    Raises:
        StateTransitionError: the pair is not in :data:`TRANSITIONS`, e.g. a
            ``STOP_DONE`` while ``RUNNING``. Its ``state`` and ``trigger``
            attributes say which pair.
    """
    try:
        return TRANSITIONS[state, trigger]
    except KeyError:
        raise StateTransitionError(state, trigger) from None


def is_alive(state: ProcessState) -> bool:
    """Whether a child process exists: ``STARTING``, ``RUNNING`` or ``STOPPING``."""
    return state in _ALIVE


def is_settled(state: ProcessState) -> bool:
    """Whether the state machine is at rest: ``STOPPED``, ``EXITED`` or ``FATAL``.

    Settled means no child process exists and no timer belongs to the state
    machine itself, so nothing happens here without a new trigger from
    outside. ``EXITED`` is settled even though a restart policy may start it
    again at once: that decision, and any delay before it, is the caller's.
    ``BACKOFF`` is neither alive nor settled: no process exists, but a retry
    is pending.
    """
    return state in _SETTLED
