"""Metrics: the bookkeeping against generated event streams, the exposition
parsed with prometheus_client's own parser, and the HTTP endpoints of a real
``supervise`` (port taken, /healthz, Pushgateway)."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
from collections import Counter, defaultdict
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from conftest import ROOT, SUPERVISE, finish, popen, supervise
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from test_prometheus import read_stderr_until
from test_webhook import http_stub

from supervisor import Event, ProgramConfig, Supervisor
from supervisor._core.bounds import MAX_EVENT_NAMES, OTHER
from supervisor._core.messages import parse_message
from supervisor._core.tasks import TaskTable
from supervisor._metrics.collector import SupervisorCollector
from supervisor._metrics.server import bind_metrics_socket, serve_metrics
from supervisor._metrics.state import MetricsState
from supervisor._process.program import _add_frames
from supervisor._process.runner import RunStats

FAKE = [sys.executable, str(ROOT / "examples" / "fake_loopwork.py")]


def samples(registry: CollectorRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the exposition, parsed back: (name, labels) -> value."""
    text = generate_latest(registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(parsed: dict[Any, float], name: str, **labels: str) -> float | None:
    return parsed.get((name, frozenset(labels.items())))


def child_event(seq: int, name: str, program: str = "loop", at: int = 0, **data: Any) -> Event:
    message = parse_message({"type": "ipc", "event": name, "data": data})
    return Event(seq, program, at, "child", message)


task_events = st.lists(
    st.tuples(
        st.sampled_from(["task_start", "task_complete", "task_failed"]),
        st.sampled_from(["A", "B", "C"]),  # task ids
        st.sampled_from(["prod", "dev", None]),  # loopwork may send no namespace
        st.integers(0, 5000),  # ms between events
    ),
    max_size=40,
)


@settings(max_examples=200)
@given(task_events)
def test_task_counters_match_the_stream(stream: list[tuple[str, str, str | None, int]]) -> None:
    """Fed as a program feeds it (each task frame with its task table's verdict):
    counts per outcome and namespace equal the frames, and each end whose start
    the table saw is one duration, the table's. No namespace counts as ""."""
    state, table = MetricsState(), TaskTable()
    now, open_at = 0.0, {}
    durations: defaultdict[tuple[str, str], list[float]] = defaultdict(list)
    for name, task, sent, gap in stream:
        now += gap / 1000
        message = parse_message(
            {"type": "ipc", "event": name, "data": {"taskId": task, "namespace": sent}}
        )
        state.task("loop", message, table.observe(message, now))
        key = (sent, task)
        if name == "task_start":
            open_at[key] = now
        elif key in open_at:
            outcome = "completed" if name == "task_complete" else "failed"
            durations[(sent or "", outcome)].append(now - open_at.pop(key))
    for outcome, name in (
        ("started", "task_start"),
        ("completed", "task_complete"),
        ("failed", "task_failed"),
    ):
        want = Counter(ns or "" for n, _, ns, _ in stream if n == name)
        assert dict(state.tasks[outcome]) == {("loop", ns): c for ns, c in want.items()}
    registry = CollectorRegistry()
    sup = Supervisor([], outputs={})
    registry.register(SupervisorCollector(sup, state))
    parsed = samples(registry)
    exposed = {
        (dict(labels)["namespace"], dict(labels)["outcome"])
        for sample_name, labels in parsed
        if sample_name == "supervise_task_duration_seconds_count"
    }
    assert exposed == set(durations)  # no series for an outcome never timed
    for (namespace, outcome), seconds in durations.items():
        labels = {"program": "loop", "namespace": namespace, "outcome": outcome}
        count = value(parsed, "supervise_task_duration_seconds_count", **labels)
        total = value(parsed, "supervise_task_duration_seconds_sum", **labels)
        assert count == len(seconds)
        assert total == pytest.approx(sum(seconds))


def test_own_events_and_labels_without_namespace() -> None:
    state = MetricsState(namespace_label=False)
    lost = parse_message(
        {
            "type": "ipc",
            "event": "task_failed",
            "data": {"taskId": "A", "namespace": "x", "lost": True, "duration": 42.0},
        }
    )
    invalid = parse_message({"type": "ipc", "event": "log", "data": {"message": "m"}})
    from supervisor._core.events import (
        FrameInvalid,
        FrameInvalidData,
        QuestionAnswered,
        QuestionAnsweredData,
    )

    bad = FrameInvalid(data=FrameInvalidData(reason="json", offset=3, detail="d", excerpt="e"))
    answered = QuestionAnswered(
        data=QuestionAnsweredData(
            messageId="m", response="approve", written="y", by="telegram:@alice", latency=7.5
        )
    )
    state.observe(
        [
            child_event(1, "task_start", taskId="A", namespace="x"),
            Event(2, "loop", 0, "supervisor", lost),
            Event(3, "loop", 0, "supervisor", bad),
            Event(4, "loop", 0, "supervisor", answered),
            Event(5, "loop", 0, "child", invalid),
        ]
    )
    assert dict(state.tasks["lost"]) == {("loop", ""): 1}
    assert dict(state.frames_invalid) == {("loop", "json"): 1}
    assert dict(state.answered) == {("loop", "telegram"): 1}
    assert state.events_total == 5
    assert dict(state.tasks["started"]) == {}  # task frames come through task(), not here


async def test_frames_add_up_across_restarts() -> None:
    """Each run counts its own frames; the exposition adds every run's, the current one too."""
    registry = CollectorRegistry()
    program = ProgramConfig.model_validate(
        {
            "command": [*FAKE, "--tasks", "2", "--delay", "0", "--question-every", "0",
                        "--exit-code", "1"],
            "name": "loop",
            "restart": "on-failure",
            "start_seconds": 5,
            "backoff": {"initial": 0.01, "jitter": "none"},
            "give_up": {"max_failures": 3},
        }
    )  # fmt: skip
    sup = Supervisor([program], outputs={"loop": None}, registry=registry)
    with trio.fail_after(30):
        await sup.run()
    parsed = samples(registry)
    assert sup.programs["loop"].restarts == 2
    # Each of the 3 runs: loop_start, 2 x (task_start, task_complete), loop_end.
    for event, per_run in (("loop_start", 1), ("task_start", 2), ("task_complete", 2)):
        assert value(parsed, "supervise_frames_total", program="loop", event=event) == 3 * per_run
    assert value(parsed, "supervise_tasks_started_total", program="loop", namespace="demo") == 6


def test_frame_counts_of_many_runs_stay_bounded() -> None:
    """Runs with different event names: totals add up, at most 100 names and ``other``."""
    total: Counter[str] = Counter()
    folded = 0
    for run in range(30):
        stats = RunStats()
        stats.frames.update({f"ev-{run}-{i}": 1 for i in range(10)})
        folded += _add_frames(total, stats)
    assert sum(total.values()) == 300
    assert len(total) == MAX_EVENT_NAMES + 1
    assert total[OTHER] == folded == 300 - MAX_EVENT_NAMES


async def test_a_supervisor_exposes_its_run() -> None:
    """An in-process Supervisor with an injected registry: programs, tasks, routes."""
    registry = CollectorRegistry()
    program = ProgramConfig(
        command=(*FAKE, "--tasks", "3", "--delay", "0.01", "--question-every", "0"), name="loop"
    )
    sup = Supervisor([program], outputs={"loop": None}, registry=registry)
    delivered: list[Event] = []

    class Keep:
        name = "keep"

        async def send(self, event: Event) -> None:
            delivered.append(event)
            await trio.lowlevel.checkpoint()

        async def aclose(self) -> None:
            await trio.lowlevel.checkpoint()

    sup.route("keep", Keep(), events=["task_*"])
    with trio.fail_after(30):
        await sup.run()
    parsed = samples(registry)
    assert value(parsed, "supervise_tasks_started_total", program="loop", namespace="demo") == 3
    assert value(parsed, "supervise_tasks_completed_total", program="loop", namespace="demo") == 2
    assert value(parsed, "supervise_tasks_failed_total", program="loop", namespace="demo") == 1
    assert value(parsed, "supervise_program_up", program="loop") == 0
    assert value(parsed, "supervise_program_state", program="loop", state="exited") == 1
    assert value(parsed, "supervise_program_last_exit_code", program="loop") == 0
    assert value(parsed, "supervise_program_output_bytes_total", program="loop") > 0  # type: ignore[operator]
    assert value(
        parsed, "supervise_route_deliveries_total", route="keep", outcome="delivered"
    ) == len(delivered)
    latency = value(parsed, "supervise_route_delivery_latency_seconds_count", route="keep")
    assert latency == len(delivered) == 6
    # A second Supervisor in the same process has a registry of its own.
    other = CollectorRegistry()
    Supervisor([program], outputs={"loop": None}, registry=other)
    assert (
        value(samples(other), "supervise_tasks_started_total", program="loop", namespace="demo")
        is None
    )


async def test_healthz_and_unknown_paths() -> None:
    registry = CollectorRegistry()
    states = {"loop": "running", "web": "fatal"}
    sock = bind_metrics_socket("127.0.0.1", 0)
    async with trio.open_nursery() as nursery:
        serve = partial(serve_metrics, path="/m")
        address = await nursery.start(serve, sock, registry, lambda: states)
        async with httpx.AsyncClient() as client:
            health = await client.get(f"http://127.0.0.1:{address.port}/healthz")
            assert health.status_code == 503
            assert health.json() == {"status": "fatal", "programs": states}
            states["web"] = "running"
            assert (await client.get(f"http://127.0.0.1:{address.port}/healthz")).status_code == 200
            assert (await client.get(f"http://127.0.0.1:{address.port}/metrics")).status_code == 404
            metrics = await client.get(address.url)
            assert metrics.status_code == 200
            assert metrics.headers["content-type"].startswith("text/plain")
        nursery.cancel_scope.cancel()


def test_a_taken_port_is_one_line_and_exit_2() -> None:
    sock = bind_metrics_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.listen()
    try:
        result = supervise("--metrics-port", str(port), "--", "true")
    finally:
        sock.close()
    assert result.returncode == 2
    assert result.stderr == (
        f"supervise: metrics port {port} on 127.0.0.1: port is already in use\n".encode()
    )


def test_bad_metrics_settings_are_one_line_errors(tmp_path: Path) -> None:
    result = supervise("--metrics-port", "70000", "--", "true")
    assert result.returncode == 2
    assert result.stderr.startswith(b"supervise: --metrics-port: input should be less than")
    config = tmp_path / "s.toml"
    config.write_text('[programs.a]\ncommand = "true"\n[metrics]\npath = "metrics"\n')
    result = supervise("check-config", str(config))
    assert result.returncode == 2
    assert result.stderr.decode().startswith(f"supervise: {config}: metrics.path: ")


def test_pushgateway_gets_the_final_metrics(tmp_path: Path) -> None:
    """--pushgateway: one PUT of the exposition when the run ends, under job/instance."""
    with http_stub(tmp_path) as stub:
        command = [*FAKE, "--tasks", "2", "--delay", "0.01", "--question-every", "0"]
        result = supervise(
            "--pushgateway",
            f"http://127.0.0.1:{stub.port}",
            "--instance",
            "nightly",
            "--",
            *command,
        )
        assert result.returncode == 0, result.stderr
        (request,) = stub.requests()
    assert request["method"] == "PUT"
    assert request["path"] == "/metrics/job/supervise/instance/nightly"
    body = base64.b64decode(request["body_b64"]).decode()
    families = {f.name: f for f in text_string_to_metric_families(body)}
    started = families["supervise_tasks_started"].samples
    assert [(s.labels, s.value) for s in started] == [
        ({"program": "fake_loopwork", "namespace": "demo"}, 2.0)
    ]


def test_served_by_the_real_command(tmp_path: Path) -> None:
    """supervise --metrics-port 0: the URL on stderr, a scrape while the child runs."""
    proc = popen(
        [*SUPERVISE, "--metrics-port", "0", "--", "sh", "-c", "echo READY; sleep 30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    seen = read_stderr_until(proc, rb"metrics at \S+/metrics\n")
    match = re.search(rb"metrics at (\S+)\n", seen)
    assert match is not None
    # The server may answer before the program has been spawned ("stopped",
    # its initial state) or before it has been up start_seconds (1 s,
    # "starting"); up turns 1 once the start has succeeded.
    deadline = time.monotonic() + 10
    while True:
        response = httpx.get(match.group(1).decode(), timeout=5)
        families = {f.name: f for f in text_string_to_metric_families(response.text)}
        (up,) = families["supervise_program_up"].samples
        states = {s.labels["state"]: s.value for s in families["supervise_program_state"].samples}
        assert up.labels == {"program": "echo"}
        if up.value == 1.0:
            assert states["running"] == 1.0
            break
        assert states["starting"] == 1.0 or states["stopped"] == 1.0, states
        assert time.monotonic() < deadline, "the program never became running"
        time.sleep(0.05)
    (rss,) = families["supervise_program_resident_memory_bytes"].samples
    assert rss.value > 0
    proc.terminate()
    status, _, _ = finish(proc)
    assert status == 143


DASHBOARD = ROOT / "examples" / "grafana" / "dashboard.json"


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


async def test_every_metric_in_the_dashboard_exists() -> None:
    """Each supervise_* name in the dashboard's PromQL is a live family of the right kind."""
    registry = CollectorRegistry()
    program = ProgramConfig(command=(*FAKE, "--tasks", "1", "--delay", "0"), name="loop")
    sup = Supervisor([program], outputs={"loop": None}, registry=registry)
    with trio.fail_after(30):
        await sup.run()
    kinds = {
        family.name: family.type
        for family in text_string_to_metric_families(generate_latest(registry).decode())
    }
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    exposed = {name + suffix for name, kind in kinds.items() for suffix in suffixes[kind]}
    used = {
        name
        for expression in dashboard_expressions()
        for name in re.findall(r"\bsupervise_[a-z_]+", expression)
    }
    assert len(used) >= 20
    assert used <= exposed, sorted(used - exposed)
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert all(
        panel["datasource"]["uid"] == "${datasource}"
        for panel in dashboard["panels"]
        if panel["type"] != "row"
    )
