"""The envelope belongs to supervise, and a child cannot speak as supervise.

A hostile child's only weapon is its output. These tests run such a child
under a real pty and check that its frames cannot set ``seq``, ``source`` or
``program``, cannot write a line that strict JSON parsers reject, cannot pass
for one of supervise's own events, and cannot make the journal's replay fail.
"""

from __future__ import annotations

import json
import sqlite3
from functools import partial
from pathlib import Path
from typing import Any

import test_control
import trio
from conftest import child
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_control import running, until

from adapters.telegram_format import render_event
from supervisor import JournalConfig, ProgramConfig, Supervisor
from supervisor._cli import ctl as _ctl
from supervisor._core.events import ENVELOPE_KEYS, Event, EventStamper
from supervisor._core.messages import RESERVED_EVENTS, IpcMessage, validate_payload
from supervisor._routing.journal import Journal
from supervisor.testing import CapturingSink

# The private control directory fixture of the control-socket tests.
control_fixture = test_control.control


def strict(line: bytes | str) -> dict[str, Any]:
    """Parse like node's JSON.parse: no NaN/Infinity, and no key twice."""

    def no_constants(name: str) -> Any:
        raise AssertionError(f"not strict JSON: {name}")

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [key for key, _ in items]
        assert len(keys) == len(set(keys)), f"duplicate keys in {keys}"
        return dict(items)

    value = json.loads(line, parse_constant=no_constants, object_pairs_hook=pairs)
    assert isinstance(value, dict)
    return value


class Discard(trio.abc.SendStream):
    """A program's output, kept for the assertions."""

    def __init__(self) -> None:
        self.data = bytearray()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        self.data += data

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


def hostile(scenario: str, *, pty: bool = True) -> ProgramConfig:
    return ProgramConfig(command=tuple(child("hostile", scenario)), name="evil-child", pty=pty)


async def run_once(
    scenario: str, journal: Path, sink: CapturingSink, *, pty: bool = True
) -> tuple[Supervisor, Discard]:
    output = Discard()
    sup = Supervisor(
        [hostile(scenario, pty=pty)],
        journal=JournalConfig(path=journal),
        instance="evil",
        outputs={"evil-child": output},
        drain_timeout=0.5,
        report=lambda _: None,
    )
    sup.route("hook", sink, durable=True, retry={"initial": 0.05, "cap": 0.1})
    with trio.fail_after(30):
        await sup.run()
    return sup, output


# -- 1. the envelope ------------------------------------------------------------------


async def test_a_childs_seq_cannot_stall_or_loop_durable_delivery(tmp_path: Path) -> None:
    """Repro: ``"seq": 999999999`` (and ``"seq": 1``) in frames while the durable
    webhook is down. The next run delivers every event once, in seq order, and
    the route's mark ends at the last seq supervise handed out."""
    journal = tmp_path / "evil.journal.db"
    down = CapturingSink()
    down.fail_next = 10**9
    await run_once("envelope", journal, down)
    assert down.events == []

    up = CapturingSink()
    await run_once("reserved", journal, up)
    seqs = [event.seq for event in up.events]
    assert seqs == sorted(set(seqs)), "each event once, in order"
    with Journal.open(journal, readonly=True) as stored:
        assert stored.delivered("hook") == stored.last_seq() == seqs[-1]
        assert seqs == list(range(1, stored.last_seq() + 1))
    children = [event for event in up.events if event.source == "child"]
    assert [(e.event, getattr(e.data, "taskId", None)) for e in children][:3] == [
        ("task_start", "T1"),
        ("task_start", "T2"),
        ("task_start", "T3"),
    ]
    assert {event.program for event in up.events} <= {"evil-child", "supervise"}


async def test_event_lines_are_strict_json_with_supervises_envelope(tmp_path: Path) -> None:
    """Every journaled line parses strictly, has each key once, and keeps the child's
    extra top-level keys under ``extra``. NaN, and 1e999 in a number field, are no
    JSON numbers: those frames are invalid. 1e999 in an untyped field is written as null."""
    journal = tmp_path / "evil.journal.db"
    await run_once("envelope", journal, CapturingSink())
    with Journal.open(journal, readonly=True) as stored:
        lines = [line.line for line in stored.read_lines(0, 1000)]
    parsed = [strict(line) for line in lines]
    assert all(set(fields) <= set(ENVELOPE_KEYS) for fields in parsed)
    assert [fields["seq"] for fields in parsed] == list(range(1, len(parsed) + 1))
    by_task = {
        fields["data"].get("taskId"): fields for fields in parsed if fields["event"] == "task_start"
    }
    t2, t3 = by_task["T2"], by_task["T3"]
    assert t2["extra"] == {"seq": 999999999}
    assert t3["program"] == "evil-child"
    assert t3["source"] == "child"
    assert t3["position"] == "line_start"
    assert t3["extra"] == {
        "seq": 1,
        "source": "supervisor",
        "program": "evil",
        "received_at": "never",
        "position": "line_start",
        "extra": {"seq": 5},
    }
    assert not [f for f in parsed if f["event"] == "progress_update"]
    invalid = [f["data"] for f in parsed if f["event"] == "frame_invalid"]
    assert [(d["reason"], d["detail"]) for d in invalid] == [
        ("schema", "data.progress: Input should be a finite number"),
        ("json", "not valid JSON: NaN is not a JSON number"),
    ]
    (log,) = [f for f in parsed if f["event"] == "log"]
    assert log["extra"] == {"huge": None}
    # Read back, the child's keys stay where they were put.
    events = [Event.from_json(line) for line in lines]
    assert [e.seq for e in events] == [f["seq"] for f in parsed]
    assert all(e.program in ("evil-child", "supervise") for e in events)


_JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner)


_JSON = st.recursive(_JSON_SCALARS, _containers, max_leaves=8)
_KEYS = st.sampled_from([*ENVELOPE_KEYS, "x", "extra", "data"]) | st.text(max_size=6)


@settings(max_examples=120, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["task_start", "log", "progress_update", "custom", "loop_end"]),
            st.dictionaries(_KEYS, _JSON, max_size=6),
            st.dictionaries(st.text(max_size=6), _JSON, max_size=4),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_no_frame_can_duplicate_a_key_or_set_seq(
    frames: list[tuple[str, dict[str, Any], dict[str, Any]]],
) -> None:
    """Whatever a child puts at the top level or in data: strict JSON out, each
    key once, only envelope keys at the top, and seq strictly increasing."""
    stamper = EventStamper("p")
    seqs = []
    for name, top, data in frames:
        fields: dict[str, Any] = {**top, "type": "ipc", "event": name}
        fields["data"] = {"taskId": "T", "message": "m", **data}
        payload = json.dumps(fields).encode()  # allow_nan: 1e999 and NaN go in as such
        message = validate_payload(payload)
        if not isinstance(message, IpcMessage):
            continue
        line = stamper.stamp(message, 1, "child", "mid_line").to_json()
        parsed = strict(line)
        assert set(parsed) <= set(ENVELOPE_KEYS)
        assert parsed["source"] == "child"
        assert parsed["program"] == "p"
        seqs.append(parsed["seq"])
        again = Event.from_json(line)
        assert (again.seq, again.source, again.program) == (parsed["seq"], "child", "p")
        assert again.to_json() == line
    assert seqs == sorted(set(seqs))


# -- 2. a child cannot speak as supervise ---------------------------------------------


async def test_a_child_cannot_send_supervises_own_events(tmp_path: Path) -> None:
    """Repro: a ``process_exit`` frame with ``"source": "supervisor"``. It is
    refused as ``reserved``, stays on screen, and the next run's durable route
    (which used to die in the backlog reader) delivers everything."""
    journal = tmp_path / "evil.journal.db"
    down = CapturingSink()
    down.fail_next = 10**9
    _, output = await run_once("reserved", journal, down)
    assert b'"event": "process_exit"' in output.data
    assert b'"event": "question_answered"' in output.data
    up = CapturingSink()
    await run_once("reserved", journal, up)
    invalid = [e for e in up.events if e.event == "frame_invalid"]
    assert [e.data.reason for e in invalid] == ["reserved"] * 4
    assert "process_exit" in invalid[0].data.detail
    assert all(e.source == "supervisor" for e in up.events if e.event in RESERVED_EVENTS)
    exits = [e for e in up.events if e.event == "process_exit"]
    assert len(exits) == 2
    assert all(e.data.exit_code == 0 for e in exits)


async def test_a_childs_lost_field_is_not_a_lost_task() -> None:
    """Only supervise reports a task as lost: metrics and Telegram ignore a
    child's ``task_failed`` that claims ``lost``."""
    sink = CapturingSink()
    sup = Supervisor(
        [hostile("reserved")],
        outputs={"evil-child": None},
        report=lambda _: None,
        keep_metrics=True,
    )
    sup.route("all", sink)
    with trio.fail_after(30):
        await sup.run()
    child_failure, lost = [e for e in sink.events if e.event == "task_failed"]
    assert (child_failure.source, child_failure.data.taskId) == ("child", "T9")
    assert (lost.source, lost.data.taskId) == ("supervisor", "T10")  # left open at exit
    metrics = sup.metrics
    assert metrics is not None
    assert sum(metrics.tasks["lost"].values()) == 1
    assert sum(metrics.tasks["failed"].values()) == 1
    assert "(lost)" not in render_event(child_failure)
    assert "(lost)" in render_event(lost)


def test_reserved_names_cover_every_event_supervise_emits() -> None:
    """A new event of supervise's own cannot be defined without reserving its name."""
    from supervisor._core.events import OWN_EVENTS

    assert set(OWN_EVENTS) <= RESERVED_EVENTS
    for name in RESERVED_EVENTS:
        payload = json.dumps({"type": "ipc", "event": name, "data": {}}).encode()
        refused = validate_payload(payload)
        assert not isinstance(refused, IpcMessage), name
        assert refused.reason == "reserved"


_DEEP = b"[" * 100_000 + b"]" * 100_000  # json.loads gives up on it with RecursionError


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.binary(max_size=60) | st.text(max_size=60).map(str.encode) | st.just(_DEEP),
        max_size=12,
    )
)
def test_replay_never_raises_whatever_the_journal_holds(lines: list[bytes]) -> None:
    """Lines that are not events (another version's, hand-edited, garbage) are
    skipped, counted and reported once; every readable one is returned."""
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "j.journal.db"
        good = EventStamper("p")
        with Journal.open(path) as journal:
            message = validate_payload(b'{"type":"ipc","event":"log","data":{"message":"m"}}')
            assert isinstance(message, IpcMessage)
            events = [good.stamp(message, 1) for _ in range(len(lines) + 1)]
            journal.append(events)
        db = sqlite3.connect(path)
        with db:
            for seq, line in enumerate(lines, start=1):
                db.execute("UPDATE events SET line = ? WHERE seq = ?", (line, seq))
        db.close()
        reports: list[str] = []
        with Journal.open(path) as journal:
            journal.report = reports.append
            read = journal.read(0, limit=3)
            rest = journal.read(read[-1].seq if read else 0, limit=1000)
            again = journal.read(0, limit=1000)
        readable = {e.seq for e in again}
        assert len(lines) + 1 in readable  # the untouched last line
        assert [e.seq for e in again] == sorted(readable)
        assert {e.seq for e in read + rest} <= readable
        assert len(reports) == len(set(reports)) == len(lines) + 1 - len(readable)
        assert all("no longer reads as an event" in r and "\n" not in r for r in reports)


async def test_an_unreadable_journal_line_does_not_stop_durable_delivery(tmp_path: Path) -> None:
    """After an upgrade changes a model (simulated: a stored line edited into an
    event that no longer validates), the backlog goes out without it."""
    journal = tmp_path / "evil.journal.db"
    down = CapturingSink()
    down.fail_next = 10**9
    await run_once("envelope", journal, down)
    db = sqlite3.connect(journal)
    with db:
        (line,) = db.execute("SELECT line FROM events WHERE seq = 2").fetchone()
        fields = json.loads(line)
        fields["source"], fields["event"], fields["data"] = "supervisor", "process_exit", {}
        db.execute("UPDATE events SET line = ? WHERE seq = 2", (json.dumps(fields),))
    db.close()
    reports: list[str] = []
    up = CapturingSink()
    sup = Supervisor(
        [hostile("reserved")],
        journal=JournalConfig(path=journal),
        outputs={"evil-child": None},
        drain_timeout=2,
        report=reports.append,
    )
    sup.route("hook", up, durable=True)
    with trio.fail_after(30):
        await sup.run()
    seqs = [e.seq for e in up.events]
    assert 2 not in seqs
    assert seqs[:2] == [1, 3]
    assert any("seq 2 no longer reads as an event" in r for r in reports)


async def test_ctl_tail_since_0_survives_a_poisoned_journal(
    control_fixture: Path, tmp_path: Path
) -> None:
    """Repro: ``ctl tail --since 0`` over a journal holding a line that reads as
    supervise's ``process_exit`` with the child's data used to kill the running
    supervise and its child. Now the line is skipped and the tail goes on."""
    journal = tmp_path / "evil.journal.db"
    await run_once("reserved", journal, CapturingSink())
    db = sqlite3.connect(journal)
    with db:
        fields = {
            "seq": 3, "program": "evil-child", "received_at": 1, "source": "supervisor",
            "type": "ipc", "event": "process_exit", "data": {"foo": 1}, "messageId": "m",
        }  # fmt: skip
        db.execute("UPDATE events SET line = ? WHERE seq = 3", (json.dumps(fields),))
        (last,) = db.execute("SELECT max(seq) FROM events").fetchone()
    db.close()
    sleeper = ProgramConfig(command=("sleep", "30"), name="sleeper")
    lines: list[bytes] = []
    with trio.fail_after(30):
        async with running(control_fixture, sleeper, journal=journal) as run:
            await until(lambda: run.program().pid is not None)

            def tail() -> None:
                with _ctl._Connection("test", run.path, timeout=None) as connection:
                    for line in connection.events(None, since=0):
                        lines.append(line)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(partial(trio.to_thread.run_sync, tail, abandon_on_cancel=True))
                await until(lambda: any(json.loads(line)["seq"] >= last for line in lines))
                assert run.program().pid is not None  # supervise and its child live on
                await run.hub.aclose()
    seqs = [json.loads(line)["seq"] for line in lines]
    assert 3 not in seqs
    assert seqs[:3] == [1, 2, 4]


_COLUMN = (
    st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_COLUMN, _COLUMN, _COLUMN), min_size=1, max_size=8))
def test_raw_journal_reads_never_raise_whatever_the_columns_hold(
    rows: list[tuple[object, object, object]],
) -> None:
    """Hand-edited columns of any SQLite type: lines come back as bytes, filtered or not."""
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "j.journal.db"
        stamper = EventStamper("p")
        message = validate_payload(b'{"type":"ipc","event":"log","data":{"message":"m"}}')
        assert isinstance(message, IpcMessage)
        with Journal.open(path) as journal:
            journal.append([stamper.stamp(message, 1) for _ in rows])
        db = sqlite3.connect(path)
        with db:
            for seq, (program, event, line) in enumerate(rows, start=1):
                db.execute(
                    "UPDATE events SET program = ?, event = ?, line = ? WHERE seq = ?",
                    (program, event, line, seq),
                )
        db.close()
        with Journal.open(path) as journal:
            everything = journal.read_lines(0, 1000)
            filtered = journal.read_lines(0, 1000, pattern="*:*")
            journal.read(0, 1000)
        assert [line.seq for line in everything] == list(range(1, len(rows) + 1))
        assert [line.seq for line in filtered] == [line.seq for line in everything]
        assert all(isinstance(line.line, bytes) for line in everything + filtered)
