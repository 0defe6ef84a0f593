"""Child that echoes one line of stdin, then says whether stdin is still open."""

import os
import select
import sys

line = sys.stdin.buffer.readline()
sys.stdout.buffer.write(b"line: " + line)
sys.stdout.flush()
ready, _, _ = select.select([sys.stdin], [], [], 0.5)
if ready and os.read(sys.stdin.fileno(), 100) == b"":
    print("stdin: eof")
elif ready:
    print("stdin: more")
else:
    print("stdin: open")
