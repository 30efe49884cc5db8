"""The durable outbox: order, acknowledgement, bounds, persistence, one owner, take-over."""

import os
import sqlite3
import subprocess
import sys

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


@pytest.mark.slow
def test_outbox_survives_a_kill9_of_its_process(tmp_path):
    """Events not acknowledged when the owning process is SIGKILLed are there after reopening."""
    path = tmp_path / "state" / "o.sqlite"
    code = (
        "import os, signal\n"
        "from sleepstream.sinks.outbox import Outbox\n"
        f"box = Outbox({str(path)!r}).open()\n"
        "for i in range(4):\n"
        "    box.append(f'dev:s:{i}', 'sleepstream/dev/stage', b'{}', 'dev')\n"
        "box.ack(box.peek(1)[0].seq)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert proc.returncode == -9, proc.stderr
    with Outbox(path) as again:  # the dead process's lock is gone with it
        assert [it.event_id for it in again.peek(10)] == ["dev:s:1", "dev:s:2", "dev:s:3"]
        assert again.count("dev") == 3


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


def _dev_fill(box: Outbox, device: str, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        box.append(f"{device}:s:{i}", f"sleepstream/{device}/stage", b"{}", device)


def test_outbox_interleaved_devices_keep_each_order_and_bound(tmp_path):
    """Many devices in one file: delivery order is append order, so each device's order
    holds; the bound is per device, so a chatty bed never evicts a quiet one."""
    with Outbox(tmp_path / "o.sqlite", max_events=4) as box:
        _dev_fill(box, "quiet", 2)
        for i in range(10):
            _dev_fill(box, "busy", 1, start=i)
            if i == 5:
                _dev_fill(box, "quiet", 1, start=2)
        assert box.count("quiet") == 3 and box.count("busy") == 4 and len(box) == 7
        items = box.peek(100)
        quiet = [it.event_id for it in items if it.device == "quiet"]
        busy = [it.event_id for it in items if it.device == "busy"]
        assert quiet == ["quiet:s:0", "quiet:s:1", "quiet:s:2"]
        assert busy == [f"busy:s:{i}" for i in range(6, 10)]
        assert [it.seq for it in items] == sorted(it.seq for it in items)
        assert box.dropped_of("busy") == 6 and box.dropped_of("quiet") == 0
        assert box.dropped == 6
        box.ack_many([it.seq for it in items if it.device == "busy"])
        assert box.count("busy") == 0 and len(box) == 3


def test_outbox_refuses_a_second_owner_with_a_clear_error(tmp_path):
    """Two daemons on one outbox file: the second gets a StorageError naming the owner."""
    path = tmp_path / "o.sqlite"
    with (
        Outbox(path),
        pytest.raises(
            StorageError, match=f"in use by another sleepstream process \\(pid {os.getpid()}\\)"
        ),
    ):
        Outbox(path).open()
    with Outbox(path):  # released on close
        pass


def test_outbox_files_are_private(tmp_path):
    """The database (raw stage history) is created 0600 in a 0700 folder, whatever the umask."""
    old = os.umask(0)
    try:
        with Outbox(tmp_path / "state" / "o.sqlite") as box:
            _dev_fill(box, "bed1", 1)
    finally:
        os.umask(old)
    assert (tmp_path / "state" / "o.sqlite").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700


def _legacy_outbox(path, device, n):
    """An outbox file as sleepstream 0.1 wrote it: one per device, no device column."""
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL "
        "UNIQUE, topic TEXT NOT NULL, payload BLOB NOT NULL, created REAL NOT NULL);"
        "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);"
    )
    for i in range(n):
        db.execute(
            "INSERT INTO outbox(event_id, topic, payload, created) VALUES (?,?,?,0)",
            (f"{device}:old:{i}", f"sleepstream/{device}/stage", b"{}"),
        )
    db.commit()
    db.close()


def test_outbox_adopts_leftovers_of_its_devices_from_unlocked_files_only(tmp_path):
    """Per-device files of 0.1 and outboxes of dead daemons are taken over in order for
    our beds; other beds' events and files held by a live daemon are left alone."""
    folder = tmp_path / "outbox"
    folder.mkdir()
    _legacy_outbox(folder / "bed1.sqlite", "bed1", 3)
    _legacy_outbox(folder / "bed9.sqlite", "bed9", 2)
    with Outbox(folder / "old-daemon.sqlite") as old:
        _dev_fill(old, "bed2", 2)
        _dev_fill(old, "bed7", 1)
    live = Outbox(folder / "live.sqlite").open()
    _dev_fill(live, "bed1", 1, start=100)
    try:
        with Outbox(folder / "new.sqlite") as box:
            assert box.adopt_leftovers({"bed1", "bed2"}) == 5
            _dev_fill(box, "bed1", 1, start=50)  # new events come after the adopted ones
            ids = [it.event_id for it in box.peek(100)]
            assert ids[:3] == ["bed1:old:0", "bed1:old:1", "bed1:old:2"]
            assert [i for i in ids if i.startswith("bed2")] == ["bed2:s:0", "bed2:s:1"]
            assert ids[-1] == "bed1:s:50" and "bed1:s:100" not in ids
            assert box.count("bed1") == 4 and box.count("bed2") == 2
            assert box.adopt_leftovers({"bed1", "bed2"}) == 0  # moved, not copied
    finally:
        live.close()
    assert not (folder / "bed1.sqlite").exists()  # emptied legacy file removed
    assert (folder / "bed9.sqlite").exists()  # another bed's file untouched
    with Outbox(folder / "old-daemon.sqlite") as old:
        assert [it.event_id for it in old.peek(10)] == ["bed7:s:0"]
