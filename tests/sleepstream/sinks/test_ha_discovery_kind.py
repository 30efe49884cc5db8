"""``sleepstream run --ha-discovery PREFIX`` end to end, against a real mosquitto."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from sleepstream.sinks.ha_discovery import Topics

SCHEMA = json.loads((Path(__file__).parent / "ha_mqtt_discovery.schema.json").read_text())
NIGHT = "W W 1 2 2 3 3 2 R R"
#: Runs the CLI with both kinds registered (if the registry does not list them yet).
LAUNCH = (
    "import sys\n"
    "from sleepstream.sinks import registry\n"
    "for name, target in (('web', 'sleepstream.web.sink:SINK'),\n"
    "                     ('ha_discovery', 'sleepstream.sinks.ha_discovery.kind:SINK')):\n"
    "    if name not in registry.SINKS:\n"
    "        registry.register_sink(name, target)\n"
    "from sleepstream.cli import main\n"
    "raise SystemExit(main(sys.argv[1:]))\n"
)

pytestmark = pytest.mark.network


def _run_night(tmp_path: Path, url: str, helpers) -> str:
    night = tmp_path / "night.hyp"
    night.write_text(NIGHT + "\n")
    argv = [sys.executable, "-c", LAUNCH, "run", "--source", f"synthetic-night:{night}",
            "--speed", "max", "--device", "bed1", "--mqtt", url, "--ha-discovery",
            "homeassistant", "--no-metrics", "--quiet", "--state-dir", str(tmp_path / "state")]  # fmt: skip
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


def test_run_publishes_discovery_and_state_and_a_restart_keeps_them(tmp_path, mosquitto, helpers):
    """Three valid configs and the newest state, retained; a second run changes nothing."""
    _run_night(tmp_path, mosquitto.url, helpers)
    first = _retained(helpers, mosquitto.port, "homeassistant/#")
    topics = Topics("homeassistant", "sleepstream", "bed1")
    assert sorted(first) == sorted(topics.configs())
    for topic, payload in first.items():
        component = topic.split("/")[1]
        schema = {**SCHEMA, "oneOf": [{"$ref": f"#/$defs/{component}"}]}
        jsonschema.Draft202012Validator(schema).validate(json.loads(payload))
    state = json.loads(_retained(helpers, mosquitto.port, topics.state)[topics.state])
    assert state["epoch_index"] == len(NIGHT.split()) - 1
    status = _retained(helpers, mosquitto.port, topics.availability)
    assert status == {topics.availability: b"offline"}  # the run ended: unavailable

    _run_night(tmp_path, mosquitto.url, helpers)
    second = _retained(helpers, mosquitto.port, "homeassistant/#")
    assert second == first  # same topics, same unique ids, same bytes: no new entities
