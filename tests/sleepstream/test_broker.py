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


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("1", "Cannot assign requested address"),  # resolves to 0.0.0.1
        ("10.255.255.1", "Cannot assign requested address"),  # not an address of this host
        ("256.0.0.1", "not known"),
        ("a..b", "idna"),
        ("\udcff", "idna"),
    ],
)
@pytest.mark.parametrize("port", [0, 1883])
def test_embedded_broker_host_it_cannot_listen_on_is_one_line(host, reason, port):
    """A --broker-host that is no address of this machine: a one-line BrokerError naming
    the flag and the reason, never a traceback from the bind (faults' R6)."""

    async def go():
        async with EmbeddedBroker(EmbeddedBrokerConfig(host=host, port=port)):
            pass

    with pytest.raises(BrokerError) as err:
        asyncio.run(go())
    line = str(err.value)
    assert line.startswith(f"--broker-host {host!r}: ") and reason in line
    assert "\n" not in line


def test_embedded_broker_hands_the_tail_to_subscribers_before_stopping(helpers):
    """Publisher acknowledged, broker stopped at once: a subscriber still gets every
    message (the drain), and a '#' subscriber never sees the drain's private fence."""
    from sleepstream.sinks.mqtt import make_client, mqtt_settings

    n = 300

    async def go():
        async with EmbeddedBroker(EmbeddedBrokerConfig(port=0)) as broker:
            sub = await asyncio.to_thread(helpers.Subscriber, broker.port, "#")
            async with make_client(mqtt_settings(broker.url), client_id="pub") as pub:
                for i in range(n):
                    await pub.publish("t/stage", str(i).encode(), qos=1)
        return sub

    sub = asyncio.run(go())
    try:
        got = [p.decode() for t, p, _ in sub.messages if t == "t/stage"]
        assert got == [str(i) for i in range(n)]
        assert not [t for t, _, _ in sub.messages if t != "t/stage"]
    finally:
        sub.close()


def test_broker_mqtt_web_and_ha_modules_use_no_private_api_of_other_objects():
    """No ``obj._name`` access (nor ``getattr(obj, "_name")``) on anything but
    ``self``/``cls`` (aiomqtt's ``_disconnected``, amqtt's ``_broadcast_queue``, aiohttp's
    ``site._server``...) in the MQTT, live view and Home Assistant modules."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "sleepstream"
    files = ["broker.py", "names.py", "commands/watch.py", "commands/ha_forget.py"] + [
        f"sinks/{n}.py"
        for n in (
            "mqtt",
            "mqtt_client",
            "mqtt_health",
            "mqtt_link",
            "mqtt_queue",
            "mqtt_settings",
            "outbox",
        )
    ]
    files += [str(f.relative_to(root)) for f in sorted((root / "sinks/ha_discovery").glob("*.py"))]
    files += [
        str(f.relative_to(root))
        for f in sorted((root / "web").glob("*.py"))
        if f.name != "report.py"  # the report module's owner checks it
    ]
    assert len(files) > 20
    found = []
    for rel in files:
        tree = ast.parse((root / rel).read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            ):
                found.append(f"{rel}:{node.lineno} .{node.attr}")
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr", "setattr")
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and str(node.args[1].value).startswith("_")
                and not str(node.args[1].value).startswith("__")
            ):
                found.append(f"{rel}:{node.lineno} {node.func.id}(..., {node.args[1].value!r})")
    assert found == []
