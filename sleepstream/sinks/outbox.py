"""A durable, bounded, ordered outbox for stage events (SQLite in WAL mode).

One outbox serves a whole daemon (every device): each row carries its ``device``, and
delivery follows ``seq``, so events stay in order per device (and overall). Every event
is appended here *before* it is published and deleted only once the broker has
acknowledged it (MQTT QoS 1). After a broker outage, or a ``kill -9`` of the daemon and
a restart on the same state directory, the pending events are delivered again in their
original order with their original ``event_id``. The bound is per device
(``max_events``): when one device's backlog is full its oldest events are dropped; the
drops are counted per device (persisted) and logged.

One process owns an outbox file: :meth:`Outbox.open` takes an exclusive ``flock`` on
``<file>.lock`` and refuses a second owner with :class:`StorageError`.
:meth:`Outbox.adopt_leftovers` moves the undelivered events of this daemon's devices out
of outbox files no live process holds (an older daemon with another set of beds, a
re-sharded cluster, or the per-device files of sleepstream <= 0.1), oldest first, so
nothing scored before an upgrade or a re-shard is lost.

SQLite runs with ``journal_mode=WAL`` and ``synchronous=NORMAL``: a commit survives a
crash of the process (the WAL is in the OS page cache); only a power loss can lose the
last commits. One append is a single small transaction (tens of µs).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

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
_DEVICE_INDEX = "CREATE INDEX IF NOT EXISTS outbox_device ON outbox(device, seq)"


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One pending event: ``seq`` orders delivery; ``payload`` is the JSON bytes."""

    seq: int
    event_id: str
    topic: str
    payload: bytes
    device: str = ""


class Outbox:
    """Bounded FIFO of events waiting for a broker acknowledgement, for many devices.

    Parameters
    ----------
    path : Path
        SQLite file (created with its folder); ``":memory:"`` for a volatile outbox.
    max_events : int
        Capacity per device; appending to a device's full backlog drops its oldest
        event(s).
    """

    def __init__(self, path: Path | str, *, max_events: int = 100_000) -> None:
        if max_events < 1:
            raise ValueError(f"outbox max_events must be >= 1, got {max_events}")
        self.path = path
        self.max_events = int(max_events)
        self._db: sqlite3.Connection | None = None
        self._lock: IO[str] | None = None
        self._counts: dict[str, int] = {}

    @property
    def volatile(self) -> bool:
        return str(self.path) == ":memory:"

    # -- lifecycle ---------------------------------------------------------------
    def open(self) -> Outbox:
        """Lock and open (or create) the database; raise :class:`StorageError` if it cannot."""
        if not self.volatile:
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            except OSError as exc:
                raise StorageError(f"outbox {self.path}: cannot create its folder: {exc}") from None
            self._lock = _lock_file(Path(self.path), wait_s=2.0)
        try:
            db = _connect(self.path)
        except StorageError:
            self._unlock()
            raise
        self._db = db
        self._counts = {
            str(d): int(n)
            for d, n in db.execute("SELECT device, COUNT(*) FROM outbox GROUP BY device")
        }
        if len(self):
            log.info("outbox %s: %d undelivered event(s) from a previous run", self.path, len(self))
        return self

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        self._unlock()

    def _unlock(self) -> None:
        if self._lock is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

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
        return sum(self._counts.values())

    def count(self, device: str) -> int:
        """Pending events of one device."""
        return self._counts.get(device, 0)

    @property
    def dropped(self) -> int:
        """Events dropped because a backlog was full, all devices (persisted)."""
        row = self.db.execute(
            "SELECT COALESCE(SUM(value), 0) FROM counters WHERE name LIKE 'dropped%'"
        ).fetchone()
        return int(row[0])

    def dropped_of(self, device: str) -> int:
        """Events of ``device`` dropped because its backlog was full (persisted)."""
        row = self.db.execute(
            "SELECT value FROM counters WHERE name = ?", (_dropped_key(device),)
        ).fetchone()
        return int(row[0]) if row else 0

    def append(self, event_id: str, topic: str, payload: bytes, device: str = "") -> int:
        """Store one event; return how many old events of ``device`` were dropped for it.

        An event whose ``event_id`` is already stored is ignored (idempotent append).
        Raises :class:`StorageError` when the disk is full or the file unwritable.
        """
        db = self.db
        count = self._counts.get(device, 0)
        try:
            db.execute("BEGIN IMMEDIATE")
            cur = db.execute(
                "INSERT OR IGNORE INTO outbox(event_id, topic, payload, created, device) "
                "VALUES (?,?,?,?,?)",
                (event_id, topic, payload, time.time(), device),
            )
            count += cur.rowcount
            dropped = max(0, count - self.max_events)
            if dropped:
                db.execute(
                    "DELETE FROM outbox WHERE seq IN "
                    "(SELECT seq FROM outbox WHERE device = ? ORDER BY seq LIMIT ?)",
                    (device, dropped),
                )
                db.execute(
                    "INSERT INTO counters(name, value) VALUES (?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                    (_dropped_key(device), dropped),
                )
                count = self.max_events
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise StorageError(f"outbox {self.path}: cannot append {event_id}: {exc}") from None
        self._counts[device] = count
        if dropped:
            log.warning(
                "outbox %s: %s: backlog full (%d events): dropped the %d oldest",
                self.path,
                device or "-",
                self.max_events,
                dropped,
            )
        return dropped

    def peek(self, limit: int = 64, after_seq: int = 0) -> list[OutboxItem]:
        """The oldest pending events (``seq > after_seq``), in delivery order."""
        rows = self.db.execute(
            "SELECT seq, event_id, topic, payload, device FROM outbox "
            "WHERE seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit),
        ).fetchall()
        return [OutboxItem(int(s), e, t, bytes(p), str(d)) for s, e, t, p, d in rows]

    def ack(self, seq: int) -> None:
        """Delete one delivered event."""
        self.ack_many([seq])

    def ack_many(self, seqs: Iterable[int]) -> None:
        """Delete delivered events in one transaction."""
        db = self.db
        seqs = list(seqs)
        if not seqs:
            return
        try:
            db.execute("BEGIN IMMEDIATE")
            gone = db.execute(
                f"DELETE FROM outbox WHERE seq IN ({','.join('?' * len(seqs))}) RETURNING device",
                seqs,
            ).fetchall()
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise StorageError(
                f"outbox {self.path}: cannot prune {len(seqs)} event(s): {exc}"
            ) from None
        for (device,) in gone:
            self._counts[device] = self._counts.get(device, 1) - 1

    # -- taking over the leftovers of other outbox files -------------------------------
    def adopt_leftovers(self, devices: Collection[str]) -> int:
        """Move undelivered events of ``devices`` here from unlocked sibling outbox files.

        Every ``*.sqlite`` next to this outbox that no live process holds is read; its
        events of ``devices`` (rows without a device column are those of the per-device
        files of sleepstream <= 0.1, named ``<device>.sqlite``) are appended here in
        their original order and then deleted there; a file left empty is removed.
        Returns the number of events adopted.
        """
        if self.volatile or not devices:
            return 0
        here = Path(self.path).resolve()
        total = 0
        for other in sorted(here.parent.glob("*.sqlite")):
            if other.resolve() == here:
                continue
            try:
                lock = _lock_file(other)
            except StorageError:
                continue  # a live daemon owns it
            try:
                total += self._adopt_from(other, devices)
            except (sqlite3.Error, OSError) as exc:
                log.warning("outbox %s: cannot take over events from %s: %s", self.path, other, exc)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
                lock.close()
        return total

    def _adopt_from(self, other: Path, devices: Collection[str]) -> int:
        src = _connect(other)
        try:
            legacy = other.stem if other.stem in devices else None
            wanted = list(devices)
            marks = ",".join("?" * len(wanted))
            rows = src.execute(
                "SELECT seq, event_id, topic, payload, created, device FROM outbox "
                f"WHERE device IN ({marks}) OR (device = '' AND ? IS NOT NULL) ORDER BY seq",
                (*wanted, legacy),
            ).fetchall()
            if not rows:
                left = src.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
            else:
                db = self.db
                db.execute("BEGIN IMMEDIATE")
                try:
                    for _seq, eid, topic, payload, created, device in rows:
                        dev = str(device or legacy)
                        cur = db.execute(
                            "INSERT OR IGNORE INTO outbox(event_id, topic, payload, created, "
                            "device) VALUES (?,?,?,?,?)",
                            (eid, topic, payload, created, dev),
                        )
                        self._counts[dev] = self._counts.get(dev, 0) + cur.rowcount
                    db.execute("COMMIT")
                except sqlite3.Error:
                    db.execute("ROLLBACK")
                    raise
                seqs = [r[0] for r in rows]
                src.execute("BEGIN IMMEDIATE")
                for i in range(0, len(seqs), 500):
                    chunk = seqs[i : i + 500]
                    src.execute(
                        f"DELETE FROM outbox WHERE seq IN ({','.join('?' * len(chunk))})", chunk
                    )
                src.execute("COMMIT")
                left = src.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
                log.info("outbox %s: took over %d undelivered event(s) from %s",
                         self.path, len(rows), other)  # fmt: skip
        finally:
            src.close()
        if not left:  # the lock file stays: its inode is what other processes lock
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(OSError):
                    os.unlink(f"{other}{suffix}")
        return len(rows)


def _dropped_key(device: str) -> str:
    return f"dropped:{device}" if device else "dropped"


def _connect(path: Path | str) -> sqlite3.Connection:
    """Open (or create, or upgrade) an outbox database in WAL mode."""
    try:
        db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        columns = {row[1] for row in db.execute("PRAGMA table_info(outbox)")}
        if "device" not in columns:  # a per-device outbox of sleepstream <= 0.1
            db.execute("ALTER TABLE outbox ADD COLUMN device TEXT NOT NULL DEFAULT ''")
        db.execute(_DEVICE_INDEX)
    except (sqlite3.Error, OSError) as exc:
        raise StorageError(f"outbox {path}: cannot open: {exc}") from None
    if str(path) != ":memory:":
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                os.chmod(f"{path}{suffix}", 0o600)
    return db


def _lock_file(path: Path, wait_s: float = 0.0) -> IO[str]:
    """Take the exclusive lock of an outbox file (``<file>.lock``, holding our pid).

    Retries for ``wait_s`` seconds: another daemon may hold it for a few milliseconds
    while it takes over leftovers.
    """
    lock_path = Path(f"{path}.lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        handle = os.fdopen(fd, "r+", encoding="utf-8")
    except OSError as exc:
        raise StorageError(f"outbox {path}: cannot create its lock file: {exc}") from None
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError:
            if time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            owner = handle.read().strip() or "?"
            handle.close()
            raise StorageError(
                f"outbox {path}: in use by another sleepstream process (pid {owner}); "
                "each daemon needs its own outbox (another --state-dir, or other beds)"
            ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle
