"""Benchmark ``supervise`` end to end: wall time against raw-pty baselines, and peak memory.

What is measured, and why:

1. Wall time for a child that writes 64 MiB of coloured lines with IPC frames
   mixed in (``examples/fake_loopwork.py --total-bytes 64M``, one task's frames
   per ~2 KiB), output to /dev/null, stdin from /dev/null, 3 runs each (best
   and median), run as:

   * ``alone``: the child writing straight to /dev/null (what the child costs);
   * ``raw pty read loop``: this process forks the child on a pty
     (``pty.fork``, ONLCR cleared like supervise does) and reads the master in
     a plain blocking ``os.read(fd, 65536)`` loop into /dev/null -- the cheapest
     possible pty relay in Python;
   * ``script -qc CMD /dev/null``: util-linux script, the usual raw pty relay
     written in C. Its stdin is /dev/null: util-linux 2.38 keeps relaying
     until the child exits even when its stdin is at end of file (checked at
     run time by the sanity pass below, which looks for the child's own
     summary line at the end of script's output; if it is missing, script gets
     a stdin pipe that is held open instead). Its pty keeps ONLCR, so it
     relays ~1% more bytes (``\\r`` before each ``\\n``);
   * ``supervise -- CMD``: the product (pty, trio, frame decoder, events);
   * ``supervise --events FILE``, ``supervise --no-pty`` and supervise over a
     child that writes the same bytes without frames (``--frame-every 0``):
     to split the cost between the event sink, the pty and frame handling;
   * ``-- true`` under script and supervise: fixed start-up cost.

   Figures: seconds, MB/s of the child's output (1 MB = 1e6 bytes), CPU seconds
   (user+sys of the whole process tree, from ``wait4``), and ratios
   supervise/script (target <= 1.25x), supervise/raw loop and supervise/alone.

2. Peak RSS of the supervise process itself over 1 GiB vs 64 MiB of output.
   ``/proc/<pid>/status`` ``VmHWM`` (the process's own high-water mark) is
   polled every 50 ms until it exits and the largest value is kept;
   ``wait4``'s ``ru_maxrss`` is printed next to it, but it is the max over
   supervise *and* its reaped child, so it is only a cross-check. Targets:
   flat within 10 MiB between the two sizes, and under 80 MiB.

A sanity pass first runs every relay on 4 MiB with its output captured to
check that all of it arrives and that supervise strips every frame (no
``__IPC_START__`` left in its output, no invalid-frame warnings).

``--quick``: 16 MiB for the timings and 16 MiB vs 128 MiB for memory.
Progress goes to stderr, the report to stdout. Runs from any directory.
"""

from __future__ import annotations

import argparse
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

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CHILD = REPO / "examples" / "fake_loopwork.py"
MIB = 1024 * 1024
MB = 1e6
RUNS = 3
POLL_SECONDS = 0.05

TARGET_SUPERVISE_VS_SCRIPT = 1.25
TARGET_RSS_FLAT_MIB = 10.0
TARGET_RSS_MAX_MIB = 80.0

SUMMARY_RE = re.compile(rb"wrote (\d+) bytes, (\d+) frames")


def progress(message: str) -> None:
    print(f"[bench_supervise] {message}", file=sys.stderr, flush=True)


def supervise_command() -> list[str]:
    """``supervise`` next to this interpreter, else ``python -m supervisor``."""
    exe = Path(sys.executable).parent / "supervise"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "supervisor"]


def size_arg(nbytes: int) -> str:
    return f"{nbytes // (1024 * MIB)}G" if nbytes % (1024 * MIB) == 0 else f"{nbytes // MIB}M"


def fmt_size(nbytes: int) -> str:
    return f"{nbytes // (1024 * MIB)} GiB" if nbytes % (1024 * MIB) == 0 else f"{nbytes // MIB} MiB"


# -- running one process tree -----------------------------------------------------


@dataclass
class RunResult:
    seconds: float
    cpu_seconds: float  # user + sys of the process and its reaped descendants
    returncode: int
    maxrss_kib: int  # wait4's ru_maxrss: max over the process and its reaped children
    vmhwm_kib: int = 0  # the process's own peak, sampled from /proc (memory runs only)
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


def run_process(
    argv: Sequence[str], *, stdin_pipe: bool = False, sample_memory: bool = False
) -> RunResult:
    """Run ``argv`` with stdout to /dev/null; reap it with wait4 for its rusage."""
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
        peak = samples = 0
        if sample_memory:
            while True:
                # Sample first: after the reap below /proc/<pid> is gone.
                peak = max(peak, read_vmhwm_kib(proc.pid))
                samples += 1
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                time.sleep(POLL_SECONDS)
        else:
            _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.stdin is not None:
            proc.stdin.close()
        err.seek(0)
        stderr = err.read()
    return RunResult(
        seconds=seconds,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        returncode=proc.returncode,
        maxrss_kib=usage.ru_maxrss,
        vmhwm_kib=peak,
        samples=samples,
        stderr=stderr,
    )


def run_raw_pty_loop(argv: Sequence[str], sink_path: str = os.devnull) -> RunResult:
    """Fork ``argv`` on a pty and copy the master to ``sink_path`` in a blocking loop."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
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
    sink = os.open(sink_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every slave end is closed
                break
            if not data:
                break
            os.write(sink, data)
    finally:
        os.close(sink)
        os.close(master)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    own_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return RunResult(
        seconds=seconds,
        cpu_seconds=usage.ru_utime + usage.ru_stime + own_cpu,
        returncode=os.waitstatus_to_exitcode(status),
        maxrss_kib=usage.ru_maxrss,
    )


# -- methods ----------------------------------------------------------------------


@dataclass
class Method:
    name: str
    run: Callable[[], RunResult]
    results: list[RunResult] = field(default_factory=list)

    @property
    def best(self) -> float:
        return min(r.seconds for r in self.results)

    @property
    def median(self) -> float:
        return statistics.median(r.seconds for r in self.results)

    @property
    def best_cpu(self) -> float:
        return min(r.cpu_seconds for r in self.results)


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
    frames = out.count(b"__IPC_START__")
    lines.append(f"alone: {len(out)} bytes, {frames} frames, exit {rc}")
    if summary and len(out) != expected:
        lines.append(f"  WARNING: child says it wrote {expected} bytes")

    with tempfile.NamedTemporaryFile() as sink:
        result = run_raw_pty_loop(child, sink.name)
        relayed = Path(sink.name).read_bytes()
    ok = SUMMARY_RE.search(relayed) is not None
    lines.append(
        f"raw pty read loop: {len(relayed)} bytes (child's stdout+stderr), "
        f"summary line {'seen' if ok else 'MISSING'}, exit {result.returncode}"
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
    left = out.count(b"__IPC_START__")
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


# -- report -------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def child_bytes(results: Sequence[RunResult], default: int) -> tuple[int, int | None]:
    """Bytes and frames the child reports in its summary line (stderr of an alone run)."""
    for result in results:
        match = SUMMARY_RE.search(result.stderr)
        if match:
            return int(match.group(1)), int(match.group(2))
    return default, None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true", help="16 MiB timings, 16 MiB vs 128 MiB memory"
    )
    parser.add_argument(
        "--child",
        default=str(DEFAULT_CHILD),
        metavar="SCRIPT",
        help="load generator taking --total-bytes SIZE (default examples/fake_loopwork.py)",
    )
    parser.add_argument("--runs", type=int, default=RUNS, help="timed runs per method")
    parser.add_argument(
        "--frame-every",
        type=int,
        default=2048,
        metavar="BYTES",
        help="the child writes one task's frames per BYTES of plain output (default 2048)",
    )
    args = parser.parse_args(argv)

    time_size = 16 * MIB if args.quick else 64 * MIB
    mem_sizes = (16 * MIB, 128 * MIB) if args.quick else (64 * MIB, 1024 * MIB)
    supervise = supervise_command()
    have_script = shutil.which("script") is not None
    bench_start = time.perf_counter()

    def child(nbytes: int) -> list[str]:
        return [
            sys.executable,
            args.child,
            "--total-bytes",
            size_arg(nbytes),
            "--frame-every",
            str(args.frame_every),
        ]

    progress(f"sanity pass on 4 MiB ({args.child})")
    sanity = sanity_pass(child(4 * MIB), supervise, have_script)
    for line in sanity.lines:
        progress(f"  {line}")

    cmd = child(time_size)
    events_dir = tempfile.TemporaryDirectory()
    events_path = str(Path(events_dir.name) / "events.jsonl")

    def supervise_events() -> RunResult:
        Path(events_path).unlink(missing_ok=True)
        return run_process([*supervise, "--events", events_path, "--", *cmd])

    methods = [
        Method("alone (child > /dev/null)", lambda: run_process(cmd)),
        Method("alone, --frame-every 0", lambda: run_process([*cmd, "--frame-every", "0"])),
        Method("raw pty read loop (in-process)", lambda: run_raw_pty_loop(cmd)),
    ]
    if have_script:
        methods.append(
            Method(
                "script -qc CMD /dev/null",
                lambda: run_process(script_argv(cmd), stdin_pipe=sanity.script_stdin_pipe),
            )
        )
    methods += [
        Method("supervise -- CMD", lambda: run_process([*supervise, "--", *cmd])),
        Method("supervise --events FILE -- CMD", supervise_events),
        Method(
            "supervise --no-pty -- CMD", lambda: run_process([*supervise, "--no-pty", "--", *cmd])
        ),
        Method(
            "supervise -- CMD --frame-every 0",
            lambda: run_process([*supervise, "--", *cmd, "--frame-every", "0"]),
        ),
    ]
    startup = [Method("supervise -- true", lambda: run_process([*supervise, "--", "true"]))]
    if have_script:
        startup.append(
            Method("script -qc true /dev/null", lambda: run_process(script_argv(["true"])))
        )
    # Interleave the methods run by run so that drift in machine load hits all alike.
    for run in range(args.runs):
        for method in methods + startup:
            what = "start-up only" if method in startup else fmt_size(time_size)
            progress(f"run {run + 1}/{args.runs}: {method.name} ({what})")
            result = method.run()
            method.results.append(result)
            if result.returncode != 0:
                progress(f"  exit status {result.returncode}: {result.stderr[-300:]!r}")
            progress(f"  {result.seconds:.3f} s")
    events_written = Path(events_path).read_bytes().splitlines()
    events_lines = sum(1 for line in events_written if b'"source":"child"' in line)
    events_dir.cleanup()

    memory: list[tuple[int, RunResult]] = []
    for nbytes in mem_sizes:
        progress(f"memory: supervise -- child --total-bytes {size_arg(nbytes)} (VmHWM every 50 ms)")
        result = run_process([*supervise, "--", *child(nbytes)], sample_memory=True)
        progress(f"  {result.seconds:.1f} s, VmHWM {result.vmhwm_kib / 1024:.1f} MiB")
        memory.append((nbytes, result))
    progress("memory: child alone at the largest size (its own ru_maxrss, for reference)")
    child_alone = run_process(child(mem_sizes[-1]))

    # -- report ---------------------------------------------------------------------
    elapsed = time.perf_counter() - bench_start
    alone = methods[0]
    nbytes, frames = child_bytes(alone.results, time_size)
    by_name = {m.name: m for m in methods + startup}
    script = by_name.get("script -qc CMD /dev/null")
    raw = by_name["raw pty read loop (in-process)"]
    sup = by_name["supervise -- CMD"]

    print(
        f"bench_supervise: python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"{'quick' if args.quick else 'full'} run, {elapsed:.0f} s; 1 MB = 1e6 bytes"
    )
    print(f"child: {shlex.join(cmd)}")
    print(f"supervise: {shlex.join(supervise)}")
    print()
    print("Sanity pass (4 MiB, output captured):")
    for line in sanity.lines:
        print(f"  {line}")
    print()

    rows: list[list[str]] = []
    for method in methods + startup:
        is_startup = method in startup
        rows.append(
            [
                method.name,
                f"{method.best:.3f}",
                f"{method.median:.3f}",
                "-" if is_startup else f"{nbytes / method.best / MB:.1f}",
                f"{method.best_cpu:.2f}",
                f"{method.best / alone.best:.2f}x",
                f"{method.best / script.best:.2f}x" if script else "-",
                f"{method.best / raw.best:.2f}x",
            ]
        )
    frame_note = f", {frames} frames" if frames is not None else ""
    print_table(
        f"1. Wall time, child writes {fmt_size(time_size)} ({nbytes} bytes{frame_note}), "
        f"stdout /dev/null, stdin /dev/null; {args.runs} runs each, ratios on best times",
        ["method", "best s", "median s", "MB/s", "CPU s", "vs alone", "vs script", "vs raw loop"],
        rows,
    )
    if script:
        ratio = sup.best / script.best
        met = verdict(ratio <= TARGET_SUPERVISE_VS_SCRIPT)
        print(
            f"supervise / script (best): {ratio:.2f}x   "
            f"target <= {TARGET_SUPERVISE_VS_SCRIPT:.2f}x: {met}"
        )
        ratio_median = sup.median / script.median
        print(f"supervise / script (median): {ratio_median:.2f}x")
    print(f"supervise / raw pty read loop (best): {sup.best / raw.best:.2f}x")
    print(f"supervise / alone (best): {sup.best / alone.best:.2f}x")
    start_cost = by_name["supervise -- true"].best
    print(
        f"supervise start-up (supervise -- true): {start_cost:.3f} s; "
        f"supervise minus start-up vs script: {(sup.best - start_cost) / script.best:.2f}x"
        if script
        else f"supervise start-up (supervise -- true): {start_cost:.3f} s"
    )
    if frames:
        no_frames = by_name["supervise -- CMD --frame-every 0"]
        events = by_name["supervise --events FILE -- CMD"]
        per_frame = (sup.best - no_frames.best) / frames * 1e6
        per_event = (events.best - sup.best) / (frames + 2) * 1e6
        print(
            f"frame handling inside supervise: (supervise - supervise on the same bytes without "
            f"frames) / frames = {per_frame:.1f} us per frame; --events FILE adds "
            f"{per_event:.1f} us per event"
        )
        if script:
            budget = TARGET_SUPERVISE_VS_SCRIPT * script.best - no_frames.best
            print(
                f"budget to meet {TARGET_SUPERVISE_VS_SCRIPT:.2f}x script at this frame rate: "
                f"{max(budget, 0.0) / frames * 1e6:.1f} us per frame above the no-frame run"
            )
    print(
        f"--events file of the last run: {events_lines} events from the child"
        + (f" (expected {frames}: one per frame)" if frames is not None else "")
    )
    print()

    rows = []
    for size, result in memory:
        under = verdict(result.vmhwm_kib / 1024 < TARGET_RSS_MAX_MIB)
        rows.append(
            [
                f"supervise, child writes {fmt_size(size)}",
                f"{result.vmhwm_kib / 1024:.1f}",
                f"{result.maxrss_kib / 1024:.1f}",
                f"{result.seconds:.1f}",
                str(result.samples),
                f"< {TARGET_RSS_MAX_MIB:.0f} MiB: {under}",
            ]
        )
    rows.append(
        [
            f"child alone, {fmt_size(mem_sizes[-1])} (reference)",
            "-",
            f"{child_alone.maxrss_kib / 1024:.1f}",
            f"{child_alone.seconds:.1f}",
            "-",
            "-",
        ]
    )
    print_table(
        "2. Peak RSS of the supervise process (VmHWM sampled every 50 ms; wait4 ru_maxrss "
        "includes the child)",
        ["run", "VmHWM MiB", "ru_maxrss MiB", "wall s", "samples", "target"],
        rows,
    )
    small, large = memory[0][1], memory[-1][1]
    growth = (large.vmhwm_kib - small.vmhwm_kib) / 1024
    flat = verdict(abs(growth) <= TARGET_RSS_FLAT_MIB)
    print(
        f"VmHWM {fmt_size(mem_sizes[-1])} - {fmt_size(mem_sizes[0])}: {growth:+.1f} MiB "
        f"(ratio {large.vmhwm_kib / max(small.vmhwm_kib, 1):.2f}x)   "
        f"target flat within {TARGET_RSS_FLAT_MIB:.0f} MiB: {flat}"
    )
    print(
        f"throughput at {fmt_size(mem_sizes[-1])} under supervise: "
        f"{mem_sizes[-1] / large.seconds / MB:.1f} MB/s (with 50 ms memory polling)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
