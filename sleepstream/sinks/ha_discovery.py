"""Home Assistant MQTT discovery: each device appears in Home Assistant by itself.

With ``--ha-discovery [PREFIX]`` (``PREFIX`` defaults to ``homeassistant``, Home
Assistant's discovery prefix) the daemon publishes, retained, for every device:

======================  =========================================================  ==========
entity                  discovery topic                                            state
======================  =========================================================  ==========
sensor "Sleep stage"    ``<PREFIX>/sensor/<node>/stage/config``                    W N1 N2 N3 REM unscored
sensor "Stage conf."    ``<PREFIX>/sensor/<node>/confidence/config``               % (0-100)
binary "Asleep"         ``<PREFIX>/binary_sensor/<node>/asleep/config``            ON in N1-N3, REM
======================  =========================================================  ==========

and the device's newest causal verdict, retained, on ``<topic_prefix>/<device>/current``
(the entities' ``state_topic``; retained so Home Assistant shows the stage right after it
restarts, and causal only so a revised verdict of an older epoch never overwrites it).
Availability is the daemon's existing ``<topic_prefix>/<device>/status`` topic (retained
``online``/``offline``, ``offline`` also its last will).

``<node>`` and every ``unique_id`` derive from the topic prefix and the device name only,
so a restart republishes the same configs and Home Assistant keeps the same entities.
``sleepstream ha-forget DEVICE`` publishes empty retained configs, which removes them.
Keys follow Home Assistant's MQTT discovery documentation (integrations/mqtt,
sensor.mqtt, binary_sensor.mqtt); payloads use the full key names, not abbreviations.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sleepstream.errors import UsageError
from sleepstream.types import STAGE_NAMES

log = logging.getLogger(__name__)

#: Home Assistant's default discovery prefix.
DEFAULT_DISCOVERY_PREFIX = "homeassistant"
#: States of the stage sensor (its ``options``).
STAGE_OPTIONS: tuple[str, ...] = (*STAGE_NAMES, "unscored")
#: Stages in which the "asleep" binary sensor is on.
ASLEEP_STAGES = frozenset({"N1", "N2", "N3", "REM"})
#: object_id of each entity -> its component.
ENTITIES: dict[str, str] = {"stage": "sensor", "confidence": "sensor", "asleep": "binary_sensor"}

_ID_SAFE = re.compile(r"[^A-Za-z0-9_-]")
_PREFIX_OK = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")


@dataclass(frozen=True)
class HaConfig:
    """Settings of the discovery sink.

    Attributes
    ----------
    discovery_prefix : str or None
        Home Assistant's discovery prefix; None = discovery off.
    """

    discovery_prefix: str | None = None

    def __post_init__(self) -> None:
        if self.discovery_prefix is not None:
            check_discovery_prefix(self.discovery_prefix)


def check_discovery_prefix(prefix: str) -> str:
    """Validate a discovery prefix (topic levels of ``[A-Za-z0-9_-]``, no wildcards)."""
    if not _PREFIX_OK.match(prefix or ""):
        raise UsageError(
            f"--ha-discovery {prefix!r}: use topic levels of letters, digits, '_' or '-' "
            "separated by '/' (Home Assistant's default is homeassistant)"
        )
    return prefix


def node_id(topic_prefix: str, device: str) -> str:
    """The discovery ``node_id`` of a device: stable, ``[A-Za-z0-9_-]`` only.

    ``sleepstream`` + device for the default topic prefix (``sleepstream_bed1``), the
    prefix's levels joined by ``_`` otherwise. Where a character had to be replaced
    (``bed.1``), 8 hex digits of the SHA-1 of ``<topic_prefix>/<device>`` keep two
    devices that differ only there apart.
    """
    raw = f"{topic_prefix}/{device}"
    safe = _ID_SAFE.sub("_", raw.replace("/", "_"))
    if _ID_SAFE.search(topic_prefix.replace("/", "_")) or _ID_SAFE.search(device):
        safe += "_" + hashlib.sha1(raw.encode()).hexdigest()[:8]
    return safe


@dataclass(frozen=True)
class Topics:
    """The MQTT topics of one device's discovery."""

    discovery_prefix: str
    topic_prefix: str
    device: str

    @property
    def node(self) -> str:
        return node_id(self.topic_prefix, self.device)

    @property
    def state(self) -> str:
        """Retained newest causal verdict (the entities' ``state_topic``)."""
        return f"{self.topic_prefix}/{self.device}/current"

    @property
    def availability(self) -> str:
        """The daemon's retained ``online``/``offline`` topic (and last will)."""
        return f"{self.topic_prefix}/{self.device}/status"

    def config(self, object_id: str) -> str:
        return f"{self.discovery_prefix}/{ENTITIES[object_id]}/{self.node}/{object_id}/config"

    def configs(self) -> list[str]:
        return [self.config(o) for o in ENTITIES]

    def config_filter(self) -> str:
        """Subscription filter matching every discovery config of this node."""
        return f"{self.discovery_prefix}/+/{self.node}/+/config"


def discovery_configs(
    topics: Topics, *, version: str, model: str = ""
) -> dict[str, dict[str, Any]]:
    """``config topic -> payload`` of the three entities of one device.

    Parameters
    ----------
    topics : Topics
    version : str
        sleepstream's version (``device.sw_version`` and ``origin.sw_version``).
    model : str
        Shown as the device model (e.g. the model id); default a generic name.
    """
    node = topics.node
    common = {
        "state_topic": topics.state,
        "availability_topic": topics.availability,
        "payload_available": "online",
        "payload_not_available": "offline",
        "qos": 1,
        "device": {
            "identifiers": [node],
            "name": topics.device,
            "manufacturer": "sleepstream",
            "model": model or "single-channel EEG sleep stager",
            "sw_version": version,
        },
        "origin": {"name": "sleepstream", "sw_version": version},
    }
    stage = {
        "name": "Sleep stage",
        "unique_id": f"{node}_stage",
        "device_class": "enum",
        "options": list(STAGE_OPTIONS),
        "value_template": "{{ value_json.stage }}",
        "json_attributes_topic": topics.state,
        "json_attributes_template": (
            "{{ {'probabilities': value_json.probabilities, 'epoch_index': "
            "value_json.epoch_index, 'epoch_start': value_json.epoch_start, "
            "'quality': value_json.quality} | tojson }}"
        ),
        "icon": "mdi:sleep",
        **common,
    }
    confidence = {
        "name": "Stage confidence",
        "unique_id": f"{node}_confidence",
        "unit_of_measurement": "%",
        "state_class": "measurement",
        "suggested_display_precision": 0,
        "value_template": (
            "{% if value_json.confidence is none %}None"
            "{% else %}{{ (value_json.confidence * 100) | round(1) }}{% endif %}"
        ),
        "icon": "mdi:gauge",
        **common,
    }
    asleep = {
        "name": "Asleep",
        "unique_id": f"{node}_asleep",
        "payload_on": "ON",
        "payload_off": "OFF",
        "value_template": (
            "{% if value_json.asleep is none %}None"
            "{% elif value_json.asleep %}ON{% else %}OFF{% endif %}"
        ),
        "icon": "mdi:bed",
        **common,
    }
    return {
        topics.config("stage"): stage,
        topics.config("confidence"): confidence,
        topics.config("asleep"): asleep,
    }


def current_state(event: dict[str, Any]) -> dict[str, Any]:
    """The retained state payload of a causal stage event.

    ``confidence`` and ``asleep`` are null for an unscored epoch (Home Assistant then
    shows them as unknown); ``stage`` is ``unscored``.
    """
    stage = str(event["stage"])
    scored = stage in STAGE_NAMES
    return {
        "stage": stage,
        "confidence": round(float(event.get("confidence", 0.0)), 4) if scored else None,
        "asleep": (stage in ASLEEP_STAGES) if scored else None,
        "epoch_index": int(event["epoch_index"]),
        "epoch_start": event.get("epoch_start", ""),
        "probabilities": event.get("probabilities", {}),
        "quality": list(event.get("quality", [])),
        "event_id": event.get("event_id", ""),
    }


def encode(payload: dict[str, Any]) -> bytes:
    """Compact, key-stable JSON (the same config twice is the same bytes)."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def all_configs(
    devices: Sequence[str], *, discovery_prefix: str, topic_prefix: str, version: str, model: str
) -> dict[str, bytes]:
    """``topic -> encoded config`` for every device of a run."""
    out: dict[str, bytes] = {}
    for device in devices:
        topics = Topics(discovery_prefix, topic_prefix, device)
        for topic, payload in discovery_configs(topics, version=version, model=model).items():
            out[topic] = encode(payload)
    return out


# ----------------------------------------------------------------------------- delivery


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
        import asyncio

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
        import asyncio

        self._task = asyncio.create_task(self._run(), name="ha-discovery")
        return self

    async def __aexit__(self, *exc: object) -> None:
        import asyncio
        import contextlib

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
        import asyncio

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
        import asyncio

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


class HaStateSink:
    """Per-device sink: keeps ``<topic_prefix>/<device>/current`` at the newest verdict."""

    def __init__(self, publisher: RetainedPublisher, topics: Topics, session: str) -> None:
        self.publisher = publisher
        self.topics = topics
        self.session = session

    async def __aenter__(self) -> HaStateSink:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def write_chunk(self, chunk: Any) -> None:
        return None

    async def publish(self, epoch: Any, prediction: Any) -> None:
        """Retain the causal verdict of the newest epoch as the device's state."""
        from sleepstream.sinks.base import EventContext, build_event

        event = build_event(EventContext(self.topics.device, self.session), epoch, prediction)
        self.publisher.retain(self.topics.state, encode(current_state(event)))

    async def publish_revised(self, epoch: Any, prediction: Any, lookahead: int) -> None:
        """Revised verdicts of older epochs do not change the current state."""
        return None
