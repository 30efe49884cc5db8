"""Home Assistant MQTT discovery as a registered sink kind (``--ha-discovery PREFIX``)."""

from __future__ import annotations

from typing import Any

from sleepstream.errors import UsageError
from sleepstream.settings import Setting
from sleepstream.sinks.ha_discovery.payloads import (
    HaConfig,
    Topics,
    all_configs,
    check_discovery_prefix,
)
from sleepstream.sinks.ha_discovery.publisher import HaFactory, RetainedPublisher
from sleepstream.sinks.registry import SinkKind


def _prefix(raw: str) -> str:
    try:
        return check_discovery_prefix(str(raw).strip())
    except UsageError as exc:
        raise ValueError(str(exc).split(": ", 1)[-1]) from None


def _factory(options: HaConfig, ctx: Any) -> HaFactory | None:
    if options.discovery_prefix is None:
        return None
    import dataclasses
    import os

    from sleepstream import __version__
    from sleepstream.sinks.mqtt_settings import mqtt_settings, read_password

    m = ctx.config.mqtt
    settings = mqtt_settings(
        ctx.mqtt_url,
        username=m.username,
        password=read_password(m.password_file),
        ca_file=m.ca_file,
        cert_file=m.cert_file,
        key_file=m.key_file,
        tls_insecure=m.tls_insecure,
        topic_prefix=m.topic_prefix,
    )
    settings = dataclasses.replace(settings, client_id=None)
    client_id = f"{m.client_id}-ha" if m.client_id else f"sleepstream-ha-{os.getpid()}"
    mqtt = ctx.factories.get("mqtt")
    daemon_status = getattr(mqtt, "daemon_status_topic", None)  # seam: the mqtt link's will
    devices = [d.name for d in ctx.config.devices]
    topics = {
        d: Topics(options.discovery_prefix, settings.topic_prefix, d, daemon_status)
        for d in devices
    }
    configs = all_configs(
        devices,
        discovery_prefix=options.discovery_prefix,
        topic_prefix=settings.topic_prefix,
        version=__version__,
        model=str(getattr(ctx.stager, "model_id", "")),
        daemon_status=daemon_status,
    )
    publisher = RetainedPublisher(settings, client_id=client_id)
    return HaFactory(publisher, configs, topics)


SINK = SinkKind(
    "ha_discovery",
    "Home Assistant MQTT discovery (stage, confidence, asleep per device)",
    HaConfig,
    _factory,
    options=(
        Setting(
            "ha_discovery",
            "discovery_prefix",
            "publish Home Assistant MQTT discovery configs under PREFIX "
            "(Home Assistant's default: homeassistant)",
            _prefix,
            metavar="PREFIX",
        ),
    ),
)
