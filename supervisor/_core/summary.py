"""One-line human summaries of events, for status lines and chat messages.

Sans-IO like the frame parser: :func:`summarize` turns an :class:`Event` into
text and nothing else, so tmux's ``display-message``, a chat adapter and
``supervise ctl`` can share the same wording. Examples::

    ✅ FEAT-001 Implement user authentication (1m50s)
    ❌ FEAT-002 Add login page: Task FEAT-002 failed after maximum retries
    ⚠️ approval: Destroy stale preview environments — Contains critical keywords: destroy (high)

Event data comes from child programs, so every field is read defensively: a
missing field, a field of an unexpected type or an event this version does not
know still gives a summary, never an exception. The result is a single line
(no control characters, no line breaks) of at most ``max_length`` characters.
"""

from __future__ import annotations

import math
import re
import signal
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

if TYPE_CHECKING:
    from .events import Event

__all__ = ["DEFAULT_MAX_LENGTH", "format_duration", "one_line", "summarize", "whole_duration"]

DEFAULT_MAX_LENGTH = 200
"""Long enough for a task title and an error line, short enough for a status line."""

_ELLIPSIS = "…"
# Line breaks of every kind (\s covers \x1c-\x1f, \x85, \u2028, \u2029) and
# the other C0/C1 controls: in a terminal they would move the cursor or
# start escape sequences instead of printing.
_BREAKS_AND_CONTROLS = re.compile(r"[\s\x00-\x1f\x7f-\x9f]+")
# Lone surrogates cannot be encoded as UTF-8, so they would break whatever
# writes the summary out (a command line, an HTTP body).
_SURROGATES = re.compile("[\ud800-\udfff]")


def format_duration(seconds: float) -> str:
    """Format a duration compactly: ``850ms``, ``12s``, ``1m50s``, ``2h03m``, ``3d04h``.

    Below a second the milliseconds are rounded; above, the smaller unit is
    truncated, as a clock would show it.

    Args:
        seconds: the duration; negative durations get a leading ``-``.

    Returns:
        The text, or ``?`` for NaN and infinities.
    """
    if not math.isfinite(seconds):
        return "?"
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds < 1 and (millis := round(seconds * 1000)) < 1000:
        return f"{millis}ms"
    return whole_duration(max(int(seconds), 1))  # 0.9996 rounds up to a whole second


def whole_duration(total: int) -> str:
    """``45s``, ``1m05s``, ``2h03m``, ``3d04h`` for whole seconds: the two
    largest units, short enough for a table column or a chat line."""
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def one_line(text: str, max_length: int = DEFAULT_MAX_LENGTH) -> str:
    """Collapse ``text`` to one line of at most ``max_length`` characters.

    Runs of whitespace and control characters become one space; text that is
    too long is cut and ends with ``…``.

    Raises:
        ValueError: ``max_length`` is less than 1.
    """
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1, not {max_length}")
    line = _BREAKS_AND_CONTROLS.sub(" ", _SURROGATES.sub("\ufffd", text)).strip()
    if len(line) <= max_length:
        return line
    return line[: max_length - 1].rstrip() + _ELLIPSIS


def summarize(event: Event, max_length: int = DEFAULT_MAX_LENGTH) -> str:
    """A short, single-line description of ``event`` for people.

    Args:
        event: any event, from a child or from supervise itself.
        max_length: the longest result, in characters (code points).

    Returns:
        For example ``▶️ FEAT-001 Implement user authentication``; an event
        without a dedicated wording gives ``program: event``.

    Raises:
        ValueError: ``max_length`` is less than 1.
    """
    describe = _DESCRIBERS.get(event.event, _generic)
    return one_line(describe(event), max_length)


# -- reading untrusted data --------------------------------------------------


def _field(data: Any, *names: str) -> Any:
    """The first of ``names`` that ``data`` has and is not None, else None.

    Data is a typed model for known events (declared fields, then extra
    fields the child added), a plain mapping for unknown ones, or anything
    at all (``loop_end`` sends a string).
    """
    for name in names:
        value: Any = None
        if isinstance(data, BaseModel):
            if name in type(data).model_fields:
                value = getattr(data, name)
            elif data.model_extra:
                value = data.model_extra.get(name)
        elif isinstance(data, Mapping):
            value = data.get(name)
        if value is not None:
            return value
    return None


def _text(data: Any, *names: str) -> str | None:
    """A field as text; an empty or whitespace-only value counts as missing."""
    value = _field(data, *names)
    if value is None:
        return None
    text = value if isinstance(value, str) else _scalar(value)
    return text if text.strip() else None


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _number(data: Any, *names: str) -> float | None:
    """A numeric field; booleans and numeric strings are not numbers here."""
    value = _field(data, *names)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:  # an integer beyond float range
        return math.inf if value > 0 else -math.inf


def _integer(data: Any, *names: str) -> int | None:
    """A whole-number field (``3`` or ``3.0``); anything else counts as missing."""
    value = _field(data, *names)
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value if isinstance(value, int) else None


def _duration(data: Any, *names: str) -> str | None:
    seconds = _number(data, *names)
    return None if seconds is None else format_duration(seconds)


def _join(*parts: str | None, sep: str = " ") -> str:
    return sep.join(part for part in parts if part)


def _first_line(text: str | None) -> str | None:
    """The first non-blank line: a multi-line error leads with its gist."""
    if text is None:
        return None
    return next((line for line in text.splitlines() if line.strip()), None)


def _task(data: Any) -> str:
    """``FEAT-001 Title``, or whichever of the two the event has."""
    return _join(_text(data, "taskId"), _text(data, "title")) or "task"


# -- child events -------------------------------------------------------------


def _task_start(event: Event) -> str:
    return f"▶️ {_task(event.data)}"


def _task_complete(event: Event) -> str:
    data = event.data
    icon = "❌" if _field(data, "success") is False else "✅"
    duration = _duration(data, "duration")
    return _join(f"{icon} {_task(data)}", duration and f"({duration})")


def _task_failed(event: Event) -> str:
    data = event.data
    error = _first_line(_text(data, "error"))
    return _join(f"❌ {_task(data)}", error, sep=": ")


def _question(event: Event) -> str:
    return f"❓ {_text(event.data, 'question', 'message', 'text') or 'question'}"


def _approval_request(event: Event) -> str:
    data = event.data
    what = _text(data, "action", "operation")
    description = _text(data, "description")
    severity = _text(data, "severity")
    text = _join(what, description, sep=" — ")
    return _join(_join("⚠️ approval:", text), severity and f"({severity})")


def _loop_start(event: Event) -> str:
    data = event.data
    namespace = data if isinstance(data, str) else _text(data, "namespace")
    return _join("🔁 loop started", namespace, sep=": ")


def _loop_end(event: Event) -> str:
    data = event.data
    if isinstance(data, str):
        return _join("🏁 loop ended", data, sep=": ")
    completed = _integer(data, "completed")
    failed = _integer(data, "failed")
    counts = _join(
        None if completed is None else f"{completed} completed",
        None if failed is None else f"{failed} failed",
        sep=", ",
    )
    duration = _duration(data, "duration")
    stats = _join(counts, duration and f"in {duration}")
    return _join("🏁 loop ended", stats or _text(data, "namespace"), sep=": ")


def _progress_update(event: Event) -> str:
    data = event.data
    what = _text(data, "description", "message", "phase", "stepId")
    progress = _number(data, "progress")
    percent = None if progress is None else f"({_scalar(progress)}%)"
    return _join("⏳", _text(data, "taskId"), what, percent) if what or percent else "⏳ progress"


_LOG_ICONS = {"debug": "🔍", "warn": "⚠️", "warning": "⚠️", "error": "❗", "fatal": "❗"}


def _log(event: Event) -> str:
    data = event.data
    level = (_text(data, "level") or "info").lower()
    return _join(_LOG_ICONS.get(level, "📝"), _text(data, "message") or level)


# -- supervise's own events ---------------------------------------------------


def _process_start(event: Event) -> str:
    pid = _integer(event.data, "pid")
    return _join(f"🚀 {event.program} started", None if pid is None else f"(pid {pid})")


def _signal_name(number: int) -> str:
    try:
        return f"signal {number} ({signal.Signals(number).name})"
    except ValueError:
        return f"signal {number}"


def _process_exit(event: Event) -> str:
    data = event.data
    code = _integer(data, "exit_code")
    sig = _integer(data, "signal")
    if sig is not None:
        icon, how = "💥", f"killed by {_signal_name(sig)}"
    elif code is not None:
        icon, how = ("⏹️" if code == 0 else "💥"), f"exited with code {code}"
    else:
        icon, how = "⏹️", "exited"
    uptime = _duration(data, "uptime")
    return _join(f"{icon} {event.program} {how}", uptime and f"after {uptime}")


def _process_state(event: Event) -> str:
    data = event.data
    before = _text(data, "from_", "from") or "?"
    after = _text(data, "to") or "?"
    reason = _text(data, "reason")
    return _join(f"🔄 {event.program}: {before} → {after}", reason and f"({reason})")


def _frame_invalid(event: Event) -> str:
    data = event.data
    reason = _text(data, "reason")
    head = _join(f"🚫 {event.program}: invalid frame", reason and f"({reason})")
    return _join(head, _text(data, "detail"), sep=": ")


def _process_stalled(event: Event) -> str:
    silent = _duration(event.data, "silent_for")
    return _join(f"💤 {event.program} silent", silent and f"for {silent}")


def _task_timeout(event: Event) -> str:
    data = event.data
    elapsed = _duration(data, "elapsed")
    limit = _duration(data, "timeout")
    return _join(
        f"⏰ {_task(data)}", elapsed and f"running for {elapsed}", limit and f"(limit {limit})"
    )


def _question_answered(event: Event) -> str:
    data = event.data
    answer = _text(data, "decision", "response")
    by = _text(data, "by")
    return _join("💬 answered", _join(answer, by and f"(by {by})"), sep=": ")


def _question_timeout(event: Event) -> str:
    data = event.data
    kind = "approval" if _text(data, "kind") == "approval_request" else "question"
    waited = _duration(data, "waited")
    default = _text(data, "default")
    head = _join(f"⌛ {kind} unanswered", waited and f"after {waited}")
    return _join(head, f"applied {default}" if default else "no default", sep=", ")


def _question_withdrawn(event: Event) -> str:
    data = event.data
    kind = "approval" if _text(data, "kind") == "approval_request" else "question"
    return _join(f"↩️ {kind} withdrawn", _text(data, "reason"), sep=": ")


def _approval_ignored(event: Event) -> str:
    data = event.data
    task = _text(data, "taskId") or "a task"
    by = _text(data, "by")
    action = " (program stopped)" if _text(data, "action") == "stop" else ""
    denied = f"denied by {by}" if by else "denied"
    return f"🚨 {event.program} went on with {task} although it was {denied}{action}"


def _frame_untrusted(event: Event) -> str:
    data = event.data
    what = _text(data, "event") or "frame"
    return _join(f"🚫 {event.program}: untrusted {what} not offered", _text(data, "position"))


def _events_dropped(event: Event) -> str:
    count = _integer(event.data, "count")
    return "🕳️ events dropped" if count is None else f"🕳️ {count} events dropped"


def _generic(event: Event) -> str:
    return f"{event.program}: {event.event}"


_DESCRIBERS: dict[str, Callable[[Event], str]] = {
    "task_start": _task_start,
    "task_complete": _task_complete,
    "task_failed": _task_failed,
    "question": _question,
    "approval_request": _approval_request,
    "loop_start": _loop_start,
    "loop_end": _loop_end,
    "progress_update": _progress_update,
    "log": _log,
    "process_start": _process_start,
    "process_exit": _process_exit,
    "process_state": _process_state,
    "frame_invalid": _frame_invalid,
    "process_stalled": _process_stalled,
    "task_timeout": _task_timeout,
    "question_answered": _question_answered,
    "question_timeout": _question_timeout,
    "question_withdrawn": _question_withdrawn,
    "approval_ignored": _approval_ignored,
    "frame_untrusted": _frame_untrusted,
    "events_dropped": _events_dropped,
}
