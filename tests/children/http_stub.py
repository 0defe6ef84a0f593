"""A scriptable HTTP server for the webhook tests, run as a process of its own.

    http_stub.py --record FILE [--port N] [BEHAVIOUR ...]

Binds 127.0.0.1 (port 0, i.e. any free one, unless --port), prints
``PORT <n>`` and ``READY``, then answers the i-th request with the i-th
BEHAVIOUR and every request after the last with 200. A BEHAVIOUR is a
status (``500``) or a JSON object such as
``{"status": 429, "headers": {"Retry-After": "1"}, "body": "slow down", "lag": 2}``
(``lag``: seconds to wait before answering).

Each request is appended to FILE as a JSON line as soon as it has arrived:
``{"method", "path", "headers": [[name, value], ...], "body_b64"}``.
"""

from __future__ import annotations

import argparse
import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT: dict[str, Any] = {"status": 200}


class Stub(ThreadingHTTPServer):
    def __init__(self, port: int, record: str, script: list[dict[str, Any]]) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.record = record
        self.script = script
        self.lock = threading.Lock()

    def next_behaviour(self, request: dict[str, Any]) -> dict[str, Any]:
        """Record ``request`` and take the next behaviour, under one lock so both keep order."""
        with self.lock:
            with open(self.record, "a") as file:
                file.write(json.dumps(request) + "\n")
            return self.script.pop(0) if self.script else DEFAULT

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up during a lag is expected; no traceback."""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Stub

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        request = {
            "method": self.command,
            "path": self.path,
            "headers": [[name, value] for name, value in self.headers.items()],
            "body_b64": base64.b64encode(body).decode(),
        }
        behaviour = self.server.next_behaviour(request)
        time.sleep(behaviour.get("lag", 0))
        payload = str(behaviour.get("body", "")).encode()
        self.send_response(int(behaviour["status"]))
        for name, value in behaviour.get("headers", {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_PUT = do_DELETE = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the record file is the log."""


def behaviour(text: str) -> dict[str, Any]:
    value = json.loads(text)
    return {"status": value} if isinstance(value, int) else dict(value)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--record", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("script", nargs="*", type=behaviour)
    args = parser.parse_args()
    server = Stub(args.port, args.record, args.script)
    print(f"PORT {server.server_address[1]}", flush=True)
    print("READY", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
