"""Emit in-band IPC frames from a Python child process.

Programs such as the loopwork task runner report structured events by printing
*frames* into their own stdout, mixed with ordinary terminal output::

    __IPC_START__{"type":"ipc","version":"1.0","event":"task_start",...}__IPC_END__

A supervisor reading that stdout pulls the frames out and passes everything
else through. This module is the producing side, for children written in
Python. Why a helper rather than ``print(json.dumps(...))``:

* A frame must reach the pipe in one piece. Two threads printing at once, or a
  ``print`` that the text layer splits into several writes, can interleave
  other bytes *inside* a frame, and the supervisor then sees garbage. Here each
  frame is encoded up front and handed to the binary stream as a single
  ``write()`` followed by ``flush()``, both under a lock, so frames from
  different threads never mix and each one leaves the process promptly (a
  supervisor may be waiting on a ``question`` frame to answer it).
* Plain output written through ``sys.stdout`` (the text layer) sits in its own
  buffer. When frames go to ``sys.stdout.buffer`` that text buffer is flushed
  first, so a frame never overtakes a line printed before it.
* The envelope (``type``, ``version``, ``event``, ``data``, ``timestamp`` in
  epoch milliseconds, ``messageId``) and the camelCase data keys loopwork uses
  are spelled in one place instead of in every child.

Typical use::

    from supervisor import emit

    emit.task_start("FEAT-003", "Add login page", namespace="web")
    print("working...")
    emit.task_complete("FEAT-003", "Add login page", duration=0.528, namespace="web")

or, to write somewhere other than stdout, ``emit.FrameWriter(stream).task_start(...)``.
Only the standard library is used, so a child can copy this file if it cannot
depend on the package.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Literal, Protocol, TypeAlias

__all__ = [
    "END_MARKER",
    "PROTOCOL_VERSION",
    "START_MARKER",
    "BinaryWritable",
    "FrameWriter",
    "QuestionOption",
    "Severity",
    "approval_request",
    "build_envelope",
    "default_writer",
    "emit",
    "encode_frame",
    "log",
    "loop_end",
    "loop_start",
    "new_message_id",
    "progress_update",
    "question",
    "set_default_writer",
    "task_complete",
    "task_failed",
    "task_start",
]

START_MARKER = "__IPC_START__"
END_MARKER = "__IPC_END__"
PROTOCOL_VERSION = "1.0"

Severity: TypeAlias = Literal["low", "medium", "high", "critical"]
"""Severity levels loopwork attaches to an ``approval_request``."""

QuestionOption: TypeAlias = tuple[str, str] | Mapping[str, str]
"""An answer choice: ``(id, label)`` or a mapping such as ``{"id": "a", "label": "ISO 8601"}``."""

_START = START_MARKER.encode("ascii")
_END_LINE = (END_MARKER + "\n").encode("ascii")
_PRETTY_START = (START_MARKER + "\n").encode("ascii")
_PRETTY_END_LINE = ("\n" + END_MARKER + "\n").encode("ascii")
# Built once: json.dumps() with non-default arguments makes a new encoder per call.
# allow_nan=False because NaN/Infinity are not JSON and a strict reader on the
# other side would reject the whole frame; failing here names the culprit.
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_PRETTY = json.JSONEncoder(indent=2, ensure_ascii=False, allow_nan=False)


class BinaryWritable(Protocol):
    """What a :class:`FrameWriter` needs from its stream (``sys.stdout.buffer``, a file...)."""

    def write(self, data: bytes, /) -> object: ...

    def flush(self) -> object: ...


def build_envelope(event: str, data: object) -> dict[str, object]:
    """Wrap ``data`` in the envelope loopwork uses, in its key order.

    The timestamp is epoch milliseconds (an int, like JavaScript's
    ``Date.now()``) and the messageId a fresh UUID4 string.
    """
    return {
        "type": "ipc",
        "version": PROTOCOL_VERSION,
        "event": event,
        "data": data,
        "timestamp": time.time_ns() // 1_000_000,
        "messageId": new_message_id(),
    }


def new_message_id() -> str:
    """A random (version 4) UUID string, as loopwork's ``crypto.randomUUID()`` makes."""
    return str(uuid.uuid4())


def encode_frame(envelope: Mapping[str, object], *, pretty: bool = False) -> bytes:
    """Encode one envelope as the exact bytes of a frame, trailing newline included.

    The compact form is one line: ``json`` escapes newlines inside strings, so
    nothing but the final ``\\n`` can break it. ``pretty=True`` gives the form AI
    agents tend to write, markers on their own lines around indented JSON.

    Text is UTF-8. A lone surrogate (e.g. from a filename decoded with
    ``surrogateescape``) cannot be UTF-8, so it is written as a ``\\udcxx``
    escape, which is still valid JSON and decodes back to the same string.

    Raises:
        TypeError: ``data`` holds something JSON cannot represent.
        ValueError: ``data`` holds NaN or an infinity.
    """
    encoder = _PRETTY if pretty else _COMPACT
    # A marker inside a string value ("title": "__IPC_START__") would cut the
    # frame short for the reader. "__IPC_" can only occur inside JSON strings,
    # where an escaped underscore reads back as the same text.
    text = encoder.encode(envelope).replace("__IPC_", "\\u005f_IPC_")
    body = text.encode("utf-8", errors="backslashreplace")
    if pretty:
        return _PRETTY_START + body + _PRETTY_END_LINE
    return _START + body + _END_LINE


def _options(options: Sequence[QuestionOption]) -> list[dict[str, str]]:
    return [
        dict(option) if isinstance(option, Mapping) else {"id": option[0], "label": option[1]}
        for option in options
    ]


class FrameWriter:
    """Writes frames to one binary stream, one ``write()`` + ``flush()`` per frame.

    Args:
        stream: where frames go. ``None`` (the default) means "whatever
            ``sys.stdout`` is at the moment of each write", so a writer made at
            import time still follows a later redirection of ``sys.stdout``.
        autoflush: flush after every frame. Leave it on unless this process is
            the only writer of the stream and nobody waits on individual frames
            (a load generator); without the flush a buffered stream may split a
            large frame across two OS-level writes.

    All methods are thread-safe. Every ``emit``-style method returns the
    frame's ``messageId``, which a supervisor's reply can refer to.
    """

    def __init__(self, stream: BinaryWritable | None = None, *, autoflush: bool = True) -> None:
        self._stream = stream
        self._autoflush = autoflush
        self._lock = threading.Lock()
        self.frames_written = 0
        """Frames written so far (read it for statistics; not reset)."""
        self.bytes_written = 0
        """Bytes of frames written so far, markers and newlines included."""

    @property
    def stream(self) -> BinaryWritable | None:
        """The stream given at construction (``None``: follow ``sys.stdout``)."""
        return self._stream

    def emit(self, event: str, data: object, *, pretty: bool = False) -> str:
        """Write one frame carrying ``data`` for ``event`` and return its messageId.

        ``data`` is usually a dict but may be any JSON value (loopwork sends a
        bare string for ``loop_end``). ``pretty=True`` writes the multi-line
        form (see :func:`encode_frame`).
        """
        envelope = build_envelope(event, data)
        self.write_frame(encode_frame(envelope, pretty=pretty))
        return str(envelope["messageId"])

    def write_frame(self, frame: bytes) -> None:
        """Write already-encoded frame bytes with the same locking and flushing as :meth:`emit`.

        For callers that built the bytes with :func:`encode_frame`, or that
        forward a frame received from a grandchild unchanged.
        """
        with self._lock:
            self._write_locked(frame)
            self.frames_written += 1
            self.bytes_written += len(frame)

    def _write_locked(self, frame: bytes) -> None:
        stream = self._stream
        stdout = sys.stdout
        stdout_buffer: BinaryWritable | None = getattr(stdout, "buffer", None)
        if stream is None:
            if stdout_buffer is None:
                # sys.stdout was replaced by a text-only object (io.StringIO,
                # contextlib.redirect_stdout): frames are text, so hand them over.
                stdout.write(frame.decode("utf-8"))
                stdout.flush()
                return
            stream = stdout_buffer
        if stream is stdout_buffer:
            # Text printed earlier may still sit in the TextIOWrapper's buffer;
            # push it into the binary stream first so the frame does not overtake it.
            stdout.flush()
        written = stream.write(frame)
        # A raw (unbuffered) stream may accept only part of the bytes; finish the job.
        if isinstance(written, int) and 0 <= written < len(frame):
            view = memoryview(frame)
            while written < len(frame):
                more = stream.write(bytes(view[written:]))
                if not isinstance(more, int) or more <= 0:
                    break
                written += more
        if self._autoflush:
            stream.flush()

    # Typed events. Python names are snake_case, the data keys loopwork's camelCase.
    # ``extra`` keys are merged last, so they can add fields or override defaults.

    def loop_start(self, namespace: str, *, pretty: bool = False, **extra: object) -> str:
        """The runner started working through ``namespace``."""
        return self.emit("loop_start", {"namespace": namespace, **extra}, pretty=pretty)

    def loop_end(
        self,
        data: str | Mapping[str, object] | None = None,
        /,
        *,
        pretty: bool = False,
        **extra: object,
    ) -> str:
        """The runner stopped.

        Real loopwork sends the namespace as a bare string; its documentation
        shows stats. Both work: ``loop_end("web")``, ``loop_end({"completed": 4,
        "failed": 1, "duration": 12.5})`` or ``loop_end(completed=4, failed=1,
        duration=12.5)``.

        Raises:
            TypeError: extra fields given together with a string ``data``.
        """
        if isinstance(data, str):
            if extra:
                raise TypeError("loop_end: extra fields cannot be merged into string data")
            return self.emit("loop_end", data, pretty=pretty)
        return self.emit("loop_end", {**(data or {}), **extra}, pretty=pretty)

    def task_start(
        self,
        task_id: str,
        title: str,
        namespace: str = "default",
        iteration: int = 1,
        *,
        pretty: bool = False,
        **extra: object,
    ) -> str:
        """Work on a task began."""
        data = {
            "taskId": task_id,
            "title": title,
            "namespace": namespace,
            "iteration": iteration,
            **extra,
        }
        return self.emit("task_start", data, pretty=pretty)

    def task_complete(
        self,
        task_id: str,
        title: str,
        duration: float,
        namespace: str = "default",
        iteration: int = 1,
        success: bool = True,
        *,
        pretty: bool = False,
        **extra: object,
    ) -> str:
        """A task finished; ``duration`` is in seconds (a float, e.g. ``0.528``)."""
        data = {
            "taskId": task_id,
            "title": title,
            "namespace": namespace,
            "iteration": iteration,
            "duration": duration,
            "success": success,
            **extra,
        }
        return self.emit("task_complete", data, pretty=pretty)

    def task_failed(
        self,
        task_id: str,
        title: str,
        error: str,
        namespace: str = "default",
        iteration: int = 1,
        *,
        pretty: bool = False,
        **extra: object,
    ) -> str:
        """A task failed with the message ``error``."""
        data = {
            "taskId": task_id,
            "title": title,
            "namespace": namespace,
            "iteration": iteration,
            "error": error,
            **extra,
        }
        return self.emit("task_failed", data, pretty=pretty)

    def question(
        self,
        question: str,
        options: Sequence[QuestionOption],
        timeout: float | None = None,
        *,
        pretty: bool = False,
        **extra: object,
    ) -> str:
        """Ask the supervisor (or its user) to choose one of ``options``.

        ``timeout`` is in seconds and left out when ``None``.
        """
        data: dict[str, object] = {"question": question, "options": _options(options)}
        if timeout is not None:
            data["timeout"] = timeout
        return self.emit("question", {**data, **extra}, pretty=pretty)

    def approval_request(
        self,
        description: str,
        *,
        action: str | None = None,
        operation: str | None = None,
        request_id: str | None = None,
        severity: Severity = "medium",
        timeout: float | None = None,
        pretty: bool = False,
        **extra: object,
    ) -> str:
        """Ask for permission before a risky operation; ``timeout`` is in seconds.

        loopwork identifies the request by ``requestId`` or by ``action``;
        whichever of the optional keys is ``None`` is left out.
        """
        optional: dict[str, object | None] = {
            "requestId": request_id,
            "action": action,
            "operation": operation,
        }
        data = {key: value for key, value in optional.items() if value is not None}
        data["description"] = description
        data["severity"] = severity
        if timeout is not None:
            data["timeout"] = timeout
        return self.emit("approval_request", {**data, **extra}, pretty=pretty)

    def progress_update(
        self,
        data: Mapping[str, object] | None = None,
        /,
        *,
        pretty: bool = False,
        **fields: object,
    ) -> str:
        """Report progress; the shape is free-form and keys are used as given.

        E.g. ``progress_update(taskId="FEAT-3", progress=50, message="half way")``
        or ``progress_update({"stepId": "s1", "phase": "plan"})`` for keys
        that are not Python identifiers.
        """
        return self.emit("progress_update", {**(data or {}), **fields}, pretty=pretty)

    def log(
        self, message: str, level: str = "info", *, pretty: bool = False, **extra: object
    ) -> str:
        """A log record (``level`` is e.g. ``debug``, ``info``, ``warn``, ``error``)."""
        return self.emit("log", {"level": level, "message": message, **extra}, pretty=pretty)


_default: FrameWriter | None = None
_default_lock = threading.Lock()


def default_writer() -> FrameWriter:
    """The writer the module-level functions use, created on first use (follows ``sys.stdout``)."""
    global _default
    writer = _default
    if writer is None:
        with _default_lock:
            if _default is None:
                _default = FrameWriter()
            writer = _default
    return writer


def set_default_writer(writer: FrameWriter | None) -> None:
    """Send the module-level functions' frames to ``writer`` (``None``: back to stdout).

    Useful to move frames to another descriptor, or to capture them in tests.
    """
    global _default
    with _default_lock:
        _default = writer


def emit(event: str, data: object, *, pretty: bool = False) -> str:
    """:meth:`FrameWriter.emit` on the default writer."""
    return default_writer().emit(event, data, pretty=pretty)


def loop_start(namespace: str, *, pretty: bool = False, **extra: object) -> str:
    """:meth:`FrameWriter.loop_start` on the default writer."""
    return default_writer().loop_start(namespace, pretty=pretty, **extra)


def loop_end(
    data: str | Mapping[str, object] | None = None,
    /,
    *,
    pretty: bool = False,
    **extra: object,
) -> str:
    """:meth:`FrameWriter.loop_end` on the default writer."""
    return default_writer().loop_end(data, pretty=pretty, **extra)


def task_start(
    task_id: str,
    title: str,
    namespace: str = "default",
    iteration: int = 1,
    *,
    pretty: bool = False,
    **extra: object,
) -> str:
    """:meth:`FrameWriter.task_start` on the default writer."""
    return default_writer().task_start(task_id, title, namespace, iteration, pretty=pretty, **extra)


def task_complete(
    task_id: str,
    title: str,
    duration: float,
    namespace: str = "default",
    iteration: int = 1,
    success: bool = True,
    *,
    pretty: bool = False,
    **extra: object,
) -> str:
    """:meth:`FrameWriter.task_complete` on the default writer."""
    return default_writer().task_complete(
        task_id, title, duration, namespace, iteration, success, pretty=pretty, **extra
    )


def task_failed(
    task_id: str,
    title: str,
    error: str,
    namespace: str = "default",
    iteration: int = 1,
    *,
    pretty: bool = False,
    **extra: object,
) -> str:
    """:meth:`FrameWriter.task_failed` on the default writer."""
    return default_writer().task_failed(
        task_id, title, error, namespace, iteration, pretty=pretty, **extra
    )


def question(
    question: str,
    options: Sequence[QuestionOption],
    timeout: float | None = None,
    *,
    pretty: bool = False,
    **extra: object,
) -> str:
    """:meth:`FrameWriter.question` on the default writer."""
    return default_writer().question(question, options, timeout, pretty=pretty, **extra)


def approval_request(
    description: str,
    *,
    action: str | None = None,
    operation: str | None = None,
    request_id: str | None = None,
    severity: Severity = "medium",
    timeout: float | None = None,
    pretty: bool = False,
    **extra: object,
) -> str:
    """:meth:`FrameWriter.approval_request` on the default writer."""
    return default_writer().approval_request(
        description,
        action=action,
        operation=operation,
        request_id=request_id,
        severity=severity,
        timeout=timeout,
        pretty=pretty,
        **extra,
    )


def progress_update(
    data: Mapping[str, object] | None = None,
    /,
    *,
    pretty: bool = False,
    **fields: object,
) -> str:
    """:meth:`FrameWriter.progress_update` on the default writer."""
    return default_writer().progress_update(data, pretty=pretty, **fields)


def log(message: str, level: str = "info", *, pretty: bool = False, **extra: object) -> str:
    """:meth:`FrameWriter.log` on the default writer."""
    return default_writer().log(message, level, pretty=pretty, **extra)
