"""Serving the metrics: ``/metrics`` for Prometheus and ``/healthz``, under trio.

prometheus_client's ASGI app runs under hypercorn's trio worker, in the same
trio run as everything else (no thread, no second event loop). The listening
socket is bound before the server starts (:mod:`supervisor._metrics.listen`),
so a taken port is one line and exit status 2 rather than a traceback from
inside the server.

``/healthz`` answers ``{"status": "ok" | "fatal", "programs": {NAME: STATE}}``:
200 unless a program has given up (FATAL), then 503, so a load balancer or
a Kubernetes probe can tell a supervisor whose programs cannot run.

hypercorn, with the HTTP/2 and WebSocket stacks it loads, takes ~60 ms to
import, and prometheus_client ~20 ms more: together a third of supervise's
start-up, and CPU taken from the child's output while it happens. So
``supervise`` binds the socket at start and lets it listen
(:func:`wait_for_first_scrape`: a scrape waits in the kernel's queue, never
refused), and loads both when the first connection arrives.
"""

from __future__ import annotations

import functools
import json
import logging
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from .listen import BACKLOG, bind_metrics_socket

__all__ = ["MetricsAddress", "bind_metrics_socket", "serve_metrics", "wait_for_first_scrape"]


if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

_Scope = dict[str, Any]
_Receive = Callable[[], Awaitable[dict[str, Any]]]
_Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class MetricsAddress:
    """Where the metrics are served (the port is the real one when 0 was asked)."""

    host: str
    port: int
    path: str

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{self.path}"


def _app(
    registry: CollectorRegistry,
    path: str,
    health: Callable[[], Mapping[str, str]],
) -> Callable[[_Scope, _Receive, _Send], Awaitable[None]]:
    from prometheus_client import make_asgi_app

    metrics = make_asgi_app(registry)

    async def app(scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].replace("lifespan.", "")
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        if scope["type"] != "http":
            return
        if scope["path"] == path:
            await metrics(scope, receive, send)
        elif scope["path"] == "/healthz":
            states = dict(health())
            fatal = any(state == "fatal" for state in states.values())
            body = {"status": "fatal" if fatal else "ok", "programs": states}
            await _respond(
                send, 503 if fatal else 200, json.dumps(body).encode(), "application/json"
            )
        else:
            await _respond(send, 404, f"try {path} or /healthz\n".encode(), "text/plain")

    return app


async def _respond(send: _Send, status: int, body: bytes, content_type: str) -> None:
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def serve_metrics(
    sock: socket.socket,
    registry: CollectorRegistry,
    health: Callable[[], Mapping[str, str]],
    *,
    path: str = "/metrics",
    task_status: trio.TaskStatus[MetricsAddress] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``registry`` at ``path`` and ``health()`` at ``/healthz`` until cancelled.

    Args:
        sock: from :func:`bind_metrics_socket`; the server takes it over.
        registry: the metrics to expose.
        health: each program's state by name.
        path: where the metrics are.
        task_status: started with the address once connections are accepted.
    """
    from hypercorn.config import Config
    from hypercorn.trio import serve

    host, port = sock.getsockname()[:2]
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]
    config.backlog = BACKLOG
    config.accesslog = None
    config.errorlog = logging.getLogger("supervisor.metrics")
    config.graceful_timeout = 0.5
    config.keep_alive_timeout = 30
    config.include_server_header = False
    # hypercorn's ASGI typing is stricter than the dict-based scope used here.
    app: Any = _app(registry, path, health)
    async with trio.open_nursery() as nursery:
        await nursery.start(functools.partial(serve, app, config, mode="asgi"))
        task_status.started(MetricsAddress(host, port, path))


async def wait_for_first_scrape(sock: socket.socket) -> None:
    """Listen on ``sock`` and return when its first connection is waiting.

    For a caller that loads the server (:func:`serve_metrics`) and the
    registry only then: the connection waits in the kernel's queue
    meanwhile, never refused. Cancelled, it closes ``sock``.
    """
    try:
        sock.listen(BACKLOG)
        await trio.lowlevel.wait_readable(sock)
    except BaseException:
        sock.close()
        raise
