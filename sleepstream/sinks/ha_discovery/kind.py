"""Home Assistant MQTT discovery as a registered sink kind (``--ha-discovery [PREFIX]``)."""

from __future__ import annotations

from sleepstream.errors import ConfigError, UsageError
from sleepstream.settings import Setting
from sleepstream.sinks.ha_discovery.payloads import (
    DEFAULT_DISCOVERY_PREFIX,
    HaConfig,
    Topics,
    all_configs,
    check_discovery_prefix,
)
from sleepstream.sinks.ha_discovery.publisher import HaFactory
from sleepstream.sinks.registry import DaemonContext, SinkKind


def _prefix(raw: str) -> str:
    try:
        return check_discovery_prefix(str(raw).strip())
    except UsageError as exc:
        raise ValueError(str(exc).split(": ", 1)[-1]) from None


def _factory(options: HaConfig, ctx: DaemonContext) -> HaFactory | None:
    """The discovery factory, publishing over the daemon's one MQTT connection."""
    if options.discovery_prefix is None:
        return None
    from sleepstream import __version__
    from sleepstream.sinks.mqtt import DaemonMqtt

    mqtt = ctx.factories.get("mqtt")
    if not isinstance(mqtt, DaemonMqtt):
        raise ConfigError(
            "--ha-discovery publishes over the daemon's MQTT connection, and this daemon "
            "runs no MQTT sink"
        )
    link = mqtt.link
    devices = [d.name for d in ctx.config.devices]
    prefix, topic_prefix = options.discovery_prefix, link.settings.topic_prefix
    # availability: the device's status AND the daemon's (the connection's will)
    topics = {d: Topics(prefix, topic_prefix, d, link.status_topic) for d in devices}
    configs = all_configs(
        devices,
        discovery_prefix=prefix,
        topic_prefix=topic_prefix,
        version=__version__,
        model=ctx.stager.model_id,
        daemon_status=link.status_topic,
    )
    return HaFactory(link, configs, topics)


SINK = SinkKind(
    "ha_discovery",
    "Home Assistant MQTT discovery (stage, confidence, asleep per device)",
    HaConfig,
    _factory,
    options=(
        Setting(
            "ha_discovery",
            "discovery_prefix",
            "publish Home Assistant MQTT discovery configs under PREFIX (the flag "
            f"alone: {DEFAULT_DISCOVERY_PREFIX}, Home Assistant's default)",
            _prefix,
            optional=DEFAULT_DISCOVERY_PREFIX,
            metavar="PREFIX",
        ),
    ),
)
