"""``sleepstream watch`` against a real mosquitto."""

import json
import subprocess
import time

import numpy as np
import pytest

from sleepstream.cli import main

pytestmark = pytest.mark.network


def _publish_events(port, n, *, duplicate_every=0):
    """Publish n stage events (and some redeliveries) with paho, QoS 1."""
    import paho.mqtt.client as paho

    from sleepstream.sinks.base import EventContext, build_event
    from sleepstream.types import Epoch, StagePrediction

    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        for i in range(n):
            epoch = Epoch(i, 30.0 * i, "2026-01-01T23:00:00Z", np.zeros((1, 3000), np.float32))
            p = np.full(5, 0.1)
            p[2] = 0.6
            event = build_event(
                EventContext("bed1", "s"), epoch, StagePrediction(i, 2, p, 0.6, "m")
            )
            payload = json.dumps(event)
            client.publish("sleepstream/bed1/stage", payload, qos=1).wait_for_publish(5)
            if duplicate_every and i % duplicate_every == 0:
                client.publish("sleepstream/bed1/stage", payload, qos=1).wait_for_publish(5)
        client.publish("sleepstream/other/stage", b"not json", qos=1).wait_for_publish(5)
    finally:
        client.loop_stop()
        client.disconnect()


def test_watch_prints_distinct_events_as_json_and_stops_at_count(mosquitto, tmp_path, helpers):
    """--count N --json: N JSON lines, redeliveries (same event_id) printed once, exit 0."""
    out = tmp_path / "watch.out"
    with out.open("w") as f:
        proc = subprocess.Popen(
            helpers.sleepstream_cmd(
                "watch", "--mqtt", mosquitto.url, "--device", "bed1", "--count", "10", "--json"
            ),
            stdout=f,
            stderr=subprocess.PIPE,
            text=True,
            env=helpers.daemon_env(),
        )
    try:
        deadline = time.monotonic() + 60
        line = ""
        while time.monotonic() < deadline and "watching" not in line:
            line = proc.stderr.readline()
        assert "watching" in line
        _publish_events(mosquitto.port, 12, duplicate_every=3)
        rc = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 0
    events = [json.loads(x) for x in out.read_text().splitlines()]
    assert [e["epoch_index"] for e in events] == list(range(10))


def test_watch_readable_lines_for_all_devices(mosquitto, tmp_path, helpers):
    """Without --json: one readable line per event naming device, epoch and stage."""
    out = tmp_path / "watch.out"
    with out.open("w") as f:
        proc = subprocess.Popen(
            helpers.sleepstream_cmd("watch", "--mqtt", mosquitto.url, "--count", "3"),
            stdout=f,
            stderr=subprocess.PIPE,
            text=True,
            env=helpers.daemon_env(),
        )
    try:
        while "watching" not in proc.stderr.readline():
            pass
        _publish_events(mosquitto.port, 3)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = out.read_text().splitlines()
    assert len(lines) == 3
    assert all("bed1" in x and "N2" in x for x in lines)
    assert "#2" in lines[-1]


def test_watch_unreachable_broker_fails_with_broker_error(helpers, capsys):
    """No broker: exit code 9 after the connect timeout, one line, no traceback."""
    port = helpers.free_port()
    rc = main(["watch", "--mqtt", f"mqtt://127.0.0.1:{port}", "--connect-timeout", "0.5"])
    err = capsys.readouterr().err
    assert rc == 9 and "cannot reach" in err and "Traceback" not in err


def test_watch_rejects_a_nonpositive_count(capsys):
    """--count 0 is a usage error."""
    assert main(["watch", "--count", "0"]) == 2
