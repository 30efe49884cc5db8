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
All of it goes over the daemon's one MQTT connection (the MQTT link's retained messages,
republished after every reconnect): discovery opens no connection of its own.

Availability: one connection has one last will, the daemon's status topic
``<topic_prefix>/_daemon/<id>/status``. Every entity lists it beside the device's own
retained status ``<topic_prefix>/<device>/status`` with ``availability_mode: all``, so
an entity is available only while the device *and* the daemon serving it are
``online``: a clean stop turns the device ``offline``, a crashed daemon (``kill -9``,
power, network) turns its will ``offline``.

``<node>`` and every ``unique_id`` derive from the topic prefix and the device name only,
so a restart republishes the same configs and Home Assistant keeps the same entities.
``sleepstream ha-forget DEVICE`` publishes empty retained configs, which removes them.
Keys follow Home Assistant's MQTT discovery documentation (integrations/mqtt,
sensor.mqtt, binary_sensor.mqtt); payloads use the full key names, not abbreviations.

Modules: :mod:`.payloads` (topics and payloads), :mod:`.publisher` (the per-device state
sink and the factory, over the MQTT link), :mod:`.kind` (the registered sink kind,
``sleepstream.sinks.ha_discovery.kind:SINK``).
"""

from sleepstream.sinks.ha_discovery.payloads import (
    ASLEEP_STAGES,
    DEFAULT_DISCOVERY_PREFIX,
    ENTITIES,
    STAGE_OPTIONS,
    HaConfig,
    Topics,
    all_configs,
    check_discovery_prefix,
    current_state,
    discovery_configs,
    encode,
    node_id,
)
from sleepstream.sinks.ha_discovery.publisher import HaFactory, HaStateSink, Retainer

__all__ = [
    "ASLEEP_STAGES",
    "DEFAULT_DISCOVERY_PREFIX",
    "ENTITIES",
    "STAGE_OPTIONS",
    "HaConfig",
    "HaFactory",
    "HaStateSink",
    "Retainer",
    "Topics",
    "all_configs",
    "check_discovery_prefix",
    "current_state",
    "discovery_configs",
    "encode",
    "node_id",
]
