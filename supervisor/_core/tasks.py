"""In-flight task accounting: no task ends without an outcome.

A child announces work with ``task_start`` and closes it with
``task_complete`` or ``task_failed``. When the child dies, is restarted, or
simply never closes a task, nobody downstream learns that the task is over.
:class:`TaskTable` remembers every open task so that the supervisor can:

- measure durations itself, from receipt times, since the child's own
  ``duration`` field is in whatever unit the child chose (loopwork sends
  seconds, its docs say milliseconds);
- report a task that runs too long, once, as ``task_timeout``;
- close every open task with a synthetic ``task_failed`` carrying
  ``lost: true`` when the process goes away, so a dashboard or a Telegram
  chat never shows a task as running forever.

The table is bounded by supervise, not by the child: a child can announce
millions of task ids and never close one. At most :data:`MAX_OPEN_TASKS`
are tracked; a ``task_start`` beyond that evicts the oldest open task, which
is closed at once with the same ``task_failed`` (``lost: true``, the
``error`` saying why). So every task that started still gets exactly one
outcome from supervise or the child; a completion that arrives later for an
evicted task counts as one without a start.

Like the frame decoder this module is sans-IO: no trio, no clock. The caller
passes monotonic seconds (``now``) and, where a message needs a timestamp,
epoch milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from signal import Signals
from typing import Any, NamedTuple, TypeAlias

from .events import TaskTimeout, TaskTimeoutData
from .messages import (
    IpcMessage,
    TaskComplete,
    TaskFailed,
    TaskFailedData,
    TaskStart,
)

__all__ = [
    "MAX_OPEN_TASKS",
    "TaskKey",
    "TaskOutcome",
    "TaskRecord",
    "TaskTable",
    "exit_cause",
]

MAX_OPEN_TASKS = 10_000
"""Open tasks tracked per program. Real task runners have a handful open at
once (loopwork runs one at a time, or a few in parallel); ten thousand is far
beyond that, and still only a few megabytes of records, and a lost-task burst
at exit that routes deliver in seconds."""

TaskKey: TypeAlias = tuple[str | None, str]
"""``(namespace, taskId)``: the same id in two namespaces is two tasks."""


def exit_cause(exit_code: int | None, signal: int | None) -> str:
    """Describe how a process ended, for the ``error`` of a lost task.

    Args:
        exit_code: the exit status, when the process exited by itself.
        signal: the signal number, when a signal ended it (takes precedence).

    Returns:
        ``"process exited with code 3"``, ``"killed by signal 9 (SIGKILL)"``,
        ``"killed by signal 99"`` for a signal Python does not name, or
        ``"process exited"`` when neither is known.
    """
    if signal is not None:
        try:
            name = Signals(signal).name
        except ValueError:
            return f"killed by signal {signal}"
        return f"killed by signal {signal} ({name})"
    if exit_code is not None:
        return f"process exited with code {exit_code}"
    return "process exited"


@dataclass(slots=True)
class TaskRecord:
    """One task that has started and not yet ended.

    Attributes:
        key: ``(namespace, taskId)``; ``namespace`` may be None.
        title: the task's title from ``task_start``, if any.
        iteration: the loop iteration from ``task_start``, if any.
        started_at: monotonic seconds when its ``task_start`` was observed.
        started_epoch_ms: epoch milliseconds of the start (the caller's
            receipt time, else the frame's ``timestamp``), or None if neither
            was known.
        message_id: ``messageId`` of the ``task_start``.
        timed_out: a ``task_timeout`` was already reported for it.
    """

    key: TaskKey
    title: str | None
    iteration: int | None
    started_at: float
    started_epoch_ms: int | None
    message_id: str
    timed_out: bool = False

    @property
    def namespace(self) -> str | None:
        return self.key[0]

    @property
    def task_id(self) -> str:
        return self.key[1]


class TaskOutcome(NamedTuple):
    """How an observed ``task_complete`` or ``task_failed`` closed a task.

    A named tuple: one is made for every task end a busy child reports, and
    a frozen dataclass took three times as long to build (~0.4 us).

    Attributes:
        record: the task it closed, or None when no matching ``task_start``
            was seen (the supervisor started mid-run, or the child sent a
            stray completion). Such an outcome still counts as a finished task.
        ok: True for ``task_complete``, unless its ``success`` is false.
        duration: seconds between the start and the end as observed here, or
            None when the start is unknown. The child's own ``duration`` field
            is left as it sent it.
    """

    record: TaskRecord | None
    ok: bool
    duration: float | None


def _key(data: Any) -> TaskKey:
    return (data.namespace, data.taskId)


def _lost(record: TaskRecord, cause: str, now: float, epoch_ms: int) -> TaskFailed:
    """The synthetic ``task_failed`` (``lost: true``) that closes ``record``."""
    fields: dict[str, Any] = {"taskId": record.task_id}
    # Only the fields the task_start had: JSON output omits unset ones.
    if record.title is not None:
        fields["title"] = record.title
    if record.namespace is not None:
        fields["namespace"] = record.namespace
    if record.iteration is not None:
        fields["iteration"] = record.iteration
    fields.update(error=cause, lost=True, duration=now - record.started_at)
    return TaskFailed(
        type="ipc",
        event="task_failed",
        data=TaskFailedData.model_validate(fields),
        timestamp=epoch_ms,
    )


class TaskTable:
    """The tasks of one child that have started and not yet ended.

    Feed it every message with :meth:`observe`. Ask :meth:`next_deadline`
    how long to sleep, then :meth:`overdue` what to report. When the process
    exits or is restarted, :meth:`lose_all` closes what was left open; after
    each batch, :meth:`take_evicted` closes the tasks evicted to keep the
    table within ``max_open``.

    Args:
        max_open: how many open tasks are tracked (see :data:`MAX_OPEN_TASKS`).
    """

    def __init__(self, max_open: int = MAX_OPEN_TASKS) -> None:
        if max_open < 1:
            raise ValueError(f"max_open must be at least 1, got {max_open}")
        self.max_open = max_open
        # Insertion order is start order: a restarted key is moved to the end.
        self._tasks: dict[TaskKey, TaskRecord] = {}
        self._evicted: list[TaskRecord] = []

    def __len__(self) -> int:
        return len(self._tasks)

    def observe(
        self, message: IpcMessage, now: float, *, epoch_ms: int | None = None
    ) -> TaskOutcome | None:
        """Account for one message from the child.

        Args:
            message: any message; only ``task_start``, ``task_complete`` and
                ``task_failed`` change the table.
            now: monotonic seconds when the message was received.
            epoch_ms: epoch milliseconds when it was received, recorded as the
                start time of a task; the frame's ``timestamp`` is used when
                this is omitted.

        Returns:
            The outcome for ``task_complete`` or ``task_failed``, else None.
            A second ``task_start`` for a task already in flight replaces the
            first one (its clock restarts) and returns None.
        """
        if isinstance(message, TaskStart):
            data = message.data
            key = _key(data)
            if self._tasks.pop(key, None) is None and len(self._tasks) >= self.max_open:
                oldest = next(iter(self._tasks))
                self._evicted.append(self._tasks.pop(oldest))
            self._tasks[key] = TaskRecord(
                key=key,
                title=data.title,
                iteration=data.iteration,
                started_at=now,
                started_epoch_ms=epoch_ms if epoch_ms is not None else message.timestamp,
                message_id=message.messageId,
            )
            return None
        if isinstance(message, TaskComplete):
            ok = message.data.success is not False
        elif isinstance(message, TaskFailed):
            ok = False
        else:
            return None
        record = self._tasks.pop(_key(message.data), None)
        if record is None:
            return TaskOutcome(None, ok, None)
        return TaskOutcome(record, ok, now - record.started_at)

    def latest(self) -> TaskRecord | None:
        """The open task that started last (what the child is working on), if any."""
        return next(reversed(self._tasks.values()), None)

    def in_flight(self) -> list[TaskRecord]:
        """The open tasks, oldest start first."""
        return list(self._tasks.values())

    def lose_all(self, cause: str, now: float, epoch_ms: int) -> list[TaskFailed]:
        """Close every open task with a synthetic ``task_failed``, and empty the table.

        Args:
            cause: the ``error`` text, e.g. from :func:`exit_cause`, or
                ``"process restarted"``.
            now: monotonic seconds now, to measure each task's duration.
            epoch_ms: epoch milliseconds now, the messages' ``timestamp``.

        Returns:
            One ``task_failed`` per open task, oldest first, whose data holds
            the task's ``taskId``, ``title``, ``namespace`` and ``iteration``
            (those it had), ``error=cause``, ``lost=True`` and ``duration``
            (seconds measured here).
        """
        failures = [_lost(record, cause, now, epoch_ms) for record in self._tasks.values()]
        self._tasks.clear()
        return failures

    def take_evicted(self, now: float, epoch_ms: int) -> list[TaskFailed]:
        """Close the tasks evicted since the last call, oldest first.

        Each gets the ``task_failed`` of :meth:`lose_all`, with an ``error``
        naming the limit.
        """
        if not self._evicted:
            return []
        cause = f"no longer tracked: more than {self.max_open} tasks open at once"
        evicted, self._evicted = self._evicted, []
        return [_lost(record, cause, now, epoch_ms) for record in evicted]

    def overdue(self, now: float, timeout: float) -> list[TaskTimeout]:
        """Report tasks that have run for ``timeout`` seconds or more, once each.

        "Or more" rather than "more than": a caller that sleeps until
        :meth:`next_deadline` and asks again must find the task due, or it
        would wake again and again at the same instant.

        Args:
            now: monotonic seconds now.
            timeout: the limit in seconds.

        Returns:
            One ``task_timeout`` per task newly over the limit, oldest first.
            Those tasks are marked ``timed_out`` and not reported again.
        """
        reports = []
        for record in self._tasks.values():
            elapsed = now - record.started_at
            if record.timed_out or elapsed < timeout:
                continue
            record.timed_out = True
            reports.append(
                TaskTimeout(
                    data=TaskTimeoutData(
                        taskId=record.task_id,
                        namespace=record.namespace,
                        title=record.title,
                        elapsed=elapsed,
                        timeout=timeout,
                    )
                )
            )
        return reports

    def next_deadline(self, timeout: float) -> float | None:
        """When the next :meth:`overdue` report falls due, in monotonic seconds.

        Returns:
            The earliest ``started_at + timeout`` among tasks not yet
            reported, or None when there is nothing to wait for.
        """
        starts = [r.started_at for r in self._tasks.values() if not r.timed_out]
        return min(starts) + timeout if starts else None
