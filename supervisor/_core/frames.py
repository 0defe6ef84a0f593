"""Incremental, sans-IO decoder for in-band IPC frames.

A supervised child writes ordinary terminal output with frames mixed in::

    text __IPC_START__{"type":"ipc","event":"task_start",...}__IPC_END__\\n

:class:`FrameDecoder` turns bytes, fed in any chunking, into an ordered list of
items: :class:`Output` (bytes to pass through to the terminal), :class:`Frame`
(a payload accepted by the validator), :class:`MalformedFrame` (a report about
bytes that looked like a frame but were not one; those bytes are *also* handed
back as :class:`Output`, so nothing a child writes is ever hidden) and
:class:`LineEndRemoved` (the newline that followed a frame standing alone on
its line, so no blank line is left behind).

The decoder does no I/O, reads no clock and logs nothing. Validation is a pure
callable injected by the caller, so this module knows nothing about event
models. Two invariants hold for every input and every chunking, and are tested
with hypothesis:

1. Feeding the input in pieces yields the same items as feeding it whole
   (after joining adjacent :class:`Output` items).
2. Concatenating, in order, the bytes of every Output, Frame and
   LineEndRemoved item (:class:`MalformedFrame` carries none: its bytes travel
   as Output) reproduces the input exactly. A caller that wants frames left
   in its passthrough (to nest one supervisor under another) writes every
   item's bytes; one that removes them writes only Output.

The three items made for every frame (:class:`Output`, :class:`Frame`,
:class:`LineEndRemoved`) are slotted dataclasses that are not frozen: a
frozen one's ``__init__`` sets each field through ``object.__setattr__``,
which cost ~0.6 us per frame on the passthrough's hot path. Treat them as
read-only all the same.

Memory stays bounded: plain output is released as soon as it cannot be the
start of a marker, and an open frame is given up as ``oversize`` once its
payload passes ``max_frame_bytes``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Literal, TypeAlias, TypeVar

from .errors import UsageError

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "END_MARKER",
    "START_MARKER",
    "DecodedItem",
    "Frame",
    "FrameDecoder",
    "InvalidReason",
    "LineEndRemoved",
    "MalformedFrame",
    "Output",
    "Rejected",
]

START_MARKER = b"__IPC_START__"
END_MARKER = b"__IPC_END__"
DEFAULT_MAX_FRAME_BYTES = 1024 * 1024

_START_LEN = len(START_MARKER)
_END_LEN = len(END_MARKER)
_NEWLINE = 0x0A
_CARRIAGE_RETURN = 0x0D
_EXCERPT_BYTES = 120

InvalidReason: TypeAlias = Literal["json", "type", "schema", "reserved", "oversize", "unterminated"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Rejected:
    """What a validator returns for a payload it refuses.

    Attributes:
        reason: ``json``, ``type``, ``schema`` or ``reserved`` (an event
            name the receiver keeps for itself).
        detail: one line saying what is wrong, e.g. ``data.duration: Input
            should be a valid number``.
    """

    reason: InvalidReason
    detail: str


@dataclass(slots=True)
class Output:
    """Plain output: bytes that go to the terminal untouched."""

    data: bytes

    @property
    def raw(self) -> bytes:
        return self.data


@dataclass(slots=True)
class Frame(Generic[T]):
    """A complete frame whose payload the validator accepted.

    Attributes:
        message: what the validator returned for the payload.
        raw: the frame's original bytes, markers included.
        offset: byte offset of ``__IPC_START__`` in the stream.
        line_start: the frame began a line (the stream's start, or right
            after a ``\n``). A program writes its own frames there; a frame
            after other text on its line is usually text the program relays
            from someone else (an AI agent's output behind a log prefix), so
            a caller can decide how far to trust it. ``\r`` alone does not
            start a line: it only moves the cursor back.
    """

    message: T
    raw: bytes
    offset: int
    line_start: bool = True


@dataclass(frozen=True, slots=True)
class MalformedFrame:
    """Report of bytes that opened a frame but did not make a valid one.

    The bytes themselves are delivered as :class:`Output` right before this
    item, so the person watching still sees them.

    Attributes:
        reason: ``json``, ``type``, ``schema``, ``oversize`` or ``unterminated``.
        offset: byte offset of the offending ``__IPC_START__`` in the stream.
        detail: one line saying what is wrong.
        excerpt: the start of the frame, decoded leniently, for humans.
    """

    reason: InvalidReason
    offset: int
    detail: str
    excerpt: str


@dataclass(slots=True)
class LineEndRemoved:
    """The ``\\n`` or ``\\r\\n`` taken away with a frame alone on its line."""

    raw: bytes


DecodedItem: TypeAlias = Output | Frame[T] | MalformedFrame | LineEndRemoved
Validator: TypeAlias = Callable[[bytes], "T | Rejected"]


def _excerpt(raw: bytes) -> str:
    text = raw[:_EXCERPT_BYTES].decode("utf-8", errors="replace")
    text = text.encode("unicode_escape").decode("ascii")
    return text + ("..." if len(raw) > _EXCERPT_BYTES else "")


def _partial_marker_suffix(data: bytes | bytearray, start: int) -> int:
    """Length of the longest tail of ``data[start:]`` that begins ``__IPC_START__``.

    Those bytes must be held back: the next feed may complete the marker.
    """
    n = len(data)
    first = max(start, n - (_START_LEN - 1))
    i = data.find(b"_", first)
    while i != -1:
        if START_MARKER.startswith(data[i:n]):
            return n - i
        i = data.find(b"_", i + 1)
    return 0


class FrameDecoder(Generic[T]):
    """Split a byte stream into plain output and frames, losslessly.

    Args:
        validate: pure function from a frame's payload (the bytes between the
            markers) to a message, or :class:`Rejected`.
        max_frame_bytes: largest payload accepted; a longer one is reported
            as ``oversize`` and passed through as plain output.

    Feed it with :meth:`feed` and finish with :meth:`close`. Items come back in
    stream order. The decoder keeps at most ``max_frame_bytes`` plus a few
    marker-sized tails in memory.
    """

    # States of the scanner.
    _PLAIN = 0  # looking for __IPC_START__
    _IN_FRAME = 1  # saw __IPC_START__, looking for __IPC_END__
    _AFTER_FRAME = 2  # a frame that began a line just ended: is a line ending next?

    def __init__(
        self,
        validate: Callable[[bytes], T | Rejected],
        *,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> None:
        if max_frame_bytes < 1:
            raise ValueError(f"max_frame_bytes must be positive, got {max_frame_bytes}")
        self._validate = validate
        self._max_frame_bytes = max_frame_bytes
        self._pending = bytearray()  # bytes not yet resolved into items
        self._offset = 0  # stream offset of self._pending[0]
        self._state = self._PLAIN
        # True when the plain output so far is empty or ends with "\n": a frame
        # starting here stands alone on its line.
        self._at_line_start = True
        self._frame_at_line_start = False
        # Where to resume looking for markers in an open frame, counted from
        # its START (the buffer may shift between feeds; the frame does not).
        self._scan_from = _START_LEN
        self._closed = False

    @property
    def buffered_bytes(self) -> int:
        """How many bytes are held back waiting for more input."""
        return len(self._pending)

    def feed(self, data: bytes) -> list[DecodedItem[T]]:
        """Decode the next piece of the stream.

        Args:
            data: the next bytes, in any chunking (empty is allowed).

        Returns:
            The items that are complete so far, in stream order.

        Raises:
            RuntimeError: if called after :meth:`close`.
        """
        if self._closed:
            raise UsageError("feed() called after close()")
        items: list[DecodedItem[T]] = []
        if not self._pending:
            # Fast path: nothing held back, scan the caller's bytes directly.
            used = self._run(data, items, final=False)
            if used < len(data):
                self._pending += data[used:]
        else:
            self._pending += data
            used = self._run(self._pending, items, final=False)
            del self._pending[:used]
        self._offset += used
        return items

    def close(self) -> list[DecodedItem[T]]:
        """Signal end of stream and return what was held back.

        An open frame is flushed as plain output and reported as
        ``unterminated``; a held partial marker becomes plain output.
        """
        if self._closed:
            return []
        self._closed = True
        items: list[DecodedItem[T]] = []
        used = self._run(self._pending, items, final=True)
        self._offset += used
        self._pending.clear()
        return items

    # -- scanner -----------------------------------------------------------

    def _emit_plain(self, items: list[DecodedItem[T]], chunk: bytes) -> None:
        if chunk:
            items.append(Output(chunk))
            self._at_line_start = chunk[-1] == _NEWLINE

    def _run(self, data: bytes | bytearray, items: list[DecodedItem[T]], *, final: bool) -> int:
        """Turn as much of ``data`` into items as is certain; return bytes used."""
        pos = 0
        n = len(data)
        while True:
            if self._state == self._PLAIN:
                pos = self._run_plain(data, pos, items)
                if pos < 0:  # no marker left in data
                    pos = ~pos
                    keep = 0 if final else _partial_marker_suffix(data, pos)
                    self._emit_plain(items, bytes(data[pos : n - keep]))
                    return n - keep
            elif self._state == self._IN_FRAME:
                advanced = self._scan_frame(data, pos, items, final=final)
                if advanced is None:
                    return pos
                pos = advanced
            else:  # _AFTER_FRAME
                if pos >= n:
                    if final:
                        self._state = self._PLAIN
                        continue
                    return pos
                byte = data[pos]
                if byte == _NEWLINE:
                    items.append(LineEndRemoved(b"\n"))
                    pos += 1
                elif byte == _CARRIAGE_RETURN:
                    if pos + 1 >= n and not final:
                        return pos  # need the next byte to know if it is "\r\n"
                    if pos + 1 < n and data[pos + 1] == _NEWLINE:
                        items.append(LineEndRemoved(b"\r\n"))
                        pos += 2
                self._state = self._PLAIN

    def _run_plain(self, data: bytes | bytearray, pos: int, items: list[DecodedItem[T]]) -> int:
        """The usual case, in one tight loop: plain text, a whole valid frame, its line end.

        Returns where the state machine takes over (a frame not yet whole,
        an invalid one, a line end that needs the next byte), with
        ``self._state`` set for it; or ``~pos`` when no marker starts at or
        after ``pos``. The same searches and items as the state machine's,
        with the state kept in locals: this runs for every frame.
        """
        append = items.append
        find = data.find
        validate = self._validate
        cap = self._max_frame_bytes + _END_LEN
        offset = self._offset
        at_line_start = self._at_line_start
        n = len(data)
        while True:
            found = find(START_MARKER, pos)
            if found == -1:
                self._at_line_start = at_line_start
                return ~pos
            if found > pos:
                chunk = bytes(data[pos:found])
                append(Output(chunk))
                at_line_start = chunk[-1] == _NEWLINE
            payload_start = found + _START_LEN
            end = find(END_MARKER, payload_start, payload_start + cap)
            if end == -1 or find(START_MARKER, payload_start, end) != -1:
                self._at_line_start = self._frame_at_line_start = at_line_start
                self._scan_from = _START_LEN
                self._state = self._IN_FRAME
                return found
            after = end + _END_LEN
            raw = bytes(data[found:after])
            result = validate(raw[_START_LEN:-_END_LEN])
            if isinstance(result, Rejected):
                self._at_line_start = at_line_start  # _give_up's output then moves it on
                return self._give_up(data, found, after, items, result.reason, result.detail)
            append(Frame(result, raw, offset + found, at_line_start))
            pos = after
            if at_line_start:
                # Only a frame that began its line may take the line end after it.
                if pos < n and data[pos] == _NEWLINE:
                    append(LineEndRemoved(b"\n"))
                    pos += 1
                elif pos >= n or data[pos] == _CARRIAGE_RETURN:
                    self._at_line_start = at_line_start
                    self._state = self._AFTER_FRAME
                    return pos

    def _scan_frame(
        self, data: bytes | bytearray, pos: int, items: list[DecodedItem[T]], *, final: bool
    ) -> int | None:
        """Resolve the frame opened at ``pos``; return the new position, or
        None when more input is needed."""
        n = len(data)
        payload_start = pos + _START_LEN
        # A payload of at most max_frame_bytes means END starts no later than
        # this; searching further would only buffer more than the cap.
        last_end_start = payload_start + self._max_frame_bytes
        scan_from = pos + self._scan_from
        end = data.find(END_MARKER, scan_from, last_end_start + _END_LEN)
        if end != -1:
            restart_limit = end
        elif final:
            restart_limit = last_end_start
        else:
            # An END not yet complete could still start anywhere in the last
            # _END_LEN - 1 bytes; a START must lie wholly before it to count.
            restart_limit = min(last_end_start, n - (_END_LEN - 1))
        restart = data.find(START_MARKER, scan_from, restart_limit)
        if restart != -1:
            # A new START inside an open frame: the earlier one was never
            # closed. Its bytes are plain output; the new START opens a frame.
            detail = f"a new __IPC_START__ at byte {self._offset + restart} came before __IPC_END__"
            self._give_up(data, pos, restart, items, "unterminated", detail)
            self._state = self._IN_FRAME
            self._frame_at_line_start = self._at_line_start
            self._scan_from = _START_LEN
            return restart
        if end != -1:
            return self._finish_frame(data, pos, end, items)
        if n >= last_end_start + _START_LEN or (final and n > last_end_start):
            # Every place a marker could start within the cap has been seen
            # (or the stream ended past the cap).
            detail = f"payload exceeds max_frame_bytes={self._max_frame_bytes} without __IPC_END__"
            return self._give_up(data, pos, last_end_start, items, "oversize", detail)
        if final:
            return self._give_up(
                data, pos, n, items, "unterminated", "stream ended before __IPC_END__"
            )
        # Resume where an unseen marker could still begin: an END in the last
        # _END_LEN - 1 bytes, or a START ending after restart_limit. Never
        # before payload_start, so an END cannot overlap this frame's START.
        self._scan_from = max(payload_start, n - (_START_LEN + _END_LEN)) - pos
        return None

    def _give_up(
        self,
        data: bytes | bytearray,
        pos: int,
        cut: int,
        items: list[DecodedItem[T]],
        reason: InvalidReason,
        detail: str,
    ) -> int:
        """Hand the open frame's bytes up to ``cut`` back as output, report why."""
        raw = bytes(data[pos:cut])
        self._emit_plain(items, raw)
        items.append(MalformedFrame(reason, self._offset + pos, detail, _excerpt(raw)))
        self._state = self._PLAIN
        return cut

    def _finish_frame(
        self, data: bytes | bytearray, pos: int, end: int, items: list[DecodedItem[T]]
    ) -> int:
        after = end + _END_LEN
        raw = bytes(data[pos:after])
        result = self._validate(raw[_START_LEN : len(raw) - _END_LEN])
        if isinstance(result, Rejected):
            return self._give_up(data, pos, after, items, result.reason, result.detail)
        items.append(Frame(result, raw, self._offset + pos, self._frame_at_line_start))
        # Only a frame that began its line may take the line ending after it.
        self._state = self._AFTER_FRAME if self._frame_at_line_start else self._PLAIN
        return after
