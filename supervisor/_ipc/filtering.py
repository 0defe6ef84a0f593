"""Subscription filters: the route filter language, applied to published events.

A subscription may say which events it wants beyond their name, in the
language routes use (:mod:`supervisor._core.filter`)::

    ts-ipc subscribe mgr 'task_*' notify --filter 'data.namespace == "prod"'

The language works on events, so ``ts-ipc publish SOURCE EVENT DATA`` is
seen as the event ``{event: EVENT, program: SOURCE, data: {message: DATA}}``.
Imported only when a filter is used: it needs pydantic.
"""

from __future__ import annotations

from functools import lru_cache

from .._core.errors import FilterError
from .._core.events import Event
from .._core.filter import Predicate, compile_filter
from .._core.messages import parse_message

__all__ = ["accepts_event", "accepts_publish", "check_filter"]


@lru_cache(maxsize=256)
def _compiled(source: str) -> Predicate:
    return compile_filter(source)


def check_filter(source: str) -> str | None:
    """What is wrong with the filter ``source`` (one line), or None."""
    try:
        _compiled(source)
    except FilterError as exc:
        return str(exc)
    return None


def accepts_event(source: str, event: Event) -> bool:
    """Whether the filter accepts ``event``; a broken filter accepts nothing."""
    try:
        return _compiled(source)(event)
    except FilterError:
        return False


def accepts_publish(source: str, event: str, program: str, data: str) -> bool:
    """Whether the filter accepts what ``ts-ipc publish`` sends."""
    message = parse_message({"type": "ipc", "event": event, "data": {"message": data}})
    return accepts_event(source, Event(0, program, 0, "child", message))
