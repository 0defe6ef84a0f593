"""Child that writes every byte value, CR/LF mixes and frames, with no trailing newline."""

import sys

out = sys.stdout.buffer
out.write(bytes(range(256)))
out.write(b"\nunix\nwindows\r\nold mac\rend")
out.write(b'\n__IPC_START__{"type":"ipc","event":"log","data":{"message":"m"}}__IPC_END__\n')
out.write(b"tail without newline")
out.flush()
