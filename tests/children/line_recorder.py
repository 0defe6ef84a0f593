"""Child that records what reaches its stdin, exactly, one JSON line per line read.

``line_recorder.py OUT`` first writes ``{"IPC_SUPERVISOR": ...}`` (its
environment's value, or null) to OUT, prints READY, then appends
``{"line": TEXT}`` for every line of stdin (without its newline) until end
of input. JSON keeps quotes, backslashes and non-ASCII text exact.
"""

import json
import os
import sys

out = open(sys.argv[1], "a", encoding="utf-8")  # noqa: SIM115 - open for the whole run
out.write(json.dumps({"IPC_SUPERVISOR": os.environ.get("IPC_SUPERVISOR")}) + "\n")
out.flush()
print("READY", flush=True)
for raw in sys.stdin.buffer:
    out.write(json.dumps({"line": raw.decode("utf-8", "replace").removesuffix("\n")}) + "\n")
    out.flush()
