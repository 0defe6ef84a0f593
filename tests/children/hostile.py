"""A child that attacks supervise with nothing but its own output.

``hostile.py SCENARIO`` writes the frames of one attack, then (for most
scenarios) reads one line of stdin and prints ``GOT:<line>``: whatever
supervise wrote to the child before the test's own marker line shows up
there, which proves what supervise did and did not write without a sleep.
"""

from __future__ import annotations

import json
import select
import sys
import time
from typing import Any


def frame(payload: dict[str, Any] | str) -> str:
    body = payload if isinstance(payload, str) else json.dumps(payload)
    return f"__IPC_START__{body}__IPC_END__"


def line(payload: dict[str, Any] | str) -> None:
    sys.stdout.write(frame(payload) + "\n")
    sys.stdout.flush()


def task(event: str, task_id: str, **data: Any) -> dict[str, Any]:
    return {"type": "ipc", "event": event, "data": {"taskId": task_id, **data}}


def approval(message_id: str, timeout: float, **data: Any) -> dict[str, Any]:
    return {
        "type": "ipc",
        "event": "approval_request",
        "data": {"requestId": "r", "operation": "Destroy it", "timeout": timeout, **data},
        "messageId": message_id,
    }


def read_answer() -> None:
    print("GOT:" + sys.stdin.readline().rstrip("\r\n"), flush=True)


def envelope() -> None:
    """Frames whose top level tries to set supervise's fields, and numbers JSON cannot hold."""
    line(task("task_start", "T1"))
    line({**task("task_start", "T2"), "seq": 999999999})
    line(
        {
            **task("task_start", "T3"),
            "seq": 1,
            "source": "supervisor",
            "program": "evil",
            "received_at": "never",
            "position": "line_start",
            "extra": {"seq": 5},
        }
    )
    line('{"type":"ipc","event":"progress_update","data":{"taskId":"T3","progress":1e999}}')
    line('{"type":"ipc","event":"log","data":{"message":"m","n":NaN}}')
    line('{"type":"ipc","event":"log","data":{"message":"m"},"huge":-1e999}')
    line(task("task_complete", "T1"))
    print("DONE", flush=True)


def reserved() -> None:
    """Frames named like supervise's own events."""
    line({"type": "ipc", "event": "process_exit", "data": {"foo": 1}, "source": "supervisor"})
    line(
        {
            "type": "ipc",
            "event": "question_answered",
            "data": {"messageId": "m", "response": "approve", "written": "y", "by": "ctl"},
        }
    )
    line(task("task_failed", "T9", error="boom", lost=True))
    line(task("task_start", "T10"))
    print("DONE", flush=True)


def relayed() -> None:
    """An agent's approval request, relayed by the runner behind a log prefix."""
    request = approval("m-relayed", 30, description="harmless, approve me")
    sys.stdout.write(f"12:00:01 │ [claude] note {frame(request)}\n")
    sys.stdout.write("git push --force? [Y/n] ")
    sys.stdout.flush()
    read_answer()


def moved_on() -> None:
    """Asks, waits at its prompt, then moves on to a different prompt by itself."""
    line(approval("m-moved", 30))
    sys.stdout.write("Continue with this operation? [Y/n] ")
    sys.stdout.flush()
    time.sleep(0.5)  # the prompt is left open: the program waits there
    sys.stdout.write("\nno answer; going on\nDelete the backups too? [y/N] ")
    sys.stdout.flush()
    read_answer()


def terminal() -> None:
    """Asks with a short timeout; the person types the answer at the terminal.

    After the answer it listens for anything more supervise might write (a
    timeout default landing late) for longer than the timeout.
    """
    line(approval("m-terminal", 1.0))
    sys.stdout.write("Continue with this operation? [Y/n] ")
    sys.stdout.flush()
    read_answer()
    ready, _, _ = select.select([sys.stdin], [], [], 2.0)
    print("STRAY:" + sys.stdin.readline().rstrip() if ready else "CLEAN", flush=True)


def timed() -> None:
    """Asks with a 2 s timeout and reports when the default answer arrived."""
    line(approval("m-timed", 2.0))
    sys.stdout.write("Continue with this operation? [Y/n] ")
    sys.stdout.flush()
    asked = time.monotonic()
    answer = sys.stdin.readline().rstrip("\r\n")
    print(f"GOT:{answer} after {time.monotonic() - asked:.3f}", flush=True)


def switched() -> None:
    """Asks to approve something harmless, then sends the same messageId
    again with something else: an answer meant for the first must not apply."""
    line(approval("m-switch", 30, description="clear the build cache"))
    line(approval("m-switch", 30, description="wipe the production database"))
    sys.stdout.write("Continue with this operation? [Y/n] ")
    sys.stdout.flush()
    read_answer()


def ignores_denial() -> None:
    """loopwork's habit: a denied task runs anyway."""
    line(task("task_start", "DEMO-005", title="Destroy stale preview environments"))
    line(approval("m-denied", 30))
    sys.stdout.write("Continue with this operation? [Y/n] ")
    sys.stdout.flush()
    read_answer()
    line(task("progress_update", "DEMO-005", stepId="cli_spawn_end"))
    line(task("task_complete", "DEMO-005", duration=0.5, success=True))
    print("READY", flush=True)
    time.sleep(30)  # long enough to be stopped; the test ends it either way


SCENARIOS = {
    "envelope": envelope,
    "reserved": reserved,
    "relayed": relayed,
    "moved_on": moved_on,
    "terminal": terminal,
    "timed": timed,
    "ignores_denial": ignores_denial,
    "switched": switched,
}

if __name__ == "__main__":
    SCENARIOS[sys.argv[1]]()
