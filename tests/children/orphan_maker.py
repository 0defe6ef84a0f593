"""Child that starts a helper in a session of its own (out of reach of its
process group), prints the helper's pid and READY, then crashes."""

import os
import subprocess
import sys

helper = subprocess.Popen(["sleep", "1000"], start_new_session=True)
print(f"HELPER {helper.pid}", flush=True)
print("READY", flush=True)
os._exit(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
