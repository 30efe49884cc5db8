"""MQTT sink: stage events through a durable outbox to a broker (aiomqtt 2.x, QoS 1).

Topics (``<prefix>`` defaults to ``sleepstream``):

- ``<prefix>/<device>/stage``: one JSON stage event per epoch (QoS 1);
- ``<prefix>/<device>/status``: retained ``online`` / ``offline``; ``offline`` is also
  the last will, so a crashed daemon or a lost network shows as offline.

:meth:`MqttSink.publish` appends the event to the :class:`~sleepstream.sinks.outbox.Outbox`
and returns; a background task delivers the outbox in order, one event at a time, and
deletes each event once the broker has acknowledged it (PUBACK). On any connection
error it reconnects with jittered exponential back-off and resumes from the oldest
undelivered event, so subscribers get every event at least once, in order, with its
original ``event_id`` (deduplicate on it for exactly-once).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import deque
from typing import Any

from sleepstream.errors import StorageError
from sleepstream.sinks.base import EventContext, build_event
from sleepstream.sinks.mqtt_settings import (
    NODELAY,
    PASSWORD_ENV,
    MqttSettings,
    jittered_backoff,
    make_client,
    mqtt_settings,
    read_password,
    tls_context,
)
from sleepstream.sinks.outbox import Outbox, OutboxItem
from sleepstream.types import Epoch, StagePrediction

log = logging.getLogger(__name__)

__all__ = [
    "NODELAY",
    "PASSWORD_ENV",
    "MqttSettings",
    "MqttSink",
    "jittered_backoff",
    "make_client",
    "mqtt_settings",
    "read_password",
    "tls_context",
]


class MqttSink:
    """Publishes stage events of one device through its outbox.

    Parameters
    ----------
    settings : MqttSettings
    device : str
    session : str
        Session id used in ``event_id`` (see :func:`~sleepstream.sinks.base.event_id`).
    outbox : Outbox
        Opened and closed by the sink.
    metrics : Metrics, optional
    flush_timeout : float
        Seconds :meth:`__aexit__` waits for the outbox to drain before giving up (the
        rest is delivered on the next start).
    """

    def __init__(
        self,
        settings: MqttSettings,
        *,
        device: str,
        session: str,
        outbox: Outbox,
        metrics: Any = None,
        flush_timeout: float = 10.0,
    ) -> None:
        self.settings = settings
        self.device = device
        self.session = session
        self.outbox = outbox
        self.metrics = metrics
        self.flush_timeout = flush_timeout
        self.stage_topic = settings.stage_topic(device)
        self.status_topic = settings.status_topic(device)
        self.connected = asyncio.Event()
        self.delivered = 0
        self._wakeup = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._arrival: dict[str, float] = {}
        # fallback when the outbox cannot be written (disk full): kept in order in memory
        self._memory: deque[OutboxItem] = deque(maxlen=outbox.max_events)
        self._memory_mode = False
        self._last_seq = 0  # newest outbox seq acknowledged (pruning may lag on a full disk)
        #: Acknowledged latencies (s) of this session's events, newest last.
        self.latencies_s: deque[float] = deque(maxlen=1_000_000)

    # -- lifecycle ---------------------------------------------------------------
    async def __aenter__(self) -> MqttSink:
        self.outbox.open()
        self._update_depth()
        self._task = asyncio.create_task(self._deliver_forever(), name=f"{self.device}:mqtt")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self.flush_timeout)
            except (TimeoutError, asyncio.CancelledError):
                log.warning(
                    "%s: broker unreachable at shutdown; %d event(s) stay in the outbox",
                    self.device,
                    len(self.outbox),
                )
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._task
        self.outbox.close()

    # -- producer side -------------------------------------------------------------
    async def publish(self, epoch: Epoch, prediction: StagePrediction) -> None:
        """Append the event to the outbox (durable) and wake the delivery task."""
        event = build_event(EventContext(self.device, self.session), epoch, prediction)
        self.enqueue(event, arrival=epoch.last_sample_at)

    async def publish_revised(
        self, epoch: Epoch, prediction: StagePrediction, lookahead: int
    ) -> None:
        """Queue a revised stage for an earlier epoch (``revised: true``)."""
        event = build_event(EventContext(self.device, self.session, lookahead), epoch, prediction)
        self.enqueue(event)

    def enqueue(self, event: dict[str, Any], *, arrival: float | None = None) -> None:
        """Store an already built event; ``arrival`` (perf_counter) feeds the histogram."""
        payload = json.dumps(event, separators=(",", ":")).encode()
        dropped = 0
        if not self._memory:
            try:
                dropped = self.outbox.append(event["event_id"], self.stage_topic, payload)
            except StorageError as exc:
                log.error("%s: %s; keeping events in memory until it is writable", self.device, exc)
                self._memory_mode = True
        if self._memory or self._memory_mode:
            if len(self._memory) == self._memory.maxlen:
                dropped = 1
                log.warning("%s: in-memory queue full: dropped the oldest event", self.device)
            self._memory.append(OutboxItem(-1, event["event_id"], self.stage_topic, payload))
        if arrival:
            self._arrival[event["event_id"]] = arrival
        if dropped and self.metrics is not None:
            self.metrics.outbox_dropped.labels(self.device).inc(dropped)
        self._update_depth()
        self._wakeup.set()

    # -- delivery side -------------------------------------------------------------
    async def _deliver_forever(self) -> None:
        import aiomqtt

        attempt = 0
        client_id = self.settings.client_id or f"sleepstream-{self.device}-{os.getpid()}"
        will = aiomqtt.Will(self.status_topic, b"offline", qos=1, retain=True)
        while True:
            client = make_client(self.settings, client_id=client_id, will=will)
            try:
                async with client:
                    self._set_connected(True)
                    if attempt:
                        log.info("%s: reconnected to %s", self.device, self.settings.url())
                    attempt = 0
                    await client.publish(self.status_topic, b"online", qos=1, retain=True)
                    await self._drain(client)
                    await client.publish(self.status_topic, b"offline", qos=1, retain=True)
                    self._set_connected(False)
                    return
            except aiomqtt.MqttError as exc:
                self._set_connected(False)
                delay = jittered_backoff(attempt)
                log.warning(
                    "%s: MQTT %s: %s; %d event(s) queued, retrying in %.2f s",
                    self.device,
                    self.settings.url(),
                    exc,
                    len(self.outbox),
                    delay,
                )
                attempt += 1
                if self._closing and not self.pending and attempt > 3:
                    return  # nothing left to deliver ("offline" could not be published)
                # with events pending, keep trying: __aexit__ bounds it by flush_timeout
                await asyncio.sleep(delay)
            finally:
                _consume_disconnect(client)

    async def _drain(self, client: Any) -> None:
        """Deliver the outbox in order until closing and empty; raise on connection loss."""
        disconnected = getattr(client, "_disconnected", None)
        while True:
            items = self.outbox.peek(64, after_seq=self._last_seq)
            if not items and self._memory:
                items = [self._memory[0]]
            if not items:
                self._memory_mode = False  # memory drained: try the outbox again
                if self._closing:
                    return
                self._wakeup.clear()
                if self._memory or self.outbox.peek(1, after_seq=self._last_seq):
                    continue
                waiter = asyncio.ensure_future(self._wakeup.wait())
                waits = [waiter] + ([disconnected] if disconnected is not None else [])
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if disconnected is not None and disconnected.done():
                    import aiomqtt

                    raise aiomqtt.MqttError("connection lost")
                continue
            for item in items:
                await client.publish(
                    item.topic, item.payload, qos=1, timeout=self.settings.publish_timeout
                )
                if item.seq < 0:
                    self._memory.popleft()
                else:
                    self._last_seq = item.seq
                    try:
                        self.outbox.ack(item.seq)
                    except StorageError as exc:  # delivered; pruned on a later start
                        log.error("%s: %s", self.device, exc)
                self.delivered += 1
                self._acknowledged(item.event_id)

    def _acknowledged(self, event_id: str) -> None:
        arrival = self._arrival.pop(event_id, None)
        latency = time.perf_counter() - arrival if arrival else None
        if latency is not None:
            self.latencies_s.append(latency)
        if self.metrics is None:
            return
        self.metrics.published.labels(self.device).inc()
        if latency is not None:
            self.metrics.epoch_latency.labels(self.device).observe(latency)
        self._update_depth()

    @property
    def pending(self) -> int:
        """Events not yet acknowledged by the broker (outbox plus in-memory fallback)."""
        return len(self.outbox) + len(self._memory)

    def _set_connected(self, up: bool) -> None:
        if up:
            self.connected.set()
        else:
            self.connected.clear()
        if self.metrics is not None:
            self.metrics.broker_connected.labels(self.device).set(1 if up else 0)

    def _update_depth(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.labels(self.device, "outbox").set(self.pending)


def _consume_disconnect(client: Any) -> None:
    """Mark aiomqtt's disconnect future as seen (avoids 'exception never retrieved')."""
    fut = getattr(client, "_disconnected", None)
    if fut is not None:  # paho may report the disconnect after the context has exited
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())
