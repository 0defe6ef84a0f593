"""Child that asks one question or approval, then writes the answer line it reads.

Usage: ask.py KIND TIMEOUT OUT. KIND is ``approval`` or ``question`` (with
options iso and us); TIMEOUT is the frame's timeout in seconds. READY
follows the frame; the line read from stdin goes to OUT.
"""

import json
import sys

kind, timeout, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
if kind == "approval":
    frame = {
        "type": "ipc",
        "event": "approval_request",
        "data": {
            "action": "delete",
            "description": "rm -rf build/ <all>",
            "severity": "high",
            "timeout": timeout,
        },
    }
else:
    frame = {
        "type": "ipc",
        "event": "question",
        "data": {
            "question": "Which date format?",
            "options": [{"id": "iso", "label": "ISO 8601"}, {"id": "us", "label": "MM/DD/YYYY"}],
            "timeout": timeout,
        },
    }
sys.stdout.write("__IPC_START__" + json.dumps(frame) + "__IPC_END__\n")
print("READY", flush=True)
line = sys.stdin.readline()
with open(out, "w") as file:
    file.write(line)
print("DONE", flush=True)
