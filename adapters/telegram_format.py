"""What the Telegram adapter says: events as chat messages in HTML parse mode.

Sans-IO: functions from events to text, plus :func:`cut_html`, which trims a
message to Telegram's 4096 characters without ever cutting inside a tag or
an entity (``&amp;``), and closes the tags it leaves open. Every piece of
text that comes from a child (titles, errors, questions) goes through
:func:`escape`, so a title such as ``<script>`` or ``a & b`` can neither
break the message nor format it.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from typing import Any

from supervisor.sinks import Event, format_duration, summarize

__all__ = [
    "MAX_MESSAGE",
    "Button",
    "cut_html",
    "escape",
    "render_event",
    "render_progress",
    "render_question",
]

MAX_MESSAGE = 4096
"""Telegram's limit on a message's text."""
_MAX_ERROR = 1500
_TOKEN = re.compile(r"<(/?)([a-zA-Z-]+)[^>]*>|&(?:#\d+|[a-zA-Z]+);|[^<&]+|[<&]", re.DOTALL)

Button = tuple[str, str]
"""An inline button: (label, callback_data)."""


def escape(text: object) -> str:
    """Text for HTML parse mode: ``&``, ``<`` and ``>`` as entities."""
    return html.escape(str(text), quote=False)


def cut_html(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` cut to at most ``limit`` characters at a safe place, with ``…`` and
    the tags it leaves open closed again; unchanged if it already fits.

    Tags and entities are never split; plain text may be cut anywhere.
    """
    if len(text) <= limit:
        return text
    open_tags: list[str] = []
    kept = 0
    for match in _TOKEN.finditer(text):
        token = match.group(0)
        name = (match.group(2) or "").lower()
        if name:  # a tag: indivisible, and it changes what must be closed
            after = list(open_tags)
            if not match.group(1):
                after.append(name)
            elif after and after[-1] == name:
                after.pop()
            if kept + len(token) + 1 + _closing_length(after) > limit:
                break
            open_tags = after
        elif token.startswith("&") and len(token) > 1:  # an entity: indivisible
            if kept + len(token) + 1 + _closing_length(open_tags) > limit:
                break
        else:  # plain text: take what fits
            room = limit - kept - 1 - _closing_length(open_tags)
            if room < len(token):
                kept += max(room, 0)
                break
        kept += len(token)
    return text[:kept] + "…" + "".join(f"</{name}>" for name in reversed(open_tags))


def _closing_length(tags: Sequence[str]) -> int:
    return sum(len(name) + 3 for name in tags)


def _task_line(icon: str, data: Any) -> str:
    task = escape(getattr(data, "taskId", "") or "")
    title = getattr(data, "title", None)
    line = f"{icon} <b>{task}</b>"
    return f"{line} {escape(title)}" if title else line


def _trimmed(text: str, limit: int = _MAX_ERROR) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_event(event: Event, *, duration: float | None = None, program: bool = False) -> str:
    """The message for ``event``.

    Args:
        duration: the task's duration as measured by supervise (shown for
            task_complete / task_failed instead of the child's own figure).
        program: say which program it came from (several are supervised).
    """
    data = event.data
    name = event.event
    if name == "task_start":
        body = _task_line("▶️", data)
    elif name == "task_complete":
        body = _task_line("✅", data)
        took = duration if duration is not None else getattr(data, "duration", None)
        if isinstance(took, int | float):
            body += f"\n<i>took {format_duration(float(took))}</i>"
    elif name == "task_failed":
        # Only supervise reports a task as lost; a child's "lost" field is its own.
        lost = event.source == "supervisor" and getattr(data, "lost", False) is True
        body = _task_line("💀" if lost else "❌", data)
        if lost:
            body += " <i>(lost)</i>"
        error = getattr(data, "error", None)
        if error:
            body += f"\n<pre>{escape(_trimmed(str(error)))}</pre>"
        if duration is not None:
            body += f"\n<i>after {format_duration(duration)}</i>"
    elif name == "loop_start":
        namespace = getattr(data, "namespace", None)
        body = "🚀 <b>Loop started</b>" + (f" · {escape(namespace)}" if namespace else "")
    elif name == "loop_end":
        body = f"🏁 <b>Loop ended</b>\n{escape(summarize(event, 400).split(' ', 1)[-1])}"
    elif name == "process_state":
        body = _render_state(event)
    elif name == "approval_ignored":
        stopped = "\n<i>supervise stopped the program.</i>" if data.action == "stop" else ""
        body = (
            f"🚨 <b>Denied, but it went on:</b> {escape(data.taskId)}\n"
            f"{escape(event.program)} carried on with the task after its approval was"
            f" denied by {escape(data.by)} (it sent {escape(data.event)}).{stopped}"
        )
    else:
        body = escape(summarize(event, 1000))
    if program:
        body = f"<code>{escape(event.program)}</code> {body}"
    return cut_html(body)


def _render_state(event: Event) -> str:
    data = event.data
    to, reason = data.to, data.reason
    icon = {"fatal": "🛑", "backoff": "🔁", "exited": "⏹", "running": "🟢"}.get(to, "•")
    text = f"{icon} <b>{escape(event.program)}</b> {escape(data.from_)} → <b>{escape(to)}</b>"
    return f"{text}\n<i>{escape(_trimmed(reason, 500))}</i>" if reason else text


def render_progress(event: Event) -> str | None:
    """The task's latest step, for its card; None when it says nothing new.

    loopwork's own description of the step (``message``, ``description``)
    is what a person reads; its ``phase`` word is shown only when there is
    no description, and a bare phase with no figure (``end``) is no news.
    """
    data = event.data
    task = escape(getattr(data, "taskId", None) or "task")
    progress = getattr(data, "progress", None)
    parts = [f"⏳ <b>{task}</b>"]
    if isinstance(progress, int | float):
        percent = progress * 100 if progress <= 1 else progress
        parts.append(f"{percent:.0f}%")
    for field in ("message", "description", "phase"):
        value = getattr(data, field, None)
        if value:
            if field == "phase" and len(parts) == 1:
                return None
            parts.append(escape(_trimmed(str(value), 300)))
            break
    if len(parts) == 1:
        return None
    return cut_html(" ".join(parts))


def render_question(event: Event) -> tuple[str, list[tuple[str, str]]]:
    """The message for a question or approval, and its choices as (label, response)."""
    data = event.data
    if event.event == "approval_request":
        lines = ["⚠️ <b>Approval needed</b>"]
        action = getattr(data, "action", None) or getattr(data, "operation", None)
        if action:
            lines.append(f"<b>Action:</b> {escape(action)}")
        description = getattr(data, "description", None)
        if description:
            lines.append(escape(_trimmed(str(description))))
        severity = getattr(data, "severity", None)
        if severity:
            lines.append(f"<b>Severity:</b> {escape(severity)}")
        choices = [("✅ Approve", "approve"), ("❌ Deny", "deny")]
    else:
        lines = [f"❓ <b>{escape(_trimmed(str(data.question)))}</b>"]
        choices = [
            ((option.label or option.id)[:60], option.id) for option in getattr(data, "options", ())
        ]
        if not choices:
            lines.append("<i>Answer with</i> <code>supervise ctl answer ID TEXT --raw</code>")
    lines.append(f"<i>{escape(event.program)}</i>")
    return cut_html("\n".join(lines)), choices


def time_left(event: Event, now: float) -> str | None:
    """``⏳ 18 s to answer``: what is left of the question's timeout, or None without one.

    Counted from when supervise received the question, so a card that waited
    behind other messages says how long is really left.
    """
    timeout = getattr(event.data, "timeout", None)
    if not isinstance(timeout, int | float) or not math.isfinite(timeout) or timeout <= 0:
        return None  # the child's figure: NaN or infinity says nothing about time
    left = event.received_at / 1000 + timeout - now
    if left <= 0:
        return "⌛ <b>no time left</b> to answer"
    return f"⏳ <b>{format_duration(left)}</b> to answer"
