"""Home Assistant MQTT discovery: topics and payloads (pure functions, no I/O).

What is published where, and why, is in the package docstring
(:mod:`sleepstream.sinks.ha_discovery`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sleepstream.errors import UsageError
from sleepstream.types import STAGE_NAMES

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
    """The MQTT topics of one device's discovery.

    Attributes
    ----------
    discovery_prefix, topic_prefix, device : str
    daemon_status : str or None
        The serving daemon's own retained status topic (``<prefix>/_daemon/<id>/status``,
        the connection's last will) where the MQTT link has one: the entities are then
        available only while the device's status *and* the daemon's are ``online``.
    """

    discovery_prefix: str
    topic_prefix: str
    device: str
    daemon_status: str | None = None

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
    if topics.daemon_status:
        availability: dict[str, Any] = {
            "availability": [
                {"topic": topics.availability},
                {"topic": topics.daemon_status},
            ],
            "availability_mode": "all",
        }
    else:
        availability = {"availability_topic": topics.availability}
    common = {
        "state_topic": topics.state,
        **availability,
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
            "'time_zone': value_json.get('time_zone', 'UTC'), "
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
    shows them as unknown); ``stage`` is ``unscored``. ``epoch_start`` and ``time_zone``
    are the event's (``time_zone`` null: a replayed recording's local time, zone unknown).
    """
    stage = str(event["stage"])
    scored = stage in STAGE_NAMES
    return {
        "stage": stage,
        "confidence": round(float(event.get("confidence", 0.0)), 4) if scored else None,
        "asleep": (stage in ASLEEP_STAGES) if scored else None,
        "epoch_index": int(event["epoch_index"]),
        "epoch_start": event.get("epoch_start", ""),
        "time_zone": event.get("time_zone", "UTC"),  # null: the recording's local time
        "probabilities": event.get("probabilities", {}),
        "quality": list(event.get("quality", [])),
        "event_id": event.get("event_id", ""),
    }


def encode(payload: dict[str, Any]) -> bytes:
    """Compact, key-stable JSON (the same config twice is the same bytes)."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def all_configs(
    devices: Sequence[str],
    *,
    discovery_prefix: str,
    topic_prefix: str,
    version: str,
    model: str,
    daemon_status: str | None = None,
) -> dict[str, bytes]:
    """``topic -> encoded config`` for every device of a run."""
    out: dict[str, bytes] = {}
    for device in devices:
        topics = Topics(discovery_prefix, topic_prefix, device, daemon_status)
        for topic, payload in discovery_configs(topics, version=version, model=model).items():
            out[topic] = encode(payload)
    return out
