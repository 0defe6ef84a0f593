"""Child that starts a task with a frame, then dies by SIGKILL before finishing it."""

import os
import signal

from supervisor.emit import task_start

print("working", flush=True)
task_start("T-LOST", "Never finishes")
os.kill(os.getpid(), signal.SIGKILL)
