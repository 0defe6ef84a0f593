"""Leave a line open around an invalid frame, finish it when told to.

Usage: partial_line.py FIFO. Writes ``partial line `` and an invalid frame
without a newline, waits until something is written to FIFO, then ends the
line with `` rest``.
"""

import sys

fifo = sys.argv[1]
sys.stdout.write('partial line __IPC_START__{"type":"ipc","event":}__IPC_END__')
sys.stdout.flush()
with open(fifo) as go:
    go.read()
sys.stdout.write(" rest\n")
sys.stdout.flush()
