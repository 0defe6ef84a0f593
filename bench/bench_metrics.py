"""Metrics benchmark: what metrics cost the frame path, and how long a scrape takes under load.

    python bench/bench_metrics.py [--quick]

**Throughput.** ``supervise --no-journal --events /dev/null`` passes a dense
frame load (``fake_loopwork --frame-every 100``, a frame per 100 bytes) with
and without ``--metrics-port``; the run without metrics is the baseline.
Target: frames/s with metrics >= 95% of without (metrics cost at most 5%).

**Scrape under load.** While that load runs, ``/metrics`` is fetched every
50 ms over a kept-alive connection and each response timed. Target: a
scrape under full load takes < 50 ms. Baseline: the same scrape once the
load is over.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
from _report import print_table

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def command(size: str, port: int | None) -> list[str]:
    metrics = ["--metrics-port", str(port)] if port is not None else []
    return [
        sys.executable, "-m", "supervisor", "--no-pty", "--no-journal", "--events", os.devnull,
        *metrics, "--", sys.executable, str(ROOT / "examples" / "fake_loopwork.py"),
        "--total-bytes", size, "--frame-every", "100",
    ]  # fmt: skip


def environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "XDG_STATE_HOME": tempfile.mkdtemp()}


def timed_run(size: str, metrics: bool) -> tuple[float, int]:
    """Wall seconds of one run, and the frames the child says it wrote."""
    port = free_port() if metrics else None
    started = time.perf_counter()
    result = subprocess.run(
        command(size, port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=True,
        env=environment(),
        cwd=ROOT,
    )
    elapsed = time.perf_counter() - started
    match = re.search(rb"wrote \d+ bytes, (\d+) frames", result.stderr)
    return elapsed, int(match.group(1)) if match else 0


def scrapes_under_load(size: str, load_seconds: float) -> tuple[list[float], list[float], int]:
    """Scrape durations (ms) during the load, and after it; bytes of the last scrape.

    The load is taken to last as long as a timed run of it did (less 0.2 s);
    scrapes after that count as quiet.
    """
    port = free_port()
    # The child sleeps after its load so the quiet scrapes happen before supervise exits.
    load = " ".join(command(size, None)[command(size, None).index("--") + 1 :])
    argv = [
        *command(size, port)[: command(size, port).index("--")],
        "--",
        "sh",
        "-c",
        f"{load}; sleep 3",
    ]
    launched = time.perf_counter()
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment(), cwd=ROOT
    )
    url = f"http://127.0.0.1:{port}/metrics"
    busy: list[float] = []
    quiet: list[float] = []
    size_bytes = 0
    try:
        with httpx.Client(timeout=10) as client:
            deadline = time.monotonic() + 20
            while True:
                try:
                    client.get(url)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
            load_ends = launched + load_seconds - 0.2
            while proc.poll() is None:
                started = time.perf_counter()
                response = client.get(url)
                elapsed = (time.perf_counter() - started) * 1000
                size_bytes = len(response.content)
                (busy if started < load_ends else quiet).append(elapsed)
                time.sleep(0.05)
    except httpx.TransportError:
        pass  # supervise ended between two scrapes
    finally:
        proc.wait()
    return busy, quiet, size_bytes


def summary(values: list[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"{statistics.median(ordered):.2f} / {p99:.2f} / {ordered[-1]:.2f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="16 MiB and one run each")
    args = parser.parse_args(argv)
    size = "16M" if args.quick else "64M"
    runs = 1 if args.quick else 3
    # Interleaved, so a machine that speeds up or slows down hits both alike.
    off_runs, on_runs = [], []
    for _ in range(runs):
        off_runs.append(timed_run(size, metrics=False))
        on_runs.append(timed_run(size, metrics=True))
    off, on = [run[0] for run in off_runs], [run[0] for run in on_runs]
    frames = off_runs[0][1]
    ratio = min(off) / min(on)
    print_table(
        f"Throughput, {size} with a frame every 100 bytes ({frames:,} frames), best of {runs}",
        ["metrics", "wall s", "frames/s", "vs off", "target"],
        [
            ["off (baseline)", f"{min(off):.2f}", f"{frames / min(off):,.0f}", "1.00", ""],
            [
                "on",
                f"{min(on):.2f}",
                f"{frames / min(on):,.0f}",
                f"{ratio:.2f}",
                f">= 0.95: {'met' if ratio >= 0.95 else 'NOT MET'}",
            ],
        ],
    )
    busy, quiet, size_bytes = scrapes_under_load(size, min(on))
    worst = max(busy) if busy else float("nan")
    print_table(
        f"Scrape duration, ms (p50 / p99 / max); exposition {size_bytes:,} bytes",
        ["when", "scrapes", "ms", "target"],
        [
            [
                "under full load",
                str(len(busy)),
                summary(busy),
                f"< 50: {'met' if worst < 50 else 'NOT MET'}",
            ],
            ["after the load (baseline)", str(len(quiet)), summary(quiet), ""],
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
