"""Task accounting: measured durations, lost tasks on exit, timeouts reported once."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor._core.events import Event, TaskTimeout
from supervisor._core.messages import (
    IpcMessage,
    LogMessage,
    TaskComplete,
    TaskFailed,
    TaskStart,
    parse_message,
)
from supervisor._core.tasks import TaskTable, exit_cause


def message(event: str, **data: Any) -> IpcMessage:
    return parse_message({"type": "ipc", "event": event, "data": data})


def start(task_id: str, namespace: str | None = "ns", **data: Any) -> IpcMessage:
    return message("task_start", taskId=task_id, namespace=namespace, **data)


def complete(task_id: str, namespace: str | None = "ns", **data: Any) -> IpcMessage:
    return message("task_complete", taskId=task_id, namespace=namespace, **data)


def failed(task_id: str, namespace: str | None = "ns", **data: Any) -> IpcMessage:
    return message("task_failed", taskId=task_id, namespace=namespace, **data)


def test_start_then_end_gives_measured_duration() -> None:
    """A completion or failure closes its task with the duration measured here."""
    table = TaskTable()
    first = start("A", title="Alpha", iteration=1)
    assert isinstance(first, TaskStart)
    assert table.observe(first, 10.0) is None
    assert table.observe(start("B"), 11.0) is None
    assert len(table) == 2

    outcome = table.observe(complete("A", duration=99.0, success=True), 12.5)
    assert outcome is not None
    assert outcome.ok
    assert outcome.duration == 2.5
    assert outcome.record is not None
    assert outcome.record.key == ("ns", "A")
    assert outcome.record.title == "Alpha"
    assert outcome.record.iteration == 1
    assert outcome.record.message_id == first.messageId

    outcome = table.observe(failed("B", error="boom"), 14.0)
    assert outcome is not None
    assert not outcome.ok
    assert outcome.duration == 3.0
    assert len(table) == 0


def test_complete_with_success_false_is_not_ok() -> None:
    """A task_complete that says success=false counts as a failure."""
    table = TaskTable()
    table.observe(start("A"), 0.0)
    outcome = table.observe(complete("A", success=False), 1.0)
    assert outcome is not None
    assert not outcome.ok


def test_child_duration_is_left_untouched() -> None:
    """Observing a completion does not rewrite the child's own duration field."""
    table = TaskTable()
    table.observe(start("A"), 0.0)
    end = complete("A", duration=0.528)
    table.observe(end, 7.0)
    assert isinstance(end, TaskComplete)
    assert end.data.duration == 0.528


def test_unknown_completion_has_no_record_or_duration() -> None:
    """An end without a matching start still yields an outcome, without a duration."""
    table = TaskTable()
    table.observe(start("A", namespace="other"), 0.0)
    outcome = table.observe(complete("A", namespace="ns"), 1.0)
    assert outcome is not None
    assert outcome.record is None
    assert outcome.duration is None
    assert outcome.ok
    assert len(table) == 1


def test_other_events_are_ignored() -> None:
    """Messages other than task events leave the table alone and return None."""
    table = TaskTable()
    log = message("log", message="hi")
    assert isinstance(log, LogMessage)
    assert table.observe(log, 0.0) is None
    assert len(table) == 0


def test_restart_of_same_task_replaces_it() -> None:
    """A second task_start for an open task restarts its clock and its place in order."""
    table = TaskTable()
    table.observe(start("A"), 0.0)
    table.observe(start("B"), 1.0)
    table.observe(start("A", iteration=2), 5.0)
    assert [r.task_id for r in table.in_flight()] == ["B", "A"]
    outcome = table.observe(complete("A"), 6.0)
    assert outcome is not None
    assert outcome.duration == 1.0
    assert outcome.record is not None
    assert outcome.record.iteration == 2


def test_namespace_none_is_its_own_key() -> None:
    """Tasks without a namespace are tracked apart from namespaced ones."""
    table = TaskTable()
    table.observe(start("A", namespace=None), 0.0)
    table.observe(start("A"), 0.0)
    assert len(table) == 2
    assert [r.namespace for r in table.in_flight()] == [None, "ns"]


def test_start_epoch_prefers_receipt_time() -> None:
    """The start's epoch time is the caller's receipt time, else the frame's timestamp."""
    table = TaskTable()
    stamped = parse_message(
        {"type": "ipc", "event": "task_start", "data": {"taskId": "A"}, "timestamp": 111}
    )
    table.observe(stamped, 0.0)
    table.observe(start("B"), 0.0, epoch_ms=222)
    table.observe(start("C"), 0.0)
    assert [r.started_epoch_ms for r in table.in_flight()] == [111, 222, None]


@pytest.mark.parametrize(
    ("exit_code", "signal", "text"),
    [
        (3, None, "process exited with code 3"),
        (0, None, "process exited with code 0"),
        (None, 9, "killed by signal 9 (SIGKILL)"),
        (None, 15, "killed by signal 15 (SIGTERM)"),
        (None, 200, "killed by signal 200"),
        (None, None, "process exited"),
    ],
)
def test_exit_cause(exit_code: int | None, signal: int | None, text: str) -> None:
    """exit_cause names the exit code, or the signal with its name when known."""
    assert exit_cause(exit_code, signal) == text


def test_lose_all_fails_every_open_task_once() -> None:
    """Each open task gets one synthetic task_failed with lost=true, then is gone."""
    table = TaskTable()
    table.observe(start("A", title="Alpha", iteration=3), 10.0)
    table.observe(start("B", namespace=None), 12.0)
    table.observe(start("C"), 13.0)
    table.observe(complete("C"), 14.0)

    lost = table.lose_all(exit_cause(3, None), 20.0, epoch_ms=1_795_236_690_901)
    assert len(table) == 0
    assert table.lose_all("process restarted", 30.0, 0) == []
    assert [m.data.taskId for m in lost] == ["A", "B"]
    for failure in lost:
        assert isinstance(failure, TaskFailed)
        assert failure.event == "task_failed"
        assert failure.timestamp == 1_795_236_690_901
        assert failure.data.error == "process exited with code 3"
        extra = failure.data.model_extra
        assert extra is not None
        assert set(extra) == {"lost", "duration"}
        assert extra["lost"] is True
    alpha, bravo = lost
    assert alpha.data.title == "Alpha"
    assert alpha.data.namespace == "ns"
    assert alpha.data.iteration == 3
    assert alpha.data.model_extra is not None
    assert alpha.data.model_extra["duration"] == 10.0
    assert bravo.data.namespace is None
    assert bravo.data.model_extra is not None
    assert bravo.data.model_extra["duration"] == 8.0


def test_lost_failure_json_has_only_known_fields() -> None:
    """The synthetic failure serialises with the start's fields, the cause, lost and duration."""
    table = TaskTable()
    table.observe(start("B", namespace=None), 12.0)
    (failure,) = table.lose_all(exit_cause(None, 9), 13.5, epoch_ms=5)
    line = json.loads(Event(1, "loopwork", 5, "supervisor", failure).to_json())
    assert line["data"] == {
        "taskId": "B",
        "error": "killed by signal 9 (SIGKILL)",
        "lost": True,
        "duration": 1.5,
    }


def test_timeout_reported_once_and_deadline_moves_on() -> None:
    """A task over the limit is reported once; next_deadline then names the next task."""
    table = TaskTable()
    assert table.next_deadline(60.0) is None
    table.observe(start("A", title="Alpha"), 0.0)
    table.observe(start("B"), 30.0)
    assert table.next_deadline(60.0) == 60.0
    assert table.overdue(59.9, 60.0) == []

    (report,) = table.overdue(60.0, 60.0)
    assert isinstance(report, TaskTimeout)
    assert report.event == "task_timeout"
    assert report.data.taskId == "A"
    assert report.data.namespace == "ns"
    assert report.data.title == "Alpha"
    assert report.data.elapsed == 60.0
    assert report.data.timeout == 60.0
    assert table.in_flight()[0].timed_out

    assert table.overdue(61.0, 60.0) == []
    assert table.next_deadline(60.0) == 90.0
    assert [r.data.taskId for r in table.overdue(200.0, 60.0)] == ["B"]
    assert table.next_deadline(60.0) is None
    assert len(table) == 2  # timed out tasks are still in flight


def test_timed_out_task_can_still_complete() -> None:
    """A reported timeout does not stop the task's later completion from counting."""
    table = TaskTable()
    table.observe(start("A"), 0.0)
    table.overdue(100.0, 10.0)
    outcome = table.observe(complete("A"), 120.0)
    assert outcome is not None
    assert outcome.duration == 120.0
    assert outcome.record is not None
    assert outcome.record.timed_out


_ops = st.lists(
    st.tuples(
        st.sampled_from(["start", "complete", "failed"]),
        st.sampled_from([None, "ns", "other"]),
        st.sampled_from(["A", "B", "C"]),
    ),
    max_size=40,
)


@given(_ops)
def test_len_counts_started_and_not_ended(ops: list[tuple[str, str | None, str]]) -> None:
    """For any interleaving, len(table) is the number of keys started and not ended."""
    table = TaskTable()
    open_keys: set[tuple[str | None, str]] = set()
    build = {"start": start, "complete": complete, "failed": failed}
    for now, (kind, namespace, task_id) in enumerate(ops):
        outcome = table.observe(build[kind](task_id, namespace), float(now))
        key = (namespace, task_id)
        if kind == "start":
            open_keys.add(key)
            assert outcome is None
        else:
            assert outcome is not None
            assert (outcome.record is not None) == (key in open_keys)
            open_keys.discard(key)
        assert len(table) == len(open_keys)
        assert {r.key for r in table.in_flight()} == open_keys
    assert len(table.lose_all("process restarted", float(len(ops)), 0)) == len(open_keys)
    assert len(table) == 0
