"""Child for terminal tests: prints READY and a coloured prompt, reads a line, answers.

It also writes a frame, which supervise must hide, and exits with the
status given as its first argument (default 0).
"""

import sys

print("\x1b[1;32mREADY\x1b[0m", flush=True)
sys.stdout.write('__IPC_START__{"type":"ipc","event":"log","data":{"message":"m"}}__IPC_END__\n')
line = input("name? ")
print(f"got: {line!r}", flush=True)
sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
