"""Supervisor: programs, routes and the journal put together; the SDK's entry point.

``supervise`` is a thin command line around this class, and a bot or a
dashboard can use it directly::

    sup = Supervisor([ProgramConfig(command=["npx", "loopwork"])])

    @sup.on("task_failed")
    async def page_me(event: Event) -> None:
        await notify(f"{event.data.taskId} failed: {event.data.error}")

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sup.run)
            async with sup.subscribe("question") as questions:
                async for question in questions:
                    await sup.answer(question.message_id, "yes")

Events flow one way: each program's runner stamps them into one channel; a
single delivery task reports invalid frames, feeds ``subscribe`` listeners
and hands each batch to the :class:`~supervisor._routing.router.Router`, which
journals it and gives every route its own queue and task.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from ._clock import Clock, SystemClock
from ._config import JournalConfig, ProgramConfig, SupervisorConfig
from ._core.errors import (
    AnswerError,
    ConfigError,
    SupervisorError,
    SupervisorNotRunningError,
    UnknownNameError,
    UnknownQuestionError,
    UsageError,
)
from ._core.events import (
    Event,
    EventStamper,
    FrameInvalidData,
    FrameUntrustedData,
    QuestionAnswered,
)
from ._core.messages import IpcMessage
from ._process.program import ProgramStatus, ProgramSupervisor
from ._process.queue import DEFAULT_ROOM, EventQueue
from ._process.runner import TerminalSettings
from ._process.streams import open_output_stream
from ._routing.config import RetryConfig, RouteConfig, sink_secret_env
from ._routing.factory import build_route_sink
from ._routing.hub import EventHub
from ._routing.journal import AsyncJournal, DeadLetter, Journal, journal_path
from ._routing.router import Router, RouteStats
from .sinks import CallbackSink, Sink

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ._metrics.state import MetricsState

__all__ = ["Supervisor", "SupervisorNotRunningError", "open_supervisor"]

_Callback = TypeVar("_Callback", bound=Callable[[Event], Awaitable[object]])

# Events wait in one queue for the router; a program's output reader waits
# only if routing falls this far behind (or a `block` route is full).
# supervise's own events never wait: see EventQueue.
_EVENT_BUFFER = DEFAULT_ROOM
_BATCH = 1024
_PRUNE_INTERVAL = 60.0
_CHECKPOINT_INTERVAL = 1.0
SEQ_BLOCK = 100_000
"""Seqs reserved in the journal at a time, before they are handed out."""
# After a reservation failed, the next try comes this many seqs later.
_SEQ_RETRY = 1000
SUPERVISOR_PROGRAM = "supervise"
"""The ``program`` of the router's own events (``route_overflow`` ...)."""


class Supervisor:
    """Runs programs and routes their events; answers their questions.

    Args:
        programs: the programs (a :class:`SupervisorConfig` brings its routes
            and journal settings along).
        routes: more routes; their sinks are built from their settings.
        journal: the event journal's settings; None or ``False`` runs
            without one. A :class:`SupervisorConfig`'s journal is used when
            this is not given.
        instance: the journal's default name (``INSTANCE.journal.db``).
        outputs: where each program's plain output goes, by program name;
            by default every program writes to standard output, prefixed
            with its name.
        input: the one program's standard input (keystrokes), if any.
        terminal: terminal settings for the programs' ptys.
        keep_alive: programs that settle wait for :meth:`start` instead of
            ending their supervision.
        exit_when_settled: :meth:`run` returns once every program has
            settled (exited for good, given up or stopped); off, it runs
            until :meth:`stop` with no name.
        drain_timeout: seconds :meth:`run` waits at the end for routes to
            deliver what they still hold.
        report: where one-line warnings go (invalid frames, failing sinks).
        report_invalid_frames: whether invalid frames are reported (at most
            one line a second).
        prefix_reports: start each program's warnings with its name (off
            for the one-program command line).
        registry: where to register the ``supervise_*`` Prometheus metrics
            (None: no metrics are kept, unless ``keep_metrics``). Serve it
            with :func:`supervisor.serve_metrics`, or read it in tests.
        keep_metrics: keep the metrics without a registry yet, and register
            them later with :meth:`register_metrics` (prometheus_client is
            loaded only then).
        namespace_label: break task metrics down by namespace.
        clock: where wall time is read (event stamps, route ttl, dead
            letters, journal pruning, delivery latency); the system's
            clock by default. :class:`supervisor.testing.TrioWallClock`
            makes it follow trio's clock, so a test's ``MockClock`` drives
            all of them.
    """

    def __init__(
        self,
        programs: Sequence[ProgramConfig] | SupervisorConfig = (),
        *,
        routes: Sequence[RouteConfig] = (),
        journal: JournalConfig | bool | None = None,
        instance: str | None = None,
        outputs: Mapping[str, trio.abc.SendStream | None] | None = None,
        input: trio.abc.ReceiveStream | None = None,
        terminal: TerminalSettings | None = None,
        keep_alive: bool = True,
        exit_when_settled: bool = True,
        drain_timeout: float | None = None,
        report: Callable[[str], None] = logger.warning,
        report_invalid_frames: bool = True,
        prefix_reports: bool = True,
        registry: CollectorRegistry | None = None,
        keep_metrics: bool = False,
        namespace_label: bool = True,
        clock: Clock | None = None,
    ) -> None:
        if isinstance(programs, SupervisorConfig):
            config = programs
            program_configs: list[ProgramConfig] = list(config.programs.values())
            routes = [*config.routes, *routes]
            journal = config.journal if journal is None else journal
            instance = instance or config.instance
            drain_timeout = config.drain_timeout if drain_timeout is None else drain_timeout
            telegram = config.telegram
        else:
            telegram = None
            program_configs = list(programs)
        self.instance = instance or (program_configs[0].program_name if program_configs else "sdk")
        self.drain_timeout = 5.0 if drain_timeout is None else drain_timeout
        self._report = report
        self._report_invalid = report_invalid_frames
        self._prefix_reports = prefix_reports
        self._outputs = dict(outputs or {})
        self._input = input
        self._terminal = terminal
        self._keep_alive = keep_alive
        self.clock: Clock = clock or SystemClock()
        self._exit_when_settled = exit_when_settled
        # The journal file is created and its connection opened only when the
        # run starts, and closed when it ends: a Supervisor built and never
        # run leaves no file and no open connection behind.
        self._journal_config = _journal_config(journal)
        self.journal: AsyncJournal | None = None
        self._sequence = _Sequence()
        self._first_seq = 1
        self._stamper = EventStamper(SUPERVISOR_PROGRAM, self._sequence)
        self._queue = EventQueue(_EVENT_BUFFER)
        self.hub = EventHub(clock=self.clock)
        self._routes: list[tuple[RouteConfig, Sink]] = []
        self._withheld_env: set[str] = set()
        self._services: list[Callable[..., Awaitable[object]]] = []
        self.programs: dict[str, ProgramSupervisor] = {}
        self._program_configs: list[ProgramConfig] = []
        self._all_settled = trio.Event()
        self._stopped = trio.Event()
        self._drain_scope = trio.CancelScope()
        self._router: Router | None = None
        self._nursery: trio.Nursery | None = None
        self._started = False
        self._running = False  # set up and running its programs
        self.results: dict[str, int | None] = {}
        self.registry = registry
        self.metrics: MetricsState | None = None
        if registry is not None or keep_metrics:
            from ._metrics.state import MetricsState

            self.metrics = MetricsState(namespace_label=namespace_label, clock=self.clock)
        if registry is not None:
            self.register_metrics(registry)
        if telegram is not None:
            self.withhold_env(*telegram.secret_env())
        for program_config in program_configs:
            self.add_program(program_config)
        for route in routes:
            self.add_route(route)
        unknown = sorted(set(self._outputs) - set(self.programs))
        if unknown:
            # Silently ignored, the program's output would go to standard output.
            known = ", ".join(self.programs) or "none"
            raise ConfigError(
                f"outputs.{unknown[0]}", f"no program of that name (programs: {known})"
            )

    # -- building ------------------------------------------------------------

    def register_metrics(self, registry: CollectorRegistry) -> None:
        """Expose the metrics kept so far, and from now on, in ``registry``.

        Raises:
            UsageError: no metrics are kept (neither ``registry`` nor
                ``keep_metrics`` was given).
        """
        if self.metrics is None:
            raise UsageError("no metrics are kept: pass registry= or keep_metrics=True")
        # Imported only now: prometheus_client is not free to load.
        from ._metrics.collector import SupervisorCollector

        registry.register(SupervisorCollector(self, self.metrics))

    def _open_journal(self) -> None:
        """Open the journal (at the start of the run) and number on from it."""
        config = self._journal_config
        if config is None or not config.enabled:
            return
        opened = Journal.open(config.path or journal_path(self.instance))
        opened.report = self._report
        # Numbering goes on above every seq the last run appended or handed
        # out, so seq stays a key even when its last writes failed.
        self._sequence.last = opened.next_seq() - 1
        self._first_seq = self._sequence.last + 1
        self.journal = AsyncJournal(opened)
        self._sequence.reserve_with(opened.reserve_seqs, self._report)

    def add_program(self, config: ProgramConfig) -> ProgramSupervisor:
        """Supervise one more program (before :meth:`run`)."""
        if self._started:
            raise UsageError("add programs before run()")
        name = config.program_name
        if name in self.programs:
            raise ConfigError(f"programs.{name}", "a program of that name is already supervised")
        program = ProgramSupervisor(
            config,
            events=self._queue,
            output=self._outputs.get(name),
            input=self._input,
            terminal=self._terminal,
            sequence=self._sequence,
            report=_prefixed(self._report, name) if self._prefix_reports else self._report,
            keep_alive=self._keep_alive,
            on_settled=self._check_all_settled,
            withheld_env=self._withheld_env,
            clock=self.clock,
            instance=self.instance,
            on_task=self.metrics.task if self.metrics is not None else None,
        )
        self.programs[name] = program
        self._program_configs.append(config)
        return program

    def add_route(self, config: RouteConfig, sink: Sink | None = None) -> None:
        """Route events to a sink: ``sink``, or the one ``config.sink`` describes.

        Raises:
            ConfigError: a route of that name exists, or the sink refused its
                settings.
        """
        if self._started:
            raise UsageError("add routes before run()")
        if any(existing.name == config.name for existing, _ in self._routes):
            raise ConfigError(f"routes.{config.name}", "a route of that name already exists")
        self.withhold_env(*sink_secret_env(config.sink))
        if sink is None:
            sink = build_route_sink(config)  # opened when the run starts, not here
        self._routes.append((config, sink))

    def withhold_env(self, *names: str) -> None:
        """Keep these variables of supervise's environment from every program.

        The secrets supervise itself uses (a webhook route's ``secret_env``,
        a Redis route's ``password_env``, the Telegram token) are withheld
        by default: the child is not trusted with them. A program's
        ``pass_env`` lets one through on purpose; its ``env`` may set any.
        Call it before :meth:`run` (a program reads it at each start).
        """
        self._withheld_env.update(names)

    @property
    def withheld_env(self) -> frozenset[str]:
        """The variables no program inherits unless its ``pass_env`` names them."""
        return frozenset(self._withheld_env)

    def add_service(self, service: Callable[..., Awaitable[object]]) -> None:
        """Run ``service(task_status=...)`` beside the programs (a chat bot's poller).

        It is started (``nursery.start``) once the router runs, and cancelled
        when :meth:`run` ends.
        """
        if self._started:
            raise UsageError("add services before run()")
        self._services.append(service)

    def route(
        self,
        name: str,
        sink: Sink,
        *,
        events: Sequence[str] = ("*",),
        programs: Sequence[str] = ("*",),
        filter: str | None = None,
        **options: Any,
    ) -> None:
        """Route events to a sink object of your own (see :class:`Sink`).

        ``options`` are the other :class:`RouteConfig` settings (``durable``,
        ``queue``, ``overflow``, ``coalesce``, ``retry``, ``ttl``).
        """
        config = RouteConfig.model_validate(
            {
                "name": name,
                "events": tuple(events),
                "programs": tuple(programs),
                "filter": filter,
                **options,
            }
        )
        self.add_route(config, sink)

    def on(
        self, *events: str, programs: Sequence[str] = ("*",), filter: str | None = None
    ) -> Callable[[_Callback], _Callback]:
        """Decorate an async function to be called with each matching event.

        Calls happen in event order, one at a time, on a route of their own
        (``on:FUNCTION``): a slow callback delays only its own later calls. An
        exception is logged and the event dead-lettered (no retries).
        """

        def register(callback: _Callback) -> _Callback:
            name = f"on:{getattr(callback, '__name__', 'callback')}"
            base, number = name, itertools.count(2)
            while any(existing.name == name for existing, _ in self._routes):
                name = f"{base}-{next(number)}"
            self.route(
                name,
                CallbackSink(callback, name),
                events=events or ("*",),
                programs=programs,
                filter=filter,
                retry=RetryConfig(max_attempts=1),
            )
            return callback

        return register

    # -- using it while it runs ------------------------------------------------------

    @contextlib.asynccontextmanager
    async def subscribe(
        self, pattern: str | None = None, *, buffer: int = 1000
    ) -> AsyncIterator[trio.MemoryReceiveChannel[Event]]:
        """Receive matching events while the block runs.

        ``pattern`` is an event glob (``task_*``) or ``PROGRAM:EVENT``. A
        reader that falls ``buffer`` events behind loses events (and is sent
        an ``events_dropped`` event) rather than slowing anything down; use
        a durable route when every event matters.
        """
        with self.hub.subscribe(pattern, buffer=buffer) as events:
            await trio.lowlevel.checkpoint()
            yield events

    async def answer(
        self, message_id: str, response: str, *, by: str = "sdk", raw: bool = False
    ) -> QuestionAnswered:
        """Answer a pending ``question`` or ``approval_request`` of any program.

        ``response`` is an option id, or ``approve``/``deny`` for an approval
        (mapped through the program's answer vocabulary); ``raw`` writes it
        as is. The first answer from any channel wins.

        Raises:
            AnswerError: unknown, expired or already answered, or a response
                the question does not accept.
        """
        asked = [
            program
            for program in self.programs.values()
            if any(pending.message_id == message_id for pending in program.pending_questions())
        ]
        # Nobody has it pending: ask each, so an answered or expired question
        # is reported as such rather than as unknown.
        refused: AnswerError | None = None
        for program in asked or self.programs.values():
            try:
                return await program.answer(message_id, response, by, raw=raw)
            except UnknownQuestionError:
                continue
            except AnswerError as exc:
                refused = refused or exc
        raise refused or UnknownQuestionError(message_id)

    def status(self) -> list[ProgramStatus]:
        """Each program's state, pid, restarts, tasks and questions, in order."""
        return [program.status() for program in self.programs.values()]

    def start(self, name: str) -> None:
        self._program(name).request_start()

    def restart(self, name: str) -> None:
        self._program(name).request_restart("restart requested")

    def stop(self, name: str | None = None) -> None:
        """Stop one program, or (with no name) everything, which ends :meth:`run`."""
        if name is not None:
            self._program(name).request_stop(final=False)
            return
        self._stopped.set()
        for program in self.programs.values():
            program.request_stop(final=True)

    def skip_drain(self) -> None:
        """Do not wait for routes to deliver what they still hold at the end
        (a second Control-C): what is durable is delivered by the next run."""
        self._drain_scope.cancel()

    def _program(self, name: str) -> ProgramSupervisor:
        try:
            return self.programs[name]
        except KeyError:
            raise UnknownNameError("program", name, tuple(self.programs)) from None

    @property
    def router(self) -> Router:
        if self._router is None:
            raise SupervisorNotRunningError(
                "the supervisor is not running yet: use it inside `async with"
                " open_supervisor(...)`, or after `await nursery.start(sup.run)`"
            )
        return self._router

    @property
    def first_seq(self) -> int:
        """The seq of this run's first event: what came before belongs to earlier runs."""
        return self._first_seq

    @property
    def journaled_seq(self) -> int | None:
        """The last seq written to the journal; None without a journal."""
        if self.journal is None or self._router is None:
            return None
        return self._router.journaled_seq

    def route_stats(self) -> list[RouteStats]:
        return self._router.stats() if self._router is not None else []

    async def dead_letters(self, route: str | None = None) -> list[DeadLetter]:
        return await self.router.dead_letters(route)

    async def retry_dead(self, route: str | None = None, ids: Sequence[int] = ()) -> int:
        return await self.router.retry_dead(route, ids)

    async def replay(self, since: int, pattern: str | None = None) -> AsyncIterator[Event]:
        """Journaled events with seq > ``since``, oldest first (needs the journal)."""
        if self._journal_config is None or not self._journal_config.enabled:
            raise ConfigError("journal", "replay needs the event journal, which is off")
        if self.journal is None:
            raise SupervisorNotRunningError("the journal is opened once run() has started")
        if self._router is not None:
            await self._router.wait_journaled(self._sequence.last)
        while True:
            batch = await self.journal.read(since, limit=1000, pattern=pattern)
            if not batch:
                return
            for event in batch:
                yield event
            since = batch[-1].seq

    # -- running -----------------------------------------------------------------------

    def report(self, message: str) -> None:
        """Show a one-line warning where this supervisor's warnings go."""
        self._report(message)

    def _check_all_settled(self) -> None:
        if all(program.settled for program in self.programs.values()):
            self._all_settled.set()

    def _emit(self, message: IpcMessage) -> None:
        event = self._stamper.stamp(message, self.clock.now_ms(), "supervisor")
        with contextlib.suppress(trio.ClosedResourceError):
            # Closed: the run is ending and nothing is routed any more.
            self._queue.put((event,))

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> dict[str, int | None]:
        """Run every program to the end and deliver their events; return exit codes.

        Returns once every program has settled (exited for good, given up,
        or been stopped with :meth:`stop`), and the routes have delivered
        what they hold (for at most ``drain_timeout`` seconds).

        Cancelled, it stops the programs as :meth:`stop` does (stop signal,
        ``stop_timeout``, then SIGKILL), routes get their ``process_exit``
        and are drained, all shielded from the cancellation, and then the
        cancellation goes on: a host that cancels must not leave children
        killed without a chance to clean up, nor routes missing the end.

        Raises:
            ConfigError: set-up failed before any program started (the
                journal, or a route's file, cannot be opened); raised as
                itself, not inside an exception group.
        """
        if self._started:
            raise UsageError("a Supervisor runs once")
        self._started = True
        started, finished = trio.Event(), trio.Event()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._run_shielded, started, finished)
                try:
                    await started.wait()
                    if self._running:  # else setup failed: its error comes out below
                        task_status.started()
                    await finished.wait()
                except trio.Cancelled:
                    self.stop()
                    with trio.CancelScope(shield=True):
                        await finished.wait()
                    raise
        except BaseExceptionGroup as group:
            # Setup that fails (a journal or a route's file that cannot be
            # opened) is one error of ours, raised as itself rather than
            # nested in the groups of the nurseries it passed through.
            error = _only_error(group)
            if isinstance(error, SupervisorError):
                raise error from None
            raise
        return self.results

    async def _run_shielded(self, started: trio.Event, finished: trio.Event) -> None:
        """The whole run, out of reach of the caller's cancellation (see :meth:`run`)."""
        try:
            with trio.CancelScope(shield=True):
                await self._run(started)
        finally:
            started.set()
            finished.set()

    async def _run(self, started: trio.Event) -> None:
        self._open_journal()
        self._router = Router(
            self._routes,
            journal=self.journal,
            emit=self._emit,
            report=self._report,
            on_delivered=self.metrics.observe_delivery if self.metrics is not None else None,
            clock=self.clock,
        )
        default_output: trio.abc.SendStream | None = None
        try:
            if any(name not in self._outputs for name in self.programs):
                default_output = await self._default_outputs()
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await nursery.start(self._router.run)
                for service in self._services:
                    await nursery.start(service)
                delivered = trio.Event()
                nursery.start_soon(self._deliver, delivered)
                if self.journal is not None:
                    nursery.start_soon(self._prune_periodically)
                    nursery.start_soon(self._checkpoint_periodically)
                try:
                    async with trio.open_nursery() as programs:
                        for program in self.programs.values():
                            programs.start_soon(self._run_program, program)
                        if self._exit_when_settled:
                            self._check_all_settled()
                            programs.start_soon(self._finish_when_all_settled)
                        else:
                            programs.start_soon(self._finish_when_stopped)
                        self._running = True
                        started.set()
                finally:
                    self._queue.close()
                await delivered.wait()
                with self._drain_scope:
                    await self._router.drain(self.drain_timeout)
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await self.hub.aclose()
                await self._router.aclose()
                if self.journal is not None:
                    if (
                        not self._router.journal_failed
                        and self._router.journaled_seq == self._sequence.last
                    ):
                        # Every seq handed out is journaled: the next run may
                        # number on from the last without a gap.
                        with contextlib.suppress(Exception):
                            await self.journal.release_seqs()
                    await self.journal.aclose()
                if default_output is not None:
                    await default_output.aclose()

    async def _default_outputs(self) -> trio.abc.SendStream:
        from ._process.prefix import PrefixedOutput, program_prefixes

        output = open_output_stream(1)
        names = [name for name in self.programs if name not in self._outputs]
        prefixes = program_prefixes(names, colour=False)
        lock = trio.Lock()
        for name in names:
            prefixed = PrefixedOutput(output, lock, prefixes[name])
            self._outputs[name] = prefixed
            self.programs[name].set_output(prefixed)
        await trio.lowlevel.checkpoint()
        return output

    async def _run_program(self, program: ProgramSupervisor) -> None:
        self.results[program.name] = await program.run()
        flush = getattr(self._outputs.get(program.name), "flush", None)
        if flush is not None:
            await flush()

    async def _finish_when_stopped(self) -> None:
        await self._stopped.wait()

    async def _finish_when_all_settled(self) -> None:
        # Programs that wait for `start` once settled: when every one has
        # settled, nothing is left to supervise.
        await self._all_settled.wait()
        for program in self.programs.values():
            program.request_stop(final=True)

    async def _deliver(self, done: trio.Event) -> None:
        router = self.router
        metrics = self.metrics
        reporter = _InvalidFrameReporter(self._report)
        try:
            while True:
                try:
                    batch = await self._queue.receive_batch(_BATCH)
                except trio.EndOfChannel:
                    break
                if self._report_invalid:
                    for event in batch:
                        if event.source == "supervisor" and event.event in _REPORTED:
                            reporter.report(event)
                if metrics is not None:
                    metrics.observe(batch)
                self.hub.offer_batch(batch)
                await router.publish(batch)
        finally:
            done.set()

    async def _checkpoint_periodically(self) -> None:
        journal = self.journal
        assert journal is not None
        while True:
            await trio.sleep(_CHECKPOINT_INTERVAL)
            try:
                await journal.checkpoint()
            except Exception as exc:  # the next one may work; the WAL just grows
                self._report(f"journal: checkpoint failed: {exc}")

    async def _prune_periodically(self) -> None:
        journal, config = self.journal, self._journal_config
        assert journal is not None
        assert config is not None
        while True:
            durable = [stats.delivered_seq for stats in self.router.stats() if stats.durable]
            try:
                await journal.prune(
                    max_age=config.max_age,
                    max_bytes=config.max_bytes or None,
                    keep_after=min(durable) if durable else None,
                    now=self.clock.now_ms() / 1000,
                )
            except Exception as exc:  # a full disk must not end supervision
                self._report(f"journal: pruning failed: {exc}")
            await trio.sleep(_PRUNE_INTERVAL)


def _only_error(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The one exception inside ``group`` and its nested groups, if there is exactly one."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop()
        if isinstance(exc, BaseExceptionGroup):
            pending.extend(exc.exceptions)
        else:
            leaves.append(exc)
    return leaves[0] if len(leaves) == 1 else None


@contextlib.asynccontextmanager
async def open_supervisor(
    programs: Sequence[ProgramConfig] | SupervisorConfig | Supervisor = (), **options: Any
) -> AsyncIterator[Supervisor]:
    """Run a supervisor for the duration of an ``async with`` block::

        async with open_supervisor([ProgramConfig(command=["loopwork"])]) as sup:
            async with sup.subscribe("question") as questions:
                ...

    It takes what :class:`Supervisor` takes, or a :class:`Supervisor` already
    built (to register ``@sup.on`` callbacks and routes before it starts:
    those must exist before the run begins, and the block is too late). The
    block is entered once the router, the routes and the services are
    running and every program has been started. Leaving the block (normally,
    by an exception or by cancellation) stops every program gracefully (stop
    signal, ``stop_timeout``, then SIGKILL), shielded from cancellation,
    delivers their ``process_exit`` and drains the routes, as :meth:`Supervisor.stop`
    does; then the journal is closed.
    """
    if isinstance(programs, Supervisor):
        if options:
            raise TypeError("options go to Supervisor(...), not with a built Supervisor")
        sup = programs
    else:
        sup = Supervisor(programs, **options)
    started = False
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            started = True
            try:
                yield sup
            finally:
                sup.stop()
    except BaseExceptionGroup as group:
        # A setup error (a route's file or the journal cannot be opened)
        # comes out as itself, as from run(); what happens inside the block
        # keeps trio's grouping.
        error = None if started else _only_error(group)
        if isinstance(error, SupervisorError):
            raise error from None
        raise


def _journal_config(journal: JournalConfig | bool | None) -> JournalConfig | None:
    if journal is None or journal is False:
        return None
    return JournalConfig() if journal is True else journal


class _Sequence:
    """1, 2, 3 ... shared by every program's stamper, and able to say where it is.

    With a journal, no seq is handed out before the journal has recorded it
    as reserved (:meth:`Journal.reserve_seqs`), a block at a time: events
    are journaled later, in a thread, and may fail to be (a full disk), yet
    the next run must not number an event with a seq a route already got.
    """

    def __init__(self, first: int = 1, block: int = SEQ_BLOCK) -> None:
        self.last = first - 1
        self._block = block
        self._reserved = self.last
        self._reserve: Callable[[int], None] | None = None
        self._report: Callable[[str], None] = logger.warning
        self._failing = False

    def reserve_with(self, reserve: Callable[[int], None], report: Callable[[str], None]) -> None:
        """Reserve each block with ``reserve(upto)``, the first one now."""
        self._reserve, self._report = reserve, report
        self._reserved = self.last
        self._extend()

    def _extend(self) -> None:
        """Reserve the next block: one synchronous UPDATE per block of seqs."""
        assert self._reserve is not None
        upto = self.last + self._block
        try:
            self._reserve(upto)
        except Exception as exc:  # a full disk must not stop the numbering
            if not self._failing:
                self._report(f"journal: cannot reserve seqs up to {upto}: {exc}")
            self._failing = True
            self._reserved = self.last + min(self._block, _SEQ_RETRY)
            return
        self._failing = False
        self._reserved = upto

    def __iter__(self) -> _Sequence:
        return self

    def __next__(self) -> int:
        if self._reserve is not None and self.last >= self._reserved:
            self._extend()
        self.last += 1
        return self.last


def _prefixed(report: Callable[[str], None], name: str) -> Callable[[str], None]:
    def prefixed(message: str) -> None:
        report(f"{name}: {message}")

    return prefixed


_REPORTED = frozenset({"frame_invalid", "frame_untrusted"})


class _InvalidFrameReporter:
    """One line per invalid frame, at most one a second: a child spewing
    garbage must not bury its own output under our warnings."""

    def __init__(self, report: Callable[[str], None], interval: float = 1.0) -> None:
        self._report = report
        self._interval = interval
        self._last = -interval
        self._unreported = 0

    def report(self, event: Event) -> None:
        now = trio.current_time()
        if now - self._last < self._interval:
            self._unreported += 1
            return
        more = f" ({self._unreported} more not shown)" if self._unreported else ""
        data = event.data
        if isinstance(data, FrameUntrustedData):
            self._report(
                f"untrusted {data.event} frame at byte {data.offset} ({data.position}),"
                f" shown as output and not answerable: {data.reason}{more}"
            )
        elif isinstance(data, FrameInvalidData):
            self._report(
                f"invalid frame at byte {data.offset} ({data.reason}): {data.detail}{more}"
            )
        self._last = now
        self._unreported = 0
