"""Child that asks for approval, then writes the answer line it reads to argv[1].

The frame carries a fixed messageId so the test can answer it by id; READY
follows the frame, so once READY is out the question is pending.
"""

import sys

MESSAGE_ID = "11111111-2222-4333-8444-555555555555"
sys.stdout.write(
    '__IPC_START__{"type":"ipc","event":"approval_request","data":{"requestId":"r1",'
    '"description":"delete","severity":"high","timeout":30},'
    f'"messageId":"{MESSAGE_ID}"}}__IPC_END__\n'
)
print("READY", flush=True)
line = sys.stdin.readline()
with open(sys.argv[1], "w") as out:
    out.write(line)
