"""The event journal: every event of a run, on disk, before a durable route sends it.

A supervise run appends each batch of events to an SQLite database
(``state_dir() / f"{instance}.journal.db"``) before handing them to durable
routes, and records per route the last seq it delivered. After a crash,
even ``kill -9``, the undelivered rest is still there to send again: at least
once. Late subscribers (``supervise events --since SEQ``) replay from it, and
failed deliveries are kept as dead letters.

Why SQLite in WAL mode with ``synchronous=NORMAL``: a committed transaction
is in the WAL file as soon as ``COMMIT`` returns, so it survives the death of
the process (the kernel owns the written pages); only an OS crash or power
loss can lose the last few commits, never the database's consistency. Full
``fsync`` per batch would cost a disk flush per commit for protection the
supervisor does not promise. Readers in other processes (``supervise events
--follow``) see each commit without blocking the writer.

Tables::

    events(seq INTEGER PRIMARY KEY, program, event, received_at, message_id, line)
    routes(name TEXT PRIMARY KEY, delivered_seq)
    dead_letters(id INTEGER PRIMARY KEY, route, seq, error, failed_at, attempts, line)
    meta(id = 1, last_seq, bytes, reserved_seq)

``line`` is the exact bytes of :meth:`Event.to_json`. ``meta`` keeps the
highest seq ever appended (pruning every event must not restart numbering
below a route's delivered mark), the total size of ``line``, so retention
by size never has to scan the table, and the highest seq a run may have
handed out (:meth:`Journal.reserve_seqs`): events are numbered before they
are written, so when writing fails (a full disk) the next run still numbers
above every seq that went to a route. ``PRAGMA user_version`` is the schema
version and ``PRAGMA application_id`` marks the file as ours.

:class:`Journal` is synchronous and owns one connection; callers serialize.
:class:`AsyncJournal` runs it in a worker thread for trio code.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, Self, TypeVar

import trio

from .._core.errors import ConfigError
from .._core.events import Event
from .._core.match import pattern_matcher
from .._paths import check_private_dir, check_private_file, state_dir, validate_instance_name

__all__ = [
    "SCHEMA_VERSION",
    "AsyncJournal",
    "DeadLetter",
    "Journal",
    "JournalLine",
    "instance_of",
    "journal_path",
]

SCHEMA_VERSION = 2
"""The schema this version writes; a journal with a higher one is refused."""

# "IPCJ": tells our databases apart from any other SQLite file at that path.
_APPLICATION_ID = 0x4950434A
_BUSY_TIMEOUT_MS = 5000
_SUFFIX = ".journal.db"
# Rows fetched per query while filtering by pattern in Python.
_SCAN_CHUNK = 1000
# How long reserve_seqs waits for the write lock (it runs on the event loop).
_RESERVE_TIMEOUT = 1.0
# Ids per statement in remove_dead (SQLite limits bound parameters).
_ID_CHUNK = 500
# Events deleted per transaction by AsyncJournal.prune: ~25 ms of holding the lock.
PRUNE_CHUNK = 10_000
_NO_LIMIT = 2**63 - 1

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY,
        program TEXT NOT NULL,
        event TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        message_id TEXT,
        line BLOB NOT NULL
    )""",
    # Retention by age deletes a range of received_at without a table scan.
    "CREATE INDEX IF NOT EXISTS events_received_at ON events (received_at)",
    """CREATE TABLE IF NOT EXISTS routes (
        name TEXT PRIMARY KEY,
        delivered_seq INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS dead_letters (
        id INTEGER PRIMARY KEY,
        route TEXT NOT NULL,
        seq INTEGER NOT NULL,
        error TEXT NOT NULL,
        failed_at INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        line BLOB NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS dead_letters_route ON dead_letters (route, id)",
    """CREATE TABLE IF NOT EXISTS meta (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        last_seq INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        reserved_seq INTEGER NOT NULL DEFAULT 0
    )""",
    "INSERT OR IGNORE INTO meta (id, last_seq, bytes) VALUES (1, 0, 0)",
    f"PRAGMA application_id = {_APPLICATION_ID}",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)

# From each older schema version to the next.
_MIGRATIONS = {
    1: ("ALTER TABLE meta ADD COLUMN reserved_seq INTEGER NOT NULL DEFAULT 0",),
}

_T = TypeVar("_T")
_P = ParamSpec("_P")

_log = logging.getLogger("supervisor.journal")
_MAX_REPORTED = 10_000  # unreadable seqs remembered, so each is reported once


def journal_path(instance: str, directory: Path | None = None) -> Path:
    """The journal of supervise instance ``instance``.

    Args:
        instance: the instance name (as for ``--instance``).
        directory: where journals live; :func:`state_dir` by default.

    Raises:
        ConfigError: ``instance`` is not an instance name
            (:func:`~supervisor._paths.validate_instance_name`).
    """
    validate_instance_name(instance, "instance")
    return (directory if directory is not None else state_dir()) / f"{instance}{_SUFFIX}"


def instance_of(path: Path) -> str:
    """The instance name a journal file belongs to (``NAME.journal.db``)."""
    return path.name.removesuffix(_SUFFIX)


@dataclass(frozen=True, slots=True)
class JournalLine:
    """One journaled event as stored: its seq and its exact JSON line."""

    seq: int
    line: bytes


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event a route gave up on, and why.

    Attributes:
        id: the dead letter's own number (for :meth:`Journal.remove_dead`).
        route: the route that failed to deliver it.
        seq: the event's seq.
        error: the last delivery error, one line.
        failed_at: epoch milliseconds of the last failure.
        attempts: delivery attempts made before giving up.
        event: the event itself.
    """

    id: int
    route: str
    seq: int
    error: str
    failed_at: int
    attempts: int
    event: Event


def _text(value: object) -> str:
    """A column read back as text, whatever a hand edit stored in it."""
    return value if isinstance(value, str) else "" if value is None else str(value)


def _stored_line(value: object) -> bytes:
    """A ``line`` column as bytes: SQLite keeps whatever type was written.

    A line that is not an event is passed on as it is; its readers skip and
    report it (``Journal.read``, ``supervise events``).
    """
    if isinstance(value, bytes):
        return value
    return _text(value).encode(errors="replace")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Journal:
    """The journal database of one supervise instance, over one connection.

    Not thread-safe by itself: the connection may be used from any thread,
    but only from one at a time (:class:`AsyncJournal` sees to that).
    Use :meth:`open`, not the constructor.

    Attributes:
        path: the database file.
        readonly: opened for reading only (by another process than the writer).
    """

    def __init__(self, connection: sqlite3.Connection, path: Path, *, readonly: bool) -> None:
        self._db = connection
        self.path = path
        self.readonly = readonly
        self._checkpointer: sqlite3.Connection | None = None
        self.unreadable = 0
        """Stored lines that no longer parse as events, skipped by :meth:`read`."""
        self.report: Callable[[str], None] = _log.warning
        """Where the one line about each unreadable line goes."""
        self._reported: set[int] = set()
        self._reserver: sqlite3.Connection | None = None

    # -- opening and closing ---------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, readonly: bool = False) -> Journal:
        """Open the journal at ``path``, creating it (and its 0700 directory) if needed.

        Args:
            path: the database file, usually :func:`journal_path`.
            readonly: open an existing journal for reading only, without
                creating or changing anything (``supervise events``).

        Raises:
            ConfigError: the file cannot be opened or created, is not a
                journal (another file or database), or was written by a
                newer version (a higher schema version); read-only, also
                when it does not exist.
        """
        path = Path(path)
        where = str(path)
        connection = _connect_readonly(path) if readonly else _connect(path)
        try:
            version = _check_identity(connection, where)
            if readonly:
                if version == 0:
                    raise ConfigError(where, "is an empty database, not a journal")
            else:
                _set_up(connection, where, version)
        except sqlite3.Error as exc:
            connection.close()
            raise ConfigError(where, f"cannot use as a journal: {exc}") from None
        except BaseException:
            connection.close()
            raise
        return cls(connection, path, readonly=readonly)

    def close(self) -> None:
        """Close the connection; the last one to close folds the WAL back in."""
        for extra in (self._checkpointer, self._reserver):
            if extra is not None:
                extra.close()
        self._checkpointer = self._reserver = None
        self._db.close()

    def checkpoint(self) -> None:
        """Copy the write-ahead log into the database (and fsync it).

        Safe to call from another thread while appends go on: it uses a
        connection of its own, and a PASSIVE checkpoint never waits for
        (or blocks) the writer. Call it every second or so, or the WAL file
        grows without bound.
        """
        if self.readonly:
            return
        if self._checkpointer is None:
            self._checkpointer = sqlite3.connect(
                self.path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                check_same_thread=False,
            )  # fmt: skip
        self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception.

        IMMEDIATE takes the write lock up front, so a read-then-write
        transaction never fails half-way on a lock upgrade.
        """
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            # SQLite has rolled back already after some errors (SQLITE_FULL):
            # a second ROLLBACK would hide the error that matters.
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- events ----------------------------------------------------------------

    def last_seq(self) -> int:
        """The highest seq ever appended (0 for a new journal).

        Pruning does not lower it: a restarted supervise numbers on from here.
        """
        row = self._db.execute("SELECT last_seq FROM meta WHERE id = 1").fetchone()
        return int(row[0]) if row else 0

    def next_seq(self) -> int:
        """The seq a new run starts at: above every seq appended or reserved."""
        row = self._db.execute("SELECT max(last_seq, reserved_seq) FROM meta WHERE id = 1")
        found = row.fetchone()
        return (int(found[0]) if found else 0) + 1

    def reserve_seqs(self, upto: int) -> None:
        """Record that seqs up to ``upto`` may be handed out before they are appended.

        Call it before numbering an event above the last reservation, so a
        run whose appends fail (a full disk) leaves no seq behind that the
        next run would reuse (:meth:`next_seq`). It is one small UPDATE of a
        row that exists, on a connection of its own: safe beside appends in
        another thread, and waiting at most a second for their write lock.

        Raises:
            sqlite3.Error: it could not be recorded.
        """
        if self._reserver is None:
            self._reserver = sqlite3.connect(
                self.path, timeout=_RESERVE_TIMEOUT, isolation_level=None,
                check_same_thread=False,
            )  # fmt: skip
        self._reserver.execute(
            "UPDATE meta SET reserved_seq = max(reserved_seq, ?) WHERE id = 1", (upto,)
        )

    def release_seqs(self) -> None:
        """Give back the seqs reserved above :meth:`last_seq` (none of them went out).

        Call it at the end of a run whose every event was appended, so the
        next run numbers on without a gap.
        """
        self._db.execute("UPDATE meta SET reserved_seq = last_seq WHERE id = 1")

    def append(self, events: Sequence[Event]) -> None:
        """Store ``events`` in one transaction: all of them or, on error, none.

        Batch the calls: each commit costs a WAL write, each row a few µs.

        Raises:
            ValueError: the seqs are not increasing, or not above
                :meth:`last_seq` (a seq can be journaled only once, even
                after its row was pruned).
        """
        if not events:
            return
        rows = [
            (e.seq, e.program, e.message.event, e.received_at, e.message.messageId, e.to_json())
            for e in events
        ]
        seqs = [row[0] for row in rows]
        if any(later <= earlier for earlier, later in itertools.pairwise(seqs)):
            raise ValueError(f"seqs of a batch must increase: {seqs[:10]}...")
        size = sum(len(row[5]) for row in rows)
        with self._transaction() as db:
            last = self.last_seq()
            if seqs[0] <= last:
                raise ValueError(f"seq {seqs[0]} is not above the journal's last seq {last}")
            try:
                db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)", rows)
            except sqlite3.IntegrityError as exc:
                raise ValueError(f"seq already journaled: {exc}") from None
            db.execute(
                "UPDATE meta SET last_seq = ?, bytes = bytes + ? WHERE id = 1", (seqs[-1], size)
            )

    def read_lines(
        self,
        since: int,
        limit: int = 1000,
        *,
        pattern: str | None = None,
        until: int | None = None,
    ) -> list[JournalLine]:
        """Stored events with ``since < seq <= until``, in seq order, as their JSON lines.

        For passing events on without parsing them (``supervise events``,
        ``ctl tail --since``).

        Args:
            since: return only events after this seq (0: from the start).
            limit: at most this many.
            pattern: ``EVENT_GLOB`` or ``PROGRAM_GLOB:EVENT_GLOB``; None for all.
            until: the last seq to consider; None for everything there is.
                A poller passes a :meth:`last_seq` it read first, then goes
                on from there even when the pattern matched nothing.
        """
        matches = pattern_matcher(pattern)
        upper = _NO_LIMIT if until is None else until
        if matches is None:
            rows = self._db.execute(
                "SELECT seq, line FROM events WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
                (since, upper, limit),
            )
            return [JournalLine(seq, _stored_line(line)) for seq, line in rows]
        found: list[JournalLine] = []
        while len(found) < limit:
            chunk = self._db.execute(
                "SELECT seq, program, event, line FROM events"
                " WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
                (since, upper, _SCAN_CHUNK),
            ).fetchall()
            for seq, program, event, line in chunk:
                if matches(_text(program), _text(event)):
                    found.append(JournalLine(seq, _stored_line(line)))
                    if len(found) == limit:
                        break
            if len(chunk) < _SCAN_CHUNK:
                break
            since = chunk[-1][0]
        return found

    def read(
        self,
        since: int,
        limit: int = 1000,
        *,
        pattern: str | None = None,
        until: int | None = None,
    ) -> list[Event]:
        """Stored events after seq ``since``, in seq order (see :meth:`read_lines`).

        A stored line that no longer parses as an event (written by another
        version, or changed by hand) is skipped: it is counted in
        :attr:`unreadable` and reported once, in one line, and reading goes
        on. An empty result therefore still means nothing is left.
        """
        while True:
            lines = self.read_lines(since, limit, pattern=pattern, until=until)
            events: list[Event] = []
            for item in lines:
                event = self._parse(item.seq, item.line)
                if event is not None:
                    events.append(event)
            if events or len(lines) < limit:
                return events
            since = lines[-1].seq  # a whole page was unreadable: read on

    def _parse(self, seq: int, line: bytes | str) -> Event | None:
        try:
            return Event.from_json(line)
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
            self.unreadable += 1
            if seq not in self._reported and len(self._reported) < _MAX_REPORTED:
                self._reported.add(seq)
                detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                self.report(
                    f"journal {self.path}: seq {seq} no longer reads as an event,"
                    f" skipped ({detail})"
                )
            return None

    # -- routes ----------------------------------------------------------------

    def delivered(self, route: str) -> int | None:
        """The last seq ``route`` delivered; None if the journal never saw the route."""
        row = self._db.execute(
            "SELECT delivered_seq FROM routes WHERE name = ?", (route,)
        ).fetchone()
        return None if row is None else int(row[0])

    def register_route(self, route: str, start_seq: int | None = None) -> int:
        """Make ``route`` durable; return the seq it has delivered up to.

        A route the journal already knows keeps its mark, so a restarted
        supervise resumes where it stopped. A new route starts at
        ``start_seq``: by default :meth:`last_seq`, so it does not replay
        history; 0 replays everything still journaled.
        """
        with self._transaction() as db:
            start = self.last_seq() if start_seq is None else start_seq
            db.execute(
                "INSERT OR IGNORE INTO routes (name, delivered_seq) VALUES (?, ?)", (route, start)
            )
            delivered = self.delivered(route)
        assert delivered is not None
        return delivered

    def mark_delivered(self, route: str, seq: int) -> None:
        """Record that ``route`` delivered every event up to ``seq``.

        Never moves a mark backwards: a late acknowledgement of an older
        batch must not cause a second replay.
        """
        self._db.execute(
            "INSERT INTO routes (name, delivered_seq) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE"
            " SET delivered_seq = max(delivered_seq, excluded.delivered_seq)",
            (route, seq),
        )

    def routes(self) -> dict[str, int]:
        """Every durable route the journal knows, with its delivered seq."""
        rows = self._db.execute("SELECT name, delivered_seq FROM routes ORDER BY name")
        return {name: int(seq) for name, seq in rows}

    def forget_route(self, route: str) -> None:
        """Drop a route that is no longer configured, so it stops holding events back."""
        self._db.execute("DELETE FROM routes WHERE name = ?", (route,))

    # -- dead letters ------------------------------------------------------------

    def add_dead(
        self,
        route: str,
        event: Event,
        error: str,
        attempts: int,
        *,
        failed_at: int | None = None,
    ) -> int:
        """Keep ``event`` as a dead letter of ``route``; return its id.

        Args:
            route: the route that gave up.
            event: the event it could not deliver.
            error: the last error, one line.
            attempts: how many deliveries were tried.
            failed_at: epoch milliseconds; now by default.
        """
        cursor = self._db.execute(
            "INSERT INTO dead_letters (route, seq, error, failed_at, attempts, line)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                route,
                event.seq,
                error,
                _now_ms() if failed_at is None else failed_at,
                attempts,
                event.to_json(),
            ),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def dead_letters(self, route: str | None = None) -> list[DeadLetter]:
        """The dead letters of ``route`` (of every route if None), oldest first."""
        columns = "id, route, seq, error, failed_at, attempts, line"
        if route is None:
            rows = self._db.execute(f"SELECT {columns} FROM dead_letters ORDER BY id")
        else:
            rows = self._db.execute(
                f"SELECT {columns} FROM dead_letters WHERE route = ? ORDER BY id", (route,)
            )
        return [dead for dead in map(self._dead_letter, rows) if dead is not None]

    def remove_dead(self, ids: Sequence[int]) -> list[DeadLetter]:
        """Delete the dead letters ``ids``; return those that existed, by id.

        The caller re-queues what it gets back, so an id removed twice (or
        unknown) is simply not returned.
        """
        removed: list[DeadLetter] = []
        with self._transaction() as db:
            for start in range(0, len(ids), _ID_CHUNK):
                chunk = list(ids[start : start + _ID_CHUNK])
                marks = ", ".join(["?"] * len(chunk))
                rows = db.execute(
                    "DELETE FROM dead_letters WHERE id IN (" + marks + ")"
                    " RETURNING id, route, seq, error, failed_at, attempts, line",
                    chunk,
                ).fetchall()
                removed.extend(dead for dead in map(self._dead_letter, rows) if dead is not None)
        return sorted(removed, key=lambda dead: dead.id)

    def _dead_letter(self, row: tuple[int, str, int, str, int, int, bytes]) -> DeadLetter | None:
        id_, route, seq, error, failed_at, attempts, line = row
        event = self._parse(seq, line)
        if event is None:
            return None
        return DeadLetter(id_, route, seq, error, failed_at, attempts, event)

    # -- retention -----------------------------------------------------------------

    def size(self) -> int:
        """Total bytes of the stored event lines (what ``max_bytes`` limits)."""
        row = self._db.execute("SELECT bytes FROM meta WHERE id = 1").fetchone()
        return int(row[0]) if row else 0

    def prune(
        self,
        *,
        max_age: float | None,
        max_bytes: int | None,
        keep_after: int | None,
        now: float | None = None,
        limit: int | None = None,
    ) -> int:
        """Delete old events; return how many.

        Deletes events received more than ``max_age`` seconds ago (and dead
        letters that failed that long ago), then the
        oldest events while the stored lines total more than ``max_bytes``,
        but never an event with seq above ``keep_after``: pass the lowest
        delivered seq among durable routes, so undelivered events stay
        (even beyond ``max_bytes``). The cost is proportional to the rows
        deleted, not to the journal's size. Freed pages are reused by later
        appends; the file does not shrink.

        Args:
            max_age: seconds; None for no age limit.
            max_bytes: total size of the stored lines; None for no size limit.
            keep_after: the highest seq that may go; None if no durable route
                holds events back.
            now: epoch seconds to measure age from; the current time by default.
            limit: delete at most this many events in this call (one
                transaction holds the write lock for as long as it deletes:
                ~2.5 µs a row). Call again while it returns ``limit``.
        """
        protected = _NO_LIMIT if keep_after is None else keep_after
        budget = _NO_LIMIT if limit is None else limit
        cutoff = None
        if max_age is not None:
            cutoff = int(((time.time() if now is None else now) - max_age) * 1000)
        with self._transaction() as db:
            deleted, freed = 0, 0
            if cutoff is not None:
                # Dead letters age out too: nobody retried them in time.
                db.execute("DELETE FROM dead_letters WHERE failed_at < ?", (cutoff,))
            first = db.execute("SELECT min(seq) FROM events").fetchone()[0]
            if first is None or first > protected:
                # Nothing may go: typically a route is stuck and everything
                # delivered is already gone. Don't scan the old rows it holds.
                return 0
            if cutoff is not None:
                # `+seq` keeps the planner on the received_at index instead
                # of a rowid range that may span the whole table.
                sizes = db.execute(
                    "DELETE FROM events WHERE seq IN (SELECT seq FROM events"
                    " WHERE received_at < ? AND +seq <= ? LIMIT ?) RETURNING length(line)",
                    (cutoff, protected, budget),
                ).fetchall()
                deleted, freed = len(sizes), sum(size for (size,) in sizes)
            if max_bytes is not None and deleted < budget:
                count, size = self._prune_oldest(
                    self.size() - freed - max_bytes, protected, budget - deleted
                )
                deleted, freed = deleted + count, freed + size
            if freed:
                db.execute("UPDATE meta SET bytes = bytes - ? WHERE id = 1", (freed,))
        return deleted

    def _prune_oldest(self, excess: int, protected: int, limit: int) -> tuple[int, int]:
        """Delete the oldest events (seq <= ``protected``) that hold ``excess`` bytes.

        At most ``limit`` of them: the caller prunes in chunks.

        Reads only the rows it deletes (and one more). Returns (rows, bytes).
        """
        if excess <= 0:
            return 0, 0
        count, freed, cutoff = 0, 0, 0
        rows = self._db.execute(
            "SELECT seq, length(line) FROM events WHERE seq <= ? ORDER BY seq", (protected,)
        )
        for seq, size in rows:
            count, freed, cutoff = count + 1, freed + size, seq
            if freed >= excess or count >= limit:
                break
        rows.close()
        if count:
            self._db.execute("DELETE FROM events WHERE seq <= ?", (cutoff,))
        return count, freed


def _check_files(path: Path) -> None:
    """The journal and SQLite's -wal and -shm beside it: ours, private, no symlinks.

    Whoever else could write the journal could inject events that a durable
    webhook then signs and sends; whoever could read it reads every event.
    A symlink there would make supervise write (as root: create) its target.

    Raises:
        ConfigError: naming the file and what is wrong with it.
    """
    for suffix in ("", "-wal", "-shm"):
        check_private_file(path.with_name(path.name + suffix))


def _connect(path: Path) -> sqlite3.Connection:
    """Open ``path`` for writing, creating the directory (0700) and file (0600).

    Events may carry anything a child prints, so only the user may read them.
    SQLite gives its -wal and -shm files the database file's permissions.
    The directory must be ours and writable by nobody else (then nobody else
    can put a file or symlink in it either), and the files are checked
    before SQLite opens them (:func:`_check_files`).
    """
    where = str(path)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(str(path.parent), f"cannot create: {exc.strerror or exc}") from None
    check_private_dir(path.parent)
    _check_files(path)
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        os.close(os.open(path, flags, 0o600))
    except OSError as exc:
        raise ConfigError(where, f"cannot create: {exc.strerror or exc}") from None
    _check_files(path)  # what was created is what was checked
    try:
        # isolation_level=None: no implicit transactions; _transaction() is explicit.
        return sqlite3.connect(
            path,
            timeout=_BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
    except sqlite3.Error as exc:
        raise ConfigError(where, f"cannot open: {exc}") from None


def _connect_readonly(path: Path) -> sqlite3.Connection:
    """Open an existing journal without creating or changing anything."""
    where = str(path)
    _check_files(path)
    if not path.exists():
        raise ConfigError(where, "no such journal")
    uri = "file:" + urllib.parse.quote(str(path.absolute())) + "?mode=ro"
    try:
        return sqlite3.connect(
            uri,
            uri=True,
            timeout=_BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
    except sqlite3.Error as exc:
        raise ConfigError(where, f"cannot open: {exc}") from None


def _check_identity(connection: sqlite3.Connection, where: str) -> int:
    """The schema version of a journal, 0 for a new empty database.

    Raises:
        ConfigError: another program's database, or a newer schema.
        sqlite3.DatabaseError: not a database at all.
    """
    connection.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    application_id = connection.execute("PRAGMA application_id").fetchone()[0]
    version = int(connection.execute("PRAGMA user_version").fetchone()[0])
    if application_id == _APPLICATION_ID:
        if version > SCHEMA_VERSION:
            raise ConfigError(
                where,
                f"journal schema version {version} is newer than this supervise"
                f" supports ({SCHEMA_VERSION}); upgrade ipc-supervisor",
            )
        if version > 0:
            # The header alone proves little: a truncated or hand-made file
            # can carry it without the tables every read and write needs.
            rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            missing = {"events", "meta"} - {row[0] for row in rows}
            if missing:
                raise ConfigError(
                    where, f"is a damaged journal: no {', '.join(sorted(missing))} table"
                )
        return version
    has_tables = connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    if application_id != 0 or version != 0 or has_tables:
        raise ConfigError(where, "is another program's SQLite database, not a journal")
    return 0


def _set_up(connection: sqlite3.Connection, where: str, version: int) -> None:
    """WAL mode, durability level and (for a new journal) the schema."""
    mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise ConfigError(where, f"cannot use write-ahead logging (journal mode {mode})")
    connection.execute("PRAGMA synchronous = NORMAL")
    # The writer never checkpoints: a checkpoint fsyncs the database, which
    # would stall the append that happened to trigger it (and every durable
    # delivery behind it) for milliseconds. Journal.checkpoint() does it on
    # a connection of its own, off the append path.
    connection.execute("PRAGMA wal_autocheckpoint = 0")
    if version == SCHEMA_VERSION:
        return
    connection.execute("BEGIN IMMEDIATE")
    try:
        # Another process may have created or upgraded it since we looked.
        version = _check_identity(connection, where)
        if version == 0:
            for statement in _SCHEMA:
                connection.execute(statement)
        elif version < SCHEMA_VERSION:
            for old in range(version, SCHEMA_VERSION):
                for statement in _MIGRATIONS[old]:
                    connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def _in_thread(
    method: Callable[Concatenate[Journal, _P], _T],
) -> Callable[Concatenate[AsyncJournal, _P], Coroutine[Any, Any, _T]]:
    """``method`` of :class:`Journal` as an async method of :class:`AsyncJournal`.

    Same signature and docstring, so the two classes cannot drift apart.
    """

    @functools.wraps(method)
    async def call(self: AsyncJournal, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        return await self._run(functools.partial(method, self.journal, *args, **kwargs))

    call.__qualname__ = f"AsyncJournal.{method.__name__}"
    return call


class AsyncJournal:
    """A :class:`Journal` for trio code: each call runs in a worker thread.

    Disk writes and fsync-free commits still take milliseconds now and then
    (a WAL checkpoint), which must not stall the event loop. Calls are
    serialized through a ``CapacityLimiter(1)``, so the one connection is
    never used by two threads at once; a cancelled call finishes its
    transaction before the cancellation takes effect.

    Attributes:
        journal: the synchronous journal underneath.
    """

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self._limiter = trio.CapacityLimiter(1)
        self._checkpoint_limiter = trio.CapacityLimiter(1)

    async def checkpoint(self) -> None:
        """:meth:`Journal.checkpoint` in a thread of its own, beside the appends."""
        await trio.to_thread.run_sync(self.journal.checkpoint, limiter=self._checkpoint_limiter)

    @classmethod
    async def open(cls, path: str | os.PathLike[str], *, readonly: bool = False) -> AsyncJournal:
        """Open (or create) the journal at ``path``; see :meth:`Journal.open`."""
        opener = functools.partial(Journal.open, path, readonly=readonly)
        return cls(await trio.to_thread.run_sync(opener))

    async def _run(self, call: Callable[[], _T]) -> _T:
        return await trio.to_thread.run_sync(call, limiter=self._limiter)

    def append_here(self, events: Sequence[Event]) -> bool:
        """:meth:`Journal.append` on the calling thread, if it can be done without waiting.

        Returns False, having done nothing, when a call is running in a
        worker thread, or another connection (another process) holds the
        write lock: then await :meth:`append`, which waits in a thread. For
        the router's group commits: a commit of a few hundred rows costs a
        millisecond or two of CPU, while a thread for it costs a round trip
        and, worse, a fight for the GIL with the event loop on every row
        (SQLite releases it around each step). A commit with
        ``synchronous=NORMAL`` writes to the WAL and does not wait for the
        disk; checkpoints (which do) run on a connection and thread of their
        own. The lock is tried without SQLite's busy wait, so the event loop
        never sleeps on it.

        Raises:
            ValueError, sqlite3.Error: as :meth:`Journal.append`.
        """
        try:
            self._limiter.acquire_nowait()
        except trio.WouldBlock:
            return False
        db = self.journal._db
        try:
            db.execute("PRAGMA busy_timeout = 0")
            try:
                self.journal.append(events)
            except sqlite3.OperationalError as exc:
                # SQLITE_BUSY and its extended codes: another connection
                # holds the write lock ("database is locked").
                if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                    raise
                return False
            finally:
                db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        finally:
            self._limiter.release()
        return True

    async def aclose(self) -> None:
        """Close the journal, even when the calling task is being cancelled."""
        with trio.CancelScope(shield=True):
            async with self._checkpoint_limiter:
                await self._run(self.journal.close)

    async def prune(
        self,
        *,
        max_age: float | None,
        max_bytes: int | None,
        keep_after: int | None,
        now: float | None = None,
    ) -> int:
        """:meth:`Journal.prune`, a chunk of :data:`PRUNE_CHUNK` events per transaction.

        A minute of events at 10,000 a second is 600,000 rows, seconds of
        deleting: in one transaction that would hold the write lock, and
        this journal's one thread, for all of it, and appends and durable
        routes would stall behind it. Between chunks they get their turn.
        """
        when = time.time() if now is None else now
        total = 0
        while True:
            deleted = await self._run(
                functools.partial(
                    self.journal.prune,
                    max_age=max_age,
                    max_bytes=max_bytes,
                    keep_after=keep_after,
                    now=when,
                    limit=PRUNE_CHUNK,
                )
            )
            total += deleted
            if deleted < PRUNE_CHUNK:
                return total

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    last_seq = _in_thread(Journal.last_seq)
    next_seq = _in_thread(Journal.next_seq)
    release_seqs = _in_thread(Journal.release_seqs)
    append = _in_thread(Journal.append)
    read_lines = _in_thread(Journal.read_lines)
    read = _in_thread(Journal.read)
    delivered = _in_thread(Journal.delivered)
    register_route = _in_thread(Journal.register_route)
    mark_delivered = _in_thread(Journal.mark_delivered)
    routes = _in_thread(Journal.routes)
    forget_route = _in_thread(Journal.forget_route)
    add_dead = _in_thread(Journal.add_dead)
    dead_letters = _in_thread(Journal.dead_letters)
    remove_dead = _in_thread(Journal.remove_dead)
    size = _in_thread(Journal.size)
