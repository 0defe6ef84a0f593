"""A loopwork-like child: coloured log lines with IPC frames in between, via ``supervisor.emit``.

Two uses. As a demo, it behaves like the loopwork task runner: a loop over
tasks, each reported with ``task_start`` / ``progress_update`` / ``task_complete``
or ``task_failed`` frames among ordinary output, optionally asking a
``question`` or an ``approval_request`` and reading the answer from stdin::

    python examples/fake_loopwork.py --tasks 3 --approval

As a load generator for benchmarks (``--total-bytes 256M``) it writes plain
lines and frames as fast as it can, so that a supervisor, not this script, is
what gets measured.
"""

from __future__ import annotations

import argparse
import bisect
import os
import random
import re
import resource
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

try:
    from supervisor import emit
except ImportError:  # run from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from supervisor import emit

CYAN, GREEN, RED, YELLOW, GREY, RESET = (f"\x1b[{c}m" for c in (36, 32, 31, 33, 90, 0))
TITLES = ["Add login page", "Fix date parsing", "Refactor config loader", "Write API docs"]
AGENT_LINES = [
    "Reading src/config.ts", "Running npm test", "All 42 tests passed", "Editing src/api/routes.ts",
    "Thinking about edge cases", "Updated 3 files",
]  # fmt: skip
INFO, SUCCESS, ERROR, WARN = "\u2139\ufe0f INFO", "✅ SUCCESS", "❌ ERROR", "⚠️ WARN"
BLOCK_BYTES = 64 * 1024


def say(colour: str, label: str, message: str) -> None:
    """A loopwork logger line: coloured clock, icon and level, then the message."""
    print(f"{colour}{time.strftime('%H:%M:%S')}{RESET} {label}: {message}")


def relay(text: str) -> None:
    """A line of the AI agent's own output, relayed by loopwork behind a gutter."""
    print(f"{GREY}│{RESET} [claude-sonnet] {text}")


def read_answer() -> str:
    """One line from stdin, without its line ending (empty at end of input)."""
    return sys.stdin.buffer.readline().decode("utf-8", errors="replace").rstrip("\r\n")


def ask_approval(writer: emit.FrameWriter, task_id: str) -> bool:
    """Frame and plain prompt, as loopwork does before a risky step; True if approved."""
    writer.approval_request(
        f"Force-push the rewritten history of {task_id}",
        request_id=f"approve-{task_id}",
        operation="git push --force",
        severity="high",
        timeout=20,
    )
    sys.stdout.write("Continue with this operation? [Y/n] ")
    sys.stdout.flush()
    approved = read_answer().strip().lower() not in ("n", "no")
    print("approved" if approved else "denied")
    return approved


def run_tasks(args: argparse.Namespace, writer: emit.FrameWriter) -> None:
    """The demo: a loop of tasks at a human pace."""
    rng = random.Random(args.seed)
    ns, completed, failed, loop_start = args.namespace, 0, 0, time.monotonic()
    say(CYAN, INFO, f"Starting loop in namespace {ns} ({args.tasks} tasks)")
    writer.loop_start(ns)
    for i in range(1, args.tasks + 1):
        task_id, title = f"FEAT-{i:03d}", rng.choice(TITLES)
        approved = ask_approval(writer, task_id) if args.approval and i == args.tasks else True
        if args.question_every and i % args.question_every == 0:
            options = [("a", "ISO 8601"), ("b", "Unix epoch")]
            writer.question("Which date format should the API use?", options, 30, pretty=True)
            if args.wait_answers:
                print(f"answer: {read_answer()}")
        started = time.monotonic()
        say(CYAN, INFO, f"Starting task {task_id}: {title}")
        writer.task_start(task_id, title, ns, i)
        step = {"stepId": f"{task_id}-1", "description": "Planning", "phase": "plan"}
        writer.progress_update(step, taskId=task_id)
        time.sleep(args.delay / 2)
        for _ in range(args.plain_lines):
            relay(rng.choice(AGENT_LINES))
        writer.progress_update(taskId=task_id, progress=50, message="Implementing")
        time.sleep(args.delay / 2)
        duration = round(time.monotonic() - started, 3)
        if not approved or (args.fail_every and i % args.fail_every == 0):
            error = "Operation denied by user" if not approved else "claude exited with code 1"
            say(RED, ERROR, f"Task {task_id} failed: {error}")
            writer.task_failed(task_id, title, error, ns, i)
            failed += 1
        else:
            say(GREEN, SUCCESS, f"Task {task_id} completed in {duration:.2f}s")
            writer.task_complete(task_id, title, duration, ns, i)
            completed += 1
    total = round(time.monotonic() - loop_start, 3)
    writer.loop_end({"completed": completed, "failed": failed, "duration": total})
    colour, label = (YELLOW, WARN) if failed else (GREEN, SUCCESS)
    say(colour, label, f"{completed} completed, {failed} failed")


def plain_block(rng: random.Random) -> tuple[bytes, list[int]]:
    """About 64 KiB of ~80-byte coloured lines, and the offset where each line ends."""
    lines: list[bytes] = []
    offsets: list[int] = []
    size = 0
    while size < BLOCK_BYTES:
        text = rng.choice(AGENT_LINES)
        line = f"{GREY}│{RESET} [claude-sonnet] {text} {'.' * (50 - len(text))} {len(lines):06d}\n"
        lines.append(line.encode())
        size += len(lines[-1])
        offsets.append(size)
    return b"".join(lines), offsets


def run_load(args: argparse.Namespace) -> None:
    """Write about ``--total-bytes``: plain lines, with a task's frames every ``--frame-every``.

    Plain lines and frames share one binary stream with a 1 MiB buffer, so a
    frame never overtakes the lines before it and the OS sees large writes.
    Frames are flushed one by one, as a real child's are, only with
    ``--flush-frames`` (slower); without it a frame may straddle two writes,
    which a reader must handle anyway since pipe reads cut anywhere.
    """
    sys.stdout.flush()
    with open(sys.stdout.fileno(), "wb", buffering=1 << 20, closefd=False) as out:
        writer = emit.FrameWriter(out, autoflush=args.flush_frames)
        block, offsets = plain_block(random.Random(args.seed))
        view = memoryview(block)
        if args.frame_every > 0:  # plain output between two tasks: whole blocks, then whole lines
            full, rest = divmod(args.frame_every, len(block))
            cut = offsets[max(bisect.bisect_right(offsets, rest) - 1, 0)] if rest or not full else 0
            chunks = [view] * full + ([view[:cut]] if cut else [])
        else:
            chunks = [view]
        ns, title, started = args.namespace, "Load test task", time.time()
        plain = i = failed = 0
        writer.loop_start(ns)
        while plain + writer.bytes_written < args.total_bytes:
            for chunk in chunks:
                out.write(chunk)
                plain += len(chunk)
                if plain + writer.bytes_written >= args.total_bytes:
                    break
            if args.frame_every > 0:
                i += 1
                task_id = f"LOAD-{i:06d}"
                if not args.complete_only:
                    writer.task_start(task_id, title, ns, i)
                if args.fail_every and i % args.fail_every == 0:
                    writer.task_failed(task_id, title, "claude exited with code 1", ns, i)
                    failed += 1
                else:
                    writer.task_complete(task_id, title, 0.528, ns, i)
        duration = round(time.time() - started, 3)
        writer.loop_end({"completed": i - failed, "failed": failed, "duration": duration})
    total = plain + writer.bytes_written
    print(f"fake_loopwork: wrote {total} bytes, {writer.frames_written} frames", file=sys.stderr)


def parse_size(text: str) -> int:
    """``1048576``, ``64K``, ``64M``, ``1G`` (multiples of 1024; a trailing ``B``/``iB`` is ok)."""
    match = re.fullmatch(r"\s*(\d+)\s*([kmg]?)(?:i?b)?\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 1048576, 64K, 64M or 1G)")
    return int(match[1]) << {"": 0, "k": 10, "m": 20, "g": 30}[match[2].lower()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--tasks", type=int, default=5, help="tasks in the loop")
    add("--namespace", default="demo", help="loopwork namespace")
    add("--seed", type=int, default=1, help="random seed for titles and lines")
    add("--fail-every", type=int, default=3, metavar="K", help="every K-th task fails (0: none)")
    add("--delay", type=float, default=0.3, metavar="SECONDS", help="time per task (0: no wait)")
    add("--plain-lines", type=int, default=3, metavar="N", help="plain agent lines per task")
    add("--question-every", type=int, default=4, metavar="K", help="every K-th task asks first")
    add("--wait-answers", action="store_true", help="read an answer line after each question")
    add("--approval", action="store_true", help="ask Y/n on stdin before the last task")
    add("--exit-code", type=int, default=0, metavar="N", help="exit status")
    add("--total-bytes", type=parse_size, metavar="SIZE", help="load mode: write SIZE (64M, 1G)")
    add("--frame-every", type=parse_size, default=2048, metavar="BYTES",
        help="load mode: plain bytes between two tasks' frames (0: no tasks)")  # fmt: skip
    add("--flush-frames", action="store_true", help="load mode: flush after every frame")
    add("--complete-only", action="store_true",
        help="load mode: one task_complete frame per task, no task_start")  # fmt: skip
    add("--rusage-file", metavar="PATH",
        help="at exit, write this process's own CPU seconds (user sys) to PATH")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        return run(args)
    finally:
        if args.rusage_file:
            usage = resource.getrusage(resource.RUSAGE_SELF)
            Path(args.rusage_file).write_text(f"{usage.ru_utime} {usage.ru_stime}\n")


def run(args: argparse.Namespace) -> int:
    """The demo or the load generator, as the options ask."""
    try:
        if args.total_bytes is not None:
            run_load(args)
        else:
            run_tasks(args, emit.default_writer())
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away. Point stdout at /dev/null so the interpreter's
        # final flush does not raise again and print a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(args.exit_code)


if __name__ == "__main__":
    # Started from a non-interactive shell with "&", a process inherits SIGINT
    # ignored; a test sending Ctrl-C to this child still expects it to stop.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    raise SystemExit(main())
