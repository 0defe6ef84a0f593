"""Child that prints its terminal size at start and on every SIGWINCH."""

import os
import signal
import sys
import time


def show(*_: object) -> None:
    size = os.get_terminal_size(sys.stdout.fileno())
    print(f"SIZE {size.lines}x{size.columns}", flush=True)


signal.signal(signal.SIGWINCH, show)
show()
print("READY", flush=True)
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    line = sys.stdin.readline()
    if line.strip() == "quit" or not line:
        break
