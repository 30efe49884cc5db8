"""Home Assistant MQTT discovery: delivery of the retained configs and state.

:class:`RetainedPublisher` keeps a set of retained topics published on its own MQTT
connection (and again after every reconnect); :class:`HaStateSink` keeps a device's
``<topic_prefix>/<device>/current`` at its newest causal verdict; :class:`HaFactory` is
the daemon-wide resource the sink registry enters once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from sleepstream.sinks.base import BaseSink, EventContext, build_event
from sleepstream.sinks.ha_discovery.payloads import Topics, current_state, encode
from sleepstream.sinks.registry import BaseSinkFactory, DeviceContext
from sleepstream.types import Epoch, StagePrediction

log = logging.getLogger(__name__)


class RetainedPublisher:
    """Keeps a set of retained topics published on one MQTT connection.

    :meth:`retain` records the newest payload of a topic; a background task publishes
    it (QoS 1, retained) as soon as the broker is reachable, and publishes every topic
    again after each reconnect (a broker without persistence forgets retained
    messages). Older payloads of a topic that were not yet sent are skipped: only the
    newest state matters. An empty payload clears the retained message and is then
    forgotten.

    Parameters
    ----------
    settings : MqttSettings
    client_id : str
    flush_timeout : float
        Seconds :meth:`__aexit__` keeps trying to publish what is still unsent.
    """

    def __init__(self, settings: Any, *, client_id: str, flush_timeout: float = 5.0) -> None:
        self.settings = settings
        self.client_id = client_id
        self.flush_timeout = flush_timeout
        self.published = 0
        self.connected = asyncio.Event()
        self._topics: dict[str, bytes] = {}
        self._dirty: dict[str, None] = {}  # ordered set of topics to (re)send
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RetainedPublisher:
        self._task = asyncio.create_task(self._run(), name="ha-discovery")
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await asyncio.wait_for(self._idle.wait(), self.flush_timeout)
        except TimeoutError:
            log.warning(
                "ha-discovery: broker unreachable; %d retained topic(s) unsent", len(self._dirty)
            )
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def retain(self, topic: str, payload: bytes) -> None:
        """Publish ``payload`` retained on ``topic`` (now, and after every reconnect)."""
        self._topics[topic] = payload
        self._dirty.pop(topic, None)
        self._dirty[topic] = None
        self._idle.clear()
        self._wakeup.set()

    async def sent(self) -> None:
        """Return once every retained topic handed over has been acknowledged."""
        await self._idle.wait()

    async def _run(self) -> None:
        import aiomqtt

        from sleepstream.sinks.mqtt_settings import jittered_backoff, make_client

        attempt = 0
        while True:
            client = make_client(self.settings, client_id=self.client_id)
            try:
                async with client:
                    self.connected.set()
                    attempt = 0
                    for topic in self._topics:  # everything again: the broker may have lost it
                        self._dirty.setdefault(topic, None)
                    await self._drain(client)
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                delay = jittered_backoff(attempt)
                attempt += 1
                log.warning(
                    "ha-discovery: MQTT %s: %s; retrying in %.2f s", self.settings.url(), exc, delay
                )
                await asyncio.sleep(delay)
            finally:
                fut = getattr(client, "_disconnected", None)
                if fut is not None:  # mark it seen: no 'exception never retrieved'
                    fut.add_done_callback(lambda f: f.cancelled() or f.exception())

    async def _drain(self, client: Any) -> None:
        while True:
            while self._dirty:
                topic = next(iter(self._dirty))
                payload = self._topics[topic]
                await client.publish(
                    topic, payload, qos=1, retain=True, timeout=self.settings.publish_timeout
                )
                if self._topics.get(topic) is payload:  # not replaced while sending
                    self._dirty.pop(topic, None)
                    if not payload:
                        del self._topics[topic]
                self.published += 1
            self._idle.set()
            self._wakeup.clear()
            # wait for new work or the connection's end (aiomqtt resolves this future
            # when paho reports the disconnect; the MQTT sink watches it the same way)
            disconnected = getattr(client, "_disconnected", None)
            waiter = asyncio.ensure_future(self._wakeup.wait())
            await asyncio.wait(
                [waiter, *([disconnected] if disconnected is not None else [])],
                return_when=asyncio.FIRST_COMPLETED,
            )
            waiter.cancel()
            if disconnected is not None and disconnected.done():
                import aiomqtt

                raise aiomqtt.MqttError("connection lost")


class HaStateSink(BaseSink):
    """Per-device sink: keeps ``<topic_prefix>/<device>/current`` at the newest verdict."""

    def __init__(self, publisher: RetainedPublisher, topics: Topics, session: str) -> None:
        self.publisher = publisher
        self.topics = topics
        self.session = session

    async def publish(self, epoch: Epoch, prediction: StagePrediction) -> None:
        """Retain the causal verdict of the newest epoch as the device's state."""
        event = build_event(EventContext(self.topics.device, self.session), epoch, prediction)
        self.publisher.retain(self.topics.state, encode(current_state(event)))

    async def publish_revised(
        self, epoch: Epoch, prediction: StagePrediction, lookahead: int
    ) -> None:
        """Revised verdicts of older epochs do not change the current state."""
        return None


class HaFactory(BaseSinkFactory):
    """Daemon-wide: one :class:`RetainedPublisher` with every device's configs.

    Parameters
    ----------
    publisher : RetainedPublisher
    configs : dict
        ``topic -> encoded config`` of every device (:func:`all_configs`).
    topics : dict
        ``device -> Topics``.
    """

    def __init__(
        self, publisher: RetainedPublisher, configs: dict[str, bytes], topics: dict[str, Topics]
    ) -> None:
        self.publisher = publisher
        self.configs = configs
        self.topics = topics

    async def __aenter__(self) -> HaFactory:
        await self.publisher.__aenter__()
        for topic, payload in self.configs.items():
            self.publisher.retain(topic, payload)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.publisher.__aexit__(*exc)

    def sink_for(self, device: DeviceContext) -> HaStateSink:
        return HaStateSink(self.publisher, self.topics[device.name], device.session)

    async def drained(self) -> None:
        await self.publisher.sent()
