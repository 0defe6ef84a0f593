"""Running a workflow: each step typed into its session's pane, its real exit status observed.

How one step runs, in the active pane of its session (``-t =SESSION:``; the
``=`` makes the name exact, so ``web`` never matches ``web2``):

1. **Wait for a prompt.** ``display-message`` reports the pane's foreground
   command and whether it shows the alternate screen. A known shell (sh,
   bash, zsh, dash, ksh, fish, ash, mksh) on the normal screen, not in copy
   mode, is at a prompt; anything else is polled every 20 ms. Steps of one
   session run one at a time: a pane has one prompt.
2. **Type the command**, visibly, as a person would, followed by a suffix::

       COMMAND; tmux set -g @tsipc_TOKEN $? \\; wait-for -S tsipc_TOKEN

   The pane's shell expands ``$?`` (fish: ``$status``) to COMMAND's exit
   status and passes ``\\;`` to tmux as ``;``, so one tmux client stores the
   status in a global user option and then signals the channel. Before
   typing, ``tmux wait-for tsipc_TOKEN`` is started here; it returns when
   the channel is signalled. tmux remembers a signal sent while nobody
   waits and wakes the next waiter at once, so the order in which the
   waiter connects and the shell signals does not matter. The status is
   then read and the option removed in one request. TOKEN is random per
   step run, so parallel steps and concurrent runs never share a channel.
   This is why a step's command must be one complete shell command line (no
   ``#`` comment, no trailing ``&``): :func:`.workflow.check_command`.
3. **Timeout.** Past the step's ``timeout`` (which also covers waiting for
   the prompt), ``C-c`` is sent to the pane and the step counts as exit 124.

There is no fixed delay anywhere: the next step starts when the previous
one's signal arrives, and the signal arrives when its command has ended,
so the overhead per step is a handful of tmux requests (milliseconds),
not the original's one second of sleeping after typing.

Exit codes the runner assigns itself (a command's own status is 0-255):
124 the step timed out; 125 tmux refused a request or the status was not
reported; 127 the session or its pane does not exist or closed mid-step.

The ``runs`` and ``steps`` tables of a :class:`.store.Store`, if one is
given, record the run as it goes (a step's ``state`` is a
:class:`.workflow.StepState` value).
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial
from typing import Any, TextIO

import trio

from .store import Store
from .tmux import tmux_command
from .workflow import Step, StepState, Workflow, exit_status, plan

__all__ = [
    "EXIT_NO_SESSION",
    "EXIT_TIMEOUT",
    "EXIT_TMUX",
    "SHELLS",
    "StepResult",
    "format_summary",
    "new_run_id",
    "run_step",
    "run_workflow",
    "run_workflow_sync",
    "typed_line",
]

logger = logging.getLogger(__name__)

Emit = Callable[[str, dict[str, Any]], None]

EXIT_TIMEOUT = 124
"""The step ran past its ``timeout`` and was interrupted (as coreutils' ``timeout``)."""
EXIT_TMUX = 125
"""tmux refused a request, or the step's exit status never came back."""
EXIT_NO_SESSION = 127
"""The step's session or pane does not exist, or closed while the step ran."""

SHELLS = frozenset({"sh", "bash", "zsh", "dash", "ksh", "fish", "ash", "mksh"})
"""Foreground commands that mean the pane is at a prompt."""
POLL_SECONDS = 0.02
"""How often a busy pane is asked again whether it is back at a prompt."""
WATCH_SECONDS = 0.5
"""How often a running step's pane is checked for still existing."""
SETTLE_SECONDS = 2.0
"""How long, after ``C-c``, the pane has to come back to a prompt before we log it."""
_FORMAT = "#{pane_id}\t#{pane_dead}\t#{pane_in_mode}\t#{alternate_on}\t#{pane_current_command}"


@dataclass(frozen=True, slots=True)
class StepResult:
    """How one step ended; ``reason`` says why when the runner chose the exit code."""

    state: StepState
    exit_code: int | None
    duration: float
    reason: str | None = None


class _StepError(Exception):
    """The step cannot go on: ``code`` is its exit code, the message the reason."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class _Pane:
    id: str
    shell: str | None
    """The shell at the prompt, or None while something else runs."""


def new_run_id(now: float | None = None) -> str:
    """``run-`` with the millisecond time and 6 random hex digits: sortable, unique."""
    millis = int((time.time() if now is None else now) * 1000)
    return f"run-{millis}-{secrets.token_hex(3)}"


def typed_line(command: str, token: str, shell: str = "sh") -> str:
    """What is typed into the pane: the command and the suffix that reports its status."""
    status = "$status" if shell == "fish" else "$?"
    channel = f"tsipc_{token}"
    return f"{command}; tmux set -g @{channel} {status} \\; wait-for -S {channel}"


# -- tmux requests -----------------------------------------------------------------


async def _tmux(*args: str) -> subprocess.CompletedProcess[bytes]:
    """One tmux request; a tmux that cannot be started fails the step."""
    try:
        return await trio.run_process(
            tmux_command(*args),
            stdin=subprocess.DEVNULL,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    except OSError as exc:
        raise _StepError(EXIT_TMUX, f"cannot run tmux: {exc}") from None


def _error_text(result: subprocess.CompletedProcess[bytes]) -> str:
    return result.stderr.decode(errors="replace").strip() or f"tmux exited {result.returncode}"


def _shell_name(command: str) -> str:
    """``-bash`` (a login shell) or ``/bin/sh`` as the shell's plain name."""
    return os.path.basename(command.strip().lstrip("-"))


async def _pane(target: str) -> _Pane:
    """The pane ``target`` names (``=SESSION:`` or ``%ID``) and whether it is at a prompt."""
    result = await _tmux("display-message", "-p", "-t", target, _FORMAT)
    if result.returncode != 0:
        raise _StepError(EXIT_NO_SESSION, _error_text(result))
    fields = result.stdout.decode(errors="replace").rstrip("\n").split("\t", 4)
    if len(fields) != 5:
        raise _StepError(EXIT_TMUX, f"unexpected tmux reply {fields!r}")
    pane_id, dead, in_mode, alternate, command = fields
    if not pane_id:
        # display-message answers a target that does not exist with empty formats.
        missing = "no such session" if target.startswith("=") else f"no such pane {target}"
        raise _StepError(EXIT_NO_SESSION, missing)
    if dead == "1":
        raise _StepError(EXIT_NO_SESSION, f"pane {pane_id} is dead")
    shell = _shell_name(command)
    at_prompt = shell in SHELLS and alternate == "0" and in_mode == "0"
    return _Pane(pane_id, shell if at_prompt else None)


async def _wait_for_prompt(target: str) -> _Pane:
    """Poll the pane ``target`` names until it is at a shell prompt."""
    pane = await _pane(target)
    if pane.shell is None:
        logger.debug("pane %s is busy; waiting for its prompt", pane.id)
    while pane.shell is None:
        await trio.sleep(POLL_SECONDS)
        pane = await _pane(target)
    return pane


async def _pane_exists(pane_id: str) -> bool:
    result = await _tmux("display-message", "-p", "-t", pane_id, "#{pane_dead}")
    return result.returncode == 0 and result.stdout.strip() == b"0"


async def _type(pane_id: str, text: str) -> None:
    """Type ``text`` literally, then press Enter, in one tmux request.

    ``text`` must not end with ``;``: tmux would take it for a separator
    (a typed line always ends with the channel name).
    """
    request = ("send-keys", "-t", pane_id, "-l", "--", text, ";", "send-keys", "-t", pane_id)
    result = await _tmux(*request, "Enter")
    if result.returncode != 0:
        raise _StepError(EXIT_TMUX, f"pane {pane_id}: cannot type: {_error_text(result)}")


async def _take_status(channel: str) -> int | None:
    """The status the pane reported on ``channel``, removing it; None if it never came."""
    option = f"@{channel}"
    result = await _tmux("show-options", "-gv", option, ";", "set-option", "-gu", option)
    text = result.stdout.decode(errors="replace").strip()
    return int(text) if result.returncode == 0 and text.isascii() and text.isdigit() else None


# -- one step ----------------------------------------------------------------------


async def _report(pane_id: str, line: str, channel: str) -> None:
    """Start the waiter, type ``line`` and wait until the channel is signalled.

    While waiting the pane is checked every :data:`WATCH_SECONDS`: a pane
    that closes (``exit``, a crashed shell) would otherwise never signal.
    """
    waiter = await trio.lowlevel.open_process(
        tmux_command("wait-for", channel),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    gone = False
    try:
        await _type(pane_id, line)
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                nonlocal gone
                while not gone:
                    await trio.sleep(WATCH_SECONDS)
                    gone = not await _pane_exists(pane_id)
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            await waiter.wait()
            nursery.cancel_scope.cancel()
    finally:
        if waiter.returncode is None:
            waiter.kill()
            with trio.CancelScope(shield=True):
                await waiter.wait()
    if gone:
        raise _StepError(EXIT_NO_SESSION, f"pane {pane_id} closed while the step ran")
    if waiter.returncode != 0:
        raise _StepError(EXIT_NO_SESSION, f"tmux wait-for exited {waiter.returncode}")


async def _interrupt(pane_id: str, channel: str) -> None:
    """After a timeout: ``C-c``, then tidy up once the pane is back at a prompt.

    Most shells abandon the rest of the line on ``C-c``; one that runs the
    suffix anyway leaves an option and a remembered signal, consumed here.
    """
    await _tmux("send-keys", "-t", pane_id, "C-c")
    with trio.move_on_after(SETTLE_SECONDS):
        await _wait_for_prompt(pane_id)
        if await _take_status(channel) is not None:
            await _tmux("wait-for", channel)
        return
    logger.warning("pane %s is not back at a prompt %g s after C-c", pane_id, SETTLE_SECONDS)


async def run_step(step: Step, lock: trio.Lock | None = None) -> StepResult:
    """Run ``step`` in its session and observe its exit status.

    ``lock`` is held from waiting for the prompt until the status is back,
    so that steps sharing a session take turns.
    """
    started = trio.current_time()
    token = secrets.token_hex(8)
    channel = f"tsipc_{token}"
    typed_into: str | None = None
    code: int | None = None
    limit = step.timeout if step.timeout is not None else math.inf
    async with AsyncExitStack() as held:
        with trio.move_on_after(limit) as scope:
            try:
                if lock is not None:
                    await held.enter_async_context(lock)
                pane = await _wait_for_prompt(f"={step.session}:")
                typed_into = pane.id
                await _report(pane.id, typed_line(step.command, token, pane.shell or "sh"), channel)
                code = await _take_status(channel)
            except _StepError as exc:
                return _result(started, exc.code, f"session {step.session!r}: {exc.reason}")
        if scope.cancelled_caught:
            # Still holding the session's lock: the next step there waits for the C-c.
            return await _timed_out(step, started, typed_into, channel)
    if code is None:
        return _result(started, EXIT_TMUX, "the exit status was not reported")
    return _result(started, code, None)


async def _timed_out(step: Step, started: float, pane_id: str | None, channel: str) -> StepResult:
    """The result of a step past its timeout, once its pane has been interrupted."""
    duration = trio.current_time() - started
    if pane_id is None:
        why = f"session {step.session!r} was not at a prompt within {step.timeout:g} s"
        return StepResult(StepState.TIMED_OUT, EXIT_TIMEOUT, duration, why)
    try:
        await _interrupt(pane_id, channel)
    except _StepError as exc:
        logger.warning("after the timeout of step %r: %s", step.name, exc.reason)
    why = f"interrupted after {step.timeout:g} s"
    return StepResult(StepState.TIMED_OUT, EXIT_TIMEOUT, duration, why)


def _result(started: float, code: int, reason: str | None) -> StepResult:
    state = StepState.OK if code == 0 else StepState.FAILED
    return StepResult(state, code, trio.current_time() - started, reason)


# -- the run -----------------------------------------------------------------------


@dataclass(slots=True)
class _Run:
    """A run in progress: each step's state and result, and the order steps finished in."""

    workflow: Workflow
    id: str
    emit: Emit
    db: sqlite3.Connection | None
    states: dict[str, StepState]
    results: dict[str, StepResult]
    finished: list[str]

    def event(self, name: str, **data: Any) -> None:
        self.emit(name, {"workflow": self.workflow.name, "run": self.id, **data})

    def settle(self, name: str, state: StepState, reason: str) -> None:
        """Record a step that will not run (skipped or not run)."""
        self.states[name] = state
        self.results[name] = StepResult(state, None, 0.0, reason)
        self.event("step_skipped", step=name, reason=reason, status=state.value)
        if self.db is not None:
            _record_step(self.db, self.id, name, state, None, None, None)


async def run_workflow(
    workflow: Workflow,
    *,
    keep_going: bool,
    emit: Emit,
    out: TextIO,
    store: Store | None = None,
) -> int:
    """Run every step of ``workflow`` as its dependencies allow; return the run's exit status.

    0 if every step that ran succeeded, else the exit code of the first step
    to fail (124 for a timeout). A summary table is printed to ``out``.
    """
    run = _Run(workflow, new_run_id(), emit, None if store is None else store._db, {}, {}, [])
    started_at, started = time.time(), trio.current_time()
    if run.db is not None:
        _record_run_start(run.db, run.id, workflow, started_at)
    run.event("workflow_started", steps=[step.name for step in workflow.steps])
    locks = {step.session: trio.Lock() for step in workflow.steps}
    send, receive = trio.open_memory_channel[tuple[str, StepResult]](len(workflow.steps))
    async with trio.open_nursery() as nursery:
        running = _launch(run, keep_going, nursery, locks, send)
        while running:
            name, result = await receive.receive()
            _record_finish(run, name, result)
            running += _launch(run, keep_going, nursery, locks, send) - 1
    code = exit_status(
        (run.results[name].state, run.results[name].exit_code) for name in run.finished
    )
    duration = trio.current_time() - started
    if run.db is not None:
        _record_run_end(run.db, run.id, time.time(), code)
    counts = dict.fromkeys(StepState, 0)
    for result in run.results.values():
        counts[result.state] += 1
    run.event(
        "workflow_finished",
        exit_code=code,
        duration=duration,
        succeeded=counts[StepState.OK],
        failed=counts[StepState.FAILED] + counts[StepState.TIMED_OUT],
        skipped=counts[StepState.SKIPPED] + counts[StepState.NOT_RUN],
        not_run=counts[StepState.NOT_RUN],
    )
    out.write(format_summary(workflow, run.results))
    out.flush()
    return code


def _launch(
    run: _Run,
    keep_going: bool,
    nursery: trio.Nursery,
    locks: dict[str, trio.Lock],
    send: trio.MemorySendChannel[tuple[str, StepResult]],
) -> int:
    """Settle what can be settled, start every step that is ready; return how many started."""
    decision = plan(run.workflow, run.states, keep_going=keep_going)
    for name, reason in decision.skip:
        run.settle(name, StepState.SKIPPED, reason)
    for name, reason in decision.not_run:
        run.settle(name, StepState.NOT_RUN, reason)
    for name in decision.start:
        step = run.workflow.step(name)
        run.states[name] = StepState.RUNNING
        run.event("step_started", step=name, session=step.session, command=step.command)
        if run.db is not None:
            _record_step(run.db, run.id, name, StepState.RUNNING, None, time.time(), None)
        nursery.start_soon(_step_task, step, locks[step.session], send)
    return len(decision.start)


async def _step_task(
    step: Step, lock: trio.Lock, send: trio.MemorySendChannel[tuple[str, StepResult]]
) -> None:
    result = await run_step(step, lock)
    send.send_nowait((step.name, result))


def _record_finish(run: _Run, name: str, result: StepResult) -> None:
    step = run.workflow.step(name)
    run.states[name] = result.state
    run.results[name] = result
    run.finished.append(name)
    log = logger.info if result.state is StepState.OK else logger.warning
    log("step %r in %r: %s (exit %s)%s", name, step.session, result.state.label,
        result.exit_code, f": {result.reason}" if result.reason else "")  # fmt: skip
    data: dict[str, Any] = {
        "step": name,
        "session": step.session,
        "command": step.command,
        "exit_code": result.exit_code,
        "duration": result.duration,
        "status": result.state.value,
    }
    if result.reason is not None:
        data["reason"] = result.reason
    run.event("step_finished", **data)
    if run.db is not None:
        _record_step(run.db, run.id, name, result.state, result.exit_code, None, result.duration)


def format_summary(workflow: Workflow, results: dict[str, StepResult]) -> str:
    """The table printed after a run: step, session, status, exit code, duration."""
    rows = [("STEP", "SESSION", "STATUS", "EXIT", "DURATION")]
    for step in workflow.steps:
        result = results.get(step.name)
        state = StepState.NOT_RUN if result is None else result.state
        ran = result is not None and result.exit_code is not None
        rows.append((
            step.name,
            step.session,
            state.label,
            str(result.exit_code) if ran and result is not None else "-",
            f"{result.duration:.2f}s" if ran and result is not None else "-",
        ))  # fmt: skip
    widths = [max(len(row[column]) for row in rows) for column in range(5)]
    lines = []
    for row in rows:
        left = "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths[:3], strict=True))
        right = "  ".join(
            cell.rjust(width) for cell, width in zip(row[3:], widths[3:], strict=True)
        )
        lines.append(f"{left}  {right}".rstrip())
    return "\n".join(lines) + "\n"


def run_workflow_sync(
    workflow: Workflow,
    *,
    keep_going: bool,
    emit: Emit,
    out: TextIO = sys.stdout,
    store: Store | None = None,
) -> int:
    """:func:`run_workflow` in a fresh trio loop, for the synchronous CLI."""
    return trio.run(
        partial(run_workflow, workflow, keep_going=keep_going, emit=emit, out=out, store=store)
    )


# -- the store's runs and steps tables -------------------------------------------------


def _record_run_start(
    db: sqlite3.Connection, run_id: str, workflow: Workflow, started: float
) -> None:
    """The run and every step (pending) in one transaction, so readers see all or nothing."""
    with _transaction(db):
        db.execute(
            "INSERT INTO runs (id, workflow, started) VALUES (?, ?, ?)",
            (run_id, workflow.name, started),
        )
        db.executemany(
            "INSERT INTO steps (run, name, session, command, state) VALUES (?, ?, ?, ?, ?)",
            [
                (run_id, step.name, step.session, step.command, StepState.PENDING.value)
                for step in workflow.steps
            ],
        )


def _record_step(
    db: sqlite3.Connection,
    run_id: str,
    name: str,
    state: StepState,
    exit_code: int | None,
    started: float | None,
    duration: float | None,
) -> None:
    db.execute(
        "UPDATE steps SET state = ?, exit_code = COALESCE(?, exit_code),"
        " started = COALESCE(?, started), duration = COALESCE(?, duration)"
        " WHERE run = ? AND name = ?",
        (state.value, exit_code, started, duration, run_id, name),
    )


def _record_run_end(db: sqlite3.Connection, run_id: str, finished: float, code: int) -> None:
    db.execute("UPDATE runs SET finished = ?, exit_code = ? WHERE id = ?", (finished, code, run_id))


class _transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` on an autocommit connection (as the store's own writes)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")
