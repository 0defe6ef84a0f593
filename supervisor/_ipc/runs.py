"""``ts-ipc run NAME``: load the workflow file, run it, send its events everywhere.

Each run and step is an event (``workflow_started``, ``step_started``,
``step_finished {session, command, exit_code, duration}``, ``step_skipped``,
``workflow_finished``), and it goes to three places:

- the ts-ipc log (``ts-ipc events``: ``WORKFLOW`` and ``STEP`` lines);
- ts-ipc subscribers: ``ts-ipc subscribe mgr 'step_*' notify`` shows each
  step in ``mgr``; the source is the workflow's name;
- supervise's routes, when the run itself is supervised
  (``supervise -- ts-ipc run deploy``: supervise exports ``IPC_SUPERVISOR``
  to its child): the events are printed as IPC frames, which supervise
  takes out of the output and routes like any child's events, so Telegram,
  Prometheus and the journal see them.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any, TextIO

import trio

from .deliver import deliver_waiting
from .publishing import publish
from .run import run_workflow
from .store import Store
from .workflow import WorkflowError, check_workflow_name, load_workflow, workflow_path

__all__ = ["WorkflowEvents", "run_named_workflow"]


class WorkflowEvents:
    """The ``emit`` callback of a run: frames at once; log and publish off the loop.

    The runner calls ``emit`` from the event loop, where steps running in
    parallel are being watched; the log insert and the deliveries to
    subscribers (SQLite and tmux, both blocking) happen in a worker thread
    fed in order by :meth:`serve`, on a store connection of their own.
    """

    def __init__(self, home: Path, workflow: str, *, frames: bool) -> None:
        self._home = home
        self._workflow = workflow
        self._frames = None
        if frames:
            from ..emit import FrameWriter

            self._frames = FrameWriter(sys.stdout.buffer)
        self._send, self._receive = trio.open_memory_channel[tuple[str, dict[str, Any]]](math.inf)

    def __call__(self, event: str, data: dict[str, Any]) -> None:
        if self._frames is not None:
            sys.stdout.flush()
            self._frames.emit(event, data)
        self._send.send_nowait((event, dict(data)))

    def close(self) -> None:
        """No more events: :meth:`serve` returns once it has handled the last."""
        self._send.close()

    async def serve(self) -> None:
        store = await trio.to_thread.run_sync(Store, self._home)
        try:
            async for event, data in self._receive:
                await trio.to_thread.run_sync(self._handle, store, event, data)
        finally:
            store.close()

    def _handle(self, store: Store, event: str, data: dict[str, Any]) -> None:
        store.log(_action(event), _log_text(event, data), {"event": event, **data})
        line = json.dumps({"event": event, **data}, ensure_ascii=False)
        text = _summary(event, data) or line
        messages = publish(
            store,
            self._workflow,
            event,
            text,
            accepts=lambda source: _accepts(source, event, self._workflow, data),
            body_for=lambda subscription: line if subscription.action == "data" else text,
        )
        if messages:
            deliver_waiting(store, dict.fromkeys(m.target for m in messages))


def _accepts(source: str, event: str, program: str, data: dict[str, Any]) -> bool:
    from .._core.events import Event
    from .._core.messages import parse_message
    from .filtering import accepts_event

    message = parse_message({"type": "ipc", "event": event, "data": data})
    return accepts_event(source, Event(0, program, 0, "child", message))


def _action(event: str) -> str:
    return "WORKFLOW" if event.startswith("workflow_") else "STEP"


def _log_text(event: str, data: dict[str, Any]) -> str:
    workflow = data.get("workflow", "?")
    if event.startswith("workflow_"):
        what = event.removeprefix("workflow_")
        code = f" exit {data['exit_code']}" if "exit_code" in data else ""
        return f"{workflow} {what}{code} run {data.get('run', '?')}"
    step = data.get("step", "?")
    what = event.removeprefix("step_")
    code = f" exit {data['exit_code']}" if data.get("exit_code") is not None else ""
    where = f" in {data['session']}" if "session" in data else ""
    return f"{workflow}/{step} {what}{where}{code}"


def _summary(event: str, data: dict[str, Any]) -> str | None:
    """A person's one line for a notification; None: the event's JSON will do."""
    if event == "step_finished":
        mark = "✓" if data.get("exit_code") == 0 else "✗"
        duration = data.get("duration")
        took = f" in {duration:.1f} s" if isinstance(duration, (int, float)) else ""
        return (
            f"{mark} {data.get('workflow')}/{data.get('step')} ({data.get('session')}):"
            f" exit {data.get('exit_code')}{took}"
        )
    if event == "workflow_finished":
        mark = "✓" if data.get("exit_code") == 0 else "✗"
        return f"{mark} workflow {data.get('workflow')} finished: exit {data.get('exit_code')}"
    if event == "workflow_started":
        return f"▶ workflow {data.get('workflow')} started"
    if event == "step_skipped":
        return f"⏭ {data.get('workflow')}/{data.get('step')} skipped: {data.get('reason')}"
    if event == "step_started":
        return f"▶ {data.get('workflow')}/{data.get('step')} ({data.get('session')})"
    return None


def run_named_workflow(store: Store, name: str, *, keep_going: bool, out: TextIO) -> int:
    """Run the workflow ``name``; its exit status (the first failure's).

    Raises:
        WorkflowError: no such workflow, or its file is wrong (one line).
    """
    path = workflow_path(store.home, check_workflow_name(name))
    if not path.exists():
        known = sorted(p.stem for p in path.parent.glob("*.toml"))
        listed = ", ".join(known) if known else "none yet"
        raise WorkflowError(f"no workflow named {name!r} (workflows: {listed})")
    workflow = load_workflow(path)
    frames = bool(os.environ.get("IPC_SUPERVISOR"))

    async def run_and_publish() -> int:
        events = WorkflowEvents(store.home, workflow.name, frames=frames)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(events.serve)
            try:
                return await run_workflow(
                    workflow, keep_going=keep_going, emit=events, out=out, store=store
                )
            finally:
                events.close()

    return trio.run(run_and_publish)
