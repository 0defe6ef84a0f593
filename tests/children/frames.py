"""Child that writes N frames as fast as it can, with a plain line after each.

Usage: frames.py N [EVENT] [NAMESPACE]. Frame i is ``EVENT`` (default
task_complete) for task ``T-i``; after the last one it prints ``DONE``.
"""

import json
import sys


def main() -> None:
    count = int(sys.argv[1])
    event = sys.argv[2] if len(sys.argv) > 2 else "task_complete"
    namespace = sys.argv[3] if len(sys.argv) > 3 else "test"
    out = sys.stdout.buffer
    for index in range(count):
        data: dict[str, object] = {
            "taskId": f"T-{index}",
            "namespace": namespace,
            "title": f"task {index}",
        }
        if event == "progress_update":
            data = {"taskId": "T-0", "progress": index / count, "message": f"step {index}"}
        frame = json.dumps({"type": "ipc", "event": event, "data": data}).encode()
        out.write(b"__IPC_START__" + frame + b"__IPC_END__\nline %d\n" % index)
    out.write(b"DONE\n")
    out.flush()


if __name__ == "__main__":
    main()
