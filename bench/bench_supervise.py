"""Benchmark ``supervise`` end to end, every figure against a baseline run in the same process.

The machine's speed may vary from one hour to the next, so what counts are the
ratios between runs made here, interleaved; the absolute figures are printed
beside them. Every figure of the final summary table, and how it is measured:

1. **Relays, 64 MiB** (``--quick``: 16 MiB). The child is
   ``examples/fake_loopwork.py --total-bytes 64M --frame-every 2048
   --complete-only``: coloured ~80-byte lines with one loopwork
   ``task_complete`` frame per ~2 KiB. Output goes to /dev/null, stdin is
   /dev/null; 3 rounds (``--runs``), the methods interleaved round by round,
   medians reported. Relays:

   * ``alone``: the child writing straight to /dev/null (what the child costs);
   * ``raw pty read loop``: this process forks the child on a pty (ONLCR
     cleared, as supervise does) and copies the master to /dev/null with
     blocking ``os.read(fd, 65536)``: the cheapest pty relay in Python;
   * ``naive regex parser``: the same loop, but it appends each read to a
     buffer, takes the frames out with
     ``re.finditer(rb"__IPC_START__(.*?)__IPC_END__", buf)`` and ``json.loads``
     of each, and writes the rest through, keeping a possibly cut frame;
   * ``script -qc CMD /dev/null``: util-linux script, a pty relay in C (its
     pty keeps ONLCR, so it relays ~1% more bytes);
   * supervise: defaults (journal on), ``--events FILE``, ``--no-journal
     --events FILE``, ``--no-pty``, and ``--events FILE`` on the same child
     without frames (``--frame-every 0``, also under script).

   The journal's default place is in a temporary ``$XDG_STATE_HOME``, emptied
   before each run. **CPU of a relay itself**, not of its child: the process
   tree's user+sys CPU from ``wait4`` (which includes the reaped child) minus
   the child's own CPU, which the child writes at exit
   (``getrusage(RUSAGE_SELF)``, ``--rusage-file``). For the in-process loops it
   is this process's own ``getrusage`` difference. Under script the relay's
   figure also holds ``sh -c``'s (about a millisecond). supervise's figure
   holds its output relay process's (the pty reader it starts and reaps).

   * *CPU per frame* = (supervise's own CPU - its start-up CPU) / frames, where
     the start-up CPU is that of ``supervise [same options] -- true`` (which
     holds ``true``'s own, well under a millisecond). The ratio is against
     script's own CPU per frame, computed the same way (minus
     ``script -qc true``). Targets: <= 8 us/frame with the journal,
     <= 5 us/frame with ``--no-journal``, and <= 1.0x script.
   * *Wall time* ratios are medians of supervise ``--events FILE`` over
     medians of script, with frames (<= 1.25x) and without (<= 1.02x).

2. **Start-up**, in the same rounds: ``supervise -- true`` from ``Popen`` to
   reap, against ``python -c 'import trio'`` in the same interpreter
   (<= 0.15 s and <= 1.25x). *Time to exec*: the child is
   ``sh -c 'date +%s.%N'``; the figure is the wall-clock time it prints minus
   ``time.time()`` taken just before ``Popen`` of supervise; the baseline is
   the same child started directly (what ``sh`` and ``date`` take alone).
   Target <= 0.1 s.

3. **Peak RSS** of the supervise process itself (``VmHWM`` in
   ``/proc/<pid>/status``, the process's own high-water mark, polled every
   50 ms) over 1 GiB of output with frames (``--quick``: 128 MiB), on a pty and
   with ``--no-pty``; the ratio is against the same run at 64 MiB (16 MiB).
   ``wait4``'s ``ru_maxrss`` is beside it, but it is the max over supervise
   and its reaped child, a cross-check only. Target <= 60 MiB. The peak of
   supervise's output relay (a separate small process on a pty) is beside it.

4. **Latency** of a frame to its line in the ``--events`` file, journal on:
   a child writes a ``progress_update`` frame carrying ``time.time_ns()``
   every 1 ms (flushed one by one) for 20 s (``--quick``: 5 s); this process
   follows the events file, reading it every 0.2 ms, and takes arrival time
   minus the time in the frame. Baseline: the same child on a pty whose
   master this process reads itself (blocking reads), the floor of pty
   transport. The first 0.5 s is left out (start-up). Target p99 <= 1 ms.

5. **No loss at 10,000 frames/s** for 60 s (``--quick``: 10 s):
   ``bench_soak.run_soak`` (journal, a durable file route to a FIFO this
   process drains, a blocking file route to a slow reader, Prometheus metrics
   on 127.0.0.1); every frame carries its number, and what reaches the
   durable route is counted against what was sent. Target 0 lost.

Supervise's bytecode is compiled once before the runs, beside the sources
(``__pycache__``, as pip compiles an installed package); without it, where
``PYTHONDONTWRITEBYTECODE`` is set, each start would compile ~45 modules
from source again (~80 ms).

A sanity pass first runs every relay on 4 MiB with its output captured to
check that all of it arrives and that supervise and the naive parser strip
every frame. Progress goes to stderr, the report to stdout. Runs from any
directory; every process it starts is waited for or stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from _report import print_table
from bench_soak import run_soak

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CHILD = REPO / "examples" / "fake_loopwork.py"
MIB = 1024 * 1024
MB = 1e6
RUNS = 3
POLL_SECONDS = 0.05
FOLLOW_SECONDS = 0.0002

TARGET_CPU_PER_FRAME_US = 8.0
TARGET_CPU_PER_FRAME_NO_JOURNAL_US = 5.0
TARGET_CPU_VS_SCRIPT = 1.0
TARGET_WALL_VS_SCRIPT = 1.25
TARGET_WALL_FRAMELESS_VS_SCRIPT = 1.02
TARGET_STARTUP_S = 0.15
TARGET_STARTUP_VS_TRIO = 1.25
TARGET_EXEC_S = 0.1
TARGET_RSS_MIB = 60.0
TARGET_P99_MS = 1.0

SUMMARY_RE = re.compile(rb"wrote (\d+) bytes, (\d+) frames")
NAIVE_FRAME_RE = re.compile(rb"__IPC_START__(.*?)__IPC_END__", re.DOTALL)
START_MARK = b"__IPC_START__"

# A frame every 1 ms, flushed, carrying its number and the wall-clock ns it was written.
LATENCY_CHILD = r"""
import sys, time
rate, seconds = float(sys.argv[1]), float(sys.argv[2])
out = sys.stdout.buffer
start = time.monotonic()
for i in range(int(rate * seconds)):
    delay = start + i / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    frame = b'{"type":"ipc","event":"progress_update","data":{"i":%d,"t":%d}}'
    out.write(b"__IPC_START__" + frame % (i, time.time_ns()) + b"__IPC_END__\n")
    out.flush()
"""


def progress(message: str) -> None:
    print(f"[bench_supervise] {message}", file=sys.stderr, flush=True)


def supervise_command() -> list[str]:
    """``python -m supervisor`` with this checkout first on ``PYTHONPATH`` (set in main)."""
    return [sys.executable, "-m", "supervisor"]


def size_arg(nbytes: int) -> str:
    return f"{nbytes // (1024 * MIB)}G" if nbytes % (1024 * MIB) == 0 else f"{nbytes // MIB}M"


def fmt_size(nbytes: int) -> str:
    return f"{nbytes // (1024 * MIB)} GiB" if nbytes % (1024 * MIB) == 0 else f"{nbytes // MIB} MiB"


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- running one process tree -----------------------------------------------------


@dataclass
class RunResult:
    seconds: float
    cpu_seconds: float  # user + sys of the process and its reaped descendants
    returncode: int
    maxrss_kib: int  # wait4's ru_maxrss: max over the process and its reaped children
    relay_cpu: float = 0.0  # the relay's own CPU: cpu_seconds minus the child's own
    child_cpu: float | None = None  # what the child reported (None: no report)
    vmhwm_kib: int = 0  # the process's own peak, sampled from /proc (memory runs only)
    relay_vmhwm_kib: int = 0  # the peak of its output relay process, if it has one
    samples: int = 0
    stderr: bytes = b""


def read_vmhwm_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def output_relays(pid: int) -> list[int]:
    """The output relay processes among ``pid``'s children (supervise's pty reader)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as children:
                pids = [int(child) for child in children.read().split()]
        except (OSError, ValueError):
            continue
        for child in pids:
            try:
                with open(f"/proc/{child}/cmdline", "rb") as cmdline:
                    if b"relay.py" in cmdline.read():
                        found.append(child)
            except OSError:
                continue
    return found


def read_child_cpu(path: str | None) -> float | None:
    """The CPU seconds the child wrote at exit with ``--rusage-file`` (user sys)."""
    if path is None:
        return None
    try:
        user, system = Path(path).read_text().split()
        return float(user) + float(system)
    except (OSError, ValueError):
        return None


def forget(path: str | None) -> None:
    if path is not None:
        Path(path).unlink(missing_ok=True)


def run_process(
    argv: Sequence[str],
    *,
    rusage_file: str | None = None,
    stdin_pipe: bool = False,
    sample_memory: bool = False,
    before: Callable[[], None] | None = None,
) -> RunResult:
    """Run ``argv`` with stdout to /dev/null; reap it with wait4 for its rusage."""
    forget(rusage_file)
    if before is not None:
        before()
    with (
        open(os.devnull, "rb") as devnull_in,
        open(os.devnull, "wb") as devnull_out,
        tempfile.TemporaryFile() as err,
    ):
        start = time.perf_counter()
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE if stdin_pipe else devnull_in,
            stdout=devnull_out,
            stderr=err,
        )
        peak = relay_peak = samples = 0
        try:
            if sample_memory:
                while True:
                    # Sample first: after the reap below /proc/<pid> is gone.
                    peak = max(peak, read_vmhwm_kib(proc.pid))
                    for relay in output_relays(proc.pid):
                        relay_peak = max(relay_peak, read_vmhwm_kib(relay))
                    samples += 1
                    pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                    if pid:
                        break
                    time.sleep(POLL_SECONDS)
            else:
                _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.stdin is not None:
            proc.stdin.close()
        err.seek(0)
        stderr = err.read()
    cpu = usage.ru_utime + usage.ru_stime
    child_cpu = read_child_cpu(rusage_file)
    return RunResult(
        seconds=seconds,
        cpu_seconds=cpu,
        returncode=proc.returncode,
        maxrss_kib=usage.ru_maxrss,
        relay_cpu=cpu - (child_cpu or 0.0),
        child_cpu=child_cpu,
        vmhwm_kib=peak,
        relay_vmhwm_kib=relay_peak,
        samples=samples,
        stderr=stderr,
    )


def fork_on_pty(argv: Sequence[str]) -> tuple[int, int]:
    """Fork ``argv`` on a new pty with ONLCR and echo off; return (pid, master fd)."""
    pid, master = pty.fork()
    if pid == 0:  # child: stdin/stdout/stderr are the pty slave
        try:
            attrs = termios.tcgetattr(0)
            attrs[1] &= ~termios.ONLCR  # as supervise does when stdout is not a terminal
            attrs[3] &= ~(termios.ECHO | termios.ECHONL)
            termios.tcsetattr(0, termios.TCSANOW, attrs)
            os.execv(argv[0], list(argv))
        finally:
            os._exit(127)
    return pid, master


def copy_raw(master: int, sink: int) -> int:
    """The raw loop: blocking reads of the master, written through. Returns 0 frames."""
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: every slave end is closed
            return 0
        if not data:
            return 0
        os.write(sink, data)


def copy_naive(master: int, sink: int) -> int:
    """The naive parser: regex over an accumulated buffer, json.loads per frame."""
    buf = b""
    frames = 0
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            data = b""
        if not data:
            if buf:
                os.write(sink, buf)
            return frames
        buf += data
        last = 0
        for match in NAIVE_FRAME_RE.finditer(buf):
            if match.start() > last:
                os.write(sink, buf[last : match.start()])
            json.loads(match.group(1))
            frames += 1
            last = match.end()
        # Keep a frame that may be cut by the read, and a start marker that may be.
        cut = buf.find(START_MARK, last)
        if cut < 0:
            cut = max(last, len(buf) - len(START_MARK) + 1)
        if cut > last:
            os.write(sink, buf[last:cut])
        buf = buf[cut:]


def run_pty_loop(
    argv: Sequence[str],
    copy: Callable[[int, int], int] = copy_raw,
    sink_path: str = os.devnull,
    rusage_file: str | None = None,
) -> RunResult:
    """Fork ``argv`` on a pty and relay the master to ``sink_path`` with ``copy``."""
    forget(rusage_file)
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    pid, master = fork_on_pty(argv)
    sink = os.open(sink_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        copy(master, sink)
    finally:
        os.close(sink)
        os.close(master)
        _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    own_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    child_cpu = usage.ru_utime + usage.ru_stime
    return RunResult(
        seconds=seconds,
        cpu_seconds=child_cpu + own_cpu,
        returncode=os.waitstatus_to_exitcode(status),
        maxrss_kib=usage.ru_maxrss,
        relay_cpu=own_cpu,
        child_cpu=child_cpu,
    )


# -- methods ----------------------------------------------------------------------


@dataclass
class Method:
    name: str
    run: Callable[[], RunResult]
    startup: bool = False
    relay: bool = True  # False: the child alone, no relay to measure
    results: list[RunResult] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(r.seconds for r in self.results)

    @property
    def best(self) -> float:
        return min(r.seconds for r in self.results)

    @property
    def median_cpu(self) -> float:
        return statistics.median(r.cpu_seconds for r in self.results)

    @property
    def median_relay_cpu(self) -> float:
        return statistics.median(r.relay_cpu for r in self.results)


def script_argv(command: Sequence[str]) -> list[str]:
    return ["script", "-qc", shlex.join(command), "/dev/null"]


@dataclass
class Sanity:
    lines: list[str]
    script_stdin_pipe: bool


def capture(argv: Sequence[str], stdin_pipe: bool = False) -> tuple[bytes, bytes, int]:
    """Run ``argv`` with stdout and stderr captured (small sizes only)."""
    proc = subprocess.run(
        list(argv),
        stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
        capture_output=True,
        check=False,
        input=None,
        timeout=120,
    )
    return proc.stdout, proc.stderr, proc.returncode


def sanity_pass(child: list[str], supervise: list[str], have_script: bool) -> Sanity:
    """Run each relay on a small output with capture; check nothing is lost."""
    lines: list[str] = []
    out, err, rc = capture(child)
    summary = SUMMARY_RE.search(err)
    expected = int(summary.group(1)) if summary else len(out)
    frames = out.count(START_MARK)
    lines.append(f"alone: {len(out)} bytes, {frames} frames, exit {rc}")
    if summary and len(out) != expected:
        lines.append(f"  WARNING: child says it wrote {expected} bytes")

    with tempfile.NamedTemporaryFile() as sink:
        result = run_pty_loop(child, copy_raw, sink.name)
        relayed = Path(sink.name).read_bytes()
    ok = SUMMARY_RE.search(relayed) is not None
    lines.append(
        f"raw pty read loop: {len(relayed)} bytes (child's stdout+stderr), "
        f"summary line {'seen' if ok else 'MISSING'}, exit {result.returncode}"
    )

    with tempfile.NamedTemporaryFile() as sink:
        result = run_pty_loop(child, copy_naive, sink.name)
        relayed = Path(sink.name).read_bytes()
    ok = SUMMARY_RE.search(relayed) is not None
    left = relayed.count(START_MARK)
    lines.append(
        f"naive regex parser: {len(relayed)} bytes passed through, {left} frames left in "
        f"output, summary line {'seen' if ok else 'MISSING'}, exit {result.returncode}"
    )

    script_stdin_pipe = False
    if have_script:
        out, _, rc = capture(script_argv(child))
        ok = SUMMARY_RE.search(out) is not None
        note = "stdin /dev/null is fine" if ok else "output cut short with stdin /dev/null"
        if not ok:
            script_stdin_pipe = True
            out, _, rc = capture(script_argv(child), stdin_pipe=True)
            ok = SUMMARY_RE.search(out) is not None
            note += f"; with a held-open stdin pipe: summary {'seen' if ok else 'MISSING'}"
        lines.append(f"script: {len(out)} bytes (ONLCR on: \\r\\n), {note}, exit {rc}")

    out, err, rc = capture([*supervise, "--", *child])
    left = out.count(START_MARK)
    invalid = err.count(b"invalid frame")
    ok = SUMMARY_RE.search(out) is not None
    lines.append(
        f"supervise: {len(out)} bytes passed through, {left} frames left in output, "
        f"{invalid} invalid-frame warnings, summary {'seen' if ok else 'MISSING'}, exit {rc}"
    )
    if left or invalid or not ok:
        lines.append("  WARNING: supervise did not strip every frame cleanly")
        lines.extend(f"  stderr: {line}" for line in err.decode(errors="replace").splitlines()[:5])

    with tempfile.TemporaryDirectory() as tmp:
        events = Path(tmp) / "events.jsonl"
        out, err, rc = capture([*supervise, "--events", str(events), "--", *child])
        lines_written = events.read_bytes().splitlines() if events.exists() else []
        count = sum(1 for line in lines_written if b'"source":"child"' in line)
    lines.append(
        f"supervise --events: {count} events from the child = {frames} frames? "
        f"{'yes' if count == frames else 'NO'} (and {len(lines_written) - count} of its own)"
    )
    return Sanity(lines, script_stdin_pipe)


# -- start-up: time to exec ---------------------------------------------------------


def time_to_exec(prefix: Sequence[str]) -> float:
    """Seconds from just before Popen to the child's ``date +%s.%N`` (under ``prefix``)."""
    start = time.time()
    proc = subprocess.run(
        [*prefix, "sh", "-c", "date +%s.%N"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
        timeout=60,
    )
    match = re.search(rb"\d+\.\d+", proc.stdout)
    return float(match.group()) - start if match else float("nan")


# -- latency: frame to its line in the events file -----------------------------------


@dataclass
class Latency:
    samples_ms: list[float]
    sent: int
    returncode: int

    def p(self, q: float) -> float:
        return percentile(self.samples_ms, q)


def latency_child(rate: int, seconds: float) -> list[str]:
    return [sys.executable, "-c", LATENCY_CHILD, str(rate), str(seconds)]


def take_latencies(lines: list[bytes], now_ns: int, out: list[float], skip_before: int) -> None:
    for line in lines:
        if b'"source":"child"' not in line and not line.startswith(START_MARK):
            continue
        text = line
        if line.startswith(START_MARK):
            text = line[len(START_MARK) : line.index(b"__IPC_END__")]
        data = json.loads(text)["data"]
        if data["i"] >= skip_before:
            out.append((now_ns - data["t"]) / 1e6)


def events_file_latency(supervise: list[str], rate: int, seconds: float) -> Latency:
    """Follow ``--events FILE`` of supervise (journal on) while the child sends frames."""
    samples: list[float] = []
    skip = int(rate * 0.5)
    with tempfile.TemporaryDirectory() as tmp:
        events = Path(tmp) / "events.jsonl"
        events.touch()
        fd = os.open(events, os.O_RDONLY)
        with open(os.devnull, "wb") as devnull_out:
            proc = subprocess.Popen(
                [*supervise, "--events", str(events), "--", *latency_child(rate, seconds)],
                stdin=subprocess.DEVNULL,
                stdout=devnull_out,
                stderr=subprocess.DEVNULL,
            )
        buffer = b""
        try:
            while True:
                data = os.read(fd, 1 << 20)
                if data:
                    now_ns = time.time_ns()
                    buffer += data
                    *lines, buffer = buffer.split(b"\n")
                    take_latencies(lines, now_ns, samples, skip)
                    continue
                if proc.poll() is not None:
                    tail = os.read(fd, 1 << 20)
                    if not tail:
                        break
                    buffer += tail
                    continue
                time.sleep(FOLLOW_SECONDS)
        finally:
            os.close(fd)
            if proc.poll() is None:
                proc.terminate()
            proc.wait()
    return Latency(samples, int(rate * seconds) - skip, proc.returncode)


def pty_latency(rate: int, seconds: float) -> Latency:
    """The same child on a pty whose master this process reads with blocking reads."""
    samples: list[float] = []
    skip = int(rate * 0.5)
    pid, master = fork_on_pty(latency_child(rate, seconds))
    buffer = b""
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            now_ns = time.time_ns()
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            take_latencies(lines, now_ns, samples, skip)
    finally:
        os.close(master)
        _, status = os.waitpid(pid, 0)
    return Latency(samples, int(rate * seconds) - skip, os.waitstatus_to_exitcode(status))


# -- report -------------------------------------------------------------------------


def ok(met: bool) -> str:
    return "yes" if met else "NO"


def child_bytes(results: Sequence[RunResult], default: int) -> tuple[int, int | None]:
    """Bytes and frames the child reports in its summary line (stderr of an alone run)."""
    for result in results:
        match = SUMMARY_RE.search(result.stderr)
        if match:
            return int(match.group(1)), int(match.group(2))
    return default, None


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "-"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="about a minute: 16 MiB timings, 1 round, 16 vs 128 MiB memory, 5 s and 10 s loads",
    )
    parser.add_argument(
        "--child",
        default=str(DEFAULT_CHILD),
        metavar="SCRIPT",
        help="load generator taking fake_loopwork's options (default examples/fake_loopwork.py)",
    )
    parser.add_argument("--runs", type=int, help="timed rounds (default 3; --quick 1)")
    parser.add_argument(
        "--frame-every",
        type=int,
        default=2048,
        metavar="BYTES",
        help="the child writes one task_complete frame per BYTES of plain output (default 2048)",
    )
    args = parser.parse_args(argv)

    quick = bool(args.quick)
    runs = args.runs or (1 if quick else RUNS)
    time_size = 16 * MIB if quick else 64 * MIB
    mem_sizes = (16 * MIB, 128 * MIB) if quick else (64 * MIB, 1024 * MIB)
    latency_seconds = 5.0 if quick else 20.0
    soak_seconds = 10.0 if quick else 60.0
    soak_rate = 10_000
    have_script = shutil.which("script") is not None
    bench_start = time.perf_counter()

    # The journal (on by default) and the control socket go to a temporary place,
    # and this checkout is the one ``python -m supervisor`` imports.
    scratch = tempfile.TemporaryDirectory(prefix="bench_supervise")
    tmp = Path(scratch.name)
    state_dir, run_dir = tmp / "state", tmp / "run"
    run_dir.mkdir(mode=0o700)
    os.environ["XDG_STATE_HOME"] = str(state_dir)
    os.environ["XDG_RUNTIME_DIR"] = str(run_dir)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    # Bytecode compiled once, up front, beside the sources, as pip compiles
    # an installed package: otherwise, where PYTHONDONTWRITEBYTECODE is set,
    # every start-up would compile supervise's modules from source again.
    # (Not into a PYTHONPYCACHEPREFIX: there Python would also look for
    # trio's and pydantic's bytecode, and compile them on every start.)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "compileall",
            "-q",
            str(REPO / "supervisor"),
            str(REPO / "adapters"),
        ],
        check=False,
        stdout=subprocess.DEVNULL,
    )
    supervise = supervise_command()
    rusage_path = str(tmp / "child.rusage")
    events_path = str(tmp / "events.jsonl")

    def fresh_state() -> None:
        shutil.rmtree(state_dir, ignore_errors=True)
        Path(events_path).unlink(missing_ok=True)

    def child(nbytes: int, frame_every: int | None = None, rusage: bool = True) -> list[str]:
        every = args.frame_every if frame_every is None else frame_every
        argv = [sys.executable, args.child, "--total-bytes", size_arg(nbytes)]
        argv += ["--frame-every", str(every), "--complete-only"]
        return argv + (["--rusage-file", rusage_path] if rusage else [])

    try:
        progress(f"sanity pass on 4 MiB ({args.child})")
        sanity = sanity_pass(child(4 * MIB, rusage=False), supervise, have_script)
        for line in sanity.lines:
            progress(f"  {line}")

        cmd = child(time_size)
        frameless = child(time_size, frame_every=0)
        events = ["--events", events_path]

        def sup(options: Sequence[str], command: Sequence[str]) -> Method:
            shown = ["FILE" if option == events_path else option for option in options]
            name = shlex.join(["supervise", *shown, "--", "CMD"])
            if command is frameless:
                name += " (no frames)"
            elif command[0] == "true":
                name = shlex.join(["supervise", *shown, "--", "true"])
            argv = [*supervise, *options, "--", *command]
            rusage = rusage_path if command[0] != "true" else None
            return Method(
                name,
                lambda: run_process(argv, rusage_file=rusage, before=fresh_state),
                startup=command[0] == "true",
            )

        def script_method(name: str, command: Sequence[str], startup: bool = False) -> Method:
            rusage = None if startup else rusage_path
            return Method(
                name,
                lambda: run_process(
                    script_argv(command), rusage_file=rusage, stdin_pipe=sanity.script_stdin_pipe
                ),
                startup=startup,
            )

        alone = Method("alone (child > /dev/null)", lambda: run_process(cmd), relay=False)
        alone_frameless = Method("alone (no frames)", lambda: run_process(frameless), relay=False)
        raw = Method(
            "raw pty read loop (in-process)",
            lambda: run_pty_loop(cmd, copy_raw, rusage_file=rusage_path),
        )
        naive = Method(
            "naive regex parser on the pty (in-process)",
            lambda: run_pty_loop(cmd, copy_naive, rusage_file=rusage_path),
        )
        methods = [alone, alone_frameless, raw, naive]
        script = script_frameless = script_true = None
        if have_script:
            script = script_method("script -qc CMD /dev/null", cmd)
            script_frameless = script_method("script -qc CMD /dev/null (no frames)", frameless)
            methods += [script, script_frameless]
        sup_default = sup([], cmd)
        sup_events = sup(events, cmd)
        sup_nojournal = sup(["--no-journal", *events], cmd)
        sup_nopty = sup(["--no-pty", *events], cmd)
        sup_frameless = sup(events, frameless)
        methods += [sup_default, sup_events, sup_nojournal, sup_nopty, sup_frameless]
        true_default = sup([], ["true"])
        true_events = sup(events, ["true"])
        true_nojournal = sup(["--no-journal", *events], ["true"])
        trio_import = Method(
            "python -c 'import trio'",
            lambda: run_process([sys.executable, "-c", "import trio"]),
            startup=True,
        )
        methods += [true_default, true_events, true_nojournal, trio_import]
        if have_script:
            script_true = script_method("script -qc true /dev/null", ["true"], startup=True)
            methods.append(script_true)

        exec_sup: list[float] = []
        exec_direct: list[float] = []
        # Interleave the methods round by round so that drift in machine load hits all alike.
        for run in range(runs):
            for method in methods:
                what = "start-up only" if method.startup else fmt_size(time_size)
                progress(f"round {run + 1}/{runs}: {method.name} ({what})")
                result = method.run()
                method.results.append(result)
                if result.returncode != 0:
                    progress(f"  exit status {result.returncode}: {result.stderr[-300:]!r}")
                progress(f"  {result.seconds:.3f} s, relay CPU {result.relay_cpu:.3f} s")
            fresh_state()
            exec_sup.append(time_to_exec([*supervise, "--"]))
            exec_direct.append(time_to_exec([]))
            progress(f"round {run + 1}/{runs}: time to exec {exec_sup[-1] * 1000:.1f} ms")
        Path(events_path).unlink(missing_ok=True)

        memory: list[tuple[str, int, RunResult]] = []
        for options in ([], ["--no-pty"]):
            for nbytes in mem_sizes:
                label = shlex.join(["supervise", *options, "--", "CMD"])
                progress(f"memory: {label}, {fmt_size(nbytes)} (VmHWM every 50 ms)")
                result = run_process(
                    [*supervise, *options, "--", *child(nbytes, rusage=False)],
                    sample_memory=True,
                    before=fresh_state,
                )
                progress(f"  {result.seconds:.1f} s, VmHWM {result.vmhwm_kib / 1024:.1f} MiB")
                memory.append((label, nbytes, result))

        progress(f"latency: 1,000 frames/s for {latency_seconds:.0f} s on a pty read directly")
        lat_base = pty_latency(1000, latency_seconds)
        progress(f"latency: 1,000 frames/s for {latency_seconds:.0f} s, supervise --events FILE")
        fresh_state()
        lat_sup = events_file_latency(supervise, 1000, latency_seconds)
        progress(f"  p50 {lat_sup.p(0.5):.2f} ms, p99 {lat_sup.p(0.99):.2f} ms")

        progress(f"load: {soak_rate} frames/s for {soak_seconds:.0f} s (bench_soak.run_soak)")
        soak = run_soak(soak_rate, soak_seconds, every=max(soak_seconds / 2, 1.0))
    finally:
        scratch.cleanup()

    # -- report ---------------------------------------------------------------------
    elapsed = time.perf_counter() - bench_start
    nbytes, frames = child_bytes(alone.results, time_size)
    nframes = frames or 1

    print(
        f"bench_supervise: python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"{'quick' if quick else 'full'} run, {elapsed:.0f} s, load {load_average()}; "
        "1 MB = 1e6 bytes"
    )
    print(f"child: {shlex.join(cmd)}")
    print(f"supervise: {shlex.join(supervise)}")
    print()
    print("Sanity pass (4 MiB, output captured):")
    for line in sanity.lines:
        print(f"  {line}")
    print()

    rows: list[list[str]] = []
    for method in methods:
        if method.startup:
            continue
        rows.append(
            [
                method.name,
                f"{method.median:.3f}",
                f"{method.best:.3f}",
                f"{nbytes / method.median / MB:.1f}",
                f"{method.median_cpu:.2f}",
                f"{method.median_relay_cpu:.3f}" if method.relay else "-",
                ratio(method.median, alone.median),
                ratio(method.median, script.median) if script else "-",
                ratio(method.median, raw.median),
            ]
        )
    frame_note = f", {frames} frames" if frames is not None else ""
    print_table(
        f"1. Relays: child writes {fmt_size(time_size)} ({nbytes} bytes{frame_note}), "
        f"stdout and stdin /dev/null; {runs} round(s), medians; relay CPU = the relay's own, "
        "not its child's",
        [
            "method",
            "median s",
            "best s",
            "MB/s",
            "tree CPU s",
            "relay CPU s",
            "vs alone",
            "vs script",
            "vs raw loop",
        ],
        rows,
    )

    def per_frame(a: float, b: float) -> str:
        return f"{(a - b) / nframes * 1e6:.2f}"

    rows = [
        [
            "supervise --events: frames vs no frames",
            per_frame(sup_events.median, sup_frameless.median),
            per_frame(sup_events.median_relay_cpu, sup_frameless.median_relay_cpu),
        ],
        [
            "journal: supervise --events vs --no-journal --events",
            per_frame(sup_events.median, sup_nojournal.median),
            per_frame(sup_events.median_relay_cpu, sup_nojournal.median_relay_cpu),
        ],
        [
            "--events FILE: supervise --events vs supervise",
            per_frame(sup_events.median, sup_default.median),
            per_frame(sup_events.median_relay_cpu, sup_default.median_relay_cpu),
        ],
        [
            "pty: supervise --events vs --no-pty --events (bytes, per frame)",
            per_frame(sup_events.median, sup_nopty.median),
            per_frame(sup_events.median_relay_cpu, sup_nopty.median_relay_cpu),
        ],
        [
            "naive regex parser vs raw pty read loop",
            per_frame(naive.median, raw.median),
            per_frame(naive.median_relay_cpu, raw.median_relay_cpu),
        ],
    ]
    if script and script_frameless:
        rows.append(
            [
                "script: frames vs no frames (bytes only)",
                per_frame(script.median, script_frameless.median),
                per_frame(script.median_relay_cpu, script_frameless.median_relay_cpu),
            ]
        )
        budget = TARGET_WALL_VS_SCRIPT * script.median - sup_frameless.median
        rows.append(
            [
                f"budget for {TARGET_WALL_VS_SCRIPT:.2f}x script: above supervise without frames",
                f"{budget / nframes * 1e6:.2f}",
                "-",
            ]
        )
    print_table(
        f"1b. Cost per frame ({frames} frames), from the medians above: difference / frames",
        ["difference", "wall us/frame", "relay CPU us/frame"],
        rows,
    )

    rows = [
        [
            method.name,
            f"{method.median * 1000:.1f}",
            f"{method.best * 1000:.1f}",
            f"{method.median_cpu * 1000:.1f}",
        ]
        for method in methods
        if method.startup
    ]
    rows.append(
        [
            "time to exec: supervise -- sh -c 'date +%s.%N'",
            f"{statistics.median(exec_sup) * 1000:.1f}",
            f"{min(exec_sup) * 1000:.1f}",
            "-",
        ]
    )
    rows.append(
        [
            "time to exec: sh -c 'date +%s.%N' directly",
            f"{statistics.median(exec_direct) * 1000:.1f}",
            f"{min(exec_direct) * 1000:.1f}",
            "-",
        ]
    )
    print_table(
        "2. Start-up: Popen to reap (time to exec: Popen to the child's clock)",
        ["method", "median ms", "best ms", "tree CPU ms"],
        rows,
    )

    smallest = {label: result for label, size, result in memory if size == mem_sizes[0]}
    rows = [
        [
            f"{label}, {fmt_size(size)}",
            f"{result.vmhwm_kib / 1024:.1f}",
            f"{result.relay_vmhwm_kib / 1024:.1f}" if result.relay_vmhwm_kib else "-",
            f"{result.maxrss_kib / 1024:.1f}",
            f"{result.seconds:.1f}",
            f"{size / result.seconds / MB:.1f}",
            str(result.samples),
            ratio(result.vmhwm_kib, smallest[label].vmhwm_kib),
        ]
        for label, size, result in memory
    ]
    print_table(
        "3. Peak RSS of the supervise process (VmHWM sampled every 50 ms; wait4 ru_maxrss "
        "includes the child)",
        [
            "run",
            "VmHWM MiB",
            "relay VmHWM MiB",
            "ru_maxrss MiB",
            "wall s",
            "MB/s",
            "samples",
            "vs smallest",
        ],
        rows,
    )

    rows = [
        [
            name,
            str(lat.sent),
            str(len(lat.samples_ms)),
            f"{lat.p(0.5):.3f}",
            f"{lat.p(0.99):.3f}",
            f"{max(lat.samples_ms, default=float('nan')):.3f}",
        ]
        for name, lat in (
            ("pty read directly (floor)", lat_base),
            ("supervise --events FILE, journal on", lat_sup),
        )
    ]
    print_table(
        f"4. Latency, frame written to its line read back, 1,000 frames/s for "
        f"{latency_seconds:.0f} s (first 0.5 s left out; events file read every "
        f"{FOLLOW_SECONDS * 1000:.1f} ms)",
        ["path", "sent", "received", "p50 ms", "p99 ms", "max ms"],
        rows,
    )

    lost = soak.sent - len(soak.seen)
    lat = soak.latencies_ms
    print_table(
        f"5. {soak_rate} frames/s for {soak_seconds:.0f} s: journal, durable file route, "
        "blocking file route, metrics on 127.0.0.1",
        ["", "value"],
        [
            ["frames sent", str(soak.sent)],
            ["delivered (durable route)", str(len(soak.seen))],
            ["lost / duplicated", f"{lost} / {soak.duplicated}"],
            [
                "delivery latency p50 / p99 ms",
                f"{percentile(lat, 0.5):.2f} / {percentile(lat, 0.99):.2f}",
            ],
            ["metrics answered", f"{sum(r.metrics_ok for r in soak.reports)}/{len(soak.reports)}"],
            ["supervise peak RSS (VmHWM) MiB", f"{soak.peak_rss_kib / 1024:.1f}"],
            ["wall s / tree CPU s", f"{soak.seconds:.1f} / {soak.cpu_seconds:.1f}"],
            ["exit status", str(soak.returncode)],
        ],
    )

    # -- summary --------------------------------------------------------------------
    summary: list[list[str]] = []

    def row(figure: str, now: str, base: str, rel: str, target: str, met: bool | None) -> None:
        summary.append([figure, now, base, rel, target, "-" if met is None else ok(met)])

    script_start_cpu = script_true.median_relay_cpu if script_true else 0.0
    script_us = (
        (script.median_relay_cpu - script_start_cpu) / nframes * 1e6 if script else float("nan")
    )
    for label, method, start, target in (
        ("journal", sup_events, true_events, TARGET_CPU_PER_FRAME_US),
        ("--no-journal", sup_nojournal, true_nojournal, TARGET_CPU_PER_FRAME_NO_JOURNAL_US),
    ):
        us = (method.median_relay_cpu - start.median_relay_cpu) / nframes * 1e6
        rel = us / script_us if script and script_us > 0 else float("nan")
        row(
            f"supervise CPU per frame, {label} + --events",
            f"{us:.2f} us",
            f"script {script_us:.2f} us",
            f"{rel:.2f}x",
            f"<= {target:.0f} us, <= {TARGET_CPU_VS_SCRIPT:.1f}x",
            us <= target and rel <= TARGET_CPU_VS_SCRIPT,
        )
    if script and script_frameless:
        rel = sup_events.median / script.median
        row(
            f"wall, --events, {fmt_size(time_size)} with frames",
            f"{sup_events.median:.3f} s",
            f"script {script.median:.3f} s",
            f"{rel:.2f}x",
            f"<= {TARGET_WALL_VS_SCRIPT:.2f}x",
            rel <= TARGET_WALL_VS_SCRIPT,
        )
        rel = sup_frameless.median / script_frameless.median
        row(
            f"wall, --events, {fmt_size(time_size)} without frames",
            f"{sup_frameless.median:.3f} s",
            f"script {script_frameless.median:.3f} s",
            f"{rel:.2f}x",
            f"<= {TARGET_WALL_FRAMELESS_VS_SCRIPT:.2f}x",
            rel <= TARGET_WALL_FRAMELESS_VS_SCRIPT,
        )
    rel = true_default.median / trio_import.median
    row(
        "supervise -- true, start to exit",
        f"{true_default.median:.3f} s",
        f"import trio {trio_import.median:.3f} s",
        f"{rel:.2f}x",
        f"<= {TARGET_STARTUP_S:.2f} s, <= {TARGET_STARTUP_VS_TRIO:.2f}x",
        true_default.median <= TARGET_STARTUP_S and rel <= TARGET_STARTUP_VS_TRIO,
    )
    exec_now, exec_base = statistics.median(exec_sup), statistics.median(exec_direct)
    row(
        "supervise start to child's exec",
        f"{exec_now * 1000:.1f} ms",
        f"sh+date alone {exec_base * 1000:.1f} ms",
        ratio(exec_now, exec_base),
        f"<= {TARGET_EXEC_S * 1000:.0f} ms",
        exec_now <= TARGET_EXEC_S,
    )
    for label, size, result in memory:
        mib = result.vmhwm_kib / 1024
        small = smallest[label].vmhwm_kib / 1024
        is_small = size == mem_sizes[0]
        row(
            f"peak RSS, {'--no-pty' if '--no-pty' in label else 'pty'}, {fmt_size(size)}",
            f"{mib:.1f} MiB",
            "-" if is_small else f"{fmt_size(mem_sizes[0])}: {small:.1f} MiB",
            "-" if is_small else ratio(mib, small),
            f"<= {TARGET_RSS_MIB:.0f} MiB",
            mib <= TARGET_RSS_MIB,
        )
    for q, name in ((0.5, "p50"), (0.99, "p99")):
        row(
            f"frame -> --events line, {name}, 1,000/s",
            f"{lat_sup.p(q):.3f} ms",
            f"pty {lat_base.p(q):.3f} ms",
            ratio(lat_sup.p(q), lat_base.p(q)),
            f"<= {TARGET_P99_MS:.0f} ms" if q == 0.99 else "-",
            lat_sup.p(q) <= TARGET_P99_MS if q == 0.99 else None,
        )
    row(
        f"{soak_rate} frames/s for {soak_seconds:.0f} s, lost",
        str(lost),
        f"sent {soak.sent}",
        f"{len(soak.seen) / soak.sent:.4f} delivered" if soak.sent else "-",
        "0 lost",
        lost == 0 and soak.sent > 0,
    )
    print_table(
        "Summary (ratios against the baseline measured in this run)",
        ["figure", "now", "baseline", "ratio", "target", "ok?"],
        summary,
    )
    return 0


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


if __name__ == "__main__":
    raise SystemExit(main())
