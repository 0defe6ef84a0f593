"""Helpers for testing your own routing and sinks against a real supervisor.

A test of a notifier or a route usually starts a real child, lets the
supervisor route what it prints, and then waits until a sink (or a file, a
journal, a metric) shows the result. Waiting is the part every test suite
reinvents; :func:`wait_until` and :func:`wait_until_sync` do it once, with a
bound, so a broken test fails with a message instead of hanging.

:class:`TrioWallClock` makes a supervisor's wall time (event stamps, route
ttl, dead letters) follow trio's clock, so ``MockClock`` drives them too.

:class:`CapturingSink` and :class:`CallbackSink` are re-exported here so a
test needs one import.
"""

from __future__ import annotations

import gc
import inspect
import os
import sys
import time
from collections.abc import Awaitable, Callable
from os import PathLike
from typing import TypeVar, overload

import trio

from ._clock import TrioWallClock
from .sinks import CallbackSink, CapturingSink

_T = TypeVar("_T")

__all__ = [
    "CallbackSink",
    "CapturingSink",
    "TrioWallClock",
    "new_fds",
    "open_fds",
    "python_child",
    "wait_until",
    "wait_until_sync",
]


def open_fds() -> frozenset[str]:
    """This process's open file descriptors, once unreachable objects are collected.

    Collecting first means a descriptor held only by garbage another test left
    behind is closed before the count, so it is not mistaken for a leak.
    """
    gc.collect()
    return frozenset(os.listdir("/proc/self/fd"))


def new_fds(before: frozenset[str]) -> frozenset[str]:
    """Descriptors open now that were not in ``before``: what leaked since then.

    A descriptor that something else closed meanwhile is not a leak, so this is
    a difference rather than an equality; assert it is empty.
    """
    return open_fds() - before


def _timed_out(message: str | Callable[[], str], timeout: float) -> AssertionError:
    """The failure both waits raise: an assertion, so pytest shows ``message``."""
    text = (message() if callable(message) else message) or "the condition never held"
    return AssertionError(f"{text} (waited {timeout:g} s)")


@overload
async def wait_until(
    predicate: Callable[[], Awaitable[_T]],
    *,
    timeout: float = ...,  # noqa: ASYNC109
    interval: float = ...,
    message: str | Callable[[], str] = ...,
) -> _T: ...
@overload
async def wait_until(
    predicate: Callable[[], _T],
    *,
    timeout: float = ...,  # noqa: ASYNC109
    interval: float = ...,
    message: str | Callable[[], str] = ...,
) -> _T: ...
async def wait_until(
    predicate: Callable[[], object],
    *,
    # A bound in the call is the point: the test reads as one line per wait.
    timeout: float = 5.0,  # noqa: ASYNC109
    interval: float = 0.01,
    message: str | Callable[[], str] = "",
) -> object:
    """Wait (in trio) until ``predicate()`` is true, for at most ``timeout`` seconds.

    The predicate is checked first without waiting, so a condition that already
    holds costs no sleep. Polling is for conditions that nothing signals (a file
    growing, a process exiting); where an event exists, wait on it instead.
    The predicate may be an async function (a condition read over a
    connection); it is awaited, within the same bound.

    Returns:
        The predicate's first true value, so a wait can also fetch what it
        waited for (``events = await wait_until(lambda: read(path) or None)``).

    ``message`` may be a callable, called only on failure, to show the state
    the condition was waiting on (what a file held, what a stub saw).

    Raises:
        AssertionError: ``message`` (or a generic one), if the time ran out.
    """

    async def check() -> object:
        value = predicate()
        return await value if inspect.isawaitable(value) else value

    with trio.move_on_after(timeout):
        # Polling on purpose: these conditions (files, processes) have no event.
        while not (value := await check()):  # noqa: ASYNC110
            await trio.sleep(interval)
        return value
    with trio.move_on_after(timeout):
        if value := await check():
            return value
    raise _timed_out(message, timeout)


def wait_until_sync(
    predicate: Callable[[], _T],
    *,
    timeout: float = 5.0,
    interval: float = 0.01,
    message: str | Callable[[], str] = "",
) -> _T:
    """The blocking twin of :func:`wait_until`, for tests outside trio.

    Returns:
        The predicate's first true value.

    Raises:
        AssertionError: ``message`` (or a generic one), if the time ran out.
    """
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() >= deadline:
            raise _timed_out(message, timeout)
        time.sleep(interval)
    return value


def python_child(script: str | PathLike[str], *args: str) -> list[str]:
    """The command line running ``script`` with this interpreter, unbuffered.

    ``-u`` matters: a child whose output sits in its own buffer looks, to a
    test, like a child that printed nothing.
    """
    return [sys.executable, "-u", str(script), *args]
