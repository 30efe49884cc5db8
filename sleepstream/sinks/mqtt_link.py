"""One MQTT connection and one durable outbox for a whole daemon (every device).

Topics (``<prefix>`` defaults to ``sleepstream``; ``<id>`` is the daemon id, by default
``<host>-<8 hex of its device set>``, see :func:`sleepstream.names.daemon_id`):

- ``<prefix>/<device>/stage``: one JSON stage event per epoch (QoS 1, in order per device);
- ``<prefix>/<device>/status``: retained ``online`` / ``offline``;
- ``<prefix>/<device>/daemon``: retained ``<id>``, the daemon that serves the device;
- ``<prefix>/_daemon/<id>/status``: retained ``online`` / ``offline``, and the
  connection's last will (``offline``).

One connection has one will. A daemon that stops normally (SIGTERM, end of the sources,
any ``--flush-timeout``, even 0) publishes ``offline`` on every device's status and then
on its own. A daemon that dies (``kill -9``, power, network) cannot: the broker then
publishes its will, so ``<prefix>/_daemon/<id>/status`` turns ``offline`` while the
devices' retained status still says ``online``. **A device is online only while its own
status and its daemon's status (named by ``<prefix>/<device>/daemon``) are both
``online``**; ``sleepstream watch`` and the Home Assistant discovery follow that rule
(``availability_mode: all``).

Delivery: :meth:`MqttLink.enqueue` appends an event to the outbox (durable) and returns;
one delivery task publishes the outbox in ``seq`` order, up to :data:`WINDOW` QoS 1
publishes in flight (the broker receives a prefix of them in order, so a redelivery
after a failure keeps every device's first occurrences in order), and deletes events
once PUBACKed. A PUBACK is not durable: after a lost connection the events acknowledged
in the last ``resend_window_s`` seconds are published again first, with their own
``event_id`` (a crashed broker loses what it had acknowledged but not saved; see
:mod:`~sleepstream.sinks.mqtt_queue`). Connection losses are seen at once (a watcher
on aiomqtt's public message iterator) and retried with jittered back-off. Faults that retrying cannot fix
(credentials, TLS, a refused client id) are refused at start-up with one line
(:class:`~sleepstream.errors.BrokerError`, exit code 9) and, when they happen mid-run,
logged at ERROR and counted in ``sleepstream_mqtt_connect_errors_total{reason}``. An
unexpected error of the delivery task is logged (one line; the traceback at debug
level) and the task is restarted (``sleepstream_mqtt_delivery_restarts_total``); more than ``max_crashes``
within ``crash_window_s`` calls ``on_fatal`` so the daemon stops loudly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Sequence
from typing import Any

from sleepstream.errors import BrokerError
from sleepstream.names import check_device_names, daemon_id
from sleepstream.sinks.mqtt_client import (
    LinkMetrics,
    PahoLog,
    gather_publishes,
    lost,
    race,
    watch_connection,
)
from sleepstream.sinks.mqtt_health import LinkHealth, Probe
from sleepstream.sinks.mqtt_queue import (
    RESEND_WINDOW_S,
    DeliveryQueue,
    DeviceStats,
    RetainedTopics,
)
from sleepstream.sinks.mqtt_settings import (
    ConnectFailure,
    MqttSettings,
    classify_connect_error,
    jittered_backoff,
    make_client,
)
from sleepstream.sinks.outbox import Outbox

log = logging.getLogger(__name__)

#: Most QoS 1 publishes in flight on the connection.
WINDOW = 32
#: Seconds allowed for publishing the ``offline`` statuses at shutdown.
STATUS_TIMEOUT_S = 3.0


def daemon_status_topic(prefix: str, daemon: str) -> str:
    """``<prefix>/_daemon/<daemon id>/status`` (``_`` cannot start a device name)."""
    return f"{prefix}/_daemon/{daemon}/status"


class MqttLink:
    """The daemon's MQTT connection, its outbox and its delivery task.

    Parameters
    ----------
    settings : MqttSettings
    outbox : Outbox
        Opened (and locked) by :meth:`__aenter__`, which also takes over undelivered
        events of these devices from outbox files no live process holds.
    devices : sequence of str
        Every device this daemon serves (validated by :mod:`sleepstream.names`).
    daemon : str, optional
        Daemon id; default :func:`sleepstream.names.daemon_id` of the host and devices.
    metrics : Metrics, optional
        The daemon's metrics (per-device series); the link adds :class:`LinkMetrics`
        to its registry.
    flush_timeout : float
        Seconds :meth:`__aexit__` keeps delivering before giving up (the rest stays in
        the outbox for the next start). ``offline`` is published either way.
    on_fatal : callable, optional
        ``on_fatal(exc)`` when the delivery task keeps failing; the daemon stops on it.
    max_crashes, crash_window_s : int, float
        More than ``max_crashes`` unexpected failures within ``crash_window_s`` seconds
        are fatal; fewer are restarted with a log line.
    retry_cap_s : (float, float)
        Longest back-off (s) between attempts while the broker is down, and while it
        refuses us (credentials, TLS: someone has to fix it; no need to hammer it).
    resend_window_s : float
        After a lost connection, events acknowledged this many seconds before it are
        published again (0: never); cover the broker's save interval.
    """

    def __init__(
        self,
        settings: MqttSettings,
        *,
        outbox: Outbox,
        devices: Sequence[str],
        daemon: str | None = None,
        metrics: Any = None,
        flush_timeout: float = 10.0,
        on_fatal: Callable[[BaseException], None] | None = None,
        max_crashes: int = 5,
        crash_window_s: float = 300.0,
        retry_cap_s: tuple[float, float] = (10.0, 60.0),
        resend_window_s: float = RESEND_WINDOW_S,
    ) -> None:
        self.settings = settings
        self.devices = check_device_names(devices)
        self.daemon = daemon or daemon_id(socket.gethostname(), self.devices)
        self.client_id = settings.client_id or f"sleepstream-{self.daemon}-{os.getpid()}"
        self.status_topic = daemon_status_topic(settings.topic_prefix, self.daemon)
        self.probe_topic = f"{settings.topic_prefix}/_daemon/{self.daemon}/probe"
        self.metrics = metrics
        self.link_metrics = LinkMetrics.of(metrics.registry) if metrics is not None else None
        self.health = LinkHealth(
            settings, self.client_id, self.link_metrics,
            max_crashes=max_crashes, crash_window_s=crash_window_s,
        )  # fmt: skip
        self.flush_timeout = flush_timeout
        self.on_fatal = on_fatal
        self.retry_cap_s = retry_cap_s
        self.connected = asyncio.Event()
        #: Set when the delivery task gave up (see ``on_fatal``).
        self.fatal: BaseException | None = None
        self.queue = DeliveryQueue(
            outbox, self.devices, stage_topic=settings.stage_topic, metrics=metrics,
            resend_window_s=resend_window_s,
        )  # fmt: skip
        self._wakeup = asyncio.Event()
        self.retained = RetainedTopics()
        self._sessions_up = 0
        self._stop = asyncio.Event()  # stop delivering: publish offline and leave
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._first: asyncio.Future[ConnectFailure | None] | None = None
        self._paho = PahoLog()

    # -- lifecycle -----------------------------------------------------------------------
    async def __aenter__(self) -> MqttLink:
        adopted = self.queue.open()
        if adopted:
            log.info("MQTT: %d undelivered event(s) taken over from older outboxes", adopted)
        try:
            self._first = asyncio.get_running_loop().create_future()
            self._task = asyncio.create_task(self._supervise(), name="mqtt-delivery")
            self._task.add_done_callback(self._task_ended)
            waits: set[asyncio.Future[Any]] = {self._first, self._task}
            await asyncio.wait(
                waits,
                timeout=self.settings.publish_timeout + 1,
                return_when=asyncio.FIRST_COMPLETED,
            )
        except BaseException:
            await self._abort()
            raise
        failure = self._first.result() if self._first.done() else None
        if failure is not None and failure.config:
            await self._abort()
            raise BrokerError(failure.message(self.settings))
        if not self._first.done():
            log.warning(
                "MQTT %s: no answer after %.0f s; running anyway, events wait in the outbox",
                self.settings.url(),
                self.settings.publish_timeout + 1,
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing = True
        self._wakeup.set()
        task = self._task
        due = self.queue.outstanding or self.retained.due
        if task is not None and not task.done() and due:
            waiter = asyncio.ensure_future(self._flushed())
            await asyncio.wait(
                {waiter, task}, timeout=self.flush_timeout, return_when=asyncio.FIRST_COMPLETED
            )
            waiter.cancel()
            if self.pending:
                log.warning(
                    "MQTT %s: %d event(s) not delivered within --flush-timeout %g s; "
                    "they stay in the outbox for the next start",
                    self.settings.url(),
                    self.pending,
                    self.flush_timeout,
                )
            if self.queue.resending:
                log.warning(
                    "MQTT %s: %d acknowledged event(s) not published again within "
                    "--flush-timeout %g s after the lost connection",
                    self.settings.url(),
                    self.queue.resending,
                    self.flush_timeout,
                )
            if self.retained.due:
                log.warning(
                    "MQTT %s: %d retained message(s) not published within --flush-timeout %g s",
                    self.settings.url(),
                    len(self.retained.due),
                    self.flush_timeout,
                )
        self._stop.set()
        self._wakeup.set()
        if task is not None and not task.done():
            await asyncio.wait({task}, timeout=STATUS_TIMEOUT_S + 0.5)
        await self._abort()

    async def _abort(self) -> None:
        """Cancel the delivery task (if still running) and close the outbox."""
        self._stop.set()
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.queue.close()
        for dev in self.devices:
            self._set_connected(dev, False)

    # -- producer side -------------------------------------------------------------------
    def enqueue(self, device: str, event: dict[str, Any], *, arrival: float | None = None) -> None:
        """Store an event of ``device`` (outbox first, memory if the disk fails) and wake
        the delivery; ``arrival`` (perf_counter) feeds the latency histogram."""
        self.queue.put(device, event, arrival=arrival)
        self._wakeup.set()

    def retain(self, topic: str, payload: bytes) -> None:
        """Keep ``payload`` retained on ``topic`` over the daemon's one connection.

        Published now (or at the next connection) and again after every reconnect: a
        broker without persistence forgets retained messages when it restarts. An empty
        payload clears the topic at the broker (and stops republishing it). For other
        daemon-wide publishers (Home Assistant discovery configs and states), so they need
        no second connection.
        """
        if not topic or any(c in topic for c in "+#\x00") or topic.startswith("$"):
            raise ValueError(f"retain: {topic!r} is not a topic name one may publish to")
        self.retained.put(topic, payload)
        self._wakeup.set()

    async def retained_sent(self) -> None:
        """Return once every retained message handed to :meth:`retain` (and every one
        republished after a reconnect) is acknowledged by the broker; waits on an event.
        :meth:`__aexit__` gives those still due up to ``flush_timeout``."""
        await self.retained.sent()

    async def drained(self) -> None:
        """Return once every event handed over so far is acknowledged (waits on an event)."""
        await self.queue.drained()

    async def _flushed(self) -> None:
        await self.queue.drained()
        await self.retained.sent()

    @property
    def outbox(self) -> Outbox:
        return self.queue.outbox

    @property
    def stats(self) -> dict[str, DeviceStats]:
        """Delivery figures per device (this run)."""
        return self.queue.stats

    @property
    def pending(self) -> int:
        """Events not yet acknowledged by the broker (outbox plus in-memory fallback)."""
        return self.queue.pending

    def pending_of(self, device: str) -> int:
        return self.queue.pending_of(device)

    # -- supervision ---------------------------------------------------------------------
    async def _supervise(self) -> None:
        """Connect, deliver, reconnect; restart on unexpected errors; give up loudly."""
        attempt = 0
        while not self._stop.is_set():
            up_before = self._sessions_up
            lost = False
            try:
                await self._session()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - sorted below, never silent
                import aiomqtt

                lost = isinstance(exc, aiomqtt.MqttError)
                if lost:
                    self._failed_attempt(classify_connect_error(exc, self._paho.take()))
                elif self._crashed(exc):
                    return
            if self._sessions_up != up_before:
                attempt = 0  # it was connected: back-off starts again
                if lost:  # the connection ended, not our own task (that is a crash)
                    self.health.session_ended()
                    self.queue.connection_lost()
            if self._closing and not self.queue.outstanding and attempt >= 2:
                return  # nothing left to deliver; the will says offline
            delay = jittered_backoff(attempt, cap=self.retry_cap_s[self.health.config_fault])
            attempt += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)

    @property
    def last_failure(self) -> ConnectFailure | None:
        """The last failed connection (None once connected again)."""
        return self.health.last_failure

    def _failed_attempt(self, failure: ConnectFailure) -> None:
        first = self._first is not None and not self._first.done()
        if self._first is not None and first:
            self._first.set_result(failure)
        # a refusal at the first attempt becomes the one start-up line (__aenter__)
        self.health.failed(failure, self.pending, silent=first and failure.config,
                           closing=self._closing)  # fmt: skip

    def _crashed(self, exc: Exception) -> bool:
        """Log an unexpected failure; True (and give up) when it is fatal."""
        if self.health.crashed(exc, self.pending):
            self._give_up(exc)
            return True
        return False

    def _give_up(self, exc: BaseException) -> None:
        self.fatal = exc
        if self._first is not None and not self._first.done():
            self._first.set_result(None)
        if self.on_fatal is not None:
            self.on_fatal(exc)

    def _task_ended(self, task: asyncio.Task[None]) -> None:
        """A delivery task that ends by an exception is never silent."""
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        assert exc is not None
        log.critical("MQTT delivery task died: %s: %s", type(exc).__name__, exc)
        log.debug("traceback of that failure (--log-level debug)", exc_info=exc)
        self._give_up(exc)

    # -- one connection ------------------------------------------------------------------
    async def _session(self) -> None:
        import aiomqtt

        will = aiomqtt.Will(self.status_topic, b"offline", qos=1, retain=True)
        client = make_client(
            self.settings, client_id=self.client_id, will=will, logger=self._paho.logger,
            max_inflight=WINDOW,
        )  # fmt: skip
        await client.__aenter__()
        self.retained.reconnected()  # the broker may have lost them: republish every one
        clean = True  # leave with a DISCONNECT (the broker then drops our will)
        probe = Probe(self.settings, self.probe_topic, self.link_metrics)
        watcher = asyncio.create_task(watch_connection(client, probe.on_message), name="mqtt-watch")
        checking: asyncio.Task[None] | None = None
        try:
            self.health.connected()
            self._sessions_up += 1
            self._paho.take()
            for dev in self.devices:
                self._set_connected(dev, True)
            if self._first is not None and not self._first.done():
                self._first.set_result(None)
            await race(self._publish_statuses(client, b"online"), watcher)
            await race(probe.send(client), watcher)
            checking = asyncio.create_task(probe.check(), name="mqtt-probe")
            await self._drain(client, watcher)
            # bounded by __aexit__ (STATUS_TIMEOUT_S), then cancelled
            await race(self._publish_statuses(client, b"offline"), watcher)
        except asyncio.CancelledError:
            if self._stop.is_set():
                # shutting down and the broker did not take "offline" in time (hung):
                # no DISCONNECT, so the broker publishes our will ("offline") once it
                # sees the socket close when the process exits
                clean = False
                log.warning(
                    "MQTT %s: could not publish offline in time; leaving without "
                    "DISCONNECT so the broker publishes the will",
                    self.settings.url(),
                )
            raise
        finally:
            for task in (watcher, checking):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            for dev in self.devices:
                self._set_connected(dev, False)
            if clean:
                await client.__aexit__(None, None, None)

    async def _publish_statuses(self, client: Any, state: bytes) -> None:
        """``online``: daemon first, then each device (and its ``daemon`` pointer);
        ``offline``: each device first, then the daemon."""
        prefix = self.settings.topic_prefix
        per_device: list[tuple[str, bytes]] = []
        for dev in self.devices:
            if state == b"online":
                per_device.append((f"{prefix}/{dev}/daemon", self.daemon.encode()))
            per_device.append((f"{prefix}/{dev}/status", state))
        if state == b"online":
            await client.publish(self.status_topic, state, qos=1, retain=True)
        for i in range(0, len(per_device), WINDOW):
            await gather_publishes(client, per_device[i : i + WINDOW], retain=True, timeout=None)
        if state == b"offline":
            await client.publish(self.status_topic, state, qos=1, retain=True)

    async def _drain(self, client: Any, watcher: asyncio.Task[None]) -> None:
        """Deliver in order until stopped, or until closing with nothing left."""
        while not self._stop.is_set():
            if self.retained.due:
                pairs = self.retained.batch(WINDOW)
                await race(gather_publishes(client, pairs, retain=True, timeout=None), watcher)
                self.retained.acknowledged(pairs)
                continue
            items = self.queue.batch(WINDOW)
            if not items:
                if self._closing:
                    return
                self._wakeup.clear()
                if self.queue.batch(1) or self.retained.due:
                    continue
                waiter = asyncio.ensure_future(self._wakeup.wait())
                await asyncio.wait({waiter, watcher}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if watcher.done():
                    raise lost(watcher)
                continue
            pairs = [(it.topic, it.payload) for it in items]
            await race(
                gather_publishes(client, pairs, retain=False,
                                  timeout=self.settings.publish_timeout),
                watcher,
            )  # fmt: skip
            self.queue.acknowledged(items)

    # -- metrics -------------------------------------------------------------------------
    def _set_connected(self, device: str, up: bool) -> None:
        if up:
            self.connected.set()
        else:
            self.connected.clear()
        if self.metrics is not None:
            self.metrics.broker_connected.labels(device).set(1 if up else 0)
