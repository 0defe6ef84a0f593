"""Read supervise's events from a Redis Stream as one worker of a consumer group.

    python examples/redis_consumer.py redis://127.0.0.1:6379/0 ipc:events [GROUP [NAME]]

with a route whose sink is ``{type = "redis", stream = "ipc:events"}``. Start it
on as many machines as you like with the same GROUP: each entry goes to one
worker, which acknowledges it (XACK) once printed. A worker that dies between
the two leaves the entry pending under its NAME (the host's name by default):
restarted, it prints its pending entries first, then new ones. A new group
starts from the oldest entry still in the stream.
"""

from __future__ import annotations

import contextlib
import socket
import sys

import coredis
import trio
from coredis.exceptions import StreamDuplicateConsumerGroupError

from supervisor import Event, summarize


async def consume(url: str, stream: str, group: str, name: str) -> None:
    async with coredis.Redis.from_url(url) as client:
        # Another worker, or an earlier run, may have made the group already.
        with contextlib.suppress(StreamDuplicateConsumerGroupError):
            await client.xgroup_create(stream, group, "0", mkstream=True)
        after = "0"  # "0": this worker's pending entries; ">": entries no worker has had
        while True:
            reply = await client.xreadgroup(group, name, {stream: after}, count=100, block=5000)
            entries = (reply or {}).get(stream.encode(), ())
            if after == "0" and not entries:
                after = ">"
            for entry in entries:
                event = Event.from_json(entry.field_values[b"json"])
                print(f"{event.seq:>6} {event.program}: {summarize(event)}", flush=True)
                await client.xack(stream, group, [entry.identifier])


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    url, stream = sys.argv[1:3]
    group = sys.argv[3] if len(sys.argv) > 3 else "printers"
    name = sys.argv[4] if len(sys.argv) > 4 else socket.gethostname()
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(consume, url, stream, group, name)
