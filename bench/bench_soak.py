"""Soak benchmark: frames at a steady rate for minutes, everything on; the flat line is the result.

    python bench/bench_soak.py [--seconds 600] [--rate 10000] [--every 60]

A child (under supervise's pty) writes ``--rate`` ``progress_update`` frames a
second for ``--seconds``, each carrying its number and the wall-clock
nanosecond it was written. supervise runs it from a configuration file with:

* the event journal on (a file in a temporary directory);
* a **durable** file route to a FIFO this process reads as fast as it can:
  journaled first, at least once; what arrives there is checked for lost and
  duplicated frames, and its child-to-delivery latency measured;
* a **blocking** file route to a second FIFO, read by a separate process at
  about 400 KB/s (less than the load): its writes block, its queue (1,000)
  overflows and drops the oldest; it must cost nothing to the other routes;
* Prometheus metrics on 127.0.0.1 (scraped at every report).

Every ``--every`` seconds it prints supervise's RSS (``VmRSS``) and open file
descriptors (``/proc/PID/fd``), the frames delivered in that interval and their
p50/p99 latency, and whether the metrics endpoint answered. At the end: frames
sent, lost, duplicated, p50/p99/max latency, RSS growth from the first report
to the last, and CPU of the whole tree (``wait4``).

Baseline, in the same process: the same child at the same rate under
``script -qc`` (a raw pty relay in C) for ``--baseline-seconds`` (30); the
ratios are supervise's CPU seconds per second of run, and its RSS, against
script's. Progress goes to stderr, the report to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from _report import print_table

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024

# N frames at RATE per second, paced against the clock; sleeps between bursts.
CHILD = r"""
import sys, time
rate, seconds = float(sys.argv[1]), float(sys.argv[2])
count = int(rate * seconds)
out = sys.stdout.buffer
start = time.monotonic()
for i in range(count):
    due = start + i / rate
    delay = due - time.monotonic()
    if delay > 0.0005:
        out.flush()
        time.sleep(delay)
    frame = b'{"type":"ipc","event":"progress_update","data":{"taskId":"T-%d","i":%d,"t":%d}}'
    out.write(b"__IPC_START__" + frame % (i % 100, i, time.time_ns()) + b"__IPC_END__\n")
out.flush()
"""

SLOW_READER = r"""
import os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
while os.read(fd, 4096):
    time.sleep(0.01)
"""


def progress(message: str) -> None:
    print(f"[bench_soak] {message}", file=sys.stderr, flush=True)


def supervise_command() -> list[str]:
    exe = Path(sys.executable).parent / "supervise"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "supervisor"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def rss_kib(pid: int, key: bytes = b"VmRSS:") -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


@dataclass
class Report:
    elapsed: float
    rss_kib: int
    fds: int
    delivered: int
    p50_ms: float
    p99_ms: float
    metrics_ok: bool
    load: str


@dataclass
class Soak:
    sent: int = 0
    seen: set[int] = field(default_factory=set)
    duplicated: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    reports: list[Report] = field(default_factory=list)
    cpu_seconds: float = 0.0
    seconds: float = 0.0
    returncode: int = 0
    peak_rss_kib: int = 0
    stderr_tail: list[str] = field(default_factory=list)


def write_config(tmp: Path, rate: int, seconds: float, port: int) -> Path:
    fast, slow = tmp / "durable.fifo", tmp / "blocking.fifo"
    command = [sys.executable, "-c", CHILD, str(rate), str(seconds)]
    config = f"""
drain_timeout = 30

[programs.soak]
command = {json.dumps(command)}
restart = "no"

[[routes]]
name = "durable-fifo"
events = ["progress_update"]
durable = true
sink = {{ type = "file", path = {json.dumps(str(fast))} }}

[[routes]]
name = "blocking-fifo"
queue = 1000
sink = {{ type = "file", path = {json.dumps(str(slow))} }}

[journal]
path = {json.dumps(str(tmp / "soak.journal.db"))}

[metrics]
port = {port}
host = "127.0.0.1"
"""
    path = tmp / "soak.toml"
    path.write_text(config)
    return path


def scrape(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
            return reply.status == 200 and b"# TYPE" in reply.read()
    except OSError:
        return False


def run_soak(rate: int, seconds: float, every: float) -> Soak:
    result = Soak()
    with tempfile.TemporaryDirectory(prefix="soak") as tmpdir:
        tmp = Path(tmpdir)
        port = free_port()
        config = write_config(tmp, rate, seconds, port)
        os.mkfifo(tmp / "durable.fifo", 0o600)
        os.mkfifo(tmp / "blocking.fifo", 0o600)
        # Read and write end both: no EOF before supervise opens it, and the
        # open in supervise never waits for a reader.
        fast = os.open(tmp / "durable.fifo", os.O_RDWR | os.O_NONBLOCK)
        slow_reader = subprocess.Popen([sys.executable, "-c", SLOW_READER, tmp / "blocking.fifo"])
        env = dict(os.environ)
        env["XDG_RUNTIME_DIR"] = str(tmp / "run")
        env["XDG_STATE_HOME"] = str(tmp / "state")
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        stderr_path = tmp / "stderr"
        with (
            open(os.devnull, "rb") as devnull_in,
            open(os.devnull, "wb") as devnull_out,
            open(stderr_path, "wb") as err,
        ):
            start = time.monotonic()
            proc = subprocess.Popen(
                [*supervise_command(), "--config", str(config)],
                stdin=devnull_in,
                stdout=devnull_out,
                stderr=err,
                env=env,
                cwd=ROOT,
            )
        buffer = b""
        window: list[float] = []
        delivered_in_window = 0
        next_report = start + every
        exited = None
        try:
            while True:
                timeout = max(0.0, next_report - time.monotonic())
                ready, _, _ = select.select([fast], [], [], min(timeout, 0.2))
                if ready:
                    try:
                        data = os.read(fast, 1 << 20)
                    except BlockingIOError:
                        data = b""
                    now_ns = time.time_ns()
                    buffer += data
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        fields = json.loads(line)["data"]
                        number = fields["i"]
                        if number in result.seen:
                            result.duplicated += 1
                            continue
                        result.seen.add(number)
                        latency = (now_ns - fields["t"]) / 1e6
                        result.latencies_ms.append(latency)
                        window.append(latency)
                        delivered_in_window += 1
                now = time.monotonic()
                if exited is None:
                    # wait4 rather than poll(): its rusage is the tree's CPU.
                    pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                    if pid:
                        exited = now
                        proc.returncode = os.waitstatus_to_exitcode(status)
                        result.cpu_seconds = usage.ru_utime + usage.ru_stime
                if exited is None and now >= next_report:
                    report = Report(
                        elapsed=now - start,
                        rss_kib=rss_kib(proc.pid),
                        fds=fd_count(proc.pid),
                        delivered=delivered_in_window,
                        p50_ms=percentile(window, 0.5),
                        p99_ms=percentile(window, 0.99),
                        metrics_ok=scrape(port),
                        load=load_average(),
                    )
                    result.reports.append(report)
                    result.peak_rss_kib = max(result.peak_rss_kib, rss_kib(proc.pid, b"VmHWM:"))
                    progress(
                        f"{report.elapsed:6.0f}s  rss {report.rss_kib / 1024:6.1f} MiB"
                        f"  fds {report.fds:3d}  delivered {report.delivered:7d}"
                        f"  p50 {report.p50_ms:7.2f} ms  p99 {report.p99_ms:8.2f} ms"
                        f"  metrics {'ok' if report.metrics_ok else 'DOWN'}  load {report.load}"
                    )
                    window, delivered_in_window = [], 0
                    next_report += every
                if exited is not None and not ready:
                    break  # supervise is gone and the FIFO is drained
        finally:
            if exited is None:
                proc.terminate()
                _, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
                result.cpu_seconds = usage.ru_utime + usage.ru_stime
                exited = time.monotonic()
            result.seconds = exited - start
            result.returncode = proc.returncode
            slow_reader.kill()
            slow_reader.wait()
            os.close(fast)
        # The child numbers its frames 0 .. rate*seconds-1 (its own stderr
        # goes to the pty, like its stdout).
        result.sent = int(rate * seconds)
        result.stderr_tail = stderr_path.read_text(errors="replace").splitlines()[-5:]
    return result


def run_baseline(rate: int, seconds: float) -> tuple[float, float, int, int]:
    """The child under ``script -qc``: wall seconds, CPU seconds, script's peak RSS, exit."""
    command = shlex.join([sys.executable, "-c", CHILD, str(rate), str(seconds)])
    with (
        open(os.devnull, "rb") as devnull_in,
        open(os.devnull, "wb") as devnull_out,
    ):
        start = time.monotonic()
        proc = subprocess.Popen(
            ["script", "-qc", command, "/dev/null"], stdin=devnull_in, stdout=devnull_out
        )
        peak = 0
        while True:
            peak = max(peak, rss_kib(proc.pid, b"VmHWM:"))
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.2)
    wall = time.monotonic() - start
    return wall, usage.ru_utime + usage.ru_stime, peak, os.waitstatus_to_exitcode(status)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="length of the soak")
    parser.add_argument("--rate", type=int, default=10_000, help="frames per second")
    parser.add_argument("--every", type=float, default=60.0, help="seconds between reports")
    parser.add_argument(
        "--baseline-seconds", type=float, default=30.0, help="length of the script -qc run"
    )
    args = parser.parse_args()

    base_wall = base_cpu = 0.0
    base_rss = 0
    if shutil.which("script") and args.baseline_seconds > 0:
        progress(f"baseline: script -qc, {args.rate} frames/s for {args.baseline_seconds:.0f} s")
        base_wall, base_cpu, base_rss, _ = run_baseline(args.rate, args.baseline_seconds)
    progress(
        f"soak: supervise, {args.rate} frames/s for {args.seconds:.0f} s, load {load_average()}"
    )
    soak = run_soak(args.rate, args.seconds, args.every)

    print(
        f"Soak: {args.rate} frames/s for {args.seconds:.0f} s; journal, durable FIFO route,"
        " blocking FIFO route (read at ~400 KB/s), metrics on"
    )
    print()
    rows = [
        [
            f"{r.elapsed:.0f}",
            f"{r.rss_kib / 1024:.1f}",
            str(r.fds),
            str(r.delivered),
            f"{r.p50_ms:.2f}",
            f"{r.p99_ms:.2f}",
            "ok" if r.metrics_ok else "DOWN",
            r.load,
        ]
        for r in soak.reports
    ]
    print_table(
        f"Every {args.every:.0f} s",
        ["elapsed s", "RSS MiB", "fds", "delivered", "p50 ms", "p99 ms", "metrics", "load"],
        rows,
    )
    lost = soak.sent - len(soak.seen)
    lat = soak.latencies_ms
    rss_first = soak.reports[0].rss_kib / 1024 if soak.reports else float("nan")
    rss_last = soak.reports[-1].rss_kib / 1024 if soak.reports else float("nan")
    fds = [r.fds for r in soak.reports]
    summary = [
        ["frames sent", str(soak.sent)],
        ["delivered (durable route)", str(len(soak.seen))],
        ["lost", str(lost)],
        ["duplicated", str(soak.duplicated)],
        [
            "latency p50 / p99 / max ms",
            f"{percentile(lat, 0.5):.2f} / {percentile(lat, 0.99):.2f}"
            f" / {max(lat, default=float('nan')):.2f}",
        ],
        ["RSS first / last report MiB", f"{rss_first:.1f} / {rss_last:.1f}"],
        ["RSS peak (VmHWM) MiB", f"{soak.peak_rss_kib / 1024:.1f}"],
        ["fds min / max", f"{min(fds, default=0)} / {max(fds, default=0)}"],
        ["wall s / CPU s (tree)", f"{soak.seconds:.1f} / {soak.cpu_seconds:.1f}"],
        ["exit status", str(soak.returncode)],
    ]
    print_table("Totals", ["", "value"], summary)
    if base_wall:
        cpu_rate = soak.cpu_seconds / soak.seconds
        base_rate = base_cpu / base_wall
        print_table(
            "Against the child under script -qc (same rate)",
            ["", "supervise", "script", "ratio"],
            [
                [
                    "CPU s per s of run (tree)",
                    f"{cpu_rate:.3f}",
                    f"{base_rate:.3f}",
                    f"{cpu_rate / base_rate:.2f}x" if base_rate else "-",
                ],
                [
                    "peak RSS MiB (relay itself)",
                    f"{soak.peak_rss_kib / 1024:.1f}",
                    f"{base_rss / 1024:.1f}",
                    f"{soak.peak_rss_kib / base_rss:.2f}x" if base_rss else "-",
                ],
            ],
        )
    if soak.stderr_tail:
        print("supervise's stderr (last lines):")
        for line in soak.stderr_tail:
            print(f"  {line}")
    return 0 if lost == 0 and soak.duplicated == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
