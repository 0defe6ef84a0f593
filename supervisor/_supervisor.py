"""Keep one program alive: restart policy, backoff, give-up, lost tasks.

:class:`ProgramSupervisor` runs a program again and again through
:class:`ProgramRunner` (one run each), driving the pure state machine in
``_state`` and the restart arithmetic in ``_backoff``. Every transition is a
``process_state`` event and every run ends with ``process_exit``; tasks the
child had in flight when it died end as ``task_failed`` with ``lost = true``,
so no task is left without an outcome.

Policy, in one place:

* ``restart = "no"``: one run; the state goes STARTING → RUNNING → EXITED.
* otherwise a run shorter than ``start_seconds`` (or a spawn failure) is a
  failed start: BACKOFF, a jittered exponential delay, and FATAL once the
  give-up rule trips. A longer run that ends is EXITED; ``always`` restarts
  it, ``on-failure`` restarts it unless it exited 0. Those restarts wait a
  backoff delay too, which a run longer than ``backoff.reset_after`` resets.
* a stop request is never a failure: the program ends STOPPED.
"""

from __future__ import annotations

import itertools
import random
import signal
import time
from collections.abc import Callable, Iterator

import trio

from ._backoff import BackoffPolicy, GiveUpRule, RestartTracker
from ._child import describe_returncode
from ._config import ProgramConfig
from ._errors import SpawnError
from ._events import Event, EventStamper, ProcessStateChanged, ProcessStateData
from ._messages import IpcMessage
from ._runner import ProgramRunner, TerminalSettings
from ._state import ProcessState, Trigger, transition
from ._tasks import TaskTable, exit_cause
from ._terminal import warn

__all__ = ["ProgramSupervisor"]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class ProgramSupervisor:
    """One program under supervision, across restarts.

    Args:
        config: the program and its policies.
        events: where events go (shared by all programs of a supervise run).
        output: where the program's plain output goes.
        input: supervise's stdin, for the one-program form.
        terminal: pty settings from supervise's own streams.
        sequence: the run's event numbering, shared by all programs.
        rng: randomness for backoff jitter (seed it in tests).
        report: shows a one-line notice to the person watching (spawn errors,
            FATAL); the multi-program form puts the program's name in front.
    """

    def __init__(
        self,
        config: ProgramConfig,
        *,
        events: trio.MemorySendChannel[Event] | None = None,
        output: trio.abc.SendStream | None = None,
        input: trio.abc.ReceiveStream | None = None,
        terminal: TerminalSettings | None = None,
        sequence: Iterator[int] | None = None,
        rng: random.Random | None = None,
        wall_clock: Callable[[], int] = _now_ms,
        report: Callable[[str], None] = warn,
    ) -> None:
        self.config = config
        self.name = config.program_name
        self.state = ProcessState.STOPPED
        self.restarts = 0
        self.last_returncode: int | None = None
        self.output_lost = False
        self.tasks = TaskTable()
        self._events = events
        self._output = output
        self._input = input
        self._terminal = terminal or TerminalSettings()
        self._wall_clock = wall_clock
        self._report = report
        self._stamper = EventStamper(self.name, sequence or itertools.count(1))
        give_up = config.give_up
        self._tracker = RestartTracker(
            BackoffPolicy(**config.backoff.model_dump()),
            GiveUpRule(give_up.max_failures or None, give_up.window),
            rng,
        )
        self._runner: ProgramRunner | None = None
        self._stop_requested = False
        self._stop_signal: int | None = None
        self._wait_scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None

    # -- control ---------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._runner.pid if self._runner is not None else None

    def request_stop(self, signum: int | None = None) -> None:
        """Stop the program for good (``signum``, else its stop_signal); not a failure."""
        if self._stop_requested and signum != signal.SIGINT:
            return
        self._stop_requested = True
        if self._runner is not None:
            self._runner.request_stop(signum if signum is not None else self.config.stop_signal)
        if self._wait_scope is not None:
            self._wait_scope.cancel()
        self._move(Trigger.STOP, "stop requested")

    def kill(self) -> None:
        """SIGKILL the running child's process group."""
        if self._runner is not None:
            self._runner.kill()

    def resize(self, rows: int, columns: int) -> None:
        if self._runner is not None:
            self._runner.resize(rows, columns)

    # -- running ---------------------------------------------------------

    async def run(self) -> int | None:
        """Supervise until the program settles: EXITED for good, FATAL or STOPPED.

        Returns:
            The last run's return code (``-N`` for signal N), or None if the
            program never ran.
        """
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            reason = "start requested"
            while not self._stop_requested:
                self._move(Trigger.START, reason)
                uptime = await self._run_once()
                if self._stop_requested:
                    break
                delay = self._next_delay(uptime)
                if delay is None:
                    break
                reason = await self._wait_before_restart(delay)
            self._move(Trigger.STOP, "stop requested")  # no-op unless stopped while waiting
        return self.last_returncode

    async def _run_once(self) -> float:
        """One run of the child; returns its uptime in seconds."""
        runner = ProgramRunner(
            self.config,
            events=self._events,
            output=self._output,
            input=self._input,
            terminal=self._terminal,
            wall_clock=self._wall_clock,
            stamper=self._stamper,
            observe=self._observe,
        )
        self._runner = runner
        started = trio.current_time()
        spawn_errors: list[SpawnError] = []
        returncode = 0
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._confirm_start, runner)
                returncode = self.last_returncode = await runner.run()
                nursery.cancel_scope.cancel()
        except* SpawnError as group:
            spawn_errors = [e for e in group.exceptions if isinstance(e, SpawnError)]
        finally:
            self._runner = None
        if spawn_errors:
            error = spawn_errors[0]
            self._report(str(error))
            self.last_returncode = error.exit_status
            self._move(Trigger.SPAWN_FAILED, str(error))
            return 0.0
        if runner.output_lost:
            # Nobody reads our output any more: this stop is final.
            self.output_lost = self._stop_requested = True
        cause = exit_cause(*describe_returncode(returncode))
        if self._stop_requested:
            cause = f"process stopped ({cause})"
        for message in self.tasks.lose_all(cause, trio.current_time(), self._wall_clock()):
            self._publish(message)
        self._move(Trigger.EXITED, cause)
        return trio.current_time() - started

    async def _confirm_start(self, runner: ProgramRunner) -> None:
        """STARTING becomes RUNNING once the child has lasted start_seconds.

        With ``restart = "no"`` there is no such thing as a failed start, so
        the child is RUNNING as soon as it is spawned.
        """
        wait = 0.0 if self.config.restart == "no" else self.config.start_seconds
        await trio.sleep(wait)
        if self.state is ProcessState.STARTING and runner.pid is not None:
            self._move(Trigger.STARTED, f"running for {wait:g}s")

    def _next_delay(self, uptime: float) -> float | None:
        """The delay before the next start, or None when the program is done."""
        assert self.last_returncode is not None
        now = trio.current_time()
        self._tracker.on_run_ended(now, uptime)
        if self.config.restart == "no":
            if self.state is ProcessState.BACKOFF:
                self._move(Trigger.GIVE_UP, "restart is off")
            return None
        if self.state is ProcessState.BACKOFF:  # a failed start
            delay = self._tracker.on_failure(now)
            if delay is None:
                rule = self.config.give_up
                reason = f"{rule.max_failures} failed starts within {rule.window:g}s"
                self._report(f"FATAL: gave up after {reason}")
                self._move(Trigger.GIVE_UP, reason)
            return delay
        exit_code, _ = describe_returncode(self.last_returncode)
        if self.config.restart == "on-failure" and exit_code == 0:
            return None
        return self._tracker.next_delay()

    async def _wait_before_restart(self, delay: float) -> str:
        """Sleep the backoff delay unless a stop request cuts it short."""
        with trio.CancelScope() as scope:
            self._wait_scope = scope
            await trio.sleep(delay)
        self._wait_scope = None
        self.restarts += 1
        return f"restart {self.restarts} after {delay:.2f}s"

    def _observe(self, event: Event) -> None:
        if event.source == "child":
            self.tasks.observe(event.message, trio.current_time())

    def _move(self, trigger: Trigger, reason: str) -> None:
        """Apply a transition; publish it if the state changed."""
        before = self.state
        after = transition(before, trigger)
        if after is before:
            return
        self.state = after
        data = ProcessStateData(from_=before.value, to=after.value, reason=reason)
        self._publish(ProcessStateChanged(data=data))

    def _publish(self, message: IpcMessage) -> None:
        """Queue one of our own events, numbered now so the series stays in order."""
        if self._events is None:
            return
        event = self._stamper.stamp(message, self._wall_clock(), "supervisor")
        try:
            self._events.send_nowait(event)
        except trio.WouldBlock:
            # The consumer is far behind; let a task wait for room instead of
            # blocking the state machine.
            assert self._nursery is not None
            self._nursery.start_soon(self._events.send, event)
