"""The metrics server's listening socket, bound without importing the server.

Standard library only, so ``supervise`` can bind it before it imports trio
(:mod:`supervisor._cli.early`): a run with ``--metrics-port`` then still
starts its child at once, and a port that is taken is still refused before
the child starts.
"""

from __future__ import annotations

import errno
import socket

from .._core.errors import ConfigError

__all__ = ["BACKLOG", "bind_metrics_socket"]

BACKLOG = 100
"""Scrapes that may wait for the server's first accept."""


def bind_metrics_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket for the metrics server.

    Raises:
        ConfigError: the address cannot be used (taken, not ours, unknown host).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        taken = exc.errno == errno.EADDRINUSE
        problem = "port is already in use" if taken else (exc.strerror or str(exc))
        raise ConfigError(f"metrics port {port} on {host}", problem) from None
    return sock
