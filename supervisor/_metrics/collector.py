"""The ``supervise_*`` metrics at scrape time: a prometheus_client collector.

It reads :class:`~supervisor._metrics.state.MetricsState` (counted on the hot
path), the programs' live status and ``/proc``, and yields metric families;
nothing is computed between scrapes that a scrape could compute instead. It
reads the supervisor through the small :class:`MetricsSource` protocol, so the
metrics layer knows what it shows, not the class that shows it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .._core.state import ProcessState
from .state import LabelValues, MetricsState

if TYPE_CHECKING:
    from .._process.program import ProgramSupervisor
    from .._routing.router import RouteStats

__all__ = ["MetricsSource", "SupervisorCollector", "read_process"]

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class MetricsSource(Protocol):
    """What the collector reads of a running supervisor."""

    @property
    def programs(self) -> Mapping[str, ProgramSupervisor]: ...

    @property
    def journaled_seq(self) -> int | None: ...

    def route_stats(self) -> list[RouteStats]: ...


def _counter(
    name: str, documentation: str, labels: list[str], counts: Mapping[LabelValues, int]
) -> CounterMetricFamily:
    """A counter family with one sample per label set counted in MetricsState."""
    family = CounterMetricFamily(name, documentation, labels=labels)
    for values, count in counts.items():
        family.add_metric(list(values), count)
    return family


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
    """Yields every ``supervise_*`` metric of one supervisor at scrape time."""

    def __init__(self, sup: MetricsSource, state: MetricsState) -> None:
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
        frames = CounterMetricFamily(
            "supervise_frames", "Valid frames received, by event.", labels=["program", "event"]
        )
        folded_events: list[tuple[str, int]] = []
        for program_name, supervised in self._sup.programs.items():
            counts, folded_count = supervised.frames()
            for event, count in counts.items():
                frames.add_metric([program_name, event], count)
            if folded_count:
                folded_events.append((program_name, folded_count))
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
        for program_name, count in folded_events:
            folded.add_metric([program_name, "event"], count)
        state = self._state
        for fold in (state.namespaces, state.channels):
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
