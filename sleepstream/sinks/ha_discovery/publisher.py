"""Home Assistant MQTT discovery: the per-device state sink and the daemon-wide factory.

Everything goes over the daemon's one MQTT connection (issue 12: one connection per
daemon): the configs and each device's state are retained messages handed to the MQTT
link (:meth:`~sleepstream.sinks.mqtt_link.MqttLink.retain`), which publishes them as
soon as the broker is reachable and again after every reconnect. The connection's one
will (the daemon's status topic) is part of every entity's availability.
"""

from __future__ import annotations

from typing import Protocol

from sleepstream.sinks.base import BaseSink, EventContext, build_event
from sleepstream.sinks.ha_discovery.payloads import Topics, current_state, encode
from sleepstream.sinks.registry import BaseSinkFactory, DeviceContext
from sleepstream.types import Epoch, StagePrediction


class Retainer(Protocol):
    """Keeps retained messages published (the MQTT link: :class:`~sleepstream.sinks.
    mqtt_link.MqttLink`)."""

    def retain(self, topic: str, payload: bytes) -> None:
        """Publish ``payload`` retained on ``topic``, now and after every reconnect; the
        newest payload of a topic wins; ``b""`` clears it."""

    async def retained_sent(self) -> None:
        """Return once every retained message handed over is acknowledged."""


class HaStateSink(BaseSink):
    """Per-device sink: keeps ``<topic_prefix>/<device>/current`` at the newest verdict."""

    def __init__(self, link: Retainer, topics: Topics, session: str) -> None:
        self.link = link
        self.topics = topics
        self.session = session

    async def publish(self, epoch: Epoch, prediction: StagePrediction) -> None:
        """Retain the causal verdict of the newest epoch as the device's state."""
        event = build_event(EventContext(self.topics.device, self.session), epoch, prediction)
        self.link.retain(self.topics.state, encode(current_state(event)))

    async def publish_revised(
        self, epoch: Epoch, prediction: StagePrediction, lookahead: int
    ) -> None:
        """Revised verdicts of older epochs do not change the current state."""
        return None


class HaFactory(BaseSinkFactory):
    """Daemon-wide: every device's configs, retained over the daemon's MQTT link.

    Parameters
    ----------
    link : Retainer
        The daemon's MQTT link (entered and left by the MQTT sink kind's factory).
    configs : dict
        ``topic -> encoded config`` of every device (:func:`all_configs`).
    topics : dict
        ``device -> Topics``.
    """

    def __init__(
        self, link: Retainer, configs: dict[str, bytes], topics: dict[str, Topics]
    ) -> None:
        self.link = link
        self.configs = configs
        self.topics = topics

    async def __aenter__(self) -> HaFactory:
        for topic, payload in self.configs.items():
            self.link.retain(topic, payload)
        return self

    def sink_for(self, device: DeviceContext) -> HaStateSink:
        return HaStateSink(self.link, self.topics[device.name], device.session)

    async def drained(self) -> None:
        await self.link.retained_sent()
