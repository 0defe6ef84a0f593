"""Child that prints ``WORD 1`` .. ``WORD N`` and exits with CODE.

Usage: restart_lines.py WORD N [CODE]
"""

import sys

word, count = sys.argv[1], int(sys.argv[2])
for index in range(1, count + 1):
    print(f"{word} {index}", flush=True)
sys.exit(int(sys.argv[3]) if len(sys.argv) > 3 else 0)
