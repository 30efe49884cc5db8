"""The MQTT sink against a real mosquitto: order, schema, status, outages, TLS, auth."""

import asyncio
import json
import time

import jsonschema
import numpy as np
import pytest

from sleepstream.errors import BrokerError, UsageError
from sleepstream.sinks.mqtt import MqttSink, mqtt_settings
from sleepstream.sinks.outbox import Outbox
from sleepstream.types import UNSCORED, Epoch, StagePrediction

pytestmark = pytest.mark.network


def _epoch(i: int, reasons=()) -> Epoch:
    return Epoch(
        i, 30.0 * i, f"2026-01-01T23:{i // 2 % 60:02d}:{30 * (i % 2):02d}Z",
        np.zeros((2, 3000), np.float32), unscored_reasons=reasons,
        last_sample_at=time.perf_counter(),
    )  # fmt: skip


def _pred(i: int) -> StagePrediction:
    if i % 7 == 6:
        return StagePrediction(i, UNSCORED, np.zeros(5), 0.0, "m", reasons=("gap",))
    p = np.full(5, 0.1)
    p[i % 5] = 0.6
    return StagePrediction(i, i % 5, p, 0.6, "m")


async def _publish(settings, outbox, n, *, start=0, device="bed1", pause=0.0):
    async with MqttSink(settings, device=device, session="s1", outbox=outbox) as sink:
        for i in range(start, start + n):
            await sink.publish(_epoch(i), _pred(i))
            if pause:
                await asyncio.sleep(pause)
    return sink


def test_mqtt_sink_delivers_events_in_order_valid_against_schema(
    mosquitto, subscribe, tmp_path, stage_schema
):
    """Every event arrives once, in order, valid against the JSON Schema."""
    sub = subscribe(mosquitto.port)
    settings = mqtt_settings(mosquitto.url)
    asyncio.run(_publish(settings, Outbox(tmp_path / "o.sqlite"), 30))
    assert sub.wait_for(lambda s: len(s.stage_events()) >= 30, 20)
    events = sub.stage_events()
    assert [e["epoch_index"] for e in events] == list(range(30))
    validator = jsonschema.Draft202012Validator(stage_schema)
    for e in events:
        validator.validate(e)
    assert events[6]["stage"] == "unscored" and events[6]["reasons"] == ["gap"]
    assert len({e["event_id"] for e in events}) == 30


def test_mqtt_sink_status_is_retained_online_then_offline(mosquitto, subscribe, tmp_path):
    """The status topic says online while running and offline (retained) after."""
    sub = subscribe(mosquitto.port, "sleepstream/bed1/status")
    asyncio.run(_publish(mqtt_settings(mosquitto.url), Outbox(tmp_path / "o.sqlite"), 2))
    assert sub.wait_for(lambda s: s.statuses()[-1:] == ["offline"], 10)
    assert "online" in sub.statuses()
    late = subscribe(mosquitto.port, "sleepstream/bed1/status")
    assert late.wait_for(lambda s: s.statuses() == ["offline"], 10)  # retained


@pytest.mark.slow
def test_mqtt_sink_redelivers_in_order_after_broker_outage(
    persistent_mosquitto, subscribe, tmp_path
):
    """Broker SIGKILLed mid-stream and restarted: all events arrive in order, once after dedup.

    The broker persists sessions (autosave every second), so the subscriber's persistent
    session survives the crash and receives what the sink delivers after the restart,
    whoever reconnects first.
    """
    broker = persistent_mosquitto
    sub = subscribe(broker.port, "sleepstream/+/stage", persistent=True)
    time.sleep(2.5)  # let the broker autosave the subscriber's session
    settings = mqtt_settings(broker.url)
    outbox = Outbox(tmp_path / "o.sqlite")
    n = 40

    async def scenario():
        async with MqttSink(settings, device="bed1", session="s1", outbox=outbox) as sink:
            for i in range(n):
                if i == 10:
                    await asyncio.sleep(0.3)
                    broker.kill()
                if i == 30:
                    await asyncio.sleep(1.0)  # events 10..29 wait in the outbox
                    broker.start()
                await sink.publish(_epoch(i), _pred(i))
                await asyncio.sleep(0.01)
            return sink

    sink = asyncio.run(scenario())
    sub.wait_for(lambda s: len({e["event_id"] for e in s.stage_events()}) >= n, 30)
    unique = list(dict.fromkeys(e["event_id"] for e in sub.stage_events()))
    assert unique == [f"bed1:s1:{i}" for i in range(n)], broker.log.read_text()[-800:]
    assert sink.delivered >= n
    assert len(Outbox(tmp_path / "o.sqlite").open()) == 0


def test_mqtt_sink_delivers_leftovers_of_a_previous_run_first(mosquitto, subscribe, tmp_path):
    """Events left in the outbox by a previous run are published before new ones."""
    path = tmp_path / "o.sqlite"
    with Outbox(path) as box:
        for i in range(3):
            box.append(f"bed1:old:{i}", "sleepstream/bed1/stage", json.dumps({"i": i}).encode())
    sub = subscribe(mosquitto.port, "sleepstream/bed1/stage")
    asyncio.run(_publish(mqtt_settings(mosquitto.url), Outbox(path), 2))
    assert sub.wait_for(lambda s: len(s.messages) >= 5, 10)
    payloads = [json.loads(p) for _, p, _ in sub.messages]
    assert [p.get("i") for p in payloads[:3]] == [0, 1, 2]
    assert [p["event_id"] for p in payloads[3:]] == ["bed1:s1:0", "bed1:s1:1"]


def test_mqtt_settings_reject_password_in_url():
    """A password in the broker URL is refused (it would show in the process list)."""
    with pytest.raises(UsageError, match="SLEEPSTREAM_MQTT_PASSWORD"):
        mqtt_settings("mqtt://user:secret@127.0.0.1:1883")


def test_mqtt_settings_missing_ca_file_is_a_broker_error(tmp_path):
    """A TLS CA file that does not exist fails before any connection."""
    with pytest.raises(BrokerError, match="no such file"):
        mqtt_settings("mqtts://127.0.0.1", ca_file=tmp_path / "nope.pem")


@pytest.mark.slow
def test_mqtt_sink_survives_a_hung_broker(mosquitto, subscribe, tmp_path):
    """SIGSTOP/SIGCONT (a hung, not dead, broker): publishing times out, the sink reconnects
    and every event arrives in order, exactly once after dedup."""
    import dataclasses
    import signal

    sub = subscribe(mosquitto.port, "sleepstream/+/stage")
    settings = dataclasses.replace(mqtt_settings(mosquitto.url), publish_timeout=1.0, keepalive=2)
    outbox = Outbox(tmp_path / "o.sqlite")
    n = 20

    async def scenario():
        async with MqttSink(settings, device="bed1", session="s1", outbox=outbox) as sink:
            for i in range(n):
                if i == 5:
                    await asyncio.sleep(0.3)
                    mosquitto.proc.send_signal(signal.SIGSTOP)
                if i == 15:
                    await asyncio.sleep(3.0)
                    mosquitto.proc.send_signal(signal.SIGCONT)
                await sink.publish(_epoch(i), _pred(i))
                await asyncio.sleep(0.01)
            return sink

    sink = asyncio.run(scenario())
    assert sub.wait_for(lambda s: len({e["event_id"] for e in s.stage_events()}) >= n, 30)
    unique = list(dict.fromkeys(e["event_id"] for e in sub.stage_events()))
    assert unique == [f"bed1:s1:{i}" for i in range(n)]
    assert sink.delivered >= n


def test_mqtt_sink_keeps_publishing_when_the_outbox_cannot_be_written(
    mosquitto, subscribe, tmp_path
):
    """Disk full (outbox writes fail): events go on in order from memory; nothing is lost."""
    from sleepstream.errors import StorageError

    class FullDisk(Outbox):
        """A real outbox whose appends fail after a few, like a filling disk."""

        full_after = 3

        def append(self, event_id, topic, payload, device=""):
            if len(self) + self.delivered_before >= self.full_after:
                raise StorageError(f"outbox {self.path}: database or disk is full")
            return super().append(event_id, topic, payload, device)

        delivered_before = 0

    sub = subscribe(mosquitto.port, "sleepstream/+/stage")
    box = FullDisk(tmp_path / "o.sqlite")
    sink = asyncio.run(_publish(mqtt_settings(mosquitto.url), box, 12, pause=0.0))
    assert sub.wait_for(lambda s: len(s.stage_events()) >= 12, 20)
    assert [e["epoch_index"] for e in sub.stage_events()] == list(range(12))
    assert sink.delivered == 12 and sink.pending == 0
