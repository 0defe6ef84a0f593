"""The event journal on real SQLite files: round trips, routes, dead letters, retention, kill -9."""

from __future__ import annotations

import os
import select
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
import trio
import trio.testing
from conftest import popen
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisor._core.errors import ConfigError
from supervisor._core.events import Event, ProcessExit, ProcessExitData
from supervisor._core.messages import parse_message
from supervisor._paths import state_dir
from supervisor._routing.journal import (
    SCHEMA_VERSION,
    AsyncJournal,
    Journal,
    journal_path,
)

T0 = 1_795_236_690_000  # epoch ms


def make_event(
    seq: int,
    program: str = "loop",
    event: str = "task_start",
    received_at: int | None = None,
    data: object = None,
) -> Event:
    """A child event as supervise would journal it."""
    fields = {
        "type": "ipc",
        "event": event,
        "data": {"taskId": f"T-{seq}"} if data is None else data,
        "timestamp": T0 + seq,
        "messageId": f"00000000-0000-4000-8000-{seq:012d}",
    }
    received = T0 + seq if received_at is None else received_at
    return Event(seq, program, received, "child", parse_message(fields))


def events(
    seqs: Iterable[int], program: str = "loop", event: str = "task_start", data: object = None
) -> list[Event]:
    """Events with these seqs, all alike apart from the seq."""
    return [make_event(seq, program, event, data=data) for seq in seqs]


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal.open(tmp_path / "state" / "test.journal.db") as opened:
        yield opened


def all_seqs(journal: Journal) -> list[int]:
    return [item.seq for item in journal.read_lines(0, 1_000_000)]


# -- locations -------------------------------------------------------------------


def test_state_dir_follows_xdg() -> None:
    """XDG_STATE_HOME is used when absolute; otherwise ~/.local/state."""
    assert state_dir({"XDG_STATE_HOME": "/s", "HOME": "/h"}) == Path("/s/ipc-supervisor")
    assert state_dir({"XDG_STATE_HOME": "rel", "HOME": "/h"}) == Path(
        "/h/.local/state/ipc-supervisor"
    )
    assert state_dir({"HOME": "/h"}) == Path("/h/.local/state/ipc-supervisor")


def test_journal_path_names_the_instance(tmp_path: Path) -> None:
    """One file per instance; names that could escape the directory are refused."""
    assert journal_path("web", tmp_path) == tmp_path / "web.journal.db"
    for bad in ("", "a/b", ".hidden"):
        with pytest.raises(ConfigError):
            journal_path(bad, tmp_path)


def test_new_journal_is_private(tmp_path: Path) -> None:
    """The directory is 0700 and the database 0600: events may hold secrets."""
    path = tmp_path / "new" / "x.journal.db"
    Journal.open(path).close()
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# -- events ------------------------------------------------------------------------

_NAMES = st.sampled_from(["task_start", "task_complete", "log", "custom_thing", "process_exit"])
_JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)


@st.composite
def _event(draw: st.DrawFn, seq: int) -> Event:
    name = draw(_NAMES)
    program = draw(st.text(min_size=1, max_size=8))
    received_at = draw(st.integers(0, 2**50))
    if name == "process_exit":
        data = ProcessExitData(exit_code=draw(st.integers(0, 255)), signal=None, uptime=1.5)
        message = ProcessExit(data=data, timestamp=received_at, messageId=f"m{seq}")
        return Event(seq, program, received_at, "supervisor", message)
    if name == "log":
        data_fields: object = {"level": "info", "message": draw(st.text(max_size=40))}
    elif name == "custom_thing":
        data_fields = draw(st.dictionaries(st.text(max_size=5), _JSON_SCALARS, max_size=4))
    else:
        data_fields = {"taskId": draw(st.text(max_size=10)), "title": draw(st.text(max_size=30))}
    return make_event(seq, program, name, received_at, data_fields)


@st.composite
def _batches(draw: st.DrawFn) -> list[list[Event]]:
    seq = 0
    batches = []
    for size in draw(st.lists(st.integers(1, 15), max_size=6)):
        batch = []
        for _ in range(size):
            seq += draw(st.integers(1, 3))  # holes are allowed
            batch.append(draw(_event(seq)))
        batches.append(batch)
    return batches


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=_batches())
def test_append_read_round_trip(tmp_path: Path, batches: list[list[Event]]) -> None:
    """Whatever is appended, in whatever batches, reads back equal, in order, byte for byte."""
    with (
        tempfile.TemporaryDirectory(dir=tmp_path) as directory,
        Journal.open(Path(directory) / "j.journal.db") as journal,
    ):
        for batch in batches:
            journal.append(batch)
        flat = [event for batch in batches for event in batch]
        assert journal.read(0, limit=10_000) == flat
        lines = journal.read_lines(0, limit=10_000)
        assert [item.line for item in lines] == [event.to_json() for event in flat]
        assert journal.last_seq() == (flat[-1].seq if flat else 0)
        assert journal.size() == sum(len(event.to_json()) for event in flat)


def test_read_since_limit_until_and_pattern(journal: Journal) -> None:
    """since/limit/until page through seq order; a pattern filters by event and program."""
    journal.append(events([1, 2, 3], program="web", event="task_start"))
    journal.append(events([4, 5], program="db", event="task_complete"))
    journal.append(events([6], program="web", event="log", data={"message": "m"}))
    assert [e.seq for e in journal.read(2)] == [3, 4, 5, 6]
    assert [e.seq for e in journal.read(0, limit=2)] == [1, 2]
    assert [e.seq for e in journal.read(1, until=4)] == [2, 3, 4]
    assert [e.seq for e in journal.read(0, pattern="task_*")] == [1, 2, 3, 4, 5]
    assert [e.seq for e in journal.read(0, pattern="web:*")] == [1, 2, 3, 6]
    assert [e.seq for e in journal.read(0, pattern="d?:task_complete")] == [4, 5]
    assert [e.seq for e in journal.read(1, limit=1, pattern="web:*")] == [2]
    assert journal.read(6) == []


def test_pattern_scan_spans_many_chunks(journal: Journal) -> None:
    """A rare event is found behind thousands of others, and limit counts matches only."""
    journal.append(events(range(1, 2501)))
    journal.append(events([2501, 2502], event="log", data={"message": "x"}))
    assert [e.seq for e in journal.read(0, limit=5, pattern="log")] == [2501, 2502]
    assert len(journal.read(0, limit=1500, pattern="task_*")) == 1500


def test_append_refuses_seqs_already_used(journal: Journal) -> None:
    """Seqs only grow: a duplicate or older seq fails the whole batch, which leaves no trace."""
    journal.append(events([1, 2, 3]))
    for bad in ([3], [2], [4, 4], [6, 5]):
        with pytest.raises(ValueError, match="seq"):
            journal.append(events(bad))
    assert all_seqs(journal) == [1, 2, 3]
    assert journal.last_seq() == 3
    journal.append([])
    journal.append(events([4]))
    assert journal.last_seq() == 4


def test_last_seq_survives_pruning_everything(journal: Journal) -> None:
    """Numbering continues after every event was pruned: routes' marks stay meaningful."""
    journal.append(events([1, 2, 3]))
    assert journal.prune(max_age=None, max_bytes=0, keep_after=None) == 3
    assert all_seqs(journal) == []
    assert journal.last_seq() == 3
    assert journal.size() == 0
    with pytest.raises(ValueError, match="seq"):
        journal.append(events([2]))


def test_reopen_keeps_everything(tmp_path: Path) -> None:
    """Events, routes and dead letters are all there after close and reopen."""
    path = tmp_path / "r.journal.db"
    with Journal.open(path) as journal:
        journal.append(events([1, 2, 3]))
        journal.register_route("hook", 0)
        journal.mark_delivered("hook", 2)
        journal.add_dead("hook", make_event(1), "HTTP 500", 5, failed_at=T0)
    with Journal.open(path) as journal:
        assert [e.seq for e in journal.read(0)] == [1, 2, 3]
        assert journal.last_seq() == 3
        assert journal.delivered("hook") == 2
        assert [dead.seq for dead in journal.dead_letters()] == [1]


def test_reader_sees_commits_of_a_writer(tmp_path: Path) -> None:
    """A read-only connection (another process's view) sees each new commit."""
    path = tmp_path / "w.journal.db"
    with Journal.open(path) as writer, Journal.open(path, readonly=True) as reader:
        writer.append(events([1]))
        assert reader.last_seq() == 1
        writer.append(events([2, 3]))
        assert [item.seq for item in reader.read_lines(1)] == [2, 3]
        with pytest.raises(sqlite3.OperationalError):
            reader.append(events([4]))


# -- routes -------------------------------------------------------------------------


def test_delivered_marks_only_move_forward(journal: Journal) -> None:
    """A new route starts at the last seq (or where asked); marks never go back."""
    journal.append(events([1, 2, 3]))
    assert journal.delivered("hook") is None
    assert journal.register_route("hook") == 3
    journal.mark_delivered("hook", 5)
    journal.mark_delivered("hook", 4)
    assert journal.delivered("hook") == 5
    # Registering again (a restart) keeps the mark.
    assert journal.register_route("hook", 0) == 5
    assert journal.register_route("replay", 0) == 0
    journal.mark_delivered("fresh", 2)
    assert journal.routes() == {"fresh": 2, "hook": 5, "replay": 0}
    journal.forget_route("replay")
    assert journal.delivered("replay") is None


# -- dead letters -------------------------------------------------------------------


def test_dead_letters_add_list_remove(journal: Journal) -> None:
    """Dead letters keep the event and why; removing returns them for re-queueing."""
    first, second, third = events([1, 2, 3])
    a = journal.add_dead("hook", first, "HTTP 500", 5, failed_at=T0)
    b = journal.add_dead("chat", second, "timeout", 3)
    c = journal.add_dead("hook", third, "HTTP 404", 1)
    assert [dead.id for dead in journal.dead_letters()] == [a, b, c]
    hook = journal.dead_letters("hook")
    assert [(dead.seq, dead.error, dead.attempts) for dead in hook] == [
        (1, "HTTP 500", 5),
        (3, "HTTP 404", 1),
    ]
    assert hook[0].event == first
    assert hook[0].failed_at == T0
    assert hook[1].failed_at >= time.time_ns() // 1_000_000 - 60_000

    removed = journal.remove_dead([c, a, 999])
    assert [dead.id for dead in removed] == [a, c]
    assert [dead.event for dead in removed] == [first, third]
    assert journal.remove_dead([a]) == []
    assert [dead.route for dead in journal.dead_letters()] == ["chat"]


def test_remove_many_dead_letters(journal: Journal) -> None:
    """Removing more ids than SQLite binds in one statement works."""
    event = make_event(1)
    ids = [journal.add_dead("hook", event, "e", 1) for _ in range(1200)]
    assert len(journal.remove_dead(ids)) == 1200
    assert journal.dead_letters() == []


# -- retention ----------------------------------------------------------------------


def stored_bytes(journal: Journal) -> int:
    with sqlite3.connect(journal.path) as db:
        return int(db.execute("SELECT coalesce(sum(length(line)), 0) FROM events").fetchone()[0])


def test_prune_by_age_keeps_undelivered(journal: Journal) -> None:
    """Old events go, except those after keep_after, which a route still owes."""
    now = T0 / 1000
    # Seqs 1-5 are an hour old, 6-8 are fresh.
    journal.append([make_event(seq, received_at=T0 - 3_600_000) for seq in range(1, 6)])
    journal.append([make_event(seq, received_at=T0) for seq in range(6, 9)])
    assert journal.prune(max_age=600, max_bytes=None, keep_after=3, now=now) == 3
    assert all_seqs(journal) == [4, 5, 6, 7, 8]
    assert journal.prune(max_age=600, max_bytes=None, keep_after=None, now=now) == 2
    assert all_seqs(journal) == [6, 7, 8]
    assert journal.prune(max_age=600, max_bytes=None, keep_after=None, now=now) == 0
    assert journal.size() == stored_bytes(journal)


def test_prune_by_size_drops_oldest_but_never_undelivered(journal: Journal) -> None:
    """Over max_bytes, the oldest delivered events go first; undelivered ones always stay."""
    journal.append(events(range(10, 20)))
    line = len(make_event(10).to_json())  # two-digit seqs: every line has this length
    assert journal.prune(max_age=None, max_bytes=7 * line, keep_after=None) == 3
    assert all_seqs(journal) == list(range(13, 20))
    assert journal.prune(max_age=None, max_bytes=7 * line, keep_after=None) == 0
    # Only seqs up to 15 are delivered: pruning to one line stops there.
    assert journal.prune(max_age=None, max_bytes=line, keep_after=15) == 3
    assert all_seqs(journal) == [16, 17, 18, 19]
    assert journal.size() == 4 * line == stored_bytes(journal)
    assert journal.prune(max_age=None, max_bytes=0, keep_after=0) == 0


def test_prune_age_and_size_together(journal: Journal) -> None:
    """Both limits apply in one call, and the byte count stays exact."""
    journal.append([make_event(seq, received_at=T0 - 3_600_000) for seq in range(10, 13)])
    journal.append([make_event(seq, received_at=T0) for seq in range(13, 19)])
    line = len(make_event(10).to_json())
    deleted = journal.prune(max_age=60, max_bytes=4 * line, keep_after=None, now=T0 / 1000)
    assert deleted == 5
    assert all_seqs(journal) == [15, 16, 17, 18]
    assert journal.size() == stored_bytes(journal)


def test_prune_with_a_limit_deletes_at_most_that_many(journal: Journal) -> None:
    """A limited prune stops at ``limit`` rows; called again it goes on where it stopped."""
    journal.append([make_event(seq, received_at=T0 - 3_600_000) for seq in range(10, 16)])
    journal.append([make_event(seq, received_at=T0) for seq in range(16, 30)])
    line = len(make_event(10).to_json())
    now = T0 / 1000
    limits = {"max_age": 60, "max_bytes": 4 * line, "keep_after": None, "now": now}
    assert journal.prune(**limits, limit=4) == 4  # type: ignore[arg-type]
    assert all_seqs(journal)[0] == 14
    assert journal.prune(**limits, limit=4) == 4  # type: ignore[arg-type]  # 2 by age, 2 by size
    assert all_seqs(journal)[0] == 18
    deleted = [journal.prune(**limits, limit=4) for _ in range(4)]  # type: ignore[arg-type]
    assert deleted == [4, 4, 0, 0]
    assert all_seqs(journal) == [26, 27, 28, 29]
    assert journal.size() == 4 * line == stored_bytes(journal)


def test_async_prune_releases_the_journal_between_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A big prune is many short transactions, so appends and reads get the thread between them."""
    monkeypatch.setattr("supervisor._routing.journal.PRUNE_CHUNK", 7)

    async def main() -> None:
        with trio.fail_after(10):
            async with await AsyncJournal.open(tmp_path / "chunks.journal.db") as journal:
                await journal.append(events(range(1, 51)))
                calls: list[tuple[int | None, int]] = []
                prune = journal.journal.prune

                def counted(**kwargs: object) -> int:
                    deleted = prune(**kwargs)  # type: ignore[arg-type]
                    calls.append((kwargs["limit"], deleted))  # type: ignore[arg-type]
                    return deleted

                monkeypatch.setattr(journal.journal, "prune", counted)
                assert await journal.prune(max_age=None, max_bytes=0, keep_after=45) == 45
                assert calls == [(7, 7)] * 6 + [(7, 3)]
                assert [e.seq for e in await journal.read(0)] == [46, 47, 48, 49, 50]

    trio.run(main)


# -- opening errors -------------------------------------------------------------------


def test_not_a_database_is_a_config_error(tmp_path: Path) -> None:
    """A file that is not SQLite is refused with a one-line ConfigError naming it."""
    path = tmp_path / "junk.journal.db"
    path.write_bytes(b"this is not a database, just some text " * 100)
    for readonly in (False, True):
        with pytest.raises(ConfigError) as caught:
            Journal.open(path, readonly=readonly)
        assert caught.value.where == str(path)
        assert "\n" not in str(caught.value)


def test_other_sqlite_database_is_refused(tmp_path: Path) -> None:
    """Someone else's SQLite database is not taken over."""
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE users (name TEXT)")
    db.close()
    with pytest.raises(ConfigError, match="not a journal"):
        Journal.open(path)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    """A journal written by a newer version is refused rather than misread."""
    path = tmp_path / "new.journal.db"
    Journal.open(path).close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(ConfigError, match="newer"):
        Journal.open(path)


def test_readonly_needs_an_existing_journal(tmp_path: Path) -> None:
    """Read-only opening creates nothing."""
    path = tmp_path / "missing.journal.db"
    with pytest.raises(ConfigError, match="no such journal"):
        Journal.open(path, readonly=True)
    assert not path.exists()


# -- trio -----------------------------------------------------------------------------------


async def test_async_journal(tmp_path: Path) -> None:
    """The trio wrapper runs every method in a thread with the same results."""
    with trio.fail_after(10):
        async with await AsyncJournal.open(tmp_path / "a.journal.db") as journal:
            async with trio.open_nursery() as nursery:
                # Concurrent callers are serialized, never interleaved on the connection.
                for start in range(1, 50, 10):
                    nursery.start_soon(journal.mark_delivered, "hook", start)
            await journal.append(events([1, 2, 3]))
            assert await journal.last_seq() == 3
            assert [e.seq for e in await journal.read(1)] == [2, 3]
            assert [item.seq for item in await journal.read_lines(0, pattern="log")] == []
            assert await journal.delivered("hook") == 41
            assert await journal.register_route("new") == 3
            dead = await journal.add_dead("hook", make_event(2), "boom", 2)
            assert [d.id for d in await journal.dead_letters("hook")] == [dead]
            assert [d.seq for d in await journal.remove_dead([dead])] == [2]
            assert await journal.prune(max_age=None, max_bytes=0, keep_after=2) == 2
            assert await journal.size() == len(make_event(3).to_json())


async def test_an_append_here_never_waits_for_another_connections_lock(tmp_path: Path) -> None:
    """While another connection holds the write lock, append_here gives up at once
    (the event loop never sleeps on SQLite's busy wait); append in a thread waits
    for the lock and then writes."""
    path = tmp_path / "a.journal.db"
    with trio.fail_after(10):
        async with await AsyncJournal.open(path) as journal:
            assert journal.append_here(events([1]))
            other = sqlite3.connect(path, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")
                started = time.monotonic()
                assert not journal.append_here(events([2]))
                assert time.monotonic() - started < 1.0  # the busy wait is 5 s
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(journal.append, events([2]))
                    await trio.testing.wait_all_tasks_blocked()
                    other.execute("COMMIT")
            finally:
                other.close()
            assert await journal.last_seq() == 2
            assert journal.append_here(events([3]))
            # The busy wait is back for the calls that run in a thread.
            assert journal.journal._db.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
            assert [e.seq for e in await journal.read(0)] == [1, 2, 3]


# -- crashes ----------------------------------------------------------------------------------

_WRITER = """
import sys
from supervisor._core.events import Event
from supervisor._routing.journal import Journal
from supervisor._core.messages import parse_message

journal = Journal.open(sys.argv[1])
seq = 0
while True:
    batch = []
    for _ in range(100):
        seq += 1
        message = parse_message({"type": "ipc", "event": "log", "data": {"message": "x" * seq}})
        batch.append(Event(seq, "loop", seq, "child", message))
    journal.append(batch)
    print(seq, flush=True)
"""


def read_lines_from(proc: subprocess.Popen[bytes], count: int, timeout: float = 20) -> bytes:
    """Read the process's stdout until it has printed ``count`` lines."""
    assert proc.stdout is not None
    seen = b""
    deadline = time.monotonic() + timeout
    while seen.count(b"\n") < count:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"only {seen!r}"
        if select.select([proc.stdout], [], [], remaining)[0]:
            data = os.read(proc.stdout.fileno(), 65536)
            assert data, f"EOF after {seen!r}"
            seen += data
    return seen


def test_kill_9_leaves_a_consistent_prefix(tmp_path: Path) -> None:
    """A writer killed mid-append leaves seqs 1..N without holes, N at least every commit."""
    path = tmp_path / "crash.journal.db"
    proc = popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE)
    seen = read_lines_from(proc, 5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert proc.stdout is not None
    seen += proc.stdout.read()
    committed = max(int(line) for line in seen.split())

    with Journal.open(path) as journal:
        lines = journal.read_lines(0, 10_000_000)
        count = len(lines)
        assert count >= committed
        assert [item.seq for item in lines] == list(range(1, count + 1))
        assert journal.last_seq() == count
        assert journal.size() == sum(len(item.line) for item in lines)
        for item in lines:
            assert Event.from_json(item.line).data.message == "x" * item.seq
        # And it goes on from there.
        journal.append(events([count + 1]))


async def test_checkpoints_run_beside_appends(tmp_path: Path) -> None:
    """Checkpoints use their own connection and thread: appends go on meanwhile,
    and everything is in the database file once the WAL has been folded in."""
    path = tmp_path / "c.journal.db"
    async with await AsyncJournal.open(path) as journal:
        async with trio.open_nursery() as nursery:

            async def checkpoints() -> None:
                while True:
                    await journal.checkpoint()
                    await trio.sleep(0)

            nursery.start_soon(checkpoints)
            for start in range(1, 2001, 100):
                await journal.append(events(range(start, start + 100)))
            nursery.cancel_scope.cancel()
        await journal.checkpoint()
        wal = path.with_name(path.name + "-wal")
        assert wal.exists()
    assert not wal.exists() or wal.stat().st_size == 0  # folded in at close
    with Journal.open(path, readonly=True) as reader:
        assert all_seqs(reader) == list(range(1, 2001))


def test_prune_ages_out_dead_letters(journal: Journal) -> None:
    old, recent = make_event(1), make_event(2)
    journal.append([old, recent])
    journal.add_dead("hook", old, "HTTP 503", 5, failed_at=T0)
    journal.add_dead("hook", recent, "HTTP 503", 5, failed_at=T0 + 3_600_000)
    journal.prune(max_age=1800, max_bytes=None, keep_after=0, now=T0 / 1000 + 3600)
    assert [letter.seq for letter in journal.dead_letters()] == [2]
