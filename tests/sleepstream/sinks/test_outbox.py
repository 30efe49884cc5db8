"""The durable outbox: order, acknowledgement, bounds, persistence."""

import sqlite3

import pytest

from sleepstream.errors import StorageError
from sleepstream.sinks.outbox import Outbox


def _fill(box: Outbox, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        box.append(f"dev:s:{i}", "sleepstream/dev/stage", f'{{"i": {i}}}'.encode())


def test_outbox_peek_returns_events_in_append_order(tmp_path):
    """Pending events come back oldest first with their ids and payloads."""
    with Outbox(tmp_path / "o.sqlite") as box:
        _fill(box, 5)
        items = box.peek(10)
    assert [it.event_id for it in items] == [f"dev:s:{i}" for i in range(5)]
    assert items[2].payload == b'{"i": 2}'
    assert len({it.seq for it in items}) == 5


def test_outbox_ack_removes_only_the_acknowledged_event(tmp_path):
    """Acknowledging one event deletes it and leaves the others in order."""
    with Outbox(tmp_path / "o.sqlite") as box:
        _fill(box, 3)
        first, second, third = box.peek(3)
        box.ack(second.seq)
        assert [it.event_id for it in box.peek(10)] == [first.event_id, third.event_id]
        assert len(box) == 2


def test_outbox_survives_reopen_like_a_restart(tmp_path):
    """Events not acknowledged before the file is closed are there after reopening."""
    path = tmp_path / "state" / "o.sqlite"
    box = Outbox(path).open()
    _fill(box, 4)
    box.ack(box.peek(1)[0].seq)
    # no close(): the process "dies" here; a second connection sees the WAL commits
    again = Outbox(path).open()
    assert [it.event_id for it in again.peek(10)] == ["dev:s:1", "dev:s:2", "dev:s:3"]
    again.close()
    box.close()


def test_outbox_full_drops_oldest_and_counts_them(tmp_path):
    """Beyond max_events the oldest events go; the drop count is kept across reopen."""
    path = tmp_path / "o.sqlite"
    with Outbox(path, max_events=3) as box:
        _fill(box, 5)
        assert len(box) == 3
        assert [it.event_id for it in box.peek(10)] == ["dev:s:2", "dev:s:3", "dev:s:4"]
        assert box.dropped == 2
    with Outbox(path, max_events=3) as box:
        assert box.dropped == 2


def test_outbox_append_is_idempotent_per_event_id(tmp_path):
    """Appending the same event_id twice stores it once."""
    with Outbox(tmp_path / "o.sqlite") as box:
        box.append("a", "t", b"1")
        box.append("a", "t", b"1")
        assert len(box) == 1


def test_outbox_uses_wal_journal(tmp_path):
    """The database runs in WAL mode (durable appends without blocking readers)."""
    path = tmp_path / "o.sqlite"
    with Outbox(path) as box:
        _fill(box, 1)
        mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode.lower() == "wal"


def test_outbox_unwritable_location_raises_storage_error(tmp_path):
    """A state directory that cannot be created is a StorageError naming the path."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StorageError, match="file"):
        Outbox(blocker / "sub" / "o.sqlite").open()
