"""Child that counts its runs in a file and behaves as told on each run.

Usage: restart_runs.py COUNTFILE SPEC [SPEC...]. Run N (counting from 1)
follows the Nth SPEC, the last one repeating. A SPEC is ``SECONDS:CODE``: the
run prints ``RUN N PID P``, sleeps SECONDS and exits with CODE.
"""

import os
import sys
import time
from pathlib import Path

counter = Path(sys.argv[1])
specs = sys.argv[2:]
run = int(counter.read_text()) + 1 if counter.exists() else 1
counter.write_text(str(run))
seconds, code = specs[min(run, len(specs)) - 1].split(":")
print(f"RUN {run} PID {os.getpid()}", flush=True)
time.sleep(float(seconds))
sys.exit(int(code))
