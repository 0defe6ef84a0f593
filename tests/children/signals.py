"""Child that reports or ignores signals: prints READY, then waits.

Usage: signals.py [--ignore SIG,...] [--report SIG,...] [--grandchild] [--exit]
A reported signal prints ``got SIGNAME`` and exits 0.
"""

import argparse
import signal
import subprocess
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("--ignore", default="")
parser.add_argument("--report", default="")
parser.add_argument("--grandchild", action="store_true")
parser.add_argument("--exit", action="store_true", help="exit 0 right after READY")
args = parser.parse_args()


def report(signum: int, _frame: object) -> None:
    print(f"got {signal.Signals(signum).name}", flush=True)
    sys.exit(0)


for name in filter(None, args.ignore.split(",")):
    signal.signal(getattr(signal, name), signal.SIG_IGN)
for name in filter(None, args.report.split(",")):
    signal.signal(getattr(signal, name), report)
if args.grandchild:
    helper = subprocess.Popen(["sleep", "1000"])
    print(f"GRANDCHILD {helper.pid}", flush=True)
print("READY", flush=True)
if args.exit:
    sys.exit(0)
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    time.sleep(0.05)
sys.exit(5)
