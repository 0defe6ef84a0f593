"""A real Prometheus server scrapes a real ``supervise``, and its numbers are the child's.

Needs the ``prometheus`` binary (Debian package ``prometheus``, which
``.ci/run`` installs). Everything listens on 127.0.0.1 and is stopped by the
test that started it.
"""

from __future__ import annotations

import json
import re
import select
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, SUPERVISE, popen

from supervisor.testing import wait_until_sync

PROMETHEUS = shutil.which("prometheus")
FAKE = [sys.executable, str(ROOT / "examples" / "fake_loopwork.py")]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def read_stderr_until(proc: subprocess.Popen[bytes], pattern: bytes, timeout: float = 20) -> bytes:
    assert proc.stderr is not None
    seen = b""
    deadline = time.monotonic() + timeout
    while not re.search(pattern, seen):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {pattern!r} in {seen!r}"
        ready, _, _ = select.select([proc.stderr], [], [], remaining)
        if ready:
            chunk = proc.stderr.raw.read(65536)  # type: ignore[attr-defined]
            assert chunk, f"EOF before {pattern!r}: {seen!r}"
            seen += chunk
    return seen


def get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def query(base: str, promql: str) -> list[dict[str, Any]]:
    status, body = get(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
    assert status == 200, body
    result = json.loads(body)["data"]["result"]
    assert isinstance(result, list)
    return result


@pytest.mark.skipif(PROMETHEUS is None, reason="the prometheus server is not installed")
def test_prometheus_scrapes_what_the_child_did(tmp_path: Path) -> None:
    """6 tasks, every third failing: Prometheus sees 6 started, 4 completed, 2 failed."""
    assert PROMETHEUS is not None
    child = " ".join(
        [*FAKE, "--tasks", "6", "--fail-every", "3", "--delay", "0.05", "--question-every", "0"]
    )
    supervise = popen(
        [*SUPERVISE, "--metrics-port", "0", "--", "sh", "-c", f"{child}; sleep 120"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    match = re.search(
        rb"metrics at http://127\.0\.0\.1:(\d+)/metrics",
        read_stderr_until(supervise, rb"metrics at \S+/metrics\n"),
    )
    assert match is not None
    target = f"127.0.0.1:{int(match.group(1))}"

    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: supervise\n"
        f"    static_configs:\n      - targets: ['{target}']\n"
    )
    prometheus = popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        # Prometheus scrapes on its own schedule: a slower poll is enough.
        wait_until_sync(lambda: _ready(base), timeout=60, interval=0.25)
        wait_until_sync(lambda: query(base, 'up{job="supervise"} == 1'), timeout=60, interval=0.25)

        def counter(name: str) -> float | None:
            result = query(base, f'sum({name}{{program="fake_loopwork",namespace="demo"}})')
            return float(result[0]["value"][1]) if result else None

        wait_until_sync(
            lambda: counter("supervise_tasks_completed_total") == 4, timeout=60, interval=0.25
        )
        assert counter("supervise_tasks_failed_total") == 2
        assert counter("supervise_tasks_started_total") == 6
        durations = query(
            base,
            'sum by (outcome) (supervise_task_duration_seconds_count{program="fake_loopwork"})',
        )
        assert {r["metric"]["outcome"]: float(r["value"][1]) for r in durations} == {
            "completed": 4.0,
            "failed": 2.0,
        }
        (up,) = query(base, 'supervise_program_up{program="fake_loopwork"}')
        assert up["value"][1] == "1"
        (running,) = query(base, 'supervise_program_state{program="fake_loopwork",state="running"}')
        assert running["value"][1] == "1"
        frames = query(base, 'supervise_frames_total{program="fake_loopwork",event="task_start"}')
        assert frames[0]["value"][1] == "6"
        assert query(base, "supervise_program_resident_memory_bytes > 0")
        # Every query of the Grafana dashboard is valid PromQL for this server.
        dashboard = json.loads((ROOT / "examples" / "grafana" / "dashboard.json").read_text())
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                expression = target["expr"].replace("$program", ".*")
                url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
                status, body = get(url)
                assert status == 200, (panel["title"], expression, body)
        (finished,) = query(
            base,
            'sum(supervise_tasks_completed_total{program=~".*"}) '
            '+ sum(supervise_tasks_failed_total{program=~".*"})',
        )
        assert finished["value"][1] == "6"
    finally:
        for proc in (prometheus, supervise):
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _ready(base: str) -> bool:
    try:
        return get(f"{base}/-/ready", timeout=1)[0] == 200
    except OSError:
        return False
