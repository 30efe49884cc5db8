"""The delivery queue: order, acknowledgement, and publishing again after a lost connection."""

import asyncio
import time

import pytest

from sleepstream.errors import StorageError
from sleepstream.metrics import Metrics
from sleepstream.sinks.mqtt_queue import DeliveryQueue
from sleepstream.sinks.outbox import Outbox


def _queue(tmp_path, outbox=None, **kw) -> DeliveryQueue:
    metrics = Metrics()
    for dev in ("bed1", "bed2"):
        metrics.add_device(dev)
    q = DeliveryQueue(
        outbox or Outbox(tmp_path / "o.sqlite"), ["bed1", "bed2"],
        stage_topic=lambda d: f"sleepstream/{d}/stage", metrics=metrics, **kw,
    )  # fmt: skip
    q.open()
    return q


def _put(q: DeliveryQueue, device: str, *indices: int) -> None:
    for i in indices:
        q.put(device, {"event_id": f"{device}:s:{i}", "epoch_index": i})


def _deliver(q: DeliveryQueue, limit: int = 100) -> list[str]:
    """Publish one batch 'successfully'; return its event ids."""
    items = q.batch(limit)
    q.acknowledged(items)
    return [it.event_id for it in items]


def _resent_total(q: DeliveryQueue, device: str) -> float:
    return q.metrics.registry.get_sample_value(
        "sleepstream_events_resent_total", {"device": device}
    )


def test_connection_lost_publishes_the_acknowledged_events_again_first_then_the_pending(
    tmp_path,
):
    """Acknowledged events come back at the head, in their order, ahead of what is still
    pending; counted as resent, not as delivered twice; drained() waits for them."""
    q = _queue(tmp_path)
    _put(q, "bed1", 0, 1)
    _put(q, "bed2", 0)
    _put(q, "bed1", 2)
    assert _deliver(q) == ["bed1:s:0", "bed1:s:1", "bed2:s:0", "bed1:s:2"]
    _put(q, "bed1", 3)
    assert q.connection_lost() == 4
    assert q.resending == 4 and q.pending == 1
    assert [it.event_id for it in q.batch(2)] == ["bed1:s:0", "bed1:s:1"]
    assert _deliver(q, 2) == ["bed1:s:0", "bed1:s:1"]
    assert _deliver(q) == ["bed2:s:0", "bed1:s:2"]
    assert _deliver(q) == ["bed1:s:3"]
    assert q.resending == 0 and q.pending == 0 and _deliver(q) == []
    assert q.stats["bed1"].delivered == 4 and q.stats["bed1"].resent == 3
    assert q.stats["bed2"].delivered == 1 and q.stats["bed2"].resent == 1
    assert _resent_total(q, "bed1") == 3 and _resent_total(q, "bed2") == 1
    asyncio.run(asyncio.wait_for(q.drained(), 1))
    q.close()


def test_a_second_loss_before_the_resend_finished_keeps_each_event_once_in_order(tmp_path):
    """Lost again while sending again: the events go out once more, in their first order."""
    q = _queue(tmp_path)
    _put(q, "bed1", 0, 1, 2)
    _deliver(q)
    q.connection_lost()
    assert _deliver(q, 1) == ["bed1:s:0"]  # then the connection is lost again
    assert q.connection_lost() == 3
    assert [it.event_id for it in q.batch(10)] == ["bed1:s:0", "bed1:s:1", "bed1:s:2"]
    q.close()


def test_drained_waits_for_the_events_due_again(tmp_path):
    q = _queue(tmp_path)
    _put(q, "bed1", 0)
    _deliver(q)
    q.connection_lost()

    async def scenario():
        waiter = asyncio.ensure_future(q.drained())
        await asyncio.sleep(0.05)
        assert not waiter.done()
        _deliver(q)
        await asyncio.wait_for(waiter, 1)

    asyncio.run(scenario())
    q.close()


def test_only_the_window_is_published_again(tmp_path):
    """Events acknowledged longer than ``resend_window_s`` before the loss are not sent
    again; a window of 0 sends nothing again; a negative one is refused."""
    q = _queue(tmp_path, resend_window_s=0.5)
    _put(q, "bed1", 0)
    _deliver(q)
    time.sleep(0.7)
    _put(q, "bed1", 1)
    _deliver(q)
    assert q.connection_lost() == 1 and q.batch(10)[0].event_id == "bed1:s:1"
    q.close()

    never = _queue(tmp_path / "never", resend_window_s=0)
    _put(never, "bed1", 0)
    _deliver(never)
    assert never.connection_lost() == 0 and never.batch(10) == []
    never.close()
    with pytest.raises(ValueError, match="resend_window_s"):
        _queue(tmp_path / "bad", resend_window_s=-1)


def test_events_kept_in_memory_on_a_full_disk_are_published_again_without_losing_others(
    tmp_path,
):
    """Disk full: events wait in memory (seq -1). Publishing them again after a loss must
    not consume the in-memory events still pending."""

    class FullDisk(Outbox):
        """A real outbox whose appends fail, like a full disk."""

        def append(self, event_id, topic, payload, device=""):
            raise StorageError(f"outbox {self.path}: database or disk is full")

    q = _queue(tmp_path, outbox=FullDisk(tmp_path / "o.sqlite"))
    _put(q, "bed1", 0, 1)
    assert _deliver(q) == ["bed1:s:0", "bed1:s:1"]
    _put(q, "bed1", 2)
    q.connection_lost()
    assert _deliver(q) == ["bed1:s:0", "bed1:s:1"]
    assert q.pending == 1 and _deliver(q) == ["bed1:s:2"]
    assert q.pending == 0 and q.stats["bed1"].delivered == 3
    q.close()
