"""Prometheus metrics: programs, frames, tasks, questions and routes.

Existing exporters for supervisord, PM2 or plain processes stop at up,
state, CPU, memory and restarts. The child's own events tell us much more,
so this module turns them into task-level metrics.

Two halves, to keep metrics off the hot path:

- :class:`MetricsState` is sans-IO bookkeeping. The delivery loop hands it
  each batch of events (it looks for supervise's own), each program hands
  it its task frames with what its task table made of them (so a start and
  its end are paired once, by the table), and the router reports each
  delivery's latency to it. Frames by event name are not counted here:
  each run counts them already, and the collector reads them there.
- :class:`~supervisor._metrics.collector.SupervisorCollector` is a
  prometheus_client collector. At scrape
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
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._clock import Clock, SystemClock
from .._core.bounds import MAX_CHANNELS, MAX_NAMESPACES, OTHER, LabelFold
from .._core.events import Event
from .._core.messages import IpcMessage
from .._core.tasks import TaskOutcome

__all__ = [
    "ANSWER_BUCKETS",
    "DELIVERY_BUCKETS",
    "TASK_BUCKETS",
    "Histogram",
    "MetricsState",
]

TASK_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200)
"""Seconds: AI tasks take from seconds to a couple of hours."""
ANSWER_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600)
"""Seconds from a question to its answer: a person, somewhere."""
DELIVERY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
"""Seconds from receipt to delivery: milliseconds for files, more for webhooks."""

if TYPE_CHECKING:
    from prometheus_client.core import Metric

LabelValues = tuple[str, ...]
# A task's counter labels, then its duration series when completed and when failed.
_TaskKeys = tuple[LabelValues, list[float], list[float]]


class Histogram:
    """Cumulative bucket counts, a sum and a count, per label set (sans-IO)."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(sorted(buckets))
        self._series: dict[LabelValues, list[float]] = {}

    def observe(self, labels: LabelValues, value: float, count: int = 1) -> None:
        """Count ``count`` observations of ``value`` (several at once: one lookup)."""
        series = self._series.get(labels)
        if series is None:
            # per-bucket counts (not cumulative), then +Inf, sum
            series = self._series[labels] = [0.0] * (len(self.buckets) + 2)
        series[bisect.bisect_left(self.buckets, value)] += count
        series[-1] += value * count

    def series(self, labels: LabelValues) -> list[float]:
        """The counts of one label set, for a caller that observes into it often.

        ``series[bisect_left(buckets, value)] += 1; series[-1] += value`` is
        one observation. A series nothing was observed into is not exposed.
        """
        series = self._series.get(labels)
        if series is None:
            series = self._series[labels] = [0.0] * (len(self.buckets) + 2)
        return series

    def family(self, name: str, documentation: str, labels: Sequence[str]) -> Metric:
        from prometheus_client.core import HistogramMetricFamily  # at scrape time only

        family = HistogramMetricFamily(name, documentation, labels=labels)
        for values, series in self._series.items():
            if not any(series[:-1]):
                continue  # asked for by series(), never observed
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

    def __init__(self, *, namespace_label: bool = True, clock: Clock | None = None) -> None:
        self.namespace_label = namespace_label
        self._clock: Clock = clock or SystemClock()
        self.frames_invalid: defaultdict[LabelValues, int] = defaultdict(int)
        self.tasks: dict[str, defaultdict[LabelValues, int]] = {
            outcome: defaultdict(int)
            for outcome in ("started", "completed", "failed", "lost", "timed_out")
        }
        self._started = self.tasks["started"]
        self._completed = self.tasks["completed"]
        self._failed = self.tasks["failed"]
        self.task_duration = Histogram(TASK_BUCKETS)
        self.answered: defaultdict[LabelValues, int] = defaultdict(int)
        self.question_timeouts: defaultdict[LabelValues, int] = defaultdict(int)
        self.answer_time = Histogram(ANSWER_BUCKETS)
        self.delivery_latency = Histogram(DELIVERY_BUCKETS)
        self.events_total = 0
        self.namespaces = LabelFold("namespace", MAX_NAMESPACES)
        self.channels = LabelFold("channel", MAX_CHANNELS)
        # (program, namespace) -> its task counter labels and duration series, once kept.
        self._task_keys: dict[tuple[str, str], _TaskKeys] = {}

    def observe(self, events: Sequence[Event]) -> None:
        """Account for a batch of events (every event, in order).

        On the hot path (every frame, with metrics on), so it looks only for
        supervise's own events: each run counts the child's frames as it
        reads them (:meth:`ProgramSupervisor.frames`) and each program hands
        its task frames to :meth:`task`, so neither is counted twice.
        """
        own = _OWN_EVENTS
        for event in events:
            if event.source != "child":
                name = event.message.event
                if name in own:
                    self._own_event(event, name)
        self.events_total += len(events)

    def _namespace(self, program: str, data: Any) -> str:
        if not self.namespace_label:
            return ""
        return self.namespaces(program, _namespace_of(data))

    def task(self, program: str, message: IpcMessage, outcome: TaskOutcome | None) -> None:
        """Count a child's ``task_start`` (``outcome`` None) or the end of a task.

        Called by the program with what its task table made of the frame,
        so a start and its end are paired once, there (the duration is the
        table's). Every task frame of a busy loopwork comes here: ``str()``
        and the label folds only for namespaces not seen yet.
        """
        # _namespace_of, inlined: str() only when it is not a str already.
        namespace = message.data.namespace or ""  # loopwork may leave it out
        if type(namespace) is not str:
            namespace = str(namespace)
        keys = self._task_keys.get((program, namespace))
        if keys is None:
            keys = self._new_task_keys(program, namespace)
        if outcome is None:
            self._started[keys[0]] += 1
            return
        if outcome.ok:
            self._completed[keys[0]] += 1
            series = keys[1]
        else:
            self._failed[keys[0]] += 1
            series = keys[2]
        duration = outcome.duration
        if duration is not None:  # Histogram.observe, inlined
            series[bisect.bisect_left(TASK_BUCKETS, duration)] += 1
            series[-1] += duration

    def _new_task_keys(self, program: str, namespace: str) -> _TaskKeys:
        """A namespace's task counter labels and duration series, kept unless folded."""
        labels = (program, self.namespaces(program, namespace) if self.namespace_label else "")
        durations = self.task_duration
        completed = durations.series((*labels, "completed"))
        keys = (labels, completed, durations.series((*labels, "failed")))
        if labels[1] != OTHER:  # a folded one is folded each time, so it stays counted
            self._task_keys[(program, namespace)] = keys
        return keys

    def _own_event(self, event: Event, name: str) -> None:
        data = event.data
        if name == "frame_invalid":
            self.frames_invalid[(event.program, data.reason)] += 1
        elif name == "frame_untrusted":
            self.frames_invalid[(event.program, "untrusted")] += 1
        elif name == "task_failed":  # a task lost when its child died
            labels = (event.program, self._namespace(event.program, data))
            self.tasks["lost"][labels] += 1
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
        now_ms = self._clock.now_ms()
        labels, observe = (route,), self.delivery_latency.observe
        # Events read together share their receipt time: one observation each run of them.
        received, count = -1, 0
        for event in events:
            if event.received_at != received:
                if count:
                    observe(labels, max(0.0, (now_ms - received) / 1000), count)
                received, count = event.received_at, 0
            count += 1
        if count:
            observe(labels, max(0.0, (now_ms - received) / 1000), count)


def _namespace_of(data: Any) -> str:
    """A task's namespace as the metrics key it: a missing one is ""."""
    return str(getattr(data, "namespace", None) or "")


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


def _channel(by: str) -> str:
    """The channel of an answer (``telegram:@alice`` -> ``telegram``): bounded."""
    return by.split(":", 1)[0][:32] or "unknown"
