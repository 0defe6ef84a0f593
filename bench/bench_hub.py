"""Hub benchmark: supervise instances on one machine, followed by one hub.

    python bench/bench_hub.py [--quick] [--instances N] [--rate EVENTS_PER_S]

N supervise instances (50 by default, 10 with ``--quick``) each run a child
that prints ``log`` frames carrying the time they were written; together
they make ``--rate`` events a second (200 by default). One hub
(:class:`supervisor._hub.fleet.Fleet`, in this process, with a ``deliver``
that records each event instead of sending it to Telegram, so Telegram's own
rate limit is left out) follows them all through their control sockets. A
``log`` event is not for the chat, so the hub records its seq lazily (an
event that reached the chat is recorded on disk before the next one, ~0.2 ms
more each).

Printed: p50 / p99 / max from a child writing a frame to the hub having
the event, events/s handled, and the hub's CPU per event (this process's
user+system time over the measured window), next to a baseline measured in
the same run: a bare reader of the same control-socket tails that parses
each line as JSON and does nothing else.

This measures the local hub only; the Redis Streams bus across machines is
not built yet.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import trio
from _report import print_table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHILD = """
import json, sys, time, uuid
interval = float(sys.argv[1])
end = time.time() + float(sys.argv[2])
n = 0
while time.time() < end:
    n += 1
    frame = {"type": "ipc", "version": "1.0", "event": "log",
             "data": {"level": "info", "message": str(time.time())},
             "timestamp": int(time.time() * 1000), "messageId": str(uuid.uuid4())}
    sys.stdout.write("__IPC_START__" + json.dumps(frame) + "__IPC_END__\\n")
    sys.stdout.flush()
    time.sleep(interval)
"""


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def start_instances(
    count: int, rate: float, seconds: float, env: dict[str, str]
) -> list[subprocess.Popen[bytes]]:
    interval = count / rate
    procs = []
    for index in range(count):
        procs.append(
            subprocess.Popen(
                [
                    sys.executable, "-m", "supervisor", "--no-pty", "--instance", f"bench-{index}",
                    "--", sys.executable, "-c", CHILD, str(interval), str(seconds),
                ],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )  # fmt: skip
    return procs


def wait_for_sockets(directory: Path, count: int) -> None:
    deadline = time.monotonic() + 120
    while len(list(directory.glob("bench-*.sock"))) < count:
        if time.monotonic() > deadline:
            raise SystemExit("the instances did not start")
        time.sleep(0.1)


async def run_hub(directory: Path, state: Path, seconds: float) -> tuple[list[float], float, int]:
    from supervisor._core.events import Event
    from supervisor._hub.fleet import Fleet, HubState

    latencies: list[float] = []

    async def deliver(event: Event) -> bool:
        if event.event == "log":
            latencies.append(time.time() - float(event.data.message))
        return False  # a log line is not for the chat (the default [telegram] events)

    fleet = Fleet(deliver, HubState(state), directory=directory, interval=0.2)
    async with trio.open_nursery() as nursery:
        await nursery.start(fleet.serve)
        await trio.sleep(2)  # every instance found and followed
        latencies.clear()
        before = cpu()
        await trio.sleep(seconds)
        used = cpu() - before
        count = len(latencies)
        nursery.cancel_scope.cancel()
    return latencies, used, count


async def run_baseline(directory: Path, seconds: float) -> tuple[float, int]:
    from supervisor._hub.client import tail

    handled = 0

    async def read(path: Path) -> None:
        nonlocal handled
        async for line in tail(path, None):
            json.loads(line)
            handled += 1

    async with trio.open_nursery() as nursery:
        for path in sorted(directory.glob("bench-*.sock")):
            nursery.start_soon(read, path)
        await trio.sleep(2)
        handled = 0
        before = cpu()
        await trio.sleep(seconds)
        used = cpu() - before
        count = handled
        nursery.cancel_scope.cancel()
    return used, count


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--instances", type=int)
    parser.add_argument("--rate", type=float, default=200.0)
    args = parser.parse_args(argv)
    count = args.instances or (10 if args.quick else 50)
    measure = 10.0 if args.quick else 30.0
    with tempfile.TemporaryDirectory(prefix="bench-hub-") as scratch:
        root = Path(scratch)
        env = dict(os.environ)
        env.update(
            XDG_STATE_HOME=str(root / "state"),
            XDG_RUNTIME_DIR=str(root / "run"),
            PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        )
        (root / "run").mkdir(mode=0o700)
        os.environ.update(
            XDG_STATE_HOME=env["XDG_STATE_HOME"], XDG_RUNTIME_DIR=env["XDG_RUNTIME_DIR"]
        )
        directory = root / "run" / "ipc-supervisor"
        total = 2 * (measure + 3) + 10
        procs = start_instances(count, args.rate, total, env)
        try:
            wait_for_sockets(directory, count)
            base_cpu, base_count = trio.run(run_baseline, directory, measure)
            latencies, hub_cpu, hub_count = trio.run(run_hub, directory, root / "hub.json", measure)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait()
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else float("nan")
    per_event = hub_cpu / max(hub_count, 1)
    base_per_event = base_cpu / max(base_count, 1)
    p50 = ms(statistics.median(ordered)) if ordered else "-"
    worst = ms(ordered[-1]) if ordered else "-"
    rows = [
        ["bare tail reader (baseline)", f"{base_count / measure:.0f}/s", "-", "-", "-",
         f"{base_per_event * 1e6:.0f} µs", "1.00x"],
        ["hub (Fleet, events recorded)", f"{hub_count / measure:.0f}/s",
         p50, ms(p99), worst,
         f"{per_event * 1e6:.0f} µs", f"{per_event / base_per_event:.2f}x"],
    ]  # fmt: skip
    print_table(
        f"{count} instances, {args.rate:.0f} events/s in total, {measure:.0f} s measured",
        ["reader", "events", "p50", "p99", "max", "CPU/event", "vs baseline"],
        rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
