"""A notifier of your own in thirty lines: supervise loopwork, tell the desktop.

    python examples/notifier.py -- loopwork run

Failures and finished tasks go to ``notify-send`` (or stdout without it);
approvals are granted only for low and medium severity, the rest denied.
"""

import shutil
import sys

import trio

from supervisor import Event, ProgramConfig, Supervisor, open_supervisor, summarize

sup = Supervisor([ProgramConfig(command=sys.argv[sys.argv.index("--") + 1 :])])


@sup.on("task_failed", "task_complete", "process_state")
async def tell(event: Event) -> None:
    text = summarize(event)
    if shutil.which("notify-send"):
        await trio.run_process(["notify-send", "loopwork", text])
    else:
        print(f"[notifier] {text}", flush=True)


async def main() -> None:
    # Subscribed before the programs start, so no early request is missed;
    # the loop ends when every program has settled.
    async with sup.subscribe("approval_request") as requests, open_supervisor(sup):
        async for request in requests:
            safe = request.data.severity in ("low", "medium")
            await sup.answer(request.message_id, "approve" if safe else "deny")


trio.run(main)
