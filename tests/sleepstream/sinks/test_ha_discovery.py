"""Home Assistant MQTT discovery: payloads against HA's documented keys, retained on a
real mosquitto, stable across restarts, removed by ``sleepstream ha-forget``."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import re
import time
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from sleepstream import __version__
from sleepstream.sinks.ha_discovery import (
    ENTITIES,
    STAGE_OPTIONS,
    HaFactory,
    HaStateSink,
    Topics,
    all_configs,
    check_discovery_prefix,
    current_state,
    discovery_configs,
    node_id,
)
from sleepstream.sinks.mqtt_settings import mqtt_settings
from sleepstream.types import UNSCORED, Epoch, StagePrediction

SCHEMA = json.loads((Path(__file__).parent / "ha_mqtt_discovery.schema.json").read_text())
#: <discovery_prefix>/<component>/[<node_id>/]<object_id>/config (HA's discovery topic)
TOPIC_RE = re.compile(r"^(?P<prefix>.+)/(?P<component>[a-z_]+)/(?P<node>[A-Za-z0-9_-]+)/"
                      r"(?P<object>[A-Za-z0-9_-]+)/config$")  # fmt: skip


def validate(topic: str, payload: dict) -> str:
    """Check a discovery message against the documented schema of its component."""
    m = TOPIC_RE.match(topic)
    assert m, f"not a discovery topic: {topic}"
    component = m["component"]
    schema = {**SCHEMA, "oneOf": [{"$ref": f"#/$defs/{component}"}]}
    jsonschema.Draft202012Validator(schema).validate(payload)
    return component


def _epoch(i: int, stage: int, quality: tuple[str, ...] = ()) -> tuple[Epoch, StagePrediction]:
    epoch = Epoch(i, 30.0 * i, f"2026-01-01T22:{i:02d}:00Z", np.zeros(3000, np.float32),
                  quality=quality, unscored_reasons=("flat",) if stage == UNSCORED else ())  # fmt: skip
    probs = np.full(5, 0.05)
    if stage >= 0:
        probs[stage] = 0.8
    return epoch, StagePrediction(i, stage, probs, 0.8 if stage >= 0 else 0.0, "m")


def test_node_id_is_stable_and_topic_safe():
    """node_id: readable for plain names, [A-Za-z0-9_-] only, distinct where '.' was replaced."""
    assert node_id("sleepstream", "bed1") == "sleepstream_bed1"
    assert node_id("sleepstream", "bed1") == node_id("sleepstream", "bed1")
    assert node_id("clinic/ward2", "bed1") == "clinic_ward2_bed1"
    dotted, underscored = node_id("sleepstream", "bed.1"), node_id("sleepstream", "bed_1")
    assert dotted != underscored
    assert re.fullmatch(r"[A-Za-z0-9_-]+", dotted)
    assert node_id("a", "bed1") != node_id("b", "bed1")


def test_discovery_prefix_is_checked():
    """A prefix with wildcards or empty levels is a usage error naming the flag."""
    assert check_discovery_prefix("homeassistant") == "homeassistant"
    for bad in ("", "ha/#", "ha/+/x", "/ha", "ha//x"):
        with pytest.raises(Exception, match="--ha-discovery"):
            check_discovery_prefix(bad)


def test_configs_follow_the_documented_schema():
    """Three entities per device, each valid for its component, unique ids per device."""
    topics = Topics("homeassistant", "sleepstream", "bed1")
    configs = discovery_configs(topics, version=__version__, model="student-v1")
    assert sorted(configs) == sorted(topics.configs())
    components = {}
    for topic, payload in configs.items():
        components[TOPIC_RE.match(topic)["object"]] = validate(topic, payload)
        assert payload["availability_topic"] == "sleepstream/bed1/status"
        assert payload["state_topic"] == "sleepstream/bed1/current"
        assert payload["device"]["identifiers"] == ["sleepstream_bed1"]
    assert components == ENTITIES
    ids = [p["unique_id"] for p in configs.values()]
    assert len(set(ids)) == 3
    stage = configs[topics.config("stage")]
    assert stage["options"] == list(STAGE_OPTIONS)
    other = discovery_configs(Topics("homeassistant", "sleepstream", "bed2"), version="x")
    assert not set(ids) & {p["unique_id"] for p in other.values()}


def test_schema_rejects_what_home_assistant_rejects():
    """The schema check can fail: a misspelt key, an enum sensor with a unit, no state_topic."""
    topics = Topics("homeassistant", "sleepstream", "bed1")
    configs = discovery_configs(topics, version="1")
    stage = dict(configs[topics.config("stage")])
    for broken in (
        {**stage, "unit_of_measurment": "%"},
        {**stage, "unit_of_measurement": "%"},
        {k: v for k, v in stage.items() if k != "state_topic"},
        {k: v for k, v in stage.items() if k != "device_class"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            validate(topics.config("stage"), broken)


def test_templates_render_states_home_assistant_accepts():
    """Each value template (Jinja in HA's immutable sandbox) gives a state its entity accepts."""
    sandbox = pytest.importorskip("jinja2.sandbox")
    env = sandbox.ImmutableSandboxedEnvironment()
    topics = Topics("homeassistant", "sleepstream", "bed1")
    configs = discovery_configs(topics, version="1")
    from sleepstream.sinks.base import EventContext, build_event

    for stage in (0, 1, 2, 3, 4, UNSCORED):
        epoch, pred = _epoch(3, stage)
        state = current_state(build_event(EventContext("bed1", "s"), epoch, pred))
        assert state["stage"] in STAGE_OPTIONS
        rendered = {
            TOPIC_RE.match(t)["object"]: env.from_string(p["value_template"]).render(
                value_json=state
            )
            for t, p in configs.items()
        }
        attrs = json.loads(
            env.from_string(configs[topics.config("stage")]["json_attributes_template"]).render(
                value_json=state
            )
        )
        assert set(attrs) == {"probabilities", "epoch_index", "epoch_start", "time_zone", "quality"}
        assert (attrs["epoch_start"], attrs["time_zone"]) == ("2026-01-01T22:03:00.000Z", "UTC")
        if stage == UNSCORED:
            assert rendered == {"stage": "unscored", "confidence": "None", "asleep": "None"}
        else:
            assert rendered["stage"] == state["stage"]
            assert float(rendered["confidence"]) == pytest.approx(80.0)
            assert rendered["asleep"] == ("OFF" if stage == 0 else "ON")


def test_state_and_attributes_say_when_the_recordings_zone_is_unknown():
    """R18: a replayed EDF's epoch (naive start) gives a state whose epoch_start has no
    offset and time_zone null, and so do the entity's attributes; a state retained by an
    older daemon (no time_zone, always an offset) still renders, as UTC."""
    sandbox = pytest.importorskip("jinja2.sandbox")
    env = sandbox.ImmutableSandboxedEnvironment()
    topics = Topics("homeassistant", "sleepstream", "bed1")
    template = discovery_configs(topics, version="1")[topics.config("stage")]
    from sleepstream.sinks.base import EventContext, build_event

    epoch, pred = _epoch(3, 2)
    epoch = dataclasses.replace(epoch, start_clock="1989-04-24T16:13:00.000")
    state = current_state(build_event(EventContext("bed1", "s"), epoch, pred))
    assert (state["epoch_start"], state["time_zone"]) == ("1989-04-24T16:13:00.000", None)
    render = env.from_string(template["json_attributes_template"]).render
    attrs = json.loads(render(value_json=state))
    assert (attrs["epoch_start"], attrs["time_zone"]) == ("1989-04-24T16:13:00.000", None)
    old = {k: v for k, v in state.items() if k != "time_zone"}
    old["epoch_start"] = "2026-01-01T22:03:00.000+00:00"
    assert json.loads(render(value_json=old))["time_zone"] == "UTC"


async def _retained(url_port: int, topic_filter: str, wait: float = 0.7) -> dict[str, bytes]:
    """Retained messages a fresh subscriber receives (non-empty ones)."""
    import aiomqtt

    out: dict[str, bytes] = {}
    async with aiomqtt.Client("127.0.0.1", url_port, identifier=f"t-{id(out)}") as client:
        await client.subscribe(topic_filter, qos=1)

        async def collect() -> None:
            async for m in client.messages:
                if m.retain and m.payload:
                    out[str(m.topic)] = bytes(m.payload)

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(collect(), wait)
    return out


def _link(url: str, devices, tmp_path: Path):
    """The daemon's MQTT link (one connection, one outbox) that discovery publishes over."""
    from sleepstream.sinks.mqtt_link import MqttLink
    from sleepstream.sinks.outbox import Outbox

    return MqttLink(
        mqtt_settings(url), outbox=Outbox(tmp_path / "outbox.sqlite"), devices=devices,
        daemon="host-1", retry_cap_s=(0.3, 0.3),
    )  # fmt: skip


def _factory(link, devices) -> HaFactory:
    """What ``--ha-discovery homeassistant`` builds over ``link`` (as the sink kind does)."""
    topics = {d: Topics("homeassistant", "sleepstream", d, link.status_topic) for d in devices}
    configs = all_configs(
        devices, discovery_prefix="homeassistant", topic_prefix="sleepstream",
        version=__version__, model="m", daemon_status=link.status_topic,
    )  # fmt: skip
    return HaFactory(link, configs, topics)


async def _publish_configs(url, devices, tmp_path, *, states=()) -> None:
    async with _link(url, devices, tmp_path) as link, _factory(link, devices) as factory:
        for device, (epoch, pred) in states:
            sink = HaStateSink(link, factory.topics[device], "s1")
            await sink.publish(epoch, pred)
        await asyncio.wait_for(factory.drained(), 10)


@pytest.mark.network
def test_configs_are_retained_and_identical_after_a_restart(mosquitto, tmp_path):
    """Two daemon starts leave exactly three retained configs per device, byte-identical,
    published over the daemon's one connection (no second client)."""
    asyncio.run(_publish_configs(mosquitto.url, ["bed1", "bed2"], tmp_path))
    first = asyncio.run(_retained(mosquitto.port, "homeassistant/#"))
    asyncio.run(_publish_configs(mosquitto.url, ["bed1", "bed2"], tmp_path))
    second = asyncio.run(_retained(mosquitto.port, "homeassistant/#"))
    assert first == second
    assert len(first) == 6
    for topic, payload in first.items():
        config = json.loads(payload)
        validate(topic, config)
        assert [a["topic"] for a in config["availability"]] == [
            f"sleepstream/{config['device']['name']}/status",
            "sleepstream/_daemon/host-1/status",
        ]
    ids = [json.loads(p)["unique_id"] for p in first.values()]
    assert len(set(ids)) == 6
    clients = re.findall(r"New client connected from \S+ as (\S+)", mosquitto.log.read_text())
    assert len([c for c in clients if c.startswith("sleepstream-")]) == 2  # one per start


@pytest.mark.network
def test_state_is_the_newest_causal_verdict(mosquitto, tmp_path):
    """The retained state follows publish(), ignores revisions, and is null when unscored."""

    async def scenario(*steps) -> None:
        async with _link(mosquitto.url, ["bed1"], tmp_path) as link:
            sink = HaStateSink(link, Topics("homeassistant", "sleepstream", "bed1"), "s1")
            for revised, (epoch, pred) in steps:
                if revised:
                    await sink.publish_revised(epoch, pred, 1)
                else:
                    await sink.publish(epoch, pred)
            await asyncio.wait_for(link.retained_sent(), 10)

    def state() -> dict:
        retained = asyncio.run(_retained(mosquitto.port, "sleepstream/+/current"))
        return json.loads(retained["sleepstream/bed1/current"])

    asyncio.run(scenario((False, _epoch(0, 0)), (False, _epoch(1, 2, ("gap",))),
                         (True, _epoch(0, 3))))  # fmt: skip
    got = state()
    assert (got["stage"], got["epoch_index"], got["asleep"]) == ("N2", 1, True)
    assert got["quality"] == ["gap"]
    assert got["event_id"] == "bed1:s1:1"

    asyncio.run(scenario((False, _epoch(2, UNSCORED))))
    got = state()
    assert (got["stage"], got["confidence"], got["asleep"]) == ("unscored", None, None)


@pytest.mark.slow
@pytest.mark.network
def test_configs_come_back_after_the_broker_lost_them(mosquitto, tmp_path):
    """A broker restarted without persistence gets every retained config again, from the
    same connection's reconnect."""

    async def scenario() -> dict[str, bytes]:
        link = _link(mosquitto.url, ["bed1"], tmp_path)
        async with link, _factory(link, ["bed1"]) as factory:
            await asyncio.wait_for(factory.drained(), 10)
            mosquitto.kill()  # forgets every retained message (persistence false)
            mosquitto.start()
            deadline = time.monotonic() + 30
            got: dict[str, bytes] = {}
            while len(got) < 3 and time.monotonic() < deadline:
                got = await _retained(mosquitto.port, "homeassistant/#", wait=0.3)
            return got

    got = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert sorted(got) == sorted(Topics("homeassistant", "sleepstream", "bed1").configs())


@pytest.mark.network
def test_ha_forget_removes_the_device_configs_only(mosquitto, tmp_path, capsys):
    """ha-forget clears bed1's configs (also an unknown older one) and state, not bed2's."""
    from sleepstream.clikit import dispatch

    asyncio.run(_publish_configs(mosquitto.url, ["bed1", "bed2"], tmp_path,
                                 states=[("bed1", _epoch(0, 2))]))  # fmt: skip
    legacy = "homeassistant/sensor/sleepstream_bed1/old_entity/config"

    async def add_legacy() -> None:
        async with _link(mosquitto.url, ["bed1"], tmp_path) as link:
            link.retain(legacy, b'{"state_topic":"x"}')
            await asyncio.wait_for(link.retained_sent(), 10)

    asyncio.run(add_legacy())
    assert len(asyncio.run(_retained(mosquitto.port, "homeassistant/#"))) == 7
    assert list(asyncio.run(_retained(mosquitto.port, "sleepstream/+/current"))) == [
        "sleepstream/bed1/current"
    ]
    rc = dispatch(
        "sleepstream", "", {"ha-forget": "sleepstream.commands.ha_forget"},
        ["ha-forget", "bed1", "--mqtt", mosquitto.url, "--wait", "0.5"], env_prefix="SLEEPSTREAM",
    )  # fmt: skip
    assert rc == 0
    out = capsys.readouterr().out
    assert "bed1: cleared 4 discovery config(s)" in out
    left = asyncio.run(_retained(mosquitto.port, "homeassistant/#"))
    assert sorted(left) == sorted(Topics("homeassistant", "sleepstream", "bed2").configs())
    assert asyncio.run(_retained(mosquitto.port, "sleepstream/+/current")) == {}


def test_ha_forget_rejects_a_bad_device_name(capsys):
    """A device name with a wildcard is a usage error before any connection."""
    from sleepstream.clikit import dispatch

    rc = dispatch(
        "sleepstream", "", {"ha-forget": "sleepstream.commands.ha_forget"},
        ["ha-forget", "bed/#", "--mqtt", "mqtt://127.0.0.1:9"], env_prefix="SLEEPSTREAM",
    )  # fmt: skip
    assert rc == 2
    assert "DEVICE 'bed/#'" in capsys.readouterr().err


def test_availability_follows_device_and_daemon_status():
    """With a daemon status topic, entities are available only while both say online."""
    topics = Topics("homeassistant", "sleepstream", "bed1", "sleepstream/_daemon/h-1/status")
    for topic, payload in discovery_configs(topics, version="1").items():
        validate(topic, payload)
        assert "availability_topic" not in payload
        assert payload["availability_mode"] == "all"
        assert [a["topic"] for a in payload["availability"]] == [
            "sleepstream/bed1/status",
            "sleepstream/_daemon/h-1/status",
        ]
    both = dict(discovery_configs(topics, version="1")[topics.config("stage")])
    both["availability_topic"] = "sleepstream/bed1/status"
    with pytest.raises(jsonschema.ValidationError):  # HA: not both forms at once
        validate(topics.config("stage"), both)
