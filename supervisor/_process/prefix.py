"""Line prefixes for several programs sharing one terminal, as honcho and foreman do.

With ``supervise --config`` in the foreground, each program's plain output is
shown with its name in front of every line::

    loop | 04:51:30 INFO: Loopwork initialized
    web  | Serving HTTP on 0.0.0.0 port 8000

Lines are written whole: a program's unfinished line is held until its
newline arrives (or it grows past a limit, or the program ends), so two
programs writing at once never splice their lines together.
"""

from __future__ import annotations

import trio

__all__ = ["LinePrefixer", "PrefixedOutput", "program_prefixes"]

# Colours for names on a terminal: cyan, yellow, green, magenta, blue, red.
_COLOURS = (36, 33, 32, 35, 34, 31)
_HOLD_LIMIT = 8192


def program_prefixes(names: list[str], colour: bool) -> dict[str, bytes]:
    """``name | `` for each program, padded to the longest name, coloured on request."""
    width = max((len(name) for name in names), default=0)
    prefixes = {}
    for index, name in enumerate(names):
        text = f"{name.ljust(width)} | "
        if colour:
            text = f"\x1b[{_COLOURS[index % len(_COLOURS)]}m{text}\x1b[0m"
        prefixes[name] = text.encode()
    return prefixes


class LinePrefixer:
    """Sans-IO: bytes in, whole prefixed lines out; the unfinished line is held."""

    def __init__(self, prefix: bytes, hold_limit: int = _HOLD_LIMIT) -> None:
        self.prefix = prefix
        self._held = b""
        self._hold_limit = hold_limit

    def feed(self, data: bytes) -> bytes:
        """Return the complete lines of ``self._held + data``, each prefixed."""
        data = self._held + data
        cut = data.rfind(b"\n") + 1
        if cut == 0 and len(data) < self._hold_limit:
            self._held = data
            return b""
        if cut == 0:
            cut = len(data)  # one enormous line: let it out rather than grow
        self._held = data[cut:]
        lines = data[:cut].split(b"\n")
        ends_with_newline = data[cut - 1 : cut] == b"\n"
        if ends_with_newline:
            lines.pop()  # the empty string after the last newline
        body = b"\n".join(self.prefix + line for line in lines)
        return body + b"\n" if ends_with_newline else body

    def flush(self) -> bytes:
        """The held unfinished line, prefixed and ended, e.g. when the program exits."""
        if not self._held:
            return b""
        held, self._held = self._held, b""
        return self.prefix + held + (b"" if held.endswith(b"\n") else b"\n")


class PrefixedOutput(trio.abc.SendStream):
    """One program's view of the shared output: its lines, prefixed.

    All programs' PrefixedOutputs share one underlying stream and one lock,
    because a trio stream takes one writer at a time.
    """

    def __init__(self, output: trio.abc.SendStream, lock: trio.Lock, prefix: bytes) -> None:
        self._output = output
        self._lock = lock
        self._prefixer = LinePrefixer(prefix)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        lines = self._prefixer.feed(bytes(data))
        if lines:
            async with self._lock:
                await self._output.send_all(lines)
        else:
            await trio.lowlevel.checkpoint()

    async def flush(self) -> None:
        """Write out the held unfinished line."""
        tail = self._prefixer.flush()
        if tail:
            async with self._lock:
                await self._output.send_all(tail)

    async def wait_send_all_might_not_block(self) -> None:
        await self._output.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.flush()
