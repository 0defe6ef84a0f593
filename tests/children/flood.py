"""Child that floods supervise with frames, many per write, then exits.

Usage: flood.py KIND COUNT [EXIT_CODE]

- ``tasks``: COUNT ``task_start`` frames (T-0, T-1 ...), none closed;
- ``events``: COUNT frames with distinct event names (ev-0, ev-1 ...);
- ``namespaces``: COUNT tasks, started and completed, each in a namespace
  of its own (ns-0, ns-1 ...);
- ``progress``: COUNT ``progress_update`` frames, each for a task of its own.

It prints ``DONE`` after the last frame and exits with EXIT_CODE (0).
"""

import json
import sys

CHUNK = 1000


def frame(event: str, **data: object) -> bytes:
    body = json.dumps({"type": "ipc", "event": event, "data": data}, separators=(",", ":"))
    return b"__IPC_START__" + body.encode() + b"__IPC_END__\n"


def frames(kind: str, index: int) -> bytes:
    if kind == "tasks":
        return frame("task_start", taskId=f"T-{index}")
    if kind == "events":
        return frame(f"ev-{index}", n=index)
    if kind == "namespaces":
        task = {"taskId": f"T-{index}", "namespace": f"ns-{index}"}
        return frame("task_start", **task) + frame("task_complete", **task)
    if kind == "progress":
        return frame("progress_update", taskId=f"T-{index}", message="working")
    raise SystemExit(f"unknown kind {kind!r}")


def main() -> None:
    kind, count = sys.argv[1], int(sys.argv[2])
    code = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    out = sys.stdout.buffer
    for start in range(0, count, CHUNK):
        out.write(b"".join(frames(kind, i) for i in range(start, min(count, start + CHUNK))))
    out.write(b"DONE\n")
    out.flush()
    sys.exit(code)


if __name__ == "__main__":
    main()
