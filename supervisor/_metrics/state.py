"""Prometheus metrics: programs, frames, tasks, questions and routes.

Existing exporters for supervisord, PM2 or plain processes stop at up,
state, CPU, memory and restarts. The child's own events tell us much more,
so this module turns them into task-level metrics.

Two halves, to keep metrics off the hot path:

- :class:`MetricsState` is sans-IO bookkeeping. The delivery loop hands it
  each batch of events (a few dictionary increments per event), and the
  router reports each delivery's latency to it.
- :class:`SupervisorCollector` is a prometheus_client collector. At scrape
  time it reads that state, the programs' live status and ``/proc``, and
  yields metric families. Nothing is computed between scrapes that a scrape
  could compute instead.

The registry is always passed in (never the global one), so several
supervisors can live in one process and tests can read it directly.

Names follow Prometheus conventions: base units, ``_total`` for counters,
``_seconds``, ``_bytes``, all prefixed ``supervise_``. No label ever holds a
task id or message id (unbounded); ``namespace`` can be switched off. Label
values that come from the child (event names, namespaces) are bounded per
program, the rest folding into ``other`` (see ``_bounds``), so a child cannot
grow the scrape or supervise's memory without limit.

``supervise_program_state`` is one-hot: one series per state (stopped,
starting, running, backoff, stopping, exited, fatal), 1 for the current one.
"""

from __future__ import annotations

import bisect
import math
import os
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .._core.bounds import MAX_CHANNELS, MAX_EVENT_NAMES, MAX_NAMESPACES, LabelFold
from .._core.events import Event
from .._core.state import ProcessState

if TYPE_CHECKING:
    from .._supervisor import Supervisor

__all__ = [
    "ANSWER_BUCKETS",
    "DELIVERY_BUCKETS",
    "TASK_BUCKETS",
    "Histogram",
    "MetricsState",
    "SupervisorCollector",
]

TASK_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200)
"""Seconds: AI tasks take from seconds to a couple of hours."""
ANSWER_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600)
"""Seconds from a question to its answer: a person, somewhere."""
DELIVERY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
"""Seconds from receipt to delivery: milliseconds for files, more for webhooks."""

# Tasks whose end never comes (a child that forgets task_complete) must not
# grow the start table for ever: beyond this, the oldest start is forgotten
# (that task's duration is not measured).
_MAX_OPEN_TASKS = 100_000
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

LabelValues = tuple[str, ...]


class Histogram:
    """Cumulative bucket counts, a sum and a count, per label set (sans-IO)."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(sorted(buckets))
        self._series: dict[LabelValues, list[float]] = {}

    def observe(self, labels: LabelValues, value: float) -> None:
        series = self._series.get(labels)
        if series is None:
            # per-bucket counts (not cumulative), then +Inf, sum
            series = self._series[labels] = [0.0] * (len(self.buckets) + 2)
        series[bisect.bisect_left(self.buckets, value)] += 1
        series[-1] += value

    def family(self, name: str, documentation: str, labels: Sequence[str]) -> Metric:
        family = HistogramMetricFamily(name, documentation, labels=labels)
        for values, series in self._series.items():
            cumulative, buckets = 0.0, []
            for bound, count in zip((*self.buckets, math.inf), series[:-1], strict=True):
                cumulative += count
                buckets.append((_bound(bound), cumulative))
            family.add_metric(list(values), buckets, series[-1])
        return family


def _bound(value: float) -> str:
    return "+Inf" if value == math.inf else repr(float(value))


class MetricsState:
    """What the event stream has told us so far; fed batch by batch.

    Args:
        namespace_label: break task metrics down by the task's namespace
            (off: one series per program, whatever the namespaces).
    """

    def __init__(self, *, namespace_label: bool = True) -> None:
        self.namespace_label = namespace_label
        self.frames: defaultdict[LabelValues, int] = defaultdict(int)
        self.frames_invalid: defaultdict[LabelValues, int] = defaultdict(int)
        self.tasks: dict[str, defaultdict[LabelValues, int]] = {
            outcome: defaultdict(int)
            for outcome in ("started", "completed", "failed", "lost", "timed_out")
        }
        self.task_duration = Histogram(TASK_BUCKETS)
        self.answered: defaultdict[LabelValues, int] = defaultdict(int)
        self.question_timeouts: defaultdict[LabelValues, int] = defaultdict(int)
        self.answer_time = Histogram(ANSWER_BUCKETS)
        self.delivery_latency = Histogram(DELIVERY_BUCKETS)
        self.events_total = 0
        self.event_names = LabelFold("event", MAX_EVENT_NAMES)
        self.namespaces = LabelFold("namespace", MAX_NAMESPACES)
        self.channels = LabelFold("channel", MAX_CHANNELS)
        self._task_starts: dict[tuple[str, str, str], int] = {}

    def observe(self, events: Iterable[Event]) -> None:
        """Account for a batch of events (every event, in order)."""
        for event in events:
            self.events_total += 1
            name = event.message.event
            if event.source == "child":
                self.frames[(event.program, self.event_names(event.program, name))] += 1
                if name in _TASK_EVENTS:
                    self._task_event(event, name)
            elif name in _OWN_EVENTS:
                self._own_event(event, name)

    def _namespace(self, program: str, data: Any) -> str:
        if not self.namespace_label:
            return ""
        return self.namespaces(program, str(getattr(data, "namespace", None) or ""))

    def _task_event(self, event: Event, name: str) -> None:
        data = event.data
        namespace = self._namespace(event.program, data)
        labels = (event.program, namespace)
        key = (event.program, str(getattr(data, "namespace", "")), str(data.taskId))
        if name == "task_start":
            self.tasks["started"][labels] += 1
            starts = self._task_starts
            if starts.pop(key, None) is None and len(starts) >= _MAX_OPEN_TASKS:
                del starts[next(iter(starts))]
            starts[key] = event.received_at
            return
        failed = name == "task_failed" or getattr(data, "success", None) is False
        outcome = "failed" if failed else "completed"
        self.tasks[outcome][labels] += 1
        started = self._task_starts.pop(key, None)
        if started is not None:
            seconds = max(0.0, (event.received_at - started) / 1000)
            self.task_duration.observe((*labels, outcome), seconds)

    def _own_event(self, event: Event, name: str) -> None:
        data = event.data
        if name == "frame_invalid":
            self.frames_invalid[(event.program, data.reason)] += 1
        elif name == "frame_untrusted":
            self.frames_invalid[(event.program, "untrusted")] += 1
        elif name == "task_failed":  # a task lost when its child died
            labels = (event.program, self._namespace(event.program, data))
            self.tasks["lost"][labels] += 1
            key = (event.program, str(getattr(data, "namespace", "")), str(data.taskId))
            self._task_starts.pop(key, None)
            duration = getattr(data, "duration", None)
            if isinstance(duration, int | float):
                self.task_duration.observe((*labels, "lost"), float(duration))
        elif name == "task_timeout":
            self.tasks["timed_out"][(event.program, self._namespace(event.program, data))] += 1
        elif name == "question_answered":
            self.answered[(event.program, self.channels(event.program, _channel(data.by)))] += 1
            self.answer_time.observe((event.program,), float(data.latency))
        elif name == "question_timeout":
            self.question_timeouts[(event.program, data.kind)] += 1

    def observe_delivery(self, route: str, events: Sequence[Event]) -> None:
        """A route delivered ``events`` just now: how long after their receipt."""
        now_ms = time.time_ns() / 1_000_000
        for event in events:
            self.delivery_latency.observe((route,), max(0.0, (now_ms - event.received_at) / 1000))


_TASK_EVENTS = frozenset({"task_start", "task_complete", "task_failed"})
_OWN_EVENTS = frozenset(
    {
        "frame_invalid",
        "frame_untrusted",
        "task_failed",
        "task_timeout",
        "question_answered",
        "question_timeout",
    }
)


def _counter(
    name: str, documentation: str, labels: list[str], counts: Mapping[LabelValues, int]
) -> CounterMetricFamily:
    """A counter family with one sample per label set counted in MetricsState."""
    family = CounterMetricFamily(name, documentation, labels=labels)
    for values, count in counts.items():
        family.add_metric(list(values), count)
    return family


def _channel(by: str) -> str:
    """The channel of an answer (``telegram:@alice`` -> ``telegram``): bounded."""
    return by.split(":", 1)[0][:32] or "unknown"


def read_process(pid: int) -> tuple[float, int] | None:
    """CPU seconds (user + system, waited-for children included) and RSS bytes of ``pid``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            fields = file.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # fields[0] is field 3 (state): utime is field 14, rss field 24.
    ticks = sum(int(fields[index]) for index in (11, 12, 13, 14))
    return ticks / _CLOCK_TICKS, int(fields[21]) * _PAGE_SIZE


class SupervisorCollector(Collector):
    """Yields every ``supervise_*`` metric of one :class:`Supervisor` at scrape time."""

    def __init__(self, sup: Supervisor, state: MetricsState) -> None:
        self._sup = sup
        self._state = state

    def collect(self) -> Iterator[Metric]:
        yield from self._programs()
        yield from self._frames()
        yield from self._tasks()
        yield from self._questions()
        yield from self._routes()

    def describe(self) -> Iterator[Metric]:
        # Registering must not run collect() (the supervisor may not run yet).
        return iter(())

    def _programs(self) -> Iterator[Metric]:
        labels = ["program"]
        up = GaugeMetricFamily(
            "supervise_program_up", "1 if the program's child is running.", labels=labels
        )
        state = GaugeMetricFamily(
            "supervise_program_state",
            "The program's state, one-hot: 1 for the current state.",
            labels=["program", "state"],
        )
        restarts = CounterMetricFamily(
            "supervise_program_restarts", "Restarts of the program.", labels=labels
        )
        exit_code = GaugeMetricFamily(
            "supervise_program_last_exit_code",
            "Exit status of the last child that ended (128+N for signal N).",
            labels=labels,
        )
        started = GaugeMetricFamily(
            "supervise_program_start_time_seconds",
            "Epoch seconds the current (or last) child started.",
            labels=labels,
        )
        output = CounterMetricFamily(
            "supervise_program_output_bytes",
            "Plain output bytes passed through (frames excluded).",
            labels=labels,
        )
        cpu = CounterMetricFamily(
            "supervise_program_cpu_seconds",
            "CPU seconds of the running child (with its waited-for children).",
            labels=labels,
        )
        rss = GaugeMetricFamily(
            "supervise_program_resident_memory_bytes",
            "Resident memory of the running child.",
            labels=labels,
        )
        for name, program in self._sup.programs.items():
            current = program.state
            up.add_metric([name], 1.0 if current is ProcessState.RUNNING else 0.0)
            for candidate in ProcessState:
                state.add_metric([name, candidate.value], 1.0 if candidate is current else 0.0)
            restarts.add_metric([name], program.restarts)
            if program.last_returncode is not None:
                code = program.last_returncode
                exit_code.add_metric([name], 128 - code if code < 0 else code)
            if program.started_at is not None:
                started.add_metric([name], program.started_at)
            output.add_metric([name], program.output_bytes)
            pid = program.pid
            usage = read_process(pid) if pid is not None else None
            if usage is not None:
                cpu.add_metric([name], usage[0])
                rss.add_metric([name], usage[1])
        yield from (up, state, restarts, exit_code, started, output, cpu, rss)

    def _frames(self) -> Iterator[Metric]:
        frames = _counter(
            "supervise_frames",
            "Valid frames received, by event.",
            ["program", "event"],
            self._state.frames,
        )
        invalid = _counter(
            "supervise_frames_invalid",
            "Invalid frames (shown as output instead), by reason.",
            ["program", "reason"],
            self._state.frames_invalid,
        )
        events = CounterMetricFamily(
            "supervise_events", "Events routed (frames and supervise's own)."
        )
        events.add_metric([], self._state.events_total)
        folded = CounterMetricFamily(
            "supervise_label_values_folded",
            "Events counted under the label value 'other': the program's label "
            "already had as many distinct values as supervise keeps.",
            labels=["program", "label"],
        )
        state = self._state
        for fold in (state.event_names, state.namespaces, state.channels):
            for program, count in fold.folded.items():
                folded.add_metric([program, fold.label], count)
        yield from (frames, invalid, events, folded)

    def _tasks(self) -> Iterator[Metric]:
        labels = ["program", "namespace"]
        help_texts = {
            "started": "Tasks started (task_start).",
            "completed": "Tasks completed (task_complete, unless success is false).",
            "failed": "Tasks the child reported failed (task_failed).",
            "lost": "Tasks lost when their child died or was restarted.",
            "timed_out": "Tasks that ran past task_timeout.",
        }
        for outcome, documentation in help_texts.items():
            name = f"supervise_tasks_{outcome}"
            yield _counter(name, documentation, labels, self._state.tasks[outcome])
        yield self._state.task_duration.family(
            "supervise_task_duration_seconds",
            "Task durations measured by supervise from receipt times, by outcome.",
            ["program", "namespace", "outcome"],
        )
        in_flight = GaugeMetricFamily(
            "supervise_tasks_in_flight", "Tasks started and not yet ended.", labels=["program"]
        )
        for name, program in self._sup.programs.items():
            in_flight.add_metric([name], len(program.tasks))
        yield in_flight

    def _questions(self) -> Iterator[Metric]:
        pending = GaugeMetricFamily(
            "supervise_questions_pending",
            "Questions and approvals waiting for an answer.",
            labels=["program", "kind"],
        )
        for name, program in self._sup.programs.items():
            counts = {"question": 0, "approval_request": 0}
            for question in program.pending_questions():
                counts[question.kind] = counts.get(question.kind, 0) + 1
            for kind, count in counts.items():
                pending.add_metric([name, kind], count)
        answered = _counter(
            "supervise_questions_answered",
            "Answers written to the child, by channel (ctl, sdk, telegram ...).",
            ["program", "channel"],
            self._state.answered,
        )
        timed_out = _counter(
            "supervise_questions_timed_out",
            "Questions and approvals nobody answered in time.",
            ["program", "kind"],
            self._state.question_timeouts,
        )
        yield from (pending, answered, timed_out)
        yield self._state.answer_time.family(
            "supervise_question_answer_seconds",
            "Time from a question to its answer.",
            ["program"],
        )

    def _routes(self) -> Iterator[Metric]:
        deliveries = CounterMetricFamily(
            "supervise_route_deliveries",
            "Events by route and outcome: delivered, dropped (overflow), dead (gave up).",
            labels=["route", "outcome"],
        )
        failures = CounterMetricFamily(
            "supervise_route_failures", "Failed delivery attempts.", labels=["route"]
        )
        retries = CounterMetricFamily(
            "supervise_route_retries", "Deliveries retried after a failure.", labels=["route"]
        )
        coalesced = CounterMetricFamily(
            "supervise_route_coalesced", "Queued events replaced by a newer one.", labels=["route"]
        )
        queued = GaugeMetricFamily(
            "supervise_route_queue_depth", "Events waiting in the route's queue.", labels=["route"]
        )
        lag = GaugeMetricFamily(
            "supervise_route_journal_lag_events",
            "Durable routes: journaled events not yet delivered or passed over.",
            labels=["route"],
        )
        journaled = self._sup.journaled_seq
        for stats in self._sup.route_stats():
            route = [stats.name]
            deliveries.add_metric([stats.name, "delivered"], stats.delivered)
            deliveries.add_metric([stats.name, "dropped"], stats.dropped)
            deliveries.add_metric([stats.name, "dead"], stats.dead)
            failures.add_metric(route, stats.failures)
            retries.add_metric(route, stats.retries)
            coalesced.add_metric(route, stats.coalesced)
            queued.add_metric(route, stats.queued)
            if stats.durable and journaled is not None:
                lag.add_metric(route, max(0, journaled - stats.delivered_seq))
        yield from (deliveries, failures, retries, coalesced, queued, lag)
        yield self._state.delivery_latency.family(
            "supervise_route_delivery_latency_seconds",
            "Seconds from receipt of an event to its delivery by the route.",
            ["route"],
        )
