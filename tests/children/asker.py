"""Child that asks supervise a question and records the answer it reads.

Usage: asker.py KIND OUT_FILE [TIMEOUT]. KIND is ``approval``, ``question``
or ``silent-task`` (starts a task, then waits without output). The answer
line read from stdin is written to OUT_FILE; the only plain output is READY
and DONE, so any echo of the answer would show.
"""

import json
import sys

kind, out_file = sys.argv[1], sys.argv[2]
timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 30.0
MESSAGE_ID = "11111111-2222-4333-8444-555555555555"
if kind == "approval":
    event, data = (
        "approval_request",
        {
            "requestId": "r1",
            "operation": "task",
            "description": "Destroy stale preview environments",
            "severity": "high",
            "timeout": timeout,
        },
    )
elif kind == "question":
    event, data = (
        "question",
        {
            "question": "Which date format?",
            "options": [{"id": "iso", "label": "ISO 8601"}, {"id": "epoch", "label": "Unix epoch"}],
            "timeout": timeout,
        },
    )
else:
    event, data = "task_start", {"taskId": "T-1", "title": "slow task", "namespace": "test"}
frame = {"type": "ipc", "event": event, "data": data, "messageId": MESSAGE_ID}
sys.stdout.write("__IPC_START__" + json.dumps(frame) + "__IPC_END__\n")
print("READY", flush=True)
line = sys.stdin.readline()
with open(out_file, "w") as out:
    out.write(line)
print("DONE", flush=True)
