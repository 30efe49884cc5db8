"""``sleepstream ha-forget DEVICE``: remove a device's Home Assistant discovery configs.

Publishes an empty retained message on every discovery config of the device (the three
that ``--ha-discovery`` publishes, and any other config found under the device's node,
e.g. from an older version) and on its retained state topic; Home Assistant then
removes the entities. A daemon still running with ``--ha-discovery`` publishes them
again on its next connection: stop it first, or drop the flag.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from typing import TYPE_CHECKING

from sleepstream.commands._daemon_args import add_mqtt_arguments, client_settings

if TYPE_CHECKING:
    from sleepstream.sinks.ha_discovery import Topics
    from sleepstream.sinks.mqtt_settings import MqttSettings

HELP = "remove a device's Home Assistant MQTT discovery configs (retained)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.split("\n\n", 1)[1].replace("\n", " ") if __doc__ else None
    parser.add_argument("devices", nargs="+", metavar="DEVICE", help="device name(s)")
    parser.add_argument(
        "--ha-prefix",
        default="homeassistant",
        metavar="PREFIX",
        help="Home Assistant's discovery prefix (%(default)s)",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=1.0,
        metavar="S",
        help="seconds to collect the retained configs the broker holds (%(default)s)",
    )
    add_mqtt_arguments(parser, embedded=False)


async def forget(settings: MqttSettings, topics: list[Topics], wait_s: float) -> list[str]:
    """Clear every discovery config of ``topics`` (one :class:`Topics` per device).

    Returns the config topics that were cleared (found retained, or known).
    """
    from sleepstream.sinks.mqtt_settings import make_client

    found: set[str] = set()
    async with make_client(settings) as client:
        for t in topics:
            await client.subscribe(t.config_filter(), qos=1)

        async def collect() -> None:
            async for message in client.messages:
                if message.retain and message.payload:
                    found.add(str(message.topic))

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(collect(), timeout=max(0.0, wait_s))
        for t in topics:
            await client.unsubscribe(t.config_filter())
        cleared = sorted(found | {c for t in topics for c in t.configs()})
        for topic in cleared + [t.state for t in topics]:
            await client.publish(topic, b"", qos=1, retain=True)
    return cleared


def run(args: argparse.Namespace) -> int:
    import aiomqtt

    from sleepstream.config import check_device_name
    from sleepstream.errors import BrokerError
    from sleepstream.sinks.ha_discovery import Topics, check_discovery_prefix

    prefix = check_discovery_prefix(args.ha_prefix)
    devices = [check_device_name(d, "DEVICE") for d in args.devices]
    settings = client_settings(args)
    topics = [Topics(prefix, settings.topic_prefix, d) for d in devices]
    try:
        cleared = asyncio.run(forget(settings, topics, args.wait))
    except aiomqtt.MqttError as exc:
        raise BrokerError(f"--mqtt {settings.url()}: {exc}") from None
    for t in topics:
        mine = [c for c in cleared if f"/{t.node}/" in c]
        print(f"{t.device}: cleared {len(mine)} discovery config(s) and {t.state}")
        for c in mine:
            print(f"  {c}")
    sys.stdout.flush()
    return 0
