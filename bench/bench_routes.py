"""Routing benchmark: child-to-delivery latency through the file and command sinks,
and what the journal costs in throughput.

    python bench/bench_routes.py [--quick]

**Latency.** A child (under a real pty) writes frames at a fixed rate, each
carrying the wall-clock nanosecond it was written. supervise runs it
in-process with a file route and a command route (``cat > /dev/null`` per
event) whose sinks record, once the sink has delivered, how long ago the
child wrote it. Rates: 10, 1,000 and 10,000 frames/s, journal off and on
(on: the file route is durable). Baseline, in the same process: a raw pty
read loop with a naive regex that appends each frame to a file as soon as it
is seen. Targets: p99 < 5 ms at 1,000 frames/s through the file sink; no
event lost at 10,000 frames/s with a durable route.

**Throughput.** The same dense-frame load (``fake_loopwork --frame-every
100``) through ``supervise --events /dev/null``, journal off and on. Target:
validated frames/s with the journal >= 70% of without.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import pexpect
import trio
from _report import print_table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.command import CommandSink  # noqa: E402
from adapters.file import FileSink  # noqa: E402
from supervisor import Event, JournalConfig, ProgramConfig, Supervisor  # noqa: E402

# The child: N frames at RATE per second, paced against the clock, each with
# its write time in ns; it sleeps between bursts rather than spinning.
CHILD = r"""
import sys, time
rate, count = float(sys.argv[1]), int(sys.argv[2])
out = sys.stdout.buffer
start = time.monotonic()
for i in range(count):
    due = start + i / rate
    delay = due - time.monotonic()
    if delay > 0.0005:
        out.flush()
        time.sleep(delay)
    frame = b'{"type":"ipc","event":"progress_update","data":{"taskId":"T-%d","t":%d}}'
    out.write(b"__IPC_START__" + frame % (i, time.time_ns()) + b"__IPC_END__\n")
out.flush()
"""


class Timing:
    """Wraps a sink: after each delivery, the age of every event it delivered."""

    def __init__(self, inner: FileSink | CommandSink) -> None:
        self.inner = inner
        self.name = inner.name
        self.latencies: list[float] = []

    def _record(self, events: Sequence[Event]) -> None:
        now = time.time_ns()
        for event in events:
            written = (event.data.model_extra or {}).get("t")
            if written is not None:
                self.latencies.append((now - written) / 1e6)

    async def send(self, event: Event) -> None:
        await self.inner.send(event)
        self._record([event])

    async def aclose(self) -> None:
        await self.inner.aclose()


class TimingBatches(Timing):
    """A Timing for a sink that takes batches (the file sink's one write)."""

    inner: FileSink

    async def send_batch(self, events: Sequence[Event]) -> None:
        await self.inner.send_batch(events)
        self._record(events)


def percentiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return (values[0], values[0]) if values else (float("nan"), float("nan"))
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return statistics.median(values), cuts[98]


async def measure(
    sink: Timing, rate: float, count: int, journal: bool, workdir: Path
) -> tuple[Timing, int]:
    """Run the paced child with one route to ``sink``; return it and the events it dropped."""
    program = ProgramConfig(
        command=(sys.executable, "-c", CHILD, str(rate), str(count)), name="gen"
    )
    sup = Supervisor(
        [program],
        outputs={"gen": None},
        journal=JournalConfig(path=workdir / f"j-{sink.name}-{rate}-{journal}.db")
        if journal
        else False,
        drain_timeout=60,
        report=lambda line: None,
    )
    sup.route("bench", sink, events=["progress_update"], durable=journal, queue=100_000)
    await sup.run()
    (stats,) = sup.route_stats()
    return sink, stats.dropped


def naive_baseline(rate: float, count: int, workdir: Path) -> tuple[float, float]:
    """A raw pty read loop with a per-read regex, appending each frame at once."""
    child = pexpect.spawn(sys.executable, ["-c", CHILD, str(rate), str(count)], echo=False)
    pattern = re.compile(rb"__IPC_START__(.*?)__IPC_END__")
    stamp = re.compile(rb'"t":(\d+)')
    latencies: list[float] = []
    with open(workdir / "naive.jsonl", "ab", buffering=0) as out:
        while True:
            try:
                data = os.read(child.child_fd, 65536)
            except OSError:
                break
            if not data:
                break
            for match in pattern.finditer(data):
                out.write(match.group(1) + b"\n")
                written = stamp.search(match.group(1))
                if written:
                    latencies.append((time.time_ns() - int(written.group(1))) / 1e6)
    child.close()
    return percentiles(latencies)


def throughput(journal: bool, size: str) -> tuple[float, int]:
    """Seconds for supervise to pass a dense-frame load through, and its frame count."""
    with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as events:
        pass
    state = tempfile.mkdtemp()
    command = [
        sys.executable, "-m", "supervisor", "--no-pty", "--events", events.name,
        *([] if journal else ["--no-journal"]),
        "--", sys.executable, str(ROOT / "examples" / "fake_loopwork.py"),
        "--total-bytes", size, "--frame-every", "100",
    ]  # fmt: skip
    env = {**os.environ, "XDG_STATE_HOME": state, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, check=True, env=env, cwd=ROOT)
    elapsed = time.perf_counter() - started
    with open(events.name, "rb") as file:
        frames = sum(1 for line in file if b'"source":"child"' in line)
    os.unlink(events.name)
    subprocess.run(["rm", "-rf", state], check=True)
    return elapsed, frames


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer frames and one run")
    args = parser.parse_args(argv)
    seconds = 1.0 if args.quick else 3.0
    rows = []
    lost = []
    for rate in (10.0, 1000.0, 10000.0):
        count = max(20, int(rate * seconds))
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            naive = naive_baseline(rate, count, workdir)
            for journal in (False, True):
                file_sink = TimingBatches(FileSink(workdir / "events.jsonl"))
                trio.run(measure, file_sink, rate, count, journal, workdir)
                command = CommandSink(["sh", "-c", "cat > /dev/null"], timeout=30)
                command_sink = Timing(command)
                trio.run(measure, command_sink, rate, min(count, int(rate * 1.0)), journal, workdir)
                file_p50, file_p99 = percentiles(file_sink.latencies)
                cmd_p50, cmd_p99 = percentiles(command_sink.latencies)
                if journal and len(file_sink.latencies) != count:
                    lost.append(rate)
                rows.append(
                    [
                        f"{rate:,.0f}/s",
                        "on (durable)" if journal else "off",
                        f"{naive[0]:.2f} / {naive[1]:.2f}",
                        f"{file_p50:.2f} / {file_p99:.2f}",
                        f"{file_p99 / naive[1]:.1f}x",
                        f"{len(file_sink.latencies)}/{count}",
                        f"{cmd_p50:.1f} / {cmd_p99:.1f}",
                        f"{len(command_sink.latencies)}/{min(count, int(rate * 1.0))}",
                    ]
                )
    print_table(
        "Latency, child write -> delivered, ms (p50 / p99); the command sink runs 1 s of frames",
        [
            *("rate", "journal", "naive loop", "file sink", "p99 vs naive", "file got"),
            *("command sink", "command got"),
        ],
        rows,
    )
    size = "16M" if args.quick else "64M"
    runs = 1 if args.quick else 3
    off = min(throughput(False, size)[0] for _ in range(runs))
    on_runs = [throughput(True, size) for _ in range(runs)]
    on = min(run[0] for run in on_runs)
    frames = on_runs[0][1]
    print_table(
        f"Throughput, {size} with a frame every 100 bytes ({frames:,} frames), best of {runs}",
        ["journal", "wall s", "frames/s", "vs off"],
        [
            ["off", f"{off:.2f}", f"{frames / off:,.0f}", "1.00"],
            ["on", f"{on:.2f}", f"{frames / on:,.0f}", f"{off / on:.2f}"],
        ],
    )
    print(f"durable route lost events at: {lost or 'no rate'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
