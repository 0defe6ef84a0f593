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

import contextlib
import itertools
import logging
import math
import random
import signal
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass

import trio

from .._clock import Clock, SystemClock
from .._config import ProgramConfig
from .._core.backoff import BackoffPolicy, GiveUpRule, RestartTracker
from .._core.bounds import MAX_EVENT_NAMES, OTHER
from .._core.errors import ConfigError, ControlError, SpawnError
from .._core.events import (
    ApprovalIgnored,
    ApprovalIgnoredData,
    Event,
    EventStamper,
    ProcessStalled,
    ProcessStalledData,
    ProcessStateChanged,
    ProcessStateData,
    QuestionAnswered,
)
from .._core.messages import ApprovalRequest, IpcMessage, Question
from .._core.questions import (
    AnswerVocabulary,
    PendingQuestion,
    QuestionBook,
    QuestionExpiredError,
)
from .._core.state import ProcessState, Trigger, is_alive, transition
from .._core.tasks import TaskOutcome, TaskTable, exit_cause
from .._logfile import LineLog, TeeOutput
from .child import describe_returncode
from .queue import EventQueue
from .runner import ProgramRunner, RunStats, TerminalSettings

logger = logging.getLogger(__name__)

__all__ = [
    "ControlError",
    "ProgramStatus",
    "ProgramSupervisor",
]


@dataclass(frozen=True)
class ProgramStatus:
    """A snapshot for ``supervise ctl status``."""

    name: str
    state: str
    pid: int | None
    uptime: float | None
    restarts: int
    last_exit: str | None
    tasks_in_flight: int
    pending_questions: int


def _open_log(config: ProgramConfig) -> LineLog | None:
    settings = config.log
    if settings.path is None:
        return None
    try:
        return LineLog(
            settings.path,
            timestamps=settings.timestamps,
            max_bytes=settings.max_bytes,
            backups=settings.backups,
        )
    except OSError as exc:
        raise ConfigError(f"{settings.path}", f"cannot open log file: {exc.strerror}") from None


# The child's events that the task and question tables care about.
_ACCOUNTED = frozenset(
    {"task_start", "task_complete", "task_failed", "question", "approval_request"}
)


def _add_frames(total: Counter[str], run: RunStats) -> int:
    """Add a run's frame counts to ``total``, within its bound; how many were folded."""
    folded = run.frames_folded
    for name, count in run.frames.items():
        if name not in total and name != OTHER and len(total) >= MAX_EVENT_NAMES:
            total[OTHER] += count
            folded += count
        else:
            total[name] += count
    return folded


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
        clock: where wall time (event stamps, the child's start) is read.
        report: shows a one-line notice to the person watching (spawn errors,
            FATAL); the multi-program form puts the program's name in front.
        keep_alive: when the program settles (exits for good, FATAL, or is
            stopped), wait for a start request instead of returning; a final
            stop (``request_stop(final=True)``) still ends :meth:`run`.
        withheld_env: variables of supervise's environment the child does
            not inherit (its secrets); read at each start, so the owner may
            add to it until then.
        on_settled: called each time the program settles, so the owner of
            several programs can tell when all of them are done.
        instance: the supervise instance, exported to each child as
            ``IPC_SUPERVISOR`` (unless the config's ``env`` sets it).
        on_task: called with the program's name, each ``task_start``,
            ``task_complete`` and ``task_failed`` from the child, and what the
            task table made of it (None for a start), in order as they are
            queued. Metrics count tasks from it: the table has already paired
            the end with its start, so nothing is paired twice.
    """

    def __init__(
        self,
        config: ProgramConfig,
        *,
        events: EventQueue | None = None,
        output: trio.abc.SendStream | None = None,
        input: trio.abc.ReceiveStream | None = None,
        terminal: TerminalSettings | None = None,
        sequence: Iterator[int] | None = None,
        rng: random.Random | None = None,
        clock: Clock | None = None,
        report: Callable[[str], None] = logger.warning,
        keep_alive: bool = False,
        on_settled: Callable[[], None] | None = None,
        withheld_env: Collection[str] = (),
        instance: str | None = None,
        on_task: Callable[[str, IpcMessage, TaskOutcome | None], None] | None = None,
    ) -> None:
        self.config = config
        self._on_task = on_task
        self._withheld_env = withheld_env
        self._instance = instance
        self.name = config.program_name
        self.state = ProcessState.STOPPED
        self.restarts = 0
        self.last_returncode: int | None = None
        self.output_lost = False
        self.output_problem = "was closed"
        # Output bytes and frames of the runs that have ended; see output_bytes, frames.
        self._output_bytes_before = 0
        self._frames_before: Counter[str] = Counter()
        self._frames_folded_before = 0
        self.started_at: float | None = None
        """Epoch seconds the current (or last) child started, for metrics."""
        self.tasks = TaskTable()
        answers = config.answers
        self.questions = QuestionBook(
            AnswerVocabulary(
                approve=answers.approve,
                deny=answers.deny,
                approval_timeout_default=answers.approval_timeout,
                question_timeout_default=answers.question_timeout,
                default_timeout=answers.default_timeout or None,
            )
        )
        self._events = events
        self._log = _open_log(config)
        self._output: trio.abc.SendStream | None = (
            TeeOutput(output, self._log) if self._log is not None else output
        )
        self._input = input
        self._terminal = terminal or TerminalSettings()
        self._clock: Clock = clock or SystemClock()
        self._report = report
        self._keep_alive = keep_alive
        self._on_settled = on_settled
        self._stamper = EventStamper(self.name, sequence or itertools.count(1))
        give_up = config.give_up
        self._tracker = RestartTracker(
            BackoffPolicy(**config.backoff.model_dump()),
            GiveUpRule(give_up.max_failures or None, give_up.window),
            rng,
        )
        self._runner: ProgramRunner | None = None
        # Tasks whose approval was denied, with who denied it and the
        # request's id: a later frame for one of them means the program
        # went on regardless.
        self._denied: dict[str, tuple[str, str]] = {}
        self._run_started: float | None = None
        self._stop_requested = False
        self._final = False
        self._restart_reason: str | None = None
        self._start_requested = trio.Event()
        self._rearm = trio.Event()
        self._stall_reported = False
        self._wait_scope: trio.CancelScope | None = None
        # True while the program has settled and nothing will start it but a
        # request: what ``ctl start`` may act on.
        self._settled = False

    # -- control ---------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._runner.pid if self._runner is not None else None

    @property
    def output_bytes(self) -> int:
        """Plain output bytes of every run so far, the current one included."""
        runner = self._runner
        return self._output_bytes_before + (runner.stats.output_bytes if runner else 0)

    def frames(self) -> tuple[Counter[str], int]:
        """Valid frames of every run so far by event name, and how many counted as ``other``.

        Counted once, by each run as it reads them (metrics read them from
        here); at most ``MAX_EVENT_NAMES`` names, the rest under ``other``.
        """
        counts, folded = Counter(self._frames_before), self._frames_folded_before
        runner = self._runner
        if runner is not None:
            folded += _add_frames(counts, runner.stats)
        return counts, folded

    def status(self) -> ProgramStatus:
        """What ``supervise ctl status`` shows for this program."""
        uptime = None
        if self._run_started is not None and self._runner is not None:
            uptime = round(trio.current_time() - self._run_started, 3)
        last_exit = None
        if self.last_returncode is not None:
            last_exit = exit_cause(*describe_returncode(self.last_returncode))
        return ProgramStatus(
            name=self.name,
            state=self.state.value,
            pid=self.pid,
            uptime=uptime,
            restarts=self.restarts,
            last_exit=last_exit,
            tasks_in_flight=len(self.tasks),
            pending_questions=len(self.questions.pending()),
        )

    def request_stop(self, signum: int | None = None, *, final: bool = True) -> None:
        """Stop the program (``signum``, else its stop_signal); never a failure.

        Args:
            signum: the signal for the child's group (the one-program form
                passes on what supervise received). A second SIGINT kills.
            final: end :meth:`run` once stopped; with ``final=False`` (``ctl
                stop``) a keep-alive supervisor waits for a start request.
        """
        self._final = self._final or final
        if self._settled:
            # Nothing runs and nothing is scheduled: the state stays as it is;
            # a final stop wakes the keep-alive loop so that run() can end.
            if final:
                self._start_requested.set()
            return
        if self._stop_requested and signum != signal.SIGINT:
            return
        self._stop_requested = True
        self._restart_reason = None
        if self._runner is not None:
            self._runner.request_stop(signum if signum is not None else self.config.stop_signal)
        if self._wait_scope is not None:
            self._wait_scope.cancel()
        self._move(Trigger.STOP, "stop requested")

    @property
    def settled(self) -> bool:
        """No process and nothing scheduled: only a request starts it again."""
        return self._settled

    def request_start(self) -> None:
        """Start a program that is not running (``ctl start``).

        Raises:
            ControlError: it is already running or about to restart.
        """
        if not self._settled:
            raise ControlError(f"{self.name} is already {self.state.value}")
        if not self._keep_alive or self._final:
            raise ControlError(f"{self.name} is no longer supervised")
        self._stop_requested = False
        self._start_requested.set()

    def request_restart(self, reason: str = "restart requested") -> None:
        """Stop the running child and start it again at once, without a failure."""
        if self._final:
            raise ControlError(f"{self.name} is shutting down")
        self._restart_reason = reason
        self._stop_requested = False
        if self._runner is not None and is_alive(self.state):
            self._move(Trigger.STOP, reason)
            self._runner.request_stop(self.config.stop_signal)
        elif self._wait_scope is not None:
            self._wait_scope.cancel()
        else:
            self._start_requested.set()

    def kill(self) -> None:
        """SIGKILL the running child's process group."""
        if self._runner is not None:
            self._runner.kill()

    def set_output(self, output: trio.abc.SendStream) -> None:
        """Where the plain output goes from the next start on (before ``run``)."""
        self._output = TeeOutput(output, self._log) if self._log is not None else output

    def resize(self, rows: int, columns: int) -> None:
        if self._runner is not None:
            self._runner.resize(rows, columns)

    async def answer(
        self, message_id: str, response: str, by: str, *, raw: bool = False
    ) -> QuestionAnswered:
        """Answer the child's question: write the mapped response and a newline.

        Raises:
            AnswerError: unknown, expired or already answered question, or a
                response the question does not accept.
        """
        pending = {p.message_id: p for p in self.questions.pending()}.get(message_id)
        text, message = self.questions.answer(
            message_id, response, by, trio.current_time(), raw=raw
        )
        if pending is not None and message.data.decision == "deny":
            self._note_denial(pending, by)
        runner = self._runner
        try:
            if runner is None:
                raise trio.BrokenResourceError
            await runner.send_input(text.encode() + b"\n")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            # The child exited between the question and the answer: its
            # questions are gone with it, so this one expired.
            raise QuestionExpiredError(
                message_id, f"{self.name} exited before the answer"
            ) from None
        self._publish(message)
        return message

    def pending_questions(self) -> list[PendingQuestion]:
        return self.questions.pending()

    async def type_input(self, text: str, *, enter: bool = True) -> int:
        """Write ``text`` to the running child's stdin, as if typed; return the bytes written.

        It goes through the writer answers use, so it cannot interleave with
        an answer or with keystrokes forwarded from supervise's stdin. Enter
        is what a terminal sends for the key: ``\\r`` on a pty, which the line
        discipline hands a line-reading child as ``\\n`` and a raw-mode one
        as Return (to which some full-screen programs give ``\\n`` another
        meaning); ``\\n`` on pipes, where nothing translates it.

        Raises:
            ControlError: no child is running.
        """
        data = text.encode()
        if enter:
            data += b"\r" if self.config.pty else b"\n"
        runner = self._runner
        try:
            if runner is None:
                raise trio.BrokenResourceError
            await runner.send_input(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise ControlError(f"{self.name} is not running") from None
        return len(data)

    # -- running ---------------------------------------------------------

    async def run(self) -> int | None:
        """Supervise until the program settles (or, keep-alive, until a final stop).

        Returns:
            The last run's return code (``-N`` for signal N), or None if the
            program never ran.
        """
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watchdog)
                await self._supervise()
                nursery.cancel_scope.cancel()
        finally:
            if self._log is not None:
                self._log.close()
        return self.last_returncode

    def reopen_log(self) -> None:
        """Reopen the log file, after an external tool rotated it."""
        if self._log is not None:
            self._log.reopen()

    async def _supervise(self) -> None:
        reason = "start requested"
        while True:
            self._settled = False
            while not self._stop_requested:
                self._move(Trigger.START, reason)
                uptime = await self._run_once()
                if self._restart_reason is not None:
                    reason, self._restart_reason = self._restart_reason, None
                    self._tracker.reset()
                    self.restarts += 1
                    continue
                if self._stop_requested:
                    break
                delay = self._next_delay(uptime)
                if delay is None:
                    break
                reason = await self._wait_before_restart(delay)
            if self._stop_requested:
                self._move(Trigger.STOP, "stop requested")  # e.g. BACKOFF -> STOPPED
            self._settled = True
            if self._on_settled is not None:
                self._on_settled()
            if self._final or not self._keep_alive:
                return
            self._start_requested = trio.Event()
            await self._start_requested.wait()
            if self._final:
                return
            self._tracker.reset()
            reason = self._restart_reason or "start requested"
            self._restart_reason = None
            self._stop_requested = False

    async def _run_once(self) -> float:
        """One run of the child; returns its uptime in seconds."""
        runner = ProgramRunner(
            self.config,
            events=self._events,
            output=self._output,
            input=self._input,
            terminal=self._terminal,
            clock=self._clock,
            stamper=self._stamper,
            observe=self._observe,
            on_prompt_left=self._prompt_left,
            on_input_line=self._typed_line if self._input is not None else None,
            withheld_env=self._withheld_env,
            instance=self._instance,
        )
        self._runner = runner
        self._stall_reported = False
        self.started_at = self._clock.now_ms() / 1000
        started = self._run_started = trio.current_time()
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
            self._output_bytes_before += runner.stats.output_bytes
            self._frames_folded_before += _add_frames(self._frames_before, runner.stats)
            self._runner = None
            self._run_started = None
        if spawn_errors:
            error = spawn_errors[0]
            self._report(str(error))
            self.last_returncode = error.exit_status
            self._move(Trigger.SPAWN_FAILED, str(error))
            return 0.0
        if runner.output_lost:
            # Nobody reads our output any more: this stop is final.
            self.output_lost = self._stop_requested = self._final = True
            self.output_problem = runner.output_problem
        cause = exit_cause(*describe_returncode(returncode))
        if self._restart_reason is not None:
            cause = f"process restarted: {self._restart_reason} ({cause})"
        elif self._stop_requested:
            cause = f"process stopped ({cause})"
        for message in self.tasks.lose_all(cause, trio.current_time(), self._clock.now_ms()):
            self._publish(message)
        self.questions.forget_program(self.name)
        self._denied.clear()
        # A clean exit the policy does not restart is never a failed start,
        # however soon it came.
        clean = (
            returncode == 0
            and self.config.restart != "always"
            and self.state in (ProcessState.STARTING, ProcessState.RUNNING)
            and self._restart_reason is None
        )
        self._move(Trigger.FINISHED if clean else Trigger.EXITED, cause)
        return trio.current_time() - started

    async def _confirm_start(self, runner: ProgramRunner) -> None:
        """STARTING becomes RUNNING once the child has lasted start_seconds.

        With ``restart = "no"`` there is no such thing as a failed start, so
        the child is RUNNING as soon as it is spawned. The time counts from
        the spawn, which for a child on pipes (``--no-pty``) completes only
        after this task first runs: checking at once would find no child yet.
        """
        wait = 0.0 if self.config.restart == "no" else self.config.start_seconds
        await runner.spawned.wait()
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
        """Sleep the backoff delay unless a stop or restart request cuts it short."""
        with trio.CancelScope() as scope:
            self._wait_scope = scope
            await trio.sleep(delay)
        self._wait_scope = None
        self.restarts += 1
        if self._restart_reason is not None:
            reason, self._restart_reason = self._restart_reason, None
            self._tracker.reset()
            return reason
        return f"restart {self.restarts} after {delay:.2f}s"

    def _observe(self, events: list[Event]) -> None:
        """Keep the task and question tables (called for every batch, in order, once queued)."""
        now: float | None = None
        for event in events:
            message = event.message
            if event.source != "child":
                continue
            if self._denied:
                self._check_denied(message)
            if message.event not in _ACCOUNTED:
                continue
            now = trio.current_time() if now is None else now
            if isinstance(message, Question | ApprovalRequest):
                changed = self.questions.withdraw_changed(message, now)
                if changed is not None:
                    # Queued after this batch, as lost tasks are.
                    self._publish(changed)
                    self._report(
                        f"{message.event} {message.messageId!r} was sent again with "
                        "different content: withdrawn, neither version can be answered"
                    )
                latest = self.tasks.latest()
                runner = self._runner
                self.questions.ask(
                    self.name,
                    message,
                    now,
                    task_id=latest.task_id if latest is not None else None,
                    mark=runner.prompts_left if runner is not None else 0,
                )
                self._rearm.set()
                continue
            outcome = self.tasks.observe(message, now, epoch_ms=event.received_at)
            if self._on_task is not None:
                self._on_task(self.name, message, outcome)
            if message.event == "task_start" and self.config.task_timeout:
                self._rearm.set()
        if now is not None:
            # The batch is queued already, so these come after it in seq order.
            for lost in self.tasks.take_evicted(now, self._clock.now_ms()):
                self._publish(lost)

    def _note_denial(self, pending: PendingQuestion, by: str) -> None:
        if pending.kind == "approval_request" and pending.task_id is not None:
            self._denied[pending.task_id] = (pending.message_id, by)

    def _check_denied(self, message: IpcMessage) -> None:
        """A frame for a task whose approval was denied: did the program go on?

        loopwork ignores a denial (its safety plugin throws, its runner
        swallows the error and runs the task), so this must not pass quietly.
        The task's failure is the one frame that honours the denial.
        """
        task_id = getattr(message.data, "taskId", None)
        if not isinstance(task_id, str) or task_id not in self._denied:
            return
        request_id, by = self._denied.pop(task_id)
        if message.event == "task_failed":
            return
        action = self.config.on_approval_ignored
        data = ApprovalIgnoredData(
            messageId=request_id, taskId=task_id, event=message.event, by=by, action=action
        )
        self._publish(ApprovalIgnored(data=data))
        self._report(
            f"{task_id} goes on although its approval was denied by {by}"
            + (": stopping" if action == "stop" else "")
        )
        if action == "stop":
            self.request_stop(final=False)

    def _prompt_left(self, prompts_left: int) -> None:
        """The child wrote past a prompt: questions asked before it are over."""
        now = trio.current_time()
        reason = "the program wrote past its prompt"
        for withdrawn in self.questions.withdraw_before(self.name, prompts_left, reason, now):
            self._publish(withdrawn)
            self._rearm.set()

    def _typed_line(self, line: str) -> None:
        """A line typed at supervise's stdin reached the child: it answers its question.

        The person at the terminal is a channel too: their Enter went
        straight to the program's prompt, so the oldest question waiting is
        settled as answered by them, and nothing more is written.
        """
        waiting = [p for p in self.questions.pending() if p.program == self.name]
        if not waiting:
            return
        pending = waiting[0]
        by = "terminal" if self._terminal.input_is_terminal else "stdin"
        answered = self.questions.answered_elsewhere(
            pending.message_id, line, by, trio.current_time()
        )
        if answered is None:
            return
        if answered.data.decision == "deny":
            self._note_denial(pending, by)
        self._publish(answered)
        self._rearm.set()

    async def _watchdog(self) -> None:
        """Deadlines: question timeouts, task timeouts, stalls. Sleeps until the next."""
        config = self.config
        while True:
            now = trio.current_time()
            deadlines = [math.inf]
            for question, text, timed_out in self.questions.expire(now):
                self._publish(timed_out)
                if timed_out.data.default == "deny":
                    self._note_denial(question, "timeout")
                if text is not None and self._runner is not None:
                    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                        await self._runner.send_input(text.encode() + b"\n")
            deadlines.append(self.questions.next_deadline() or math.inf)
            if config.task_timeout:
                overdue = self.tasks.overdue(now, config.task_timeout)
                for late in overdue:
                    self._publish(late)
                if overdue and config.task_timeout_action == "restart":
                    self._restart_if_running("task timed out")
                deadlines.append(self.tasks.next_deadline(config.task_timeout) or math.inf)
            if config.stall_timeout:
                deadlines.append(self._check_stall(now))
            with trio.move_on_at(min(deadlines)):
                await self._rearm.wait()
            self._rearm = trio.Event()

    def _check_stall(self, now: float) -> float:
        """Report a stall once per silence; return when to look again."""
        runner, timeout = self._runner, self.config.stall_timeout
        if runner is None or runner.pid is None or not is_alive(self.state):
            return now + timeout
        silent_for = now - runner.last_activity
        if silent_for < timeout:
            self._stall_reported = False
            return runner.last_activity + timeout
        if not self._stall_reported:
            self._stall_reported = True
            action = self.config.stall_action
            data = ProcessStalledData(
                silent_for=round(silent_for, 3), stall_timeout=timeout, action=action
            )
            self._publish(ProcessStalled(data=data))
            if action == "restart":
                self._restart_if_running(f"no output for {timeout:g}s")
        return now + timeout

    def _restart_if_running(self, reason: str) -> None:
        if is_alive(self.state) and self.state is not ProcessState.STOPPING and not self._final:
            self.request_restart(reason)

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
        """Queue one of our own events, numbered now so the series stays in order.

        Never waits and never drops: the queue takes supervise's own events
        whatever its length (only the child's output reader waits for room).
        """
        if self._events is None:
            return
        self._events.put((self._stamper.stamp(message, self._clock.now_ms(), "supervisor"),))
