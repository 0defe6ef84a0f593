"""Receive supervise's webhook events: check the signature, skip repeats, print a line each.

    IPC_WEBHOOK_SECRET=s3cret python examples/webhook_receiver.py --port 8080

with a route in supervise.toml whose sink is ``{type = "webhook",
url = "http://127.0.0.1:8080/", secret_env = "IPC_WEBHOOK_SECRET"}``. Only
the standard library is used, so this runs wherever the events should go.
A bad signature gets 401; an event seen before (a retry after a lost
answer) gets 204 again but is not printed twice.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import os
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar

MAX_BODY = 1 << 20
REMEMBERED = 10_000  # event ids kept for spotting repeats


class Receiver(BaseHTTPRequestHandler):
    secret: ClassVar[bytes] = b""
    seen: ClassVar[dict[str, None]] = {}  # an ordered set, oldest first

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.answer(413)
            return
        body = self.rfile.read(length)
        expected = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        signature = self.headers.get("X-Signature-256", "").encode("utf-8", "replace")
        if not hmac.compare_digest(expected.encode(), signature):
            self.answer(401)
            return
        event = json.loads(body)
        key = f"{event['messageId']}/{event['seq']}"
        if key not in self.seen:
            self.seen[key] = None
            if len(self.seen) > REMEMBERED:
                del self.seen[next(iter(self.seen))]
            print(summary(event), flush=True)
        self.answer(204)

    def answer(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


def summary(event: dict[str, Any]) -> str:
    """``#3 loopwork task_start FEAT-1``: sequence number, program, event, task."""
    data = event.get("data")
    task = data.get("taskId", "") if isinstance(data, dict) else ""
    return f"#{event['seq']} {event['program']} {event['event']} {task}".rstrip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument("--secret", default=os.environ.get("IPC_WEBHOOK_SECRET"))
    args = parser.parse_args()
    if not args.secret:
        parser.error("give the shared secret in IPC_WEBHOOK_SECRET (or --secret)")
    Receiver.secret = args.secret.encode()
    with HTTPServer((args.host, args.port), Receiver) as server:
        print(f"listening on http://{args.host}:{server.server_address[1]}/", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()


if __name__ == "__main__":
    main()
