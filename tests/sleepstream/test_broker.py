"""The embedded amqtt broker: loopback by default, in the daemon's own loop, QoS 1."""

import asyncio
import socket

import pytest

from sleepstream.broker import EmbeddedBroker, EmbeddedBrokerConfig
from sleepstream.errors import BrokerError

pytestmark = pytest.mark.network


def test_embedded_broker_defaults_to_loopback_1883():
    """Nothing is exposed beyond 127.0.0.1 unless configured."""
    assert EmbeddedBrokerConfig() == EmbeddedBrokerConfig("127.0.0.1", 1883)


def test_embedded_broker_relays_qos1_and_retained_messages():
    """Publish/subscribe with QoS 1 and a retained status through the in-loop broker."""
    from sleepstream.sinks.mqtt import make_client, mqtt_settings

    async def go():
        async with EmbeddedBroker(EmbeddedBrokerConfig(port=0)) as broker:
            assert broker.url.startswith("mqtt://127.0.0.1:")
            s = mqtt_settings(broker.url)
            async with make_client(s, client_id="pub") as pub:
                await pub.publish("t/status", b"online", qos=1, retain=True)
            async with make_client(s, client_id="sub") as sub:
                await sub.subscribe("t/#", qos=1)
                async with make_client(s, client_id="pub2") as pub:
                    await pub.publish("t/stage", b"N2", qos=1)
                got = []
                async for m in sub.messages:
                    got.append((str(m.topic), bytes(m.payload)))
                    if len(got) == 2:
                        break
            return got

    assert sorted(asyncio.run(go())) == [("t/stage", b"N2"), ("t/status", b"online")]


def test_embedded_broker_port_in_use_is_a_broker_error():
    """A taken port gives a one-line BrokerError suggesting --mqtt or --broker-port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]

        async def go():
            async with EmbeddedBroker(EmbeddedBrokerConfig(port=port)):
                pass

        with pytest.raises(BrokerError, match="--broker-port"):
            asyncio.run(go())
