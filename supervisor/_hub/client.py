"""An async client of supervise's control socket, for the hub.

The protocol is the one ``supervise ctl`` speaks (JSON Lines, one reply per
request; see :mod:`supervisor._control.server`); this side is trio's, so
one hub process follows many instances at once.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import trio

from .._control.replies import result_of
from .._core.errors import ControlError

__all__ = ["MAX_LINE", "request", "tail"]

MAX_LINE = 8 * 1024 * 1024
"""The longest reply or event line accepted (an event line is bounded by the frame size)."""


class _Lines:
    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    async def readline(self) -> bytes | None:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line
            if len(self._buffer) > MAX_LINE:
                raise ControlError("a control reply line is too long")
            data = await self._stream.receive_some(65536)
            if not data:
                return None
            self._buffer += data


def _result(line: bytes | None) -> Any:
    if line is None:
        raise ControlError("the instance closed the connection")
    try:
        reply = json.loads(line)
    except ValueError:
        raise ControlError(f"not a control reply: {line[:80]!r}") from None
    return result_of(reply)


async def _connect(path: Path) -> trio.SocketStream:
    try:
        return await trio.open_unix_socket(str(path))
    except OSError as exc:
        raise ControlError(f"{path.name}: cannot connect: {exc.strerror or exc}") from None


async def request(path: Path, body: dict[str, Any], *, within: float = 35.0) -> Any:
    """Send one request to the instance at ``path``; its result.

    Raises:
        ControlError: the instance refused it (its one-line error), or
            could not be reached.
    """
    with trio.fail_after(within):
        stream = await _connect(path)
        async with stream:
            await stream.send_all(json.dumps(body).encode() + b"\n")
            return _result(await _Lines(stream).readline())


async def tail(path: Path, since: int | None) -> AsyncIterator[bytes]:
    """Every event line of the instance: from the journal after ``since``, then live.

    Ends when the instance closes the connection (it stopped).
    """
    stream = await _connect(path)
    async with stream:
        body: dict[str, Any] = {"cmd": "tail"}
        if since is not None:
            body["since"] = since
        await stream.send_all(json.dumps(body).encode() + b"\n")
        lines = _Lines(stream)
        _result(await lines.readline())
        while (line := await lines.readline()) is not None:
            yield line
