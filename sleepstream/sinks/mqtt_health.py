"""What goes wrong with the daemon's MQTT link, said once, at the right level, and counted.

:class:`LinkHealth` is the bookkeeping of :class:`~sleepstream.sinks.mqtt_link.MqttLink`'s
supervisor: failed connection attempts (ERROR when only an operator can fix them:
credentials, TLS, a refused client id; WARNING when the broker is down, then INFO while
it stays down), sessions the broker ends right after accepting them (another client
with the same client id), and unexpected failures of the delivery task (each logged with
its traceback; too many too fast are fatal). :class:`Probe` checks, once per
connection, that the broker delivers what we publish. Counters:
``sleepstream_mqtt_connect_errors_total{reason}``,
``sleepstream_mqtt_delivery_restarts_total``, ``sleepstream_mqtt_probe_failures_total``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from typing import Any

from sleepstream.sinks.mqtt_settings import ConnectFailure, MqttSettings

log = logging.getLogger("sleepstream.sinks.mqtt_link")

#: A connection lost sooner than this after it was accepted counts as "thrown off".
SHORT_SESSION_S = 2.0
#: Seconds to wait for the daemon's own probe message to come back after connecting.
PROBE_TIMEOUT_S = 5.0


class LinkHealth:
    """Failure bookkeeping of one link.

    Parameters
    ----------
    settings : MqttSettings
    client_id : str
    metrics : LinkMetrics or None
    max_crashes, crash_window_s : int, float
        More than ``max_crashes`` unexpected failures within ``crash_window_s`` seconds
        are fatal.
    """

    def __init__(
        self,
        settings: MqttSettings,
        client_id: str,
        metrics: Any,
        *,
        max_crashes: int,
        crash_window_s: float,
    ) -> None:
        self.settings = settings
        self.client_id = client_id
        self.metrics = metrics
        self.max_crashes = max_crashes
        self.crash_window_s = crash_window_s
        #: The last failed connection (None once connected again).
        self.last_failure: ConnectFailure | None = None
        self._crashes: deque[float] = deque()
        self._connected_at = 0.0
        self._short_sessions = 0

    @property
    def config_fault(self) -> bool:
        """The broker refuses us for a reason retrying cannot fix."""
        return self.last_failure is not None and self.last_failure.config

    def connected(self) -> None:
        """A connection was accepted."""
        if self.last_failure is not None:
            log.info("MQTT %s: connected again", self.settings.url())
        self.last_failure = None
        self._connected_at = time.monotonic()

    def session_ended(self) -> None:
        """An accepted connection ended by an error. A broker that closes it right after
        accepting it, again and again, is usually throwing us off for another client with
        the same client id: say so every third time."""
        lasted = time.monotonic() - self._connected_at
        self._short_sessions = self._short_sessions + 1 if lasted < SHORT_SESSION_S else 0
        if self._short_sessions and self._short_sessions % 3 == 0:
            log.error(
                "MQTT %s: the broker closed our connection right after accepting it %d times "
                "in a row: another client is probably connected with the same client id "
                "%r; give each daemon its own --mqtt-client-id",
                self.settings.url(), self._short_sessions, self.client_id,
            )  # fmt: skip

    def failed(self, failure: ConnectFailure, pending: int, *, silent: bool, closing: bool) -> None:
        """A connection attempt failed (or a connection was lost): count and log it.

        ``silent``: the caller raises it as the one start-up line instead.
        """
        repeated = self.last_failure == failure
        self.last_failure = failure
        if self.metrics is not None:
            self.metrics.connect_errors.labels(failure.reason).inc()
        if silent:
            return
        level = logging.ERROR if failure.config else logging.WARNING
        if repeated and failure.reason == "unreachable":
            level = logging.DEBUG if closing else logging.INFO
        log.log(level, "%s; %d event(s) queued", failure.message(self.settings), pending)

    def crashed(self, exc: Exception, pending: int) -> bool:
        """Log an unexpected failure of the delivery task; True when it is fatal."""
        now = time.monotonic()
        self._crashes.append(now)
        while self._crashes and now - self._crashes[0] > self.crash_window_s:
            self._crashes.popleft()
        if self.metrics is not None:
            self.metrics.restarts.inc()
        if len(self._crashes) > self.max_crashes:
            log.critical(
                "MQTT delivery failed %d times in %.0f s (%s: %s); giving up: %d event(s) "
                "stay in the outbox",
                len(self._crashes), self.crash_window_s, type(exc).__name__, exc, pending,
            )  # fmt: skip
            return True
        log.error("MQTT delivery failed (%s: %s); restarting it", type(exc).__name__, exc)
        log.debug("traceback of that failure (--log-level debug)", exc_info=exc)
        return False


class Probe:
    """One connection's check that the broker delivers what we publish.

    A broker that PUBACKs and drops our messages (a mosquitto ACL under MQTT 3.1.1)
    would stop delivery without a word. After connecting, the link subscribes to
    ``topic`` (its own ``<prefix>/_daemon/<id>/probe``) and publishes a random token
    there; :meth:`check` warns and counts when it does not come back in
    :data:`PROBE_TIMEOUT_S`. A client allowed to write but not read gets the same
    warning (the broker grants the subscription and drops the delivery), so the line
    says how to silence it.
    """

    def __init__(self, settings: MqttSettings, topic: str, metrics: Any) -> None:
        self.settings = settings
        self.topic = topic
        self.metrics = metrics
        self.token = secrets.token_hex(8).encode()
        self.echoed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_message(self, message: Any) -> None:
        """For the connection watcher: every message received."""
        mine = str(message.topic) == self.topic and message.payload == self.token
        if mine and not self.echoed.done():
            self.echoed.set_result(None)

    async def send(self, client: Any) -> None:
        await client.subscribe(self.topic, qos=1)
        await client.publish(self.topic, self.token, qos=1)

    async def check(self) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(self.echoed), PROBE_TIMEOUT_S)
        except TimeoutError:
            if self.metrics is not None:
                self.metrics.probe_failures.inc()
            log.warning(
                "MQTT %s: the broker acknowledged our probe on %s but did not deliver it "
                "back within %.0f s: it may be dropping this daemon's publishes (check its "
                "ACL: write on %s/#). If this client may write but not read, grant it read "
                "on %s to silence this check",
                self.settings.url(), self.topic, PROBE_TIMEOUT_S,
                self.settings.topic_prefix, self.topic,
            )  # fmt: skip
