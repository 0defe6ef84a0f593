"""ts-ipc's state: one SQLite database that many ``ts-ipc`` processes share.

Everything ts-ipc knows lives in ``ipc.sqlite3`` under :func:`ipc_home`
(``$TS_IPC_HOME``, by default ``~/.local/state/ipc-supervisor/ipc``): the
message queue with each message's outcome, the subscriptions, workflow runs
and their steps, and the event log. Workflows themselves are TOML files in
``workflows/`` beside it, so a person can read and edit them; ``data``
messages are also appended to ``data/SESSION.jsonl``.

Why SQLite rather than the original's one-file-per-message: a message's
state changes (queued, delivered, failed, expired) must be atomic and
visible to every process at once, and two senders, ``ts-ipc serve`` and a
supervise instance may all try to deliver at the same moment. The database
runs in WAL mode (readers never wait for the writer) with a busy timeout,
and a delivery is *claimed* by one conditional update
(:meth:`Store.claim`), so exactly one process delivers each message. A claim
left by a process that died is released after :data:`CLAIM_SECONDS`.

This module does no tmux or network I/O and imports neither trio nor
pydantic: ``ts-ipc send`` must start in milliseconds.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple

from .._paths import ipc_home

__all__ = [
    "CLAIM_SECONDS",
    "DEFAULT_TTL",
    "KINDS",
    "Message",
    "MessageKind",
    "Store",
    "Subscription",
    "ipc_home",
    "log_line",
    "new_message_id",
]

MessageKind = Literal["command", "notification", "data"]
KINDS: tuple[MessageKind, ...] = ("command", "notification", "data")
ACTIONS = ("notify", "command", "data")
"""What a subscription does with an event: as a notification, a command or data."""
ACTION_KIND: Mapping[str, MessageKind] = {
    "notify": "notification",
    "command": "command",
    "data": "data",
}
DEFAULT_TTL = 3600.0
"""Seconds a message waits for its session before it expires."""
CLAIM_SECONDS = 60.0
"""A delivery claimed longer ago than this belonged to a process that died."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    created REAL NOT NULL,
    source TEXT NOT NULL,
    target TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    origin TEXT NOT NULL DEFAULT 'send',
    event TEXT,
    state TEXT NOT NULL DEFAULT 'queued',
    if_busy TEXT NOT NULL DEFAULT 'wait',
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    via TEXT,
    updated REAL NOT NULL,
    expires REAL NOT NULL,
    claimed_by TEXT,
    claimed_at REAL
);
CREATE INDEX IF NOT EXISTS messages_waiting ON messages (target, seq)
    WHERE state IN ('queued', 'delivering');
CREATE TABLE IF NOT EXISTS subscriptions (
    session TEXT NOT NULL,
    event TEXT NOT NULL,
    action TEXT NOT NULL,
    filter TEXT,
    allow_child_commands INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    PRIMARY KEY (session, event)
);
CREATE TABLE IF NOT EXISTS log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    action TEXT NOT NULL,
    line TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    started REAL NOT NULL,
    finished REAL,
    exit_code INTEGER
);
CREATE TABLE IF NOT EXISTS steps (
    run TEXT NOT NULL,
    name TEXT NOT NULL,
    session TEXT NOT NULL,
    command TEXT NOT NULL,
    state TEXT NOT NULL,
    exit_code INTEGER,
    started REAL,
    duration REAL,
    PRIMARY KEY (run, name)
);
"""


def new_message_id(now: float | None = None) -> str:
    """``msg-`` with the millisecond time and 6 random hex digits: sortable, unique."""
    millis = int((time.time() if now is None else now) * 1000)
    return f"msg-{millis}-{os.urandom(3).hex()}"


def iso_time(at: float) -> str:
    """``2025-10-01T05:15:23+00:00``, the original's log time format."""
    return datetime.fromtimestamp(int(at), UTC).isoformat()


def log_line(at: float, action: str, text: str) -> str:
    """One line of ``ts-ipc events``: ``TIME ACTION TEXT``."""
    return f"{iso_time(at)} {action} {text}"


class Message(NamedTuple):
    """One message and where it stands."""

    seq: int
    id: str
    created: float
    source: str
    target: str
    kind: MessageKind
    body: str
    origin: str
    event: str | None
    state: str
    if_busy: str
    attempts: int
    last_error: str | None
    via: str | None
    updated: float
    expires: float

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Message:
        return cls(
            seq=row["seq"],
            id=row["id"],
            created=row["created"],
            source=row["source"],
            target=row["target"],
            kind=row["kind"],
            body=row["body"],
            origin=row["origin"],
            event=row["event"],
            state=row["state"],
            if_busy=row["if_busy"],
            attempts=row["attempts"],
            last_error=row["last_error"],
            via=row["via"],
            updated=row["updated"],
            expires=row["expires"],
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "from": self.source,
            "to": self.target,
            "type": self.kind,
            "message": self.body,
            "origin": self.origin,
            "event": self.event,
            "state": self.state,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "via": self.via,
            "created": iso_time(self.created),
            "updated": iso_time(self.updated),
        }


class Subscription(NamedTuple):
    """SESSION hears events whose name matches the glob EVENT."""

    session: str
    event: str
    action: str
    filter: str | None = None
    allow_child_commands: bool = False


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_uid != os.getuid():
        raise PermissionError(f"{path}: belongs to uid {info.st_uid}; refusing to use it")
    if info.st_mode & 0o077:
        os.chmod(path, 0o700)


class Store:
    """The database, opened by one process; every method is one transaction.

    Not shared between threads: each process (or thread) opens its own.
    """

    def __init__(self, home: Path | None = None) -> None:
        self.home = ipc_home() if home is None else home
        _private_dir(self.home)
        path = self.home / "ipc.sqlite3"
        # The database and its WAL files are created 0600: only the user.
        old_mask = os.umask(0o077)
        try:
            self._db = sqlite3.connect(
                path, timeout=10, isolation_level=None, check_same_thread=False
            )
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA busy_timeout = 10000")
            if self._db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            if not self._db.execute(
                "SELECT 1 FROM sqlite_master WHERE name = 'messages'"
            ).fetchone():
                # One transaction: concurrent first runs create it once.
                self._db.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} COMMIT;")
        finally:
            os.umask(old_mask)
        self.claimant = f"{os.getpid()}-{os.urandom(2).hex()}"

    def prompt_programs(self) -> frozenset[str]:
        """Programs besides shells that take a typed line: ``settings.toml``'s ``prompt_programs``.

        A person lists the interactive programs they send commands to (an AI
        agent's CLI: ``prompt_programs = ["claude", "aider"]``); a pane
        running anything else is busy. A file that cannot be read is
        reported once per call as ValueError with the file and key.
        """
        path = self.home / "settings.toml"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return frozenset()
        import tomllib

        try:
            value = tomllib.loads(text).get("prompt_programs", [])
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: not TOML: {exc}") from None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{path}: prompt_programs: expected a list of program names")
        return frozenset(value)

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (BEGIN IMMEDIATE: no upgrade deadlock)."""
        db = self._db
        if db.in_transaction:
            yield db
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # -- the log ---------------------------------------------------------

    def log(
        self, action: str, text: str, record: Mapping[str, Any], at: float | None = None
    ) -> None:
        """Append one line to the event log (``ts-ipc events``)."""
        now = time.time() if at is None else at
        entry = {"time": iso_time(now), "action": action, **record}
        with self._write() as db:
            db.execute(
                "INSERT INTO log (at, action, line, record) VALUES (?, ?, ?, ?)",
                (now, action, log_line(now, action, text), json.dumps(entry, ensure_ascii=False)),
            )

    def log_tail(self, count: int) -> list[tuple[int, str, str]]:
        """The last ``count`` log entries, oldest first, as (seq, line, JSON record)."""
        rows = self._db.execute(
            "SELECT seq, line, record FROM log ORDER BY seq DESC LIMIT ?", (count,)
        ).fetchall()
        return [(row["seq"], row["line"], row["record"]) for row in reversed(rows)]

    def last_log_seq(self) -> int:
        row = self._db.execute("SELECT MAX(seq) FROM log").fetchone()
        return int(row[0] or 0)

    def log_after(self, seq: int) -> list[tuple[int, str, str]]:
        rows = self._db.execute(
            "SELECT seq, line, record FROM log WHERE seq > ? ORDER BY seq", (seq,)
        ).fetchall()
        return [(row["seq"], row["line"], row["record"]) for row in rows]

    # -- messages --------------------------------------------------------

    def enqueue(
        self,
        source: str,
        target: str,
        kind: MessageKind,
        body: str,
        *,
        origin: str = "send",
        event: str | None = None,
        ttl: float = DEFAULT_TTL,
        state: str = "queued",
        last_error: str | None = None,
        if_busy: str = "wait",
    ) -> Message:
        """Record a new message (queued unless ``state`` says otherwise) and log SEND."""
        now = time.time()
        message_id = new_message_id(now)
        with self._write() as db:
            db.execute(
                "INSERT INTO messages (id, created, source, target, kind, body, origin, event,"
                " state, last_error, if_busy, updated, expires) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    message_id,
                    now,
                    source,
                    target,
                    kind,
                    body,
                    origin,
                    event,
                    state,
                    last_error,
                    if_busy,
                    now,
                    now + ttl,
                ),
            )
            if origin == "send":
                self.log(
                    "SEND",
                    f"{source} → {target} [{kind}] {message_id}",
                    {"id": message_id, "from": source, "to": target, "type": kind},
                    at=now,
                )
        return self.message(message_id)

    def message(self, message_id: str) -> Message:
        row = self._db.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()
        if row is None:
            raise KeyError(message_id)
        return Message.from_row(row)

    def messages(self, *, limit: int = 50, state: str | None = None) -> list[Message]:
        """The newest ``limit`` messages (optionally in one state), oldest first."""
        where, args = ("WHERE state = ?", (state,)) if state else ("", ())
        rows = self._db.execute(
            f"SELECT * FROM messages {where} ORDER BY seq DESC LIMIT ?", (*args, limit)
        ).fetchall()
        return [Message.from_row(row) for row in reversed(rows)]

    def waiting_targets(self) -> list[str]:
        """Sessions with messages queued for them, in the order they were first sent."""
        rows = self._db.execute(
            "SELECT target, MIN(seq) AS first FROM messages WHERE state IN ('queued', 'delivering')"
            " GROUP BY target ORDER BY first"
        ).fetchall()
        return [row["target"] for row in rows]

    def count_waiting(self, target: str) -> int:
        row = self._db.execute(
            "SELECT COUNT(*) FROM messages WHERE target = ? AND state IN ('queued', 'delivering')",
            (target,),
        ).fetchone()
        return int(row[0])

    def claim_next(self, target: str, kind: str | None = None) -> Message | None:
        """Claim the oldest waiting message for ``target``; None when none is free.

        Messages to one session are delivered in order: while an older one
        is claimed by a live process, nothing newer is handed out. With
        ``kind``, only a message of that kind is claimed.
        """
        now = time.time()
        with self._write() as db:
            row = db.execute(
                "SELECT * FROM messages WHERE target = ? AND state IN ('queued', 'delivering')"
                " ORDER BY seq LIMIT 1",
                (target,),
            ).fetchone()
            if row is None:
                return None
            if row["state"] == "delivering" and now - (row["claimed_at"] or 0) < CLAIM_SECONDS:
                return None
            if kind is not None and row["kind"] != kind:
                return None
            db.execute(
                "UPDATE messages SET state = 'delivering', claimed_by = ?, claimed_at = ?,"
                " attempts = attempts + 1, updated = ? WHERE seq = ?",
                (self.claimant, now, now, row["seq"]),
            )
        return self.message(row["id"])

    def finish(
        self, message: Message, state: str, *, via: str | None = None, error: str | None = None
    ) -> Message:
        """Record the outcome of a claimed delivery and log it.

        ``state`` is ``delivered``, ``failed``, ``expired``, or ``queued``
        (not yet: it waits, with ``error`` saying why).
        """
        now = time.time()
        with self._write() as db:
            db.execute(
                "UPDATE messages SET state = ?, via = COALESCE(?, via), last_error = ?,"
                " updated = ?, claimed_by = NULL, claimed_at = NULL WHERE seq = ?",
                (state, via, error, now, message.seq),
            )
            record = {
                "id": message.id,
                "from": message.source,
                "to": message.target,
                "type": message.kind,
                "attempts": message.attempts,
            }
            if state == "delivered":
                self.log(
                    "DELIVER",
                    f"{message.target} [{message.kind}] {message.id}",
                    {**record, "via": via},
                    at=now,
                )
            elif state in ("failed", "expired"):
                self.log(
                    "FAIL" if state == "failed" else "EXPIRE",
                    f"{message.target} [{message.kind}] {message.id}: {error}",
                    {**record, "error": error},
                    at=now,
                )
        return self.message(message.id)

    def expire_overdue(self) -> list[Message]:
        """Mark every waiting message past its ttl as expired; return them."""
        now = time.time()
        rows = self._db.execute(
            "SELECT * FROM messages WHERE state = 'queued' AND expires <= ? ORDER BY seq", (now,)
        ).fetchall()
        expired = []
        for row in rows:
            message = Message.from_row(row)
            waited = message.last_error or "the session did not appear"
            expired.append(
                self.finish(
                    message,
                    "expired",
                    error=f"ttl of {message.expires - message.created:g} s passed: {waited}",
                )
            )
        return expired

    # -- subscriptions ---------------------------------------------------

    def subscribe(self, subscription: Subscription) -> None:
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO subscriptions (session, event, action, filter,"
                " allow_child_commands, created) VALUES (?,?,?,?,?,?)",
                (
                    subscription.session,
                    subscription.event,
                    subscription.action,
                    subscription.filter,
                    int(subscription.allow_child_commands),
                    time.time(),
                ),
            )
            self.log(
                "SUBSCRIBE",
                f"{subscription.session} [{subscription.event}] ({subscription.action})",
                {
                    "session": subscription.session,
                    "event": subscription.event,
                    "action": subscription.action,
                    "filter": subscription.filter,
                },
            )

    def unsubscribe(self, session: str, event: str) -> bool:
        with self._write() as db:
            removed = db.execute(
                "DELETE FROM subscriptions WHERE session = ? AND event = ?", (session, event)
            ).rowcount
            if removed:
                self.log(
                    "UNSUBSCRIBE",
                    f"{session} [{event}]",
                    {"session": session, "event": event},
                )
        return bool(removed)

    def subscriptions(self) -> list[Subscription]:
        rows = self._db.execute("SELECT * FROM subscriptions ORDER BY session, created").fetchall()
        return [
            Subscription(
                session=row["session"],
                event=row["event"],
                action=row["action"],
                filter=row["filter"],
                allow_child_commands=bool(row["allow_child_commands"]),
            )
            for row in rows
        ]

    def data_version(self) -> int:
        """Changes when another connection commits: cheap "did anything change?"."""
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])
