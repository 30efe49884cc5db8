"""The events of every device waiting for the broker: durable outbox, memory fallback.

:class:`DeliveryQueue` is the producer side of :class:`~sleepstream.sinks.mqtt_link.
MqttLink`: :meth:`~DeliveryQueue.put` appends an event to the SQLite outbox (or, while
the disk refuses writes, to a bounded in-memory queue that keeps the order: once one
event went to memory, the next ones follow it there until it is delivered);
:meth:`~DeliveryQueue.batch` hands out the oldest events in delivery order (outbox
first: it holds the older ones); :meth:`~DeliveryQueue.acknowledged` deletes what the
broker has PUBACKed and keeps the per-device figures and Prometheus series
(``events_published_total``, ``events_resent_total``, ``epoch_latency_seconds``,
``queue_depth{queue="outbox"}``, ``outbox_dropped_total``). :class:`RetainedTopics`
keeps the retained messages the link publishes for other daemon-wide publishers (Home
Assistant discovery).

A PUBACK is not a durable acknowledgement: a broker that crashes (``kill -9``, power)
loses the messages it had acknowledged but not yet handed to every subscriber or saved
(mosquitto saves its queues every ``autosave_interval`` seconds, or never without
``persistence``). So the queue remembers what was acknowledged in the last
``resend_window_s`` seconds, and :meth:`~DeliveryQueue.connection_lost` puts it back
at the head of the delivery order: after a lost connection those events are published
again, with their original ``event_id`` (delivery is at least once; consumers
deduplicate on ``event_id``), ahead of the events still pending, so each device's first
occurrences stay in order.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sleepstream.errors import StorageError
from sleepstream.sinks.outbox import Outbox, OutboxItem

log = logging.getLogger(__name__)

#: Seconds of acknowledged events published again after a lost connection.
RESEND_WINDOW_S = 60.0
#: Most acknowledged events remembered for that (all devices together).
RESEND_MAX_EVENTS = 5_000


@dataclass
class DeviceStats:
    """Delivery figures of one device (this daemon run)."""

    delivered: int = 0
    #: Acknowledged events published again after a lost connection (this run).
    resent: int = 0
    #: Acknowledged latencies (s), newest last.
    latencies_s: deque[float] = field(default_factory=lambda: deque(maxlen=1_000_000))
    #: ``event_id`` -> ``perf_counter()`` of the epoch's last sample, until acknowledged.
    arrival: dict[str, float] = field(default_factory=dict)


class DeliveryQueue:
    """Pending events of ``devices``, in delivery order.

    Parameters
    ----------
    outbox : Outbox
        Opened by :meth:`open`, closed by :meth:`close`.
    devices : sequence of str
        The devices whose events may be queued (already validated).
    stage_topic : callable
        ``stage_topic(device) -> topic``.
    metrics : Metrics, optional
    resend_window_s : float
        Events acknowledged this many seconds before a lost connection are published
        again after it (0: never).
    """

    def __init__(
        self,
        outbox: Outbox,
        devices: Sequence[str],
        *,
        stage_topic: Callable[[str], str],
        metrics: Any = None,
        resend_window_s: float = RESEND_WINDOW_S,
    ) -> None:
        if not resend_window_s >= 0:
            raise ValueError(f"resend_window_s must be >= 0 s, got {resend_window_s}")
        self.outbox = outbox
        self.stage_topic = stage_topic
        self.metrics = metrics
        self.resend_window_s = float(resend_window_s)
        #: ``(time.monotonic() of the PUBACK, event)``, oldest first.
        self._recent: deque[tuple[float, OutboxItem]] = deque(maxlen=RESEND_MAX_EVENTS)
        #: Acknowledged events to publish again, in their delivery order.
        self._resend: deque[OutboxItem] = deque()
        self.stats = {dev: DeviceStats() for dev in devices}
        self._memory: deque[OutboxItem] = deque()
        self._memory_count: Counter[str] = Counter()
        self._memory_mode = False
        self._last_seq = 0  # newest outbox seq acknowledged (pruning may lag on a full disk)
        self._drained = asyncio.Event()

    def open(self) -> int:
        """Open the outbox and take over leftovers of these devices; return how many."""
        self.outbox.open()
        adopted = self.outbox.adopt_leftovers(list(self.stats))
        for dev in self.stats:
            self._update_depth(dev)
        return adopted

    def close(self) -> None:
        self.outbox.close()

    # -- producer side -------------------------------------------------------------------
    def put(self, device: str, event: dict[str, Any], *, arrival: float | None = None) -> None:
        """Store an event of ``device``; ``arrival`` (perf_counter) feeds the histogram."""
        if device not in self.stats:
            raise ValueError(f"device {device!r} is not served by this MQTT link")
        topic = self.stage_topic(device)
        payload = json.dumps(event, separators=(",", ":")).encode()
        eid = str(event["event_id"])
        dropped = 0
        if not self._memory:
            try:
                dropped = self.outbox.append(eid, topic, payload, device)
            except StorageError as exc:
                if not self._memory_mode:
                    log.error("%s; keeping events in memory until it is writable", exc)
                self._memory_mode = True
        if self._memory or self._memory_mode:
            if self._memory_count[device] >= self.outbox.max_events:
                dropped = 1
                self._drop_oldest_in_memory(device)
            self._memory.append(OutboxItem(-1, eid, topic, payload, device))
            self._memory_count[device] += 1
        if arrival:
            self.stats[device].arrival[eid] = arrival
        if dropped and self.metrics is not None:
            self.metrics.outbox_dropped.labels(device).inc(dropped)
        self._update_depth(device)
        self._drained.clear()

    def _drop_oldest_in_memory(self, device: str) -> None:
        for i, item in enumerate(self._memory):
            if item.device == device:
                del self._memory[i]
                self._memory_count[device] -= 1
                log.warning("%s: in-memory queue full: dropped the oldest event", device)
                return

    # -- delivery side -------------------------------------------------------------------
    def batch(self, limit: int) -> list[OutboxItem]:
        """The next events to publish (at most ``limit``), in delivery order: those to
        publish again after a lost connection first, then the oldest pending ones."""
        if self._resend:
            return list(itertools.islice(self._resend, limit))
        items = self.outbox.peek(limit, after_seq=self._last_seq)
        if not items and self._memory:
            items = list(itertools.islice(self._memory, limit))
        if not items:
            self._memory_mode = False  # memory drained: try the outbox again
        return items

    def connection_lost(self) -> int:
        """The connection ended without our DISCONNECT: publish again, first, every event
        acknowledged within ``resend_window_s`` seconds (the broker may have crashed and
        lost them). Returns how many are now due again."""
        now = time.monotonic()
        fresh = [it for at, it in self._recent if now - at <= self.resend_window_s]
        self._recent.clear()
        # what was sent again before this loss is older than what still waited for it
        again = {it.event_id for it in fresh}
        self._resend = deque([*fresh, *(it for it in self._resend if it.event_id not in again)])
        if self._resend:
            self._drained.clear()
            log.info(
                "MQTT: connection lost: %d event(s) acknowledged in the last %g s will be "
                "published again (a crashed broker loses what it had not saved)",
                len(self._resend),
                self.resend_window_s,
            )
        return len(self._resend)

    @property
    def resending(self) -> int:
        """Acknowledged events waiting to be published again."""
        return len(self._resend)

    @property
    def outstanding(self) -> int:
        """Events still to publish: the pending ones and those due again."""
        return self.pending + len(self._resend)

    def acknowledged(self, items: Sequence[OutboxItem]) -> None:
        """Delete delivered events (a prefix of the last :meth:`batch`); update figures."""
        self._remember(items)
        again = 0
        while again < len(items) and self._resend and items[again] is self._resend[0]:
            self._resend.popleft()
            again += 1
        if again:
            self._count_resent(items[:again])
            items = items[again:]
        stored = [it.seq for it in items if it.seq >= 0]
        if stored:
            self._last_seq = max(self._last_seq, max(stored))
            try:
                self.outbox.ack_many(stored)
            except StorageError as exc:  # delivered; redelivered (same event_id) next start
                log.error("%s", exc)
        for it in items:
            if it.seq < 0:
                self._memory.popleft()
                self._memory_count[it.device] -= 1
        now = time.perf_counter()
        for dev, group in _by_device(items).items():
            stats = self.stats.get(dev)
            if stats is None:  # pragma: no cover - only this link's devices are queued
                continue
            stats.delivered += len(group)
            for it in group:
                arrival = stats.arrival.pop(it.event_id, None)
                if arrival:
                    stats.latencies_s.append(now - arrival)
                    if self.metrics is not None:
                        self.metrics.epoch_latency.labels(dev).observe(now - arrival)
            if self.metrics is not None:
                self.metrics.published.labels(dev).inc(len(group))
            self._update_depth(dev)
        if not self.outstanding:
            self._drained.set()

    def _remember(self, items: Sequence[OutboxItem]) -> None:
        """Keep acknowledged events for :meth:`connection_lost` (bounded, by age too)."""
        if not self.resend_window_s:
            return
        now = time.monotonic()
        recent = self._recent
        while recent and now - recent[0][0] > self.resend_window_s:
            recent.popleft()
        recent.extend((now, it) for it in items)

    def _count_resent(self, items: Sequence[OutboxItem]) -> None:
        for dev, group in _by_device(items).items():
            if dev in self.stats:
                self.stats[dev].resent += len(group)
                if self.metrics is not None:
                    self.metrics.resent.labels(dev).inc(len(group))

    async def drained(self) -> None:
        """Return once every event put so far is acknowledged, and every one due again
        after a lost connection too (waits on an event)."""
        while self.outstanding:
            await self._drained.wait()

    @property
    def pending(self) -> int:
        """Events not yet acknowledged by the broker (outbox plus in-memory fallback)."""
        return len(self.outbox) + len(self._memory)

    def pending_of(self, device: str) -> int:
        return self.outbox.count(device) + self._memory_count[device]

    def _update_depth(self, device: str) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.labels(device, "outbox").set(self.pending_of(device))


def _by_device(items: Sequence[OutboxItem]) -> dict[str, list[OutboxItem]]:
    groups: dict[str, list[OutboxItem]] = {}
    for it in items:
        groups.setdefault(it.device, []).append(it)
    return groups


class RetainedTopics:
    """Retained messages the link keeps published: the newest payload of each topic.

    A topic is *due* from :meth:`put` until the broker acknowledged its newest payload,
    and every kept topic is due again after a reconnect (:meth:`reconnected`: a broker
    without persistence forgets retained messages). An empty payload clears the topic at
    the broker and is then forgotten.
    """

    def __init__(self) -> None:
        self.payloads: dict[str, bytes] = {}
        self.due: set[str] = set()
        self._idle = asyncio.Event()  # set while nothing is due
        self._idle.set()

    def put(self, topic: str, payload: bytes) -> None:
        if payload:
            self.payloads[topic] = bytes(payload)
        else:
            self.payloads.pop(topic, None)
        self.due.add(topic)
        self._idle.clear()

    def reconnected(self) -> None:
        """Every kept topic is due again."""
        self.due |= set(self.payloads)
        if self.due:
            self._idle.clear()

    def batch(self, limit: int) -> list[tuple[str, bytes]]:
        """Up to ``limit`` due ``(topic, payload)`` pairs (``b""`` clears a topic)."""
        return [(t, self.payloads.get(t, b"")) for t in sorted(self.due)[:limit]]

    def acknowledged(self, pairs: Sequence[tuple[str, bytes]]) -> None:
        """The broker took these; a topic given a newer payload meanwhile stays due."""
        for topic, sent in pairs:
            if self.payloads.get(topic, b"") == sent:
                self.due.discard(topic)
        if not self.due:
            self._idle.set()

    async def sent(self) -> None:
        """Return once nothing is due (waits on an event)."""
        await self._idle.wait()
