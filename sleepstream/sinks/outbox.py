"""A durable, bounded, ordered outbox for stage events (SQLite in WAL mode).

Every event is appended here *before* it is published and deleted only once the broker
has acknowledged it (MQTT QoS 1). After a broker outage, or a ``kill -9`` of the daemon
and a restart on the same state directory, the pending events are delivered again in
their original order with their original ``event_id``. When the outbox is full the
oldest events are dropped; the drops are counted (``dropped``) and logged.

SQLite runs with ``journal_mode=WAL`` and ``synchronous=NORMAL``: a commit survives a
crash of the process (the WAL is in the OS page cache); only a power loss can lose the
last commits. One append is a single small transaction (tens of µs).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from sleepstream.errors import StorageError

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One pending event: ``seq`` orders delivery; ``payload`` is the JSON bytes."""

    seq: int
    event_id: str
    topic: str
    payload: bytes


class Outbox:
    """Bounded FIFO of events waiting for a broker acknowledgement.

    Parameters
    ----------
    path : Path
        SQLite file (created with its folder); ``":memory:"`` for a volatile outbox.
    max_events : int
        Capacity; appending to a full outbox drops the oldest event(s).
    """

    def __init__(self, path: Path | str, *, max_events: int = 100_000) -> None:
        if max_events < 1:
            raise ValueError(f"outbox max_events must be >= 1, got {max_events}")
        self.path = path
        self.max_events = int(max_events)
        self._db: sqlite3.Connection | None = None
        self._count = 0

    # -- lifecycle ---------------------------------------------------------------
    def open(self) -> Outbox:
        """Open (or create) the database; raise :class:`StorageError` if it cannot."""
        try:
            if str(self.path) != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(f"outbox {self.path}: cannot open: {exc}") from None
        self._db = db
        self._count = int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        if self._count:
            log.info(
                "outbox %s: %d undelivered event(s) from a previous run", self.path, self._count
            )
        return self

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> Outbox:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("outbox is not open")
        return self._db

    # -- queue operations ----------------------------------------------------------
    def __len__(self) -> int:
        return self._count

    @property
    def dropped(self) -> int:
        """Events dropped because the outbox was full (persisted across restarts)."""
        row = self.db.execute("SELECT value FROM counters WHERE name='dropped'").fetchone()
        return int(row[0]) if row else 0

    def append(self, event_id: str, topic: str, payload: bytes) -> int:
        """Store one event; return how many old events were dropped to make room.

        An event whose ``event_id`` is already stored is ignored (idempotent append).
        Raises :class:`StorageError` when the disk is full or the file unwritable.
        """
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")
            cur = db.execute(
                "INSERT OR IGNORE INTO outbox(event_id, topic, payload, created) VALUES (?,?,?,?)",
                (event_id, topic, payload, time.time()),
            )
            self._count += cur.rowcount
            dropped = 0
            if self._count > self.max_events:
                dropped = self._count - self.max_events
                db.execute(
                    "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)",
                    (dropped,),
                )
                db.execute(
                    "INSERT INTO counters(name, value) VALUES ('dropped', ?) "
                    "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                    (dropped,),
                )
                self._count = self.max_events
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise StorageError(f"outbox {self.path}: cannot append {event_id}: {exc}") from None
        if dropped:
            log.warning(
                "outbox %s full (%d events): dropped the %d oldest",
                self.path,
                self.max_events,
                dropped,
            )
        return dropped

    def peek(self, limit: int = 64, after_seq: int = 0) -> list[OutboxItem]:
        """The oldest pending events (``seq > after_seq``), in delivery order."""
        rows = self.db.execute(
            "SELECT seq, event_id, topic, payload FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit),
        ).fetchall()
        return [OutboxItem(int(s), e, t, bytes(p)) for s, e, t, p in rows]

    def ack(self, seq: int) -> None:
        """Delete one delivered event."""
        try:
            cur = self.db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
        except sqlite3.Error as exc:
            raise StorageError(f"outbox {self.path}: cannot prune seq {seq}: {exc}") from None
        self._count -= cur.rowcount
