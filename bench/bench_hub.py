"""Hub benchmark: supervise instances followed by one hub, on one machine and over Redis.

    python bench/bench_hub.py [--quick] [--instances N] [--rate EVENTS_PER_S] [--no-bus]

N supervise instances (50 by default, 10 with ``--quick``) each run a child
that prints ``log`` frames carrying the time they were written; together
they make ``--rate`` events a second (200 by default). Each also publishes
to a private ``redis-server`` with ``--bus`` (as ten simulated hosts), so
the same events are measured twice, in windows one after the other:

- the local hub (:class:`supervisor._hub.fleet.Fleet`) following them all
  through their control sockets, against a bare reader of the same tails
  that parses each line as JSON and does nothing else;
- the bus hub (:class:`adapters.redis_hub.BusHub`, leading, reading the
  consumer group and acknowledging each entry), against a bare ``XREAD``
  reader of the stream that parses each entry's JSON.

Both hubs run in this process with a ``deliver`` that records each event
instead of sending it to Telegram, so Telegram's own rate limit is left out.
Printed: p50 / p99 / max from a child writing a frame to the hub having the
event (for the bus: through supervise's journal, its durable route's XADD,
Redis and the group read), events/s, and the hub's CPU per event (this
process's user+system time over the window) as a ratio to its baseline;
then Redis's own CPU per event and the stream's memory per entry, which
the README's sizing for 1,000 hosts is computed from.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
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
HOSTS = 10
WARM_UP = 2.0


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int) -> float:
    """User+system seconds of another process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Window:
    """What one reader did in one measured window."""

    count: int
    cpu: float
    latencies: list[float]
    other_cpu: float = 0.0


class Redis:
    """A private redis-server on 127.0.0.1 that keeps nothing on disk."""

    def __init__(self, directory: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        server = shutil.which("redis-server")
        assert server is not None
        argv = [server, "--bind", "127.0.0.1", "--port", str(self.port), "--save", ""]
        argv += ["--appendonly", "no", "--dir", str(directory)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if b"Ready to accept connections" in line:
                break
        self.proc.stdout.close()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def start_instances(
    count: int, rate: float, seconds: float, env: dict[str, str], bus: str | None
) -> list[subprocess.Popen[bytes]]:
    interval = count / rate
    procs = []
    for index in range(count):
        argv = [sys.executable, "-m", "supervisor", "--no-pty", "--instance", f"bench-{index}"]
        if bus is not None:
            argv += ["--bus", bus, "--host", f"sim-{index % HOSTS}"]
        argv += ["--", sys.executable, "-c", CHILD, str(interval), str(seconds)]
        procs.append(
            subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    return procs


def wait_for_sockets(directory: Path, count: int) -> None:
    deadline = time.monotonic() + 120
    while len(list(directory.glob("bench-*.sock"))) < count:
        if time.monotonic() > deadline:
            raise SystemExit("the instances did not start")
        time.sleep(0.1)


async def measure(
    reader: Callable[[Callable[[float | None], None]], Awaitable[None]],
    seconds: float,
    other: int | None = None,
) -> Window:
    """Run ``reader`` (it calls ``seen(latency)`` per event) and measure a window of it."""
    latencies: list[float] = []
    count = 0

    def seen(latency: float | None) -> None:
        nonlocal count
        count += 1
        if latency is not None:
            latencies.append(latency)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader, seen)
        await trio.sleep(WARM_UP)  # every instance found and followed
        latencies.clear()
        count = 0
        before, other_before = cpu(), process_cpu(other) if other else 0.0
        await trio.sleep(seconds)
        window = Window(
            count,
            cpu() - before,
            list(latencies),
            process_cpu(other) - other_before if other else 0.0,
        )
        nursery.cancel_scope.cancel()
    return window


def latency_of(event: object) -> float:
    return time.time() - float(event.data.message)  # type: ignore[attr-defined]


async def local_baseline(directory: Path, seen: Callable[[float | None], None]) -> None:
    from supervisor._hub.client import tail

    async def read(path: Path) -> None:
        async for line in tail(path, None):
            json.loads(line)
            seen(None)

    async with trio.open_nursery() as nursery:
        for path in sorted(directory.glob("bench-*.sock")):
            nursery.start_soon(read, path)


async def local_hub(directory: Path, state: Path, seen: Callable[[float | None], None]) -> None:
    from supervisor._core.events import Event
    from supervisor._hub.fleet import Fleet, HubState

    async def deliver(event: Event) -> bool:
        if event.event == "log":
            seen(latency_of(event))
        return False  # a log line is not for the chat (the default [telegram] events)

    fleet = Fleet(deliver, HubState(state), directory=directory, interval=0.2)
    await fleet.serve()


async def bus_baseline(url: str, seen: Callable[[float | None], None]) -> None:
    import coredis

    async with coredis.Redis.from_url(url) as client:
        last = "$"
        while True:
            found = await client.xread({"ipc:events": last}, count=100, block=1000)
            for entry in (found or {}).get(b"ipc:events", ()):
                identifier = entry.identifier
                last = identifier.decode() if isinstance(identifier, bytes) else identifier
                json.loads(entry.field_values[b"json"])
                seen(None)


async def bus_hub(url: str, seen: Callable[[float | None], None]) -> None:
    import coredis

    from adapters.redis_hub import GROUP, BusHub
    from supervisor._core.events import Event

    async with coredis.Redis.from_url(url) as client:
        # The group starts now: what the instances published before is not news.
        await client.xgroup_create("ipc:events", GROUP, "$", mkstream=True)

    async def deliver(event: Event) -> bool:
        if event.event == "log":
            seen(latency_of(event))
        return False

    await BusHub(url, deliver, report=lambda line: None).serve()


async def stream_memory(url: str) -> tuple[int, int]:
    """(entries, bytes) of the events stream."""
    import coredis

    async with coredis.Redis.from_url(url) as client:
        length = await client.xlen("ipc:events")
        used = await client.memory_usage("ipc:events", samples=0)
        return length, int(used or 0)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def row(name: str, window: Window, seconds: float, baseline: Window | None) -> list[str]:
    ordered = sorted(window.latencies)
    per_event = window.cpu / max(window.count, 1)
    if ordered:
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        times = [ms(statistics.median(ordered)), ms(p99), ms(ordered[-1])]
    else:
        times = ["-", "-", "-"]
    ratio = "1.00x"
    if baseline is not None:
        ratio = f"{per_event / max(baseline.cpu / max(baseline.count, 1), 1e-9):.2f}x"
    rate = f"{window.count / seconds:.0f}/s"
    return [name, rate, *times, f"{per_event * 1e6:.0f} µs", ratio]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--instances", type=int)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--no-bus", action="store_true", help="the local hub only")
    args = parser.parse_args(argv)
    count = args.instances or (10 if args.quick else 50)
    seconds = 10.0 if args.quick else 30.0
    use_bus = not args.no_bus and shutil.which("redis-server") is not None
    if not args.no_bus and not use_bus:
        print("redis-server is not installed: the bus is not measured\n")
    windows = 4 if use_bus else 2
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
        redis = Redis(root) if use_bus else None
        total = windows * (seconds + WARM_UP + 1) + 20
        procs = start_instances(count, args.rate, total, env, redis.url if redis else None)
        try:
            wait_for_sockets(directory, count)
            state = root / "hub.json"
            base = trio.run(measure, lambda seen: local_baseline(directory, seen), seconds)
            local = trio.run(measure, lambda seen: local_hub(directory, state, seen), seconds)
            rows = [
                row("local: bare tail reader (baseline)", base, seconds, None),
                row("local: hub (Fleet)", local, seconds, base),
            ]
            extra: list[list[str]] = []
            if redis is not None:
                url, pid = redis.url, redis.proc.pid
                xread = trio.run(measure, lambda seen: bus_baseline(url, seen), seconds, pid)
                hub = trio.run(measure, lambda seen: bus_hub(url, seen), seconds, pid)
                rows += [
                    row("bus: bare XREAD reader (baseline)", xread, seconds, None),
                    row("bus: hub (BusHub, group + XACK)", hub, seconds, xread),
                ]
                length, used = trio.run(stream_memory, url)
                redis_per_event = hub.other_cpu / max(hub.count, 1)
                extra = [
                    ["redis-server CPU per event (XADD + group read + XACK)",
                     f"{redis_per_event * 1e6:.0f} µs"],
                    ["stream memory per entry (MEMORY USAGE / XLEN)",
                     f"{used / max(length, 1):.0f} B ({length} entries, {used / 2**20:.1f} MiB)"],
                ]  # fmt: skip
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait()
            if redis is not None:
                redis.stop()
    print_table(
        f"{count} instances, {args.rate:.0f} events/s in total, {seconds:.0f} s per window",
        ["reader", "events", "p50", "p99", "max", "CPU/event", "vs baseline"],
        rows,
    )
    if extra:
        print_table("Redis", ["measure", "value"], extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())
