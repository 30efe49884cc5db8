"""``sleepstream run --ha-discovery [PREFIX]`` end to end, against a real mosquitto."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from sleepstream.sinks.ha_discovery import Topics

SCHEMA = json.loads((Path(__file__).parent / "ha_mqtt_discovery.schema.json").read_text())
NIGHT = "W W 1 2 2 3 3 2 R R"

pytestmark = pytest.mark.network


def _run_night(tmp_path: Path, url: str, helpers, *ha: str) -> str:
    night = tmp_path / "night.hyp"
    night.write_text(NIGHT + "\n")
    argv = [sys.executable, "-m", "sleepstream", "run", "--source", f"synthetic-night:{night}",
            "--speed", "max", "--device", "bed1", "--mqtt", url, "--ha-discovery", *ha,
            "--no-metrics", "--quiet", "--state-dir", str(tmp_path / "state")]  # fmt: skip
    proc = subprocess.run(
        argv, env=helpers.daemon_env(), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stderr


def _retained(helpers, port: int, topic: str) -> dict[str, bytes]:
    sub = helpers.Subscriber(port, topic)
    try:
        sub.wait_for(lambda s: False, timeout=1.0)  # retained messages arrive at once
        with sub.lock:
            return {t: p for t, p, retained in sub.messages if retained and p}
    finally:
        sub.close()


def _daemon_clients(broker) -> list[str]:
    """Client ids of the connections mosquitto accepted, test subscribers left out."""
    found = re.findall(r"New client connected from \S+ as (\S+)", broker.log.read_text())
    return [c for c in found if not c.startswith("test-sub-")]


@pytest.mark.slow
def test_run_publishes_discovery_and_state_and_a_restart_keeps_them(tmp_path, mosquitto, helpers):
    """Three valid configs and the newest state, retained over the daemon's one MQTT
    connection; available only while the device and its daemon are online; a second run
    (the flag alone: prefix homeassistant) changes nothing."""
    _run_night(tmp_path, mosquitto.url, helpers, "homeassistant")
    assert len(_daemon_clients(mosquitto)) == 1  # no second connection for discovery
    first = _retained(helpers, mosquitto.port, "homeassistant/#")
    topics = Topics("homeassistant", "sleepstream", "bed1")
    assert sorted(first) == sorted(topics.configs())
    daemon = _retained(helpers, mosquitto.port, "sleepstream/bed1/daemon")
    daemon_status = f"sleepstream/_daemon/{daemon['sleepstream/bed1/daemon'].decode()}/status"
    for topic, payload in first.items():
        component = topic.split("/")[1]
        schema = {**SCHEMA, "oneOf": [{"$ref": f"#/$defs/{component}"}]}
        config = json.loads(payload)
        jsonschema.Draft202012Validator(schema).validate(config)
        assert config["availability_mode"] == "all"
        assert [a["topic"] for a in config["availability"]] == [topics.availability, daemon_status]
    state = json.loads(_retained(helpers, mosquitto.port, topics.state)[topics.state])
    assert state["epoch_index"] == len(NIGHT.split()) - 1
    status = _retained(helpers, mosquitto.port, "sleepstream/#")
    assert status[topics.availability] == b"offline"  # the run ended: unavailable
    assert status[daemon_status] == b"offline"

    _run_night(tmp_path, mosquitto.url, helpers)
    assert len(_daemon_clients(mosquitto)) == 2
    second = _retained(helpers, mosquitto.port, "homeassistant/#")
    assert second == first  # same topics, same unique ids, same bytes: no new entities


def _available(config: dict, retained: dict[str, bytes]) -> bool:
    """Home Assistant's rule for an ``availability`` list with ``availability_mode: all``:
    available only while every listed topic holds ``payload_available``."""
    assert config["availability_mode"] == "all"
    want = config["payload_available"].encode()
    return all(retained.get(a["topic"]) == want for a in config["availability"])


@pytest.mark.slow
def test_a_killed_daemon_makes_its_entities_unavailable_by_its_will(tmp_path, mosquitto, helpers):
    """While the daemon runs the entities are available; after ``kill -9`` (no clean
    'offline' possible) the connection's will makes them unavailable, although the
    device's own retained status still says online."""
    import signal
    import time

    night = tmp_path / "night.hyp"
    night.write_text(NIGHT + "\n")
    argv = [sys.executable, "-m", "sleepstream", "run", "--source", f"synthetic-night:{night}",
            "--speed", "max", "--device", "bed1", "--mqtt", mosquitto.url, "--ha-discovery",
            "--stay", "--no-metrics", "--quiet", "--state-dir", str(tmp_path / "state")]  # fmt: skip
    log = (tmp_path / "daemon.log").open("wb")
    proc = subprocess.Popen(argv, env=helpers.daemon_env(), stdout=log, stderr=subprocess.STDOUT)
    topics = Topics("homeassistant", "sleepstream", "bed1")
    last = len(NIGHT.split()) - 1
    try:
        deadline, retained = time.monotonic() + 90, {}
        while time.monotonic() < deadline:  # the whole night staged, the daemon still up
            retained = _retained(helpers, mosquitto.port, "#")
            state = retained.get(topics.state)
            if state and json.loads(state)["epoch_index"] == last:
                break
            assert proc.poll() is None, (tmp_path / "daemon.log").read_text()
        config = json.loads(retained[topics.config("stage")])
        assert _available(config, retained)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 15  # the broker publishes the will once it sees the close
        after = _retained(helpers, mosquitto.port, "#")
        while _available(config, after) and time.monotonic() < deadline:
            after = _retained(helpers, mosquitto.port, "#")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()
    assert after[topics.availability] == b"online"  # nobody could say otherwise...
    assert not _available(config, after)  # ...but the daemon's will did
    assert after[topics.state] == retained[topics.state]  # the last verdict stays shown
