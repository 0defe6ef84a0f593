"""Glob patterns over event and program names, compiled once.

Routes (``events = ["task_*"]``), ``supervise ctl tail PROGRAM:EVENT``,
``supervise events`` and the control socket's subscriptions all name events
and programs by shell-style globs; one module compiles them, so a glob means
the same everywhere and the common "everything" case costs nothing.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Sequence

from .events import Event

__all__ = ["event_matcher", "glob_matcher", "pattern_matcher"]


def glob_matcher(globs: Sequence[str]) -> Callable[[str], bool] | None:
    """A matcher for any of ``globs``; None when everything matches, so the
    common case costs nothing."""
    if "*" in globs:
        return None
    pattern = re.compile("|".join(f"(?:{fnmatch.translate(glob)})" for glob in globs))
    return lambda text: pattern.match(text) is not None


def pattern_matcher(pattern: str | None) -> Callable[[str, str], bool] | None:
    """``EVENT_GLOB`` or ``PROGRAM_GLOB:EVENT_GLOB`` as a test on (program, event).

    The same patterns as ``supervise ctl tail``; None for no filter.
    """
    if not pattern:
        return None
    program_glob, _, event_glob = pattern.rpartition(":")
    match_event = re.compile(fnmatch.translate(event_glob or "*")).match
    if not program_glob:
        return lambda program, event: match_event(event) is not None
    match_program = re.compile(fnmatch.translate(program_glob)).match
    return lambda program, event: (
        match_program(program) is not None and match_event(event) is not None
    )


def event_matcher(pattern: str | None) -> Callable[[Event], bool]:
    """:func:`pattern_matcher` as a test on an event; everything matches without one."""
    matches = pattern_matcher(pattern)
    if matches is None:
        return lambda event: True
    return lambda event: matches(event.program, event.event)
