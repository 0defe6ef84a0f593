"""The process state machine: its table, some named runs, and reachability."""

from __future__ import annotations

import itertools
from collections import deque

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor._core.errors import StateTransitionError, SupervisorError
from supervisor._core.state import (
    TRANSITIONS,
    ProcessState,
    Trigger,
    is_alive,
    is_settled,
    transition,
)

S = ProcessState
T = Trigger

# The specification, written out independently of the module's table.
EXPECTED: dict[tuple[ProcessState, Trigger], ProcessState] = {
    (S.STOPPED, T.START): S.STARTING,
    (S.EXITED, T.START): S.STARTING,
    (S.FATAL, T.START): S.STARTING,
    (S.BACKOFF, T.START): S.STARTING,
    (S.STARTING, T.STARTED): S.RUNNING,
    (S.STARTING, T.EXITED): S.BACKOFF,
    (S.STARTING, T.SPAWN_FAILED): S.BACKOFF,
    (S.RUNNING, T.EXITED): S.EXITED,
    (S.STARTING, T.FINISHED): S.EXITED,
    (S.RUNNING, T.FINISHED): S.EXITED,
    (S.STARTING, T.STOP): S.STOPPING,
    (S.RUNNING, T.STOP): S.STOPPING,
    (S.BACKOFF, T.STOP): S.STOPPED,
    (S.STOPPING, T.STOP_DONE): S.STOPPED,
    (S.STOPPING, T.EXITED): S.STOPPED,
    (S.STOPPING, T.STOP): S.STOPPING,
    (S.STOPPED, T.STOP): S.STOPPED,
    (S.EXITED, T.STOP): S.STOPPED,
    (S.FATAL, T.STOP): S.FATAL,
    (S.BACKOFF, T.GIVE_UP): S.FATAL,
    (S.EXITED, T.GIVE_UP): S.FATAL,
}


def run(state: ProcessState, *triggers: Trigger) -> list[ProcessState]:
    """Apply triggers in order and return every state visited, the first included."""
    states = [state]
    for trigger in triggers:
        states.append(transition(states[-1], trigger))
    return states


def test_table_matches_the_specification() -> None:
    """The module's table holds exactly the allowed transitions, no more and no fewer."""
    assert dict(TRANSITIONS) == EXPECTED


def test_table_is_read_only() -> None:
    """Nobody can add a transition to the table at runtime."""
    with pytest.raises(TypeError):
        TRANSITIONS[S.RUNNING, T.START] = S.STARTING  # type: ignore[index]


def check_pair(state: ProcessState, trigger: Trigger) -> None:
    """Assert the pair leads where EXPECTED says, or raises StateTransitionError only."""
    expected = EXPECTED.get((state, trigger))
    if expected is not None:
        assert transition(state, trigger) is expected
        return
    with pytest.raises(StateTransitionError) as info:
        transition(state, trigger)
    assert info.value.state is state
    assert info.value.trigger is trigger
    assert f"(trigger {trigger.name}) while {state.value}" in str(info.value)


@given(st.sampled_from(ProcessState), st.sampled_from(Trigger))
def test_any_pair_is_allowed_or_refused(state: ProcessState, trigger: Trigger) -> None:
    """A drawn (state, trigger) pair leads where the table says or raises StateTransitionError."""
    check_pair(state, trigger)


def test_all_pairs_are_allowed_or_refused() -> None:
    """Each of the 49 (state, trigger) pairs is allowed or refused as specified."""
    for state, trigger in itertools.product(ProcessState, Trigger):
        check_pair(state, trigger)


def test_error_message_reads_as_a_sentence() -> None:
    """A refused trigger is described as what was asked and in which state."""
    with pytest.raises(
        StateTransitionError, match=r"^cannot start \(trigger START\) while running$"
    ):
        transition(S.RUNNING, T.START)
    with pytest.raises(
        StateTransitionError, match=r"^cannot give up \(trigger GIVE_UP\) while stopped$"
    ):
        transition(S.STOPPED, T.GIVE_UP)


def test_error_is_a_supervisor_error() -> None:
    """StateTransitionError sits under SupervisorError, so one except catches every error."""
    assert issubclass(StateTransitionError, SupervisorError)


def test_state_values_are_lower_case_names() -> None:
    """Each state serialises as its name in lower case, for JSON events."""
    assert [state.value for state in ProcessState] == [state.name.lower() for state in ProcessState]
    assert ProcessState("running") is S.RUNNING


def test_every_trigger_has_an_action() -> None:
    """Every trigger can be named in an error message."""
    assert all(trigger.action for trigger in Trigger)


def test_normal_run() -> None:
    """A program starts, comes up, runs, exits on its own and is started again."""
    assert run(S.STOPPED, T.START, T.STARTED, T.EXITED, T.START, T.STARTED) == [
        S.STOPPED,
        S.STARTING,
        S.RUNNING,
        S.EXITED,
        S.STARTING,
        S.RUNNING,
    ]


def test_crash_loop_ends_fatal() -> None:
    """A program that keeps dying during start-up goes round BACKOFF until it is given up."""
    triggers = [T.START, T.EXITED, T.START, T.SPAWN_FAILED, T.START, T.EXITED, T.GIVE_UP]
    assert run(S.STOPPED, *triggers) == [
        S.STOPPED,
        S.STARTING,
        S.BACKOFF,
        S.STARTING,
        S.BACKOFF,
        S.STARTING,
        S.BACKOFF,
        S.FATAL,
    ]
    # Only a request brings it back, and stopping it changes nothing.
    assert transition(S.FATAL, T.STOP) is S.FATAL
    assert transition(S.FATAL, T.START) is S.STARTING


def test_stop_during_backoff_cancels_the_retry() -> None:
    """Stopping a program that is waiting to retry settles it in STOPPED at once."""
    assert run(S.STOPPED, T.START, T.EXITED, T.STOP) == [
        S.STOPPED,
        S.STARTING,
        S.BACKOFF,
        S.STOPPED,
    ]
    with pytest.raises(StateTransitionError):
        transition(S.STOPPED, T.GIVE_UP)


def test_stop_while_running() -> None:
    """A stop goes through STOPPING, tolerates a repeat, and ends in STOPPED either way."""
    assert run(S.RUNNING, T.STOP, T.STOP, T.STOP_DONE) == [
        S.RUNNING,
        S.STOPPING,
        S.STOPPING,
        S.STOPPED,
    ]
    # The child exiting by itself while being stopped is not a failure.
    assert run(S.RUNNING, T.STOP, T.EXITED) == [S.RUNNING, S.STOPPING, S.STOPPED]


def test_every_state_is_reachable_from_stopped() -> None:
    """A breadth-first walk from STOPPED through transition() visits every state."""
    seen = {S.STOPPED}
    todo = deque([S.STOPPED])
    while todo:
        state = todo.popleft()
        for trigger in Trigger:
            try:
                nxt = transition(state, trigger)
            except StateTransitionError:
                continue
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert seen == set(ProcessState)


def test_alive_and_settled() -> None:
    """Alive states have a process, settled ones have nothing pending, and BACKOFF is neither."""
    assert {state for state in ProcessState if is_alive(state)} == {
        S.STARTING,
        S.RUNNING,
        S.STOPPING,
    }
    assert {state for state in ProcessState if is_settled(state)} == {
        S.STOPPED,
        S.EXITED,
        S.FATAL,
    }
    assert not is_alive(S.BACKOFF)
    assert not is_settled(S.BACKOFF)


@given(st.sampled_from(ProcessState))
def test_stop_always_leads_towards_stopped(state: ProcessState) -> None:
    """From any state, stop requests (and the child going) end in a state with no process."""
    after = transition(state, T.STOP)
    if after is S.STOPPING:
        after = transition(after, T.STOP_DONE)
    assert not is_alive(after)
    assert is_settled(after)
