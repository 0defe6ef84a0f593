"""Child that writes a deterministic stream of plain output with frames mixed in.

Usage: bulk.py MEBIBYTES. Every block is plain lines followed by a frame on a
line of its own; ``tests/test_cli.py`` rebuilds the expected output itself.
"""

import json
import sys

BLOCK_LINES = 300


def block(index: int) -> tuple[bytes, bytes]:
    plain = b"".join(
        b"line %d.%d \x1b[32mok\x1b[0m %s\n" % (index, i, b"." * (i % 50))
        for i in range(BLOCK_LINES)
    )
    frame = json.dumps(
        {"type": "ipc", "event": "task_complete", "data": {"taskId": f"T-{index}", "duration": 0.5}}
    ).encode()
    return plain, b"__IPC_START__" + frame + b"__IPC_END__\n"


def main() -> None:
    target = int(sys.argv[1]) * 1024 * 1024
    out = sys.stdout.buffer
    written = index = 0
    while written < target:
        plain, frame = block(index)
        out.write(plain + frame)
        written += len(plain) + len(frame)
        index += 1
    out.flush()


if __name__ == "__main__":
    main()
