"""Run one program: wire the child, the frame decoder, the passthrough and events.

:class:`ProgramRunner` owns one run of a child. Its tasks:

* the output pump reads the child, feeds the decoder, writes plain output to
  supervise's stdout (backpressure is kept: a slow terminal slows the read,
  no byte is dropped) and turns frames into events;
* the input pump forwards supervise's stdin to the child, and tells the
  supervisor when a line of it ends (the person at the terminal may just have
  answered the child's prompt);
* after the child exits, the pump keeps reading until the output ends, then
  escalates against the processes that still hold it open, in the child's
  group or in a session of their own (SIGTERM, SIGKILL, give up), so
  supervise never hangs on an orphan and never leaves one running; a stop
  signal cuts each wait short.

The hot path, and why it is built this way. Every byte the child writes
goes through the output pump, and a busy loopwork writes a frame every few
kilobytes, so what a frame costs is what supervise costs. Measured on a
2-core machine (a ``task_complete`` frame per ~2 KiB; ``bench/`` prints the
figures against ``script -qc`` and a raw pty read loop run alongside):

* **Reading** happens in another process. A pty child's output is copied
  to a pipe by the output relay (:mod:`supervisor._process.relay`), a
  ~10 ms-to-start standard-library loop that keeps the pty drained while
  this task works, so the child no longer waits on supervise's per-frame
  work (the pty itself buffers only ~12 KiB). This task reads the pipe in
  up to 64 KiB pieces, so each batch is whatever piled up meanwhile: small
  and prompt when supervise keeps up, large and cheap per frame when it
  does not. Only the copying moved: decoding, validation, trust decisions,
  answers and the order of events stay here, in one process. If the relay
  cannot start or dies, the pty is read directly; then reads are gathered
  into batches only while the output carries frames (plain output flows
  best a read at a time, :meth:`PtyChild._read_more` says why).
* **One pass per read batch**: the decoder turns the batch into items; this
  task validates, stamps and queues the batch's events in one synchronous
  step and writes the passthrough with one write. The delivery loop then
  takes everything queued at once, so routes, the journal and the hub see
  batches, not events, and every hop between tasks is paid per batch.
* **Validation** is pydantic's ``validate_json`` on the tagged union of
  loopwork's events, in strict mode first (``validate_payload_verbatim``):
  no Python-level parsing is faster. When strict mode accepted the payload
  and it is complete and plain, the event's JSON line carries the child's
  own bytes instead of serialising the model again.
* **The journal** is written by group commit on the event loop's thread
  (see :mod:`supervisor._routing.router`): one transaction every 5 ms or 512
  rows, where a commit per read batch in a worker thread cost a thread
  round trip and a GIL hand-over per row.
* **Memory** is bounded by bytes: the event queue makes the reader wait at
  8 MiB of estimated event size (or 16,384 events), whatever the frames' size;
  the relay's pipe holds at most 1 MiB more, in the kernel.

What was tried and not kept: the journal written in a worker thread per
read batch (the design before this one) cost ~11 us a frame more than in
line, because SQLite releases the GIL around each row's step and the event
loop and the worker then hand it back and forth. A reader thread in place
of the relay process measured slower than reading in line (the GIL again:
the thread waits for it while a batch is handled, and the pty fills). All
the per-frame work in a worker process would overlap more, but answering a
question, the trust decisions and the order of events would then cross a
process boundary; the relay moves only bytes, which have no such decisions.
"""

from __future__ import annotations

import errno
import signal
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

import trio

from .._clock import Clock, SystemClock
from .._config import ProgramConfig
from .._core.bounds import MAX_EVENT_NAMES, MAX_LABEL_LENGTH, OTHER
from .._core.events import (
    Event,
    EventStamper,
    FrameInvalid,
    FrameInvalidData,
    FrameUntrusted,
    FrameUntrustedData,
    Position,
    ProcessExit,
    ProcessExitData,
    ProcessStart,
    ProcessStartData,
    Source,
)
from .._core.frames import (
    DecodedItem,
    Frame,
    FrameDecoder,
    LineEndRemoved,
    MalformedFrame,
    Output,
    _excerpt,
)
from .._core.messages import IpcMessage, validate_payload_verbatim
from .child import Child, describe_returncode, open_child, uptime
from .queue import EVENT_OVERHEAD, EventQueue
from .reaper import signal_if_alive
from .spawn import SUPERVISOR_ENV, ChildSpec, TerminalSettings, child_environment

__all__ = ["SUPERVISOR_ENV", "ProgramRunner", "RunStats", "TerminalSettings"]

_NO_TERMINAL = TerminalSettings()

# What the decoder's validator gives for a frame: the message, and its
# payload when the event's line may carry it as it is.
Validated = tuple[IpcMessage, bytes | None]

# After the child exits, how long its output may stay open with nothing
# arriving before whoever holds it gets SIGTERM; and how long at most while
# something keeps writing (a daemon that never goes quiet).
_ORPHAN_QUIET_SECONDS = 0.5
_LINGER_SECONDS = 2.0
# After SIGKILL, how long supervise keeps reading before it stops waiting.
_KILL_WAIT_SECONDS = 1.0
_POLL_SECONDS = 0.05

# A line the child leaves unfinished for this long is a prompt it waits at
# (a read that splits a line is completed within milliseconds).
PROMPT_SECONDS = 0.2
# Frames that make supervise write to the child's stdin.
_ACTIONABLE = frozenset({"question", "approval_request"})
_MAX_TYPED = 4096  # bytes of one typed line kept, to name the answer


@dataclass
class RunStats:
    """Counters of one run, for summaries and metrics.

    ``frames`` holds at most ``MAX_EVENT_NAMES`` event names (the child picks
    them); frames with a name beyond that, or a very long one, count under
    ``other``, and in ``frames_folded`` too.
    """

    output_bytes: int = 0
    frames: Counter[str] = field(default_factory=Counter)
    frames_folded: int = 0
    frames_invalid: Counter[str] = field(default_factory=Counter)


class ProgramRunner:
    """One run of one supervised program.

    Args:
        config: what to run and how.
        events: where events go, in order; the output reader waits while it
            is full, so the consumer should keep up (the CLI's event writer does).
        output: where plain output goes (None: discard).
        input: what to forward to the child's stdin (None: nothing).
        terminal: pty settings derived from supervise's own streams.
        clock: where wall time (the events' ``received_at``) is read.
        stamper: numbers the events (share one to number several runs and
            programs in one series).
        observe: called with each batch of events, in order, as soon as they
            are queued (no other task runs in between); it must not block
            (the supervisor keeps its task and question tables with it, and
            what it publishes comes after the batch).
        on_prompt_left: called with the new :attr:`prompts_left` when the
            child finishes a line it had left open for a while (it moved on
            from a prompt); must not block.
        on_input_line: called with each line forwarded from ``input`` once
            its Enter has gone to the child (lightly edited: backspaces
            applied, control characters dropped); must not block.
        withheld_env: variables of supervise's environment the child does
            not inherit (:func:`~supervisor._process.spawn.child_environment`).
        instance: the supervise instance, exported to the child as
            :data:`SUPERVISOR_ENV` unless the config's ``env`` sets it.
    """

    def __init__(
        self,
        config: ProgramConfig,
        *,
        events: EventQueue | None = None,
        output: trio.abc.SendStream | None = None,
        input: trio.abc.ReceiveStream | None = None,
        terminal: TerminalSettings = _NO_TERMINAL,
        clock: Clock | None = None,
        stamper: EventStamper | None = None,
        observe: Callable[[list[Event]], None] | None = None,
        on_prompt_left: Callable[[int], None] | None = None,
        on_input_line: Callable[[str], None] | None = None,
        withheld_env: Collection[str] = (),
        instance: str | None = None,
    ) -> None:
        self.config = config
        self._withheld_env = withheld_env
        self._instance = instance
        self.stats = RunStats()
        self._events = events
        self._output = output
        self._input = input
        self._terminal = terminal
        self._clock: Clock = clock or SystemClock()
        self._stamper = stamper or EventStamper(config.program_name)
        self._observe = observe
        self._on_prompt_left = on_prompt_left
        self._on_input_line = on_input_line
        self._open_since: float | None = None
        self.prompts_left = 0
        """How many times the child finished a line it had paused in."""
        self._typed = bytearray()
        self._typed_cr = False
        self._typed_escape = False
        self._child: Child | None = None
        self._nursery: trio.Nursery | None = None
        self._exited = trio.Event()
        self.spawned = trio.Event()
        """Set once the child exists (a pipe child is spawned asynchronously)."""
        self._stopping = False
        self._pending_stop: int | None = None
        # After the child's exit: a stop request ends the current wait of the
        # drain, a kill goes straight to SIGKILL.
        self._hurry = trio.Event()
        self._kill_now = False
        self._last_received = 0.0
        self._writing = False
        self.output_lost = False
        self.output_problem = "was closed"
        """What went wrong with the output, once lost: "was closed", "failed (...)"."""
        # The stdin pump and answers both write to the child; one at a time.
        self._input_lock = trio.Lock()

    # -- control ---------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    @property
    def last_activity(self) -> float:
        """trio time of the child's last output (or of its start)."""
        return self._last_received

    def request_stop(self, signum: int = signal.SIGTERM) -> None:
        """Forward ``signum`` to the child's group; SIGKILL after stop_timeout.

        A second SIGINT while stopping kills at once, like a second Control-C.
        Once the child has exited, what still holds its output is stopped now
        rather than after the usual wait.
        """
        child = self._child
        if self._exited.is_set():
            self._hurry.set()
            return
        if child is None:
            # Not spawned yet: stop it as soon as it is.
            self._pending_stop = signum
            return
        if self._stopping and signum == signal.SIGINT:
            child.signal(signal.SIGKILL)
            return
        child.signal(signum)
        if not self._stopping and self._nursery is not None:
            self._stopping = True
            self._nursery.start_soon(self._kill_after_timeout, child)

    def kill(self) -> None:
        """SIGKILL the child's process group now; after its exit, what holds its output."""
        if self._exited.is_set():
            self._kill_now = True
            self._hurry.set()
        elif self._child is not None:
            self._child.signal(signal.SIGKILL)

    def resize(self, rows: int, columns: int) -> None:
        """Set the child's window size (pty children only)."""
        if self._child is not None:
            self._child.resize(rows, columns)

    # -- running ---------------------------------------------------------

    def _spec(self) -> ChildSpec:
        config = self.config
        return ChildSpec.for_program(
            config.command,
            child_environment(config.env, config.pass_env, self._withheld_env, self._instance),
            str(config.cwd) if config.cwd is not None else None,
            config.pty,
            self._terminal,
        )

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> int:
        """Start the child, supervise it until it exits, return its return code.

        The return code is the exit status, or ``-N`` if signal N killed it.
        ``task_status.started`` reports the child's pid.

        Raises:
            SpawnError: the command could not be started.
        """
        async with open_child(self._spec()) as child:
            self._child = child
            self.spawned.set()
            await self._publish(
                ProcessStart(data=ProcessStartData(pid=child.pid, argv=child.argv)),
                "supervisor",
            )
            self._last_received = trio.current_time()
            task_status.started(child.pid)
            output_done = trio.Event()
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                if self._pending_stop is not None:
                    self.request_stop(self._pending_stop)
                nursery.start_soon(self._pump_output, child, output_done)
                if self._input is not None:
                    nursery.start_soon(self._pump_input, child, self._input)
                returncode = await child.wait()
                self._exited.set()
                await self._drain_after_exit(child, output_done)
                nursery.cancel_scope.cancel()
            exit_code, signum = describe_returncode(returncode)
            await self._publish(
                ProcessExit(
                    data=ProcessExitData(exit_code=exit_code, signal=signum, uptime=uptime(child))
                ),
                "supervisor",
            )
        return returncode

    async def _kill_after_timeout(self, child: Child) -> None:
        with trio.move_on_after(self.config.stop_timeout):
            await self._exited.wait()
        if not self._exited.is_set():
            child.signal(signal.SIGKILL)

    async def _drain_after_exit(self, child: Child, output_done: trio.Event) -> None:
        """Read to the end of the output; stop whatever still holds it open.

        Helpers may finish writing for a moment (until the output has been
        quiet for ``_ORPHAN_QUIET_SECONDS``, ``_LINGER_SECONDS`` at most);
        then the child's group and every descendant of supervise holding the
        output get SIGTERM, ``stop_timeout`` later SIGKILL, and
        ``_KILL_WAIT_SECONDS`` after that supervise stops reading. A stop
        request skips the wait at hand; a kill goes to SIGKILL at once.
        """
        if await self._linger(output_done):
            return
        if not self._kill_now and await self._stop_holders(
            child, signal.SIGTERM, self.config.stop_timeout, output_done
        ):
            return
        await self._stop_holders(child, signal.SIGKILL, _KILL_WAIT_SECONDS, output_done)

    async def _linger(self, done: trio.Event) -> bool:
        """Let helpers finish writing; True if the output ended by itself.

        Time spent writing to a slow stdout counts neither as quiet nor as
        lingering: what is written then was read before.
        """
        hurry = self._hurry = trio.Event()
        self._last_received = last_poll = trio.current_time()
        lingered = 0.0
        while not done.is_set():
            with trio.move_on_after(_POLL_SECONDS):
                await done.wait()
            now = trio.current_time()
            if done.is_set():
                break
            if hurry.is_set() or self._kill_now:
                return False
            if self._writing:
                self._last_received = now
            else:
                lingered += now - last_poll
                if now - self._last_received >= _ORPHAN_QUIET_SECONDS:
                    return False
                if lingered >= _LINGER_SECONDS:
                    return False
            last_poll = now
        return True

    async def _stop_holders(
        self, child: Child, signum: int, seconds: float, done: trio.Event
    ) -> bool:
        """Signal the group and the output's holders; True if the output then ends.

        Holders are looked for again at each poll, so a process that appears
        meanwhile (the child of a holder just stopped) gets the signal too.
        """
        hurry = self._hurry = trio.Event()
        child.signal(signum)
        signalled: set[int] = set()
        deadline = trio.current_time() + seconds
        while not done.is_set():
            for pid in child.output_holders() - signalled:
                signal_if_alive(pid, signum)
                if signum != signal.SIGKILL:
                    signalled.add(pid)
            if trio.current_time() >= deadline or (hurry.is_set() and signum != signal.SIGKILL):
                return done.is_set()
            if self._kill_now and signum != signal.SIGKILL:
                return False
            with trio.move_on_after(_POLL_SECONDS):
                await done.wait()
        return True

    async def _pump_output(self, child: Child, done: trio.Event) -> None:
        decoder: FrameDecoder[Validated] = FrameDecoder(
            validate_payload_verbatim, max_frame_bytes=self.config.max_frame_bytes
        )
        # Gather reads into batches only while the output carries frames:
        # per-batch work then pays for itself, and plain output flows best a
        # read at a time (PtyChild._read_more says why).
        gather = False
        try:
            while True:
                data = await child.receive_some(gather=gather)
                if not data:
                    break
                self._last_received = trio.current_time()
                self.stats.output_bytes += len(data)
                gather = await self._handle(decoder.feed(data))
            await self._handle(decoder.close())
        finally:
            done.set()

    async def _handle(self, items: list[DecodedItem[Validated]]) -> bool:
        """Write the plain output, queue the events; True if there were any."""
        if not items:
            return False
        if len(items) == 1 and type(items[0]) is Output:
            await self._write(items[0].data)
            return False
        keep_frames = self.config.keep_frames
        chunks: list[bytes] = []
        messages: list[tuple[IpcMessage, Source, Position | None, bytes | None]] = []
        sizes: list[int] = []
        shown = False  # the last frame stays visible, and so does its line end
        for item in items:
            if type(item) is Output:
                chunks.append(item.data)
            elif type(item) is Frame:
                message, verbatim = item.message
                position: Position = "line_start" if item.line_start else "mid_line"
                shown = keep_frames
                if message.event in _ACTIONABLE:
                    refusal = self._distrust(item)
                    if refusal is not None:
                        shown = True
                        self.stats.frames_invalid["untrusted"] += 1
                        untrusted = FrameUntrustedData(
                            event=message.event,
                            messageId=message.messageId,
                            position=position,
                            reason=refusal,
                            offset=item.offset,
                            excerpt=_excerpt(item.raw),
                        )
                        messages.append((FrameUntrusted(data=untrusted), "supervisor", None, None))
                        sizes.append(EVENT_OVERHEAD + len(item.raw))
                        chunks.append(item.raw)
                        continue
                if keep_frames:
                    chunks.append(item.raw)
                name, frames = message.event, self.stats.frames
                if name not in frames and (
                    len(frames) >= MAX_EVENT_NAMES or len(name) > MAX_LABEL_LENGTH
                ):
                    name = OTHER
                    self.stats.frames_folded += 1
                frames[name] += 1
                messages.append((message, "child", position, verbatim))
                sizes.append(EVENT_OVERHEAD + len(item.raw))
            elif type(item) is MalformedFrame:
                self.stats.frames_invalid[item.reason] += 1
                data = FrameInvalidData(
                    reason=item.reason, offset=item.offset, detail=item.detail, excerpt=item.excerpt
                )
                messages.append((FrameInvalid(data=data), "supervisor", None, None))
                sizes.append(EVENT_OVERHEAD)
            elif type(item) is LineEndRemoved and shown:
                chunks.append(item.raw)
        if chunks:
            await self._write(b"".join(chunks))
        if messages:
            now = self._clock.now_ms()
            stamp = self._stamper.stamp
            await self._send_events(
                [
                    stamp(message, now, source, where, verbatim)
                    for message, source, where, verbatim in messages
                ],
                sizes,
            )
            return True
        return False

    def _distrust(self, frame: Frame[Validated]) -> str | None:
        """Why an actionable frame may not make supervise answer, or None if it may."""
        policy = self.config.actionable_frames
        if policy == "anywhere":
            return None
        if policy == "never":
            return "actionable_frames is never: no frame may ask for an answer"
        if frame.line_start:
            return None
        return (
            "it followed other text on its line, where a program relays output"
            " it did not write (actionable_frames is line-start)"
        )

    async def _write(self, data: bytes) -> None:
        if self._output is None:
            return
        if data:
            self._track_prompt(data)
        self._writing = True
        try:
            await self._output.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            # Whoever read our output has gone (`supervise -- cmd | head`), or
            # it cannot take more (a full disk). Writing there directly, the
            # child would die of SIGPIPE; stop it the usual way instead, and
            # keep reading so frames still count.
            self.output_lost = True
            self.output_problem = _output_problem(exc)
            self._output = None
            self.request_stop(signal.SIGTERM)
        finally:
            self._writing = False

    def _track_prompt(self, data: bytes) -> None:
        """Notice the child finishing a line it paused in (leaving a prompt).

        Cheap on the hot path: the last byte of each write, and a search for
        a newline only while a line is open.
        """
        if self._open_since is not None and b"\n" in data:
            if trio.current_time() - self._open_since >= PROMPT_SECONDS:
                self.prompts_left += 1
                if self._on_prompt_left is not None:
                    self._on_prompt_left(self.prompts_left)
            self._open_since = None
        if data[-1] != 0x0A:
            if self._open_since is None:
                self._open_since = trio.current_time()
        else:
            self._open_since = None

    async def _send_events(self, events: list[Event], sizes: list[int] | None = None) -> None:
        """Queue events at once, in seq order; then wait only if the queue is full."""
        queue = self._events
        if queue is not None:
            queue.put(events, sizes)
        if self._observe is not None:
            self._observe(events)
        if queue is not None:
            await queue.wait_for_room()

    async def _publish(self, message: IpcMessage, source: Source) -> None:
        await self._send_events([self._stamper.stamp(message, self._clock.now_ms(), source)])

    async def send_input(self, data: bytes) -> None:
        """Write ``data`` to the child's stdin (an answer, or text typed through ctl).

        Writes take turns with each other and with the stdin pump, so an
        answer and typed text never interleave.

        Raises:
            trio.BrokenResourceError: the child is gone or closed its input.
        """
        child = self._child
        if child is None or self._exited.is_set():
            raise trio.BrokenResourceError("the process is not running")
        async with self._input_lock:
            await child.send_all(data)

    async def _pump_input(self, child: Child, stream: trio.abc.ReceiveStream) -> None:
        while True:
            data = await stream.receive_some(65536)
            if not data:
                break
            try:
                async with self._input_lock:
                    await child.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if self._on_input_line is not None:
                self._note_typed(data)
        if self.config.forward_eof:
            try:
                async with self._input_lock:
                    await child.send_eof()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return

    def _note_typed(self, data: bytes | bytearray) -> None:
        """Collect forwarded input into lines; report each line once sent.

        Keystrokes arrive raw: backspaces edit the line, escape sequences
        (arrow keys) and other control characters are dropped, and ``\r\n``
        ends one line, not two.
        """
        for byte in data:
            if self._typed_escape:
                # CSI sequences end with a byte in @..~; a lone ESC ends at
                # the next printable byte.
                if byte != 0x5B and 0x40 <= byte <= 0x7E:
                    self._typed_escape = False
                continue
            if byte == 0x0A and self._typed_cr:
                self._typed_cr = False
                continue
            self._typed_cr = byte == 0x0D
            if byte in (0x0D, 0x0A):
                line = self._typed.decode("utf-8", errors="replace")
                self._typed.clear()
                assert self._on_input_line is not None
                self._on_input_line(line)
            elif byte == 0x1B:
                self._typed_escape = True
            elif byte in (0x7F, 0x08):
                if self._typed:
                    del self._typed[-1]
            elif byte >= 0x20 and len(self._typed) < _MAX_TYPED:
                self._typed.append(byte)


def _output_problem(exc: BaseException) -> str:
    """Why writing the output failed, for "standard output ...; stopped the child"."""
    cause = exc.__cause__
    if isinstance(cause, OSError) and cause.errno not in (errno.EPIPE, errno.EBADF, None):
        return f"failed ({cause.strerror or cause})"
    return "was closed"
