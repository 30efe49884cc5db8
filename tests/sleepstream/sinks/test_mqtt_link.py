"""The daemon's one MQTT link against a real mosquitto: many devices on one connection,
order per device through outages, statuses and the will, loud faults, supervision."""

import asyncio
import json
import logging
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from sleepstream.errors import BrokerError
from sleepstream.metrics import Metrics
from sleepstream.sinks.mqtt import MqttSink, mqtt_settings
from sleepstream.sinks.mqtt_link import MqttLink, daemon_status_topic
from sleepstream.sinks.outbox import Outbox
from sleepstream.types import Epoch, StagePrediction

pytestmark = pytest.mark.network


def _event(i: int) -> tuple[Epoch, StagePrediction]:
    p = np.full(5, 0.1)
    p[i % 5] = 0.6
    epoch = Epoch(
        i, 30.0 * i, "2026-01-01T23:00:00Z", np.zeros(3000, np.float32),
        last_sample_at=time.perf_counter(),
    )  # fmt: skip
    return epoch, StagePrediction(i, i % 5, p, 0.6, "m")


def _client_ids(broker) -> list[str]:
    """Client ids of every daemon connection mosquitto accepted (from its log)."""
    found = re.findall(r"New client connected from \S+ as (\S+)", broker.log.read_text())
    return [c for c in found if c.startswith("sleepstream-")]


def _link(url: str, tmp_path, devices=("bed1",), **kw) -> MqttLink:
    """A link to ``url`` with its outbox at ``tmp_path/o.sqlite``."""
    return MqttLink(mqtt_settings(url), outbox=Outbox(tmp_path / "o.sqlite"), devices=devices, **kw)


def _unique_per_device(sub) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for eid in dict.fromkeys(e["event_id"] for e in sub.stage_events()):
        dev, _session, idx = eid.split(":")
        out.setdefault(dev, []).append(int(idx))
    return out


@pytest.mark.slow
def test_mqtt_link_many_devices_share_one_connection_and_keep_each_order_through_a_crash(
    persistent_mosquitto, subscribe, tmp_path
):
    """12 beds interleaved on one link; the broker is SIGKILLed and restarted mid-stream:
    one client id ever connects, every event of every bed arrives, in order per bed."""
    broker = persistent_mosquitto
    sub = subscribe(broker.port, "sleepstream/+/stage", persistent=True)
    time.sleep(2.5)  # let the broker autosave the subscriber's session
    beds = [f"bed{i:02d}" for i in range(12)]
    n = 25

    async def scenario():
        link = _link(broker.url, tmp_path, beds, retry_cap_s=(0.5, 0.5))
        async with link:
            sinks = [MqttSink(link.settings, device=b, session="s", link=link) for b in beds]
            for i in range(n):
                if i == 8:
                    await asyncio.sleep(0.3)
                    broker.kill()
                if i == 16:
                    await asyncio.sleep(0.5)  # events 8..15 of every bed wait in the outbox
                    broker.start()
                for sink in sinks:
                    await sink.publish(*_event(i))
                await asyncio.sleep(0.01)
            await asyncio.wait_for(link.drained(), 30)
        return link

    link = asyncio.run(scenario())
    assert sub.wait_for(lambda s: sum(map(len, _unique_per_device(s).values())) >= n * 12, 30)
    got = _unique_per_device(sub)
    assert got == {b: list(range(n)) for b in beds}
    assert set(_client_ids(broker)) == {link.client_id}
    assert all(link.stats[b].delivered >= n for b in beds)


def test_mqtt_link_publishes_again_what_a_crashed_broker_acknowledged_but_lost(
    rarely_saving_mosquitto, subscribe, tmp_path
):
    """A PUBACK is not durable. A persistent subscriber is offline; the broker PUBACKs
    events 0..4, queues them for it in memory, and is SIGKILLed before saving them. After
    the restart the link publishes 0..4 again (same event_id), then 5..9: the subscriber
    resumes its session and gets all ten, in order, and the link counts five resent."""
    broker = rarely_saving_mosquitto
    cid = f"test-offline-{time.monotonic_ns()}"
    offline = subscribe(broker.port, "sleepstream/+/stage", persistent=True, client_id=cid)
    offline.close()  # its session (and subscription) stays at the broker
    broker.stop()  # saves that session; from here on nothing is saved before the kill
    broker.start()

    async def scenario():
        link = _link(broker.url, tmp_path, retry_cap_s=(0.3, 0.3))
        async with link:
            sink = MqttSink(link.settings, device="bed1", session="s", link=link)
            for i in range(5):
                await sink.publish(*_event(i))
            await asyncio.wait_for(link.drained(), 20)  # PUBACKed: gone from the outbox
            assert link.outbox.peek(10) == []
            broker.kill()
            broker.start()  # the saved session is back, without events 0..4
            for i in range(5, 10):
                await sink.publish(*_event(i))
            await asyncio.wait_for(link.drained(), 30)
        return link

    link = asyncio.run(scenario())
    back = subscribe(broker.port, "sleepstream/+/stage", persistent=True, client_id=cid)
    assert back.wait_for(lambda s: len(_unique_per_device(s).get("bed1", [])) >= 10, 20)
    assert _unique_per_device(back) == {"bed1": list(range(10))}
    assert link.stats["bed1"].resent == 5 and link.stats["bed1"].delivered == 10


def test_mqtt_link_flush_timeout_zero_still_leaves_every_status_offline(
    mosquitto, subscribe, tmp_path
):
    """--flush-timeout 0 with events still queued: the devices' and the daemon's retained
    status say offline afterwards, and each device names its daemon."""
    beds = ["bed1", "bed2", "bed3"]

    async def scenario():
        link = _link(mosquitto.url, tmp_path, beds, flush_timeout=0.0)
        async with link:
            for b in beds:
                sink = MqttSink(link.settings, device=b, session="s", link=link)
                for i in range(300):
                    await sink.publish(*_event(i))
            left = link.pending
        return link, left

    link, left = asyncio.run(scenario())
    assert left > 0  # events were still queued when the daemon left
    late = subscribe(mosquitto.port, "sleepstream/#")
    status = daemon_status_topic("sleepstream", link.daemon)

    def retained(s):
        return {t: p.decode() for t, p, r in s.messages if r and not t.endswith("/stage")}

    want = {f"sleepstream/{b}/status": "offline" for b in beds}
    want |= {f"sleepstream/{b}/daemon": link.daemon for b in beds}
    want[status] = "offline"
    assert late.wait_for(lambda s: retained(s) == want, 10), retained(late)
    with Outbox(tmp_path / "o.sqlite") as box:
        assert len(box) == left  # what was not delivered waits for the next start


_KILLED = """
import asyncio, os, signal, sys, time
import numpy as np
from sleepstream.sinks.mqtt import MqttSink, mqtt_settings
from sleepstream.sinks.mqtt_link import MqttLink
from sleepstream.sinks.outbox import Outbox
from sleepstream.types import Epoch, StagePrediction

url, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
beds = ["bed1", "bed2"]

async def main():
    link = MqttLink(mqtt_settings(url), outbox=Outbox(path), devices=beds, daemon="node-a")
    async with link:
        sinks = [MqttSink(link.settings, device=b, session=sys.argv[4], link=link) for b in beds]
        for i in range(n):
            p = np.full(5, 0.1)
            for s in sinks:
                await s.publish(Epoch(i, 30.0 * i, "2026-01-01T23:00:00Z",
                                      np.zeros(3000, np.float32)),
                                StagePrediction(i, 2, p, 0.6, "m"))
        await link.drained()
        print("delivered", flush=True)
        if sys.argv[4] == "first":
            os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


@pytest.mark.slow
def test_mqtt_link_kill9_turns_the_daemon_offline_by_its_will_and_a_restart_recovers(
    mosquitto, subscribe, tmp_path, helpers
):
    """A SIGKILLed daemon cannot say offline: its will turns the daemon status offline
    while the devices' retained status still says online (the documented rule: a device
    is online only while both are); a restart sets everything online again."""
    sub = subscribe(mosquitto.port, "sleepstream/#")
    script = tmp_path / "link.py"
    script.write_text(_KILLED)
    env = helpers.daemon_env()
    first = subprocess.run(
        [sys.executable, str(script), mosquitto.url, str(tmp_path / "o.sqlite"), "5", "first"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert first.returncode == -signal.SIGKILL and "delivered" in first.stdout, first.stderr
    daemon = "sleepstream/_daemon/node-a/status"

    def last(s, topic):
        vals = [p.decode() for t, p, _ in s.messages if t == topic]
        return vals[-1] if vals else None

    assert sub.wait_for(lambda s: last(s, daemon) == "offline", 30)  # the will
    assert last(sub, "sleepstream/bed1/status") == "online"
    assert last(sub, "sleepstream/bed1/daemon") == "node-a"
    second = subprocess.run(
        [sys.executable, str(script), mosquitto.url, str(tmp_path / "o.sqlite"), "3", "second"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert second.returncode == 0, second.stderr

    def values(s, topic):
        return [p.decode() for t, p, _ in s.messages if t == topic]

    assert sub.wait_for(lambda s: values(s, daemon) == ["online", "offline"] * 2, 10)
    assert values(sub, "sleepstream/bed2/status") == ["online", "online", "offline"]
    got = _unique_per_device(sub)
    assert got["bed1"] == list(range(5)) + list(range(3))  # session "first", then "second"


def _authenticated_subscriber(port: int, topic: str, user: str, password: str):
    """A paho subscriber (own thread) logged in as ``user``; waits for its SUBACK."""
    import threading

    import paho.mqtt.client as paho

    got: list[dict] = []
    subscribed = threading.Event()
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"test-auth-sub-{port}")
    client.username_pw_set(user, password)
    client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda *a: subscribed.set()
    client.on_message = lambda c, u, m: got.append(json.loads(m.payload))
    client.connect(host="127.0.0.1", port=port, keepalive=30)
    client.loop_start()
    if not subscribed.wait(10):
        raise RuntimeError(f"subscriber {user!r} could not subscribe on port {port}")
    return client, got


@pytest.mark.slow
def test_mqtt_link_credentials_refused_mid_run_are_loud_counted_and_recovered(
    tmp_path, helpers, caplog
):
    """The broker restarts refusing our credentials: every refusal is an ERROR naming
    the fix and counted under reason "auth"; events wait in the outbox; once the broker
    accepts us again (password file reloaded) every event arrives, in order, after event 0
    sent again (acknowledged by the broker before its restart, which may have lost it)."""
    if helpers.mosquitto_binary() is None:
        pytest.skip("mosquitto binary not found")
    if not shutil.which("mosquitto_passwd"):
        pytest.skip("mosquitto_passwd not available")
    import tempfile
    from pathlib import Path

    work = Path(tempfile.mkdtemp(prefix="sleepstream-auth-"))  # readable by user mosquitto
    work.chmod(0o755)
    pw = work / "passwd"
    pw.write_text("")
    subprocess.run(["mosquitto_passwd", "-b", str(pw), "someone", "else"], check=True)
    pw.chmod(0o644)
    port = helpers.free_port()
    open_conf = f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
    closed_conf = (
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {pw}\npersistence false\n"
    )
    broker = helpers.Mosquitto(work, port, extra_config=open_conf).start()
    metrics = Metrics()
    caplog.set_level(logging.INFO, logger="sleepstream.sinks.mqtt_link")
    sub = None

    def refusals() -> float:
        value = metrics.registry.get_sample_value(
            "sleepstream_mqtt_connect_errors_total", {"reason": "auth"}
        )
        return value or 0.0

    async def scenario():
        nonlocal broker, sub
        settings = mqtt_settings(f"mqtt://127.0.0.1:{port}", username="sleep", password="pw")
        link = MqttLink(
            settings, outbox=Outbox(tmp_path / "o.sqlite"), devices=["bed1"], metrics=metrics,
            retry_cap_s=(0.3, 0.3),
        )  # fmt: skip
        async with link:
            sink = MqttSink(link.settings, device="bed1", session="s", link=link)
            await sink.publish(*_event(0))
            await asyncio.wait_for(link.drained(), 10)
            broker.stop()
            broker = helpers.Mosquitto(work, port, extra_config=closed_conf).start()
            # a reader the broker accepts, subscribed before the link can be accepted
            sub = await asyncio.to_thread(
                _authenticated_subscriber, port, "sleepstream/+/stage", "someone", "else"
            )
            for i in range(1, 6):
                await sink.publish(*_event(i))
            deadline = time.monotonic() + 30
            while refusals() < 2 and time.monotonic() < deadline:  # however slow the machine
                await asyncio.sleep(0.05)
            refused, pending = refusals(), link.pending
            # the operator fixes it: our user is added and mosquitto reloads (SIGHUP)
            await asyncio.to_thread(
                subprocess.run, ["mosquitto_passwd", "-b", str(pw), "sleep", "pw"], check=True
            )
            broker.proc.send_signal(signal.SIGHUP)
            await sink.publish(*_event(6))
            await asyncio.wait_for(link.drained(), 30)
        return refused, pending, link

    try:
        refused, pending, link = asyncio.run(scenario())
        assert sub is not None
        client, got = sub
        deadline = time.monotonic() + 10  # PUBACKed to us; the broker forwards it at once
        while len({e["epoch_index"] for e in got}) < 7 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        if sub is not None:
            sub[0].loop_stop()
            sub[0].disconnect()
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    assert refused >= 2 and pending == 5  # nothing got through while refused
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("Not authorized" in m and "--mqtt-username" in m for m in errors)
    assert any("connected again" in r.getMessage() for r in caplog.records)
    assert link.stats["bed1"].delivered == 7 and link.pending == 0
    assert link.stats["bed1"].resent == 1
    indices = list(dict.fromkeys(e["epoch_index"] for e in got))
    assert indices == [0, 1, 2, 3, 4, 5, 6]


class _FailingOutbox(Outbox):
    """A real outbox whose reads fail ``failures`` times (an injected bug, not a mock of
    MQTT): the delivery task must be restarted, or stop the daemon, never die silently."""

    failures = 0

    def peek(self, limit=64, after_seq=0):
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("injected outbox bug")
        return super().peek(limit, after_seq)


def test_mqtt_link_restarts_a_failing_delivery_task_with_a_log_line(
    mosquitto, subscribe, tmp_path, caplog
):
    """A few unexpected failures: each is logged in one line (its traceback at debug
    level), counted, and the task restarted; every event still arrives in order."""
    caplog.set_level(logging.DEBUG, logger="sleepstream.sinks.mqtt_link")
    sub = subscribe(mosquitto.port, "sleepstream/+/stage")
    box = _FailingOutbox(tmp_path / "o.sqlite")
    metrics = Metrics()

    async def scenario():
        link = MqttLink(
            mqtt_settings(mosquitto.url), outbox=box, devices=["bed1"], metrics=metrics,
            retry_cap_s=(0.2, 0.2),
        )  # fmt: skip
        async with link:
            sink = MqttSink(link.settings, device="bed1", session="s", link=link)
            box.failures = 3
            for i in range(5):
                await sink.publish(*_event(i))
            await asyncio.wait_for(link.drained(), 20)
        return link

    link = asyncio.run(scenario())
    assert link.fatal is None
    assert sub.wait_for(lambda s: len(s.stage_events()) >= 5, 10)
    assert [e["epoch_index"] for e in sub.stage_events()] == list(range(5))
    logged = [r for r in caplog.records if "restarting it" in r.getMessage()]
    assert len(logged) == 3 and not any(r.exc_info for r in logged)  # one line each
    assert all("injected outbox bug" in r.getMessage() for r in logged)
    traces = [r for r in caplog.records if r.levelno == logging.DEBUG and r.exc_info]
    assert len(traces) == 3  # the tracebacks, for --log-level debug
    # our own task's failures are no sign of another client on our client id
    assert not [r for r in caplog.records if "same client id" in r.getMessage()]
    assert metrics.registry.get_sample_value("sleepstream_mqtt_delivery_restarts_total") == 3


def test_mqtt_link_failing_for_good_calls_on_fatal_and_every_publish_says_so(
    mosquitto, tmp_path, caplog
):
    """More failures than allowed: on_fatal gets the error (the daemon stops on it), a
    CRITICAL line is logged, and each later publish stores its event and raises."""
    box = _FailingOutbox(tmp_path / "o.sqlite")
    fatal: list[BaseException] = []

    async def scenario():
        link = MqttLink(
            mqtt_settings(mosquitto.url), outbox=box, devices=["bed1"], on_fatal=fatal.append,
            max_crashes=2, retry_cap_s=(0.05, 0.05),
        )  # fmt: skip
        async with link:
            sink = MqttSink(link.settings, device="bed1", session="s", link=link)
            box.failures = 1000
            await sink.publish(*_event(0))
            for _ in range(200):
                if fatal:
                    break
                await asyncio.sleep(0.05)
            with pytest.raises(BrokerError, match="MQTT delivery stopped"):
                await sink.publish(*_event(1))
        return link

    link = asyncio.run(scenario())
    assert len(fatal) == 1 and "injected" in str(fatal[0])
    assert any(r.levelno == logging.CRITICAL for r in caplog.records)
    with Outbox(tmp_path / "o.sqlite") as again:
        assert [it.event_id for it in again.peek(10)] == ["bed1:s:0", "bed1:s:1"]
    assert link.fatal is not None


def test_mqtt_daemon_kind_serves_every_bed_on_one_connection_and_one_outbox(
    mosquitto, subscribe, tiny_model, tmp_path
):
    """The registered kind in a real daemon: three beds, one client id at the broker, one
    outbox file, every bed's epochs in order, delivery reported per bed."""
    from sleepstream.config import DeviceConfig, MqttOptions, RunConfig
    from sleepstream.daemon import Daemon
    from sleepstream.sinks import registry
    from sleepstream.sinks.mqtt import MQTT

    beds = ("bed-a", "bed-b", "bed-c")
    n = 10
    cfg = RunConfig(
        devices=tuple(
            DeviceConfig(b, "synthetic-night", None, {"speed": "max", "n_epochs": n, "seed": i})
            for i, b in enumerate(beds)
        ),
        mqtt=MqttOptions(url=mosquitto.url),
        metrics_port=None,
        model=tiny_model,
        state_dir=tmp_path / "state",
        print_mode="none",
    )
    sub = subscribe(mosquitto.port, "sleepstream/+/stage")
    before = registry.SINKS["mqtt"]
    registry.register_sink("mqtt", MQTT)
    try:
        result = asyncio.run(Daemon(cfg, install_signals=False).run())
    finally:
        registry.register_sink("mqtt", before)
    assert sub.wait_for(lambda s: sum(map(len, _unique_per_device(s).values())) >= 3 * n, 20)
    assert _unique_per_device(sub) == {b: list(range(n)) for b in beds}
    for b in beds:
        assert result.devices[b].delivered == n and len(result.devices[b].latencies_s) == n
    clients = _client_ids(mosquitto)
    assert len(set(clients)) == 1 and clients[0].startswith("sleepstream-")
    files = sorted((tmp_path / "state" / "outbox").glob("*.sqlite"))
    assert len(files) == 1 and files[0].stat().st_mode & 0o777 == 0o600


_HUNG_AT_EXIT = """
import asyncio, os, signal, sys
import numpy as np
from sleepstream.sinks.mqtt import MqttSink, mqtt_settings
from sleepstream.sinks.mqtt_link import MqttLink
from sleepstream.sinks.outbox import Outbox
from sleepstream.types import Epoch, StagePrediction

url, path, broker_pid = sys.argv[1], sys.argv[2], int(sys.argv[3])

async def main():
    link = MqttLink(mqtt_settings(url), outbox=Outbox(path), devices=["bed1"],
                    daemon="node-h", flush_timeout=0.5)
    async with link:
        sink = MqttSink(link.settings, device="bed1", session="s", link=link)
        await sink.publish(Epoch(0, 0.0, "2026-01-01T23:00:00Z", np.zeros(3000, np.float32)),
                           StagePrediction(0, 2, np.full(5, 0.2), 0.6, "m"))
        await link.drained()
        os.kill(broker_pid, signal.SIGSTOP)  # the broker hangs just as we shut down
        await sink.publish(Epoch(1, 30.0, "2026-01-01T23:00:30Z", np.zeros(3000, np.float32)),
                           StagePrediction(1, 2, np.full(5, 0.2), 0.6, "m"))
    print("left", flush=True)

asyncio.run(main())
"""


@pytest.mark.slow
def test_mqtt_link_shutdown_on_a_hung_broker_leaves_the_will_to_say_offline(
    mosquitto, subscribe, tmp_path, helpers
):
    """The broker hangs (SIGSTOP) right at shutdown, so `offline` cannot be published:
    the daemon leaves without a clean DISCONNECT, and once the broker runs again it
    publishes the will: the daemon's retained status is `offline`, not a stale `online`."""
    script = tmp_path / "hung.py"
    script.write_text(_HUNG_AT_EXIT)
    try:
        proc = subprocess.run(
            [sys.executable, str(script), mosquitto.url, str(tmp_path / "o.sqlite"),
             str(mosquitto.proc.pid)],
            capture_output=True, text=True, env=helpers.daemon_env(), timeout=60,
        )  # fmt: skip
    finally:
        mosquitto.proc.send_signal(signal.SIGCONT)
    assert proc.returncode == 0 and "left" in proc.stdout, proc.stderr
    late = subscribe(mosquitto.port, "sleepstream/_daemon/node-h/status")

    def retained(s):
        return [p.decode() for t, p, r in s.messages if r]

    assert late.wait_for(lambda s: retained(s) == ["offline"], 15), late.messages
    with Outbox(tmp_path / "o.sqlite") as box:
        assert [it.event_id for it in box.peek(5)] == ["bed1:s:1"]  # kept for the next start


@pytest.mark.slow
def test_mqtt_link_retained_messages_survive_a_broker_restart_and_can_be_cleared(
    mosquitto, subscribe, tmp_path
):
    """`retain(topic, payload)` goes over the daemon's one connection, is published again
    after the broker restarts without persistence, and an empty payload clears it (even
    one handed over right before the link leaves)."""
    topic = "homeassistant/sensor/bed1_stage/config"

    def received(s):  # retained, or live if published after the subscription
        return [p for t, p, _ in s.messages if t == topic and p]

    async def scenario():
        link = _link(mosquitto.url, tmp_path, retry_cap_s=(0.3, 0.3))
        async with link:
            link.retain(topic, b'{"name": "stage"}')
            first = await asyncio.to_thread(subscribe, mosquitto.port, topic)
            assert await asyncio.to_thread(first.wait_for, lambda s: received(s), 10)
            mosquitto.kill()  # forgets every retained message (persistence false)
            mosquitto.start()
            await asyncio.wait_for(link.connected.wait(), 20)
            again = await asyncio.to_thread(subscribe, mosquitto.port, topic)
            assert await asyncio.to_thread(
                again.wait_for, lambda s: received(s) == [b'{"name": "stage"}'], 10
            )
            await asyncio.wait_for(link.retained_sent(), 10)
            link.retain(topic, b"")  # cleared at once, before leaving: __aexit__ flushes it
        return link

    link = asyncio.run(scenario())
    cleared = subscribe(mosquitto.port, topic)
    time.sleep(1.0)
    assert received(cleared) == []
    assert set(_client_ids(mosquitto)) == {link.client_id}
    with pytest.raises(ValueError, match="not a topic name"):
        link.retain("a/+/b", b"x")


@pytest.mark.slow
def test_mqtt_link_says_so_when_the_broker_silently_drops_its_publishes(
    tmp_path, helpers, caplog, monkeypatch
):
    """A mosquitto ACL that lets the daemon read but not write: MQTT 3.1.1 still PUBACKs
    and drops the events. The probe does not come back: a WARNING naming the ACL and a
    counter, instead of a night delivered to no one in silence. A normal broker: none."""
    import tempfile
    from pathlib import Path

    import sleepstream.sinks.mqtt_health as mqtt_health

    if helpers.mosquitto_binary() is None:
        pytest.skip("mosquitto binary not found")
    monkeypatch.setattr(mqtt_health, "PROBE_TIMEOUT_S", 1.0)
    work = Path(tempfile.mkdtemp(prefix="sleepstream-acl-"))  # readable by user mosquitto
    work.chmod(0o755)
    (work / "acl").write_text("topic read sleepstream/#\n")
    (work / "acl").chmod(0o644)
    caplog.set_level(logging.INFO, logger="sleepstream.sinks.mqtt_link")

    async def run_link(url, name):
        metrics = Metrics()
        link = MqttLink(
            mqtt_settings(url), outbox=Outbox(tmp_path / f"{name}.sqlite"), devices=["bed1"],
            metrics=metrics,
        )  # fmt: skip
        async with link:
            await MqttSink(link.settings, device="bed1", session="s", link=link).publish(*_event(0))
            await asyncio.wait_for(link.drained(), 10)  # PUBACKed (delivered or not)
            await asyncio.sleep(1.5)  # > PROBE_TIMEOUT_S
        return metrics.registry.get_sample_value("sleepstream_mqtt_probe_failures_total")

    failures = {}
    for name, extra in (("acl", f"acl_file {work / 'acl'}\n"), ("open", "")):
        port = helpers.free_port()
        conf = f"listener {port} 127.0.0.1\nallow_anonymous true\n{extra}"
        broker = helpers.Mosquitto(work, port, extra_config=conf).start()
        try:
            failures[name] = asyncio.run(run_link(broker.url, name))
        finally:
            broker.stop()
    shutil.rmtree(work, ignore_errors=True)
    assert failures == {"acl": 1, "open": 0}
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("may be dropping this daemon's publishes" in m and "ACL" in m for m in warned) == 1


def test_mqtt_daemon_stops_loudly_when_its_delivery_fails_for_good(
    mosquitto, tiny_model, tmp_path, monkeypatch, caplog
):
    """A delivery task that keeps failing takes the daemon down: CRITICAL log, graceful
    stop, and Daemon.run raises a one-line BrokerError (exit code 9), not a night of
    silence."""
    import sleepstream.sinks.mqtt as mqtt_module
    from sleepstream.config import DeviceConfig, MqttOptions, RunConfig
    from sleepstream.daemon import Daemon

    class Broken(_FailingOutbox):
        failures = 10**9

    monkeypatch.setattr(mqtt_module, "Outbox", Broken)
    cfg = RunConfig(
        devices=(DeviceConfig("bed1", "synthetic-night", None, {"speed": 60, "n_epochs": 500}),),
        mqtt=MqttOptions(url=mosquitto.url),
        metrics_port=None,
        model=tiny_model,
        state_dir=tmp_path / "state",
        print_mode="none",
        flush_timeout_s=1.0,
    )
    with pytest.raises(BrokerError) as err:
        asyncio.run(asyncio.wait_for(Daemon(cfg, install_signals=False).run(), 120))
    msg = str(err.value)
    assert "MQTT delivery failed for good" in msg and "injected outbox bug" in msg
    assert "\n" not in msg and err.value.exit_code == 9
    assert any(r.levelno == logging.CRITICAL for r in caplog.records)
    restarted = [r for r in caplog.records if "restarting it" in r.getMessage()]
    assert len(restarted) == 5  # each logged before giving up


def test_mqtt_daemon_kind_hands_its_delivery_settings_to_the_link(tmp_path):
    """``outbox_max_events``, ``flush_timeout_s`` and ``resend_window_s`` of the RunConfig
    (flag, environment or beds file: tests/sleepstream/test_settings.py) reach the link."""
    from sleepstream.config import DeviceConfig, MqttOptions, RunConfig
    from sleepstream.sinks.mqtt import DaemonMqtt
    from sleepstream.sinks.registry import DaemonContext

    cfg = RunConfig(
        devices=(DeviceConfig("bed-a", "synthetic-night"),),
        mqtt=MqttOptions(url="mqtt://127.0.0.1:1"),
        state_dir=tmp_path / "state",
        outbox_max_events=77,
        flush_timeout_s=2.5,
        resend_window_s=1800.0,
    )
    ctx = DaemonContext(cfg, tmp_path / "state", Metrics(), None, "mqtt://127.0.0.1:1")
    link = DaemonMqtt(ctx).link
    assert link.outbox.max_events == 77 and link.flush_timeout == 2.5
    assert link.queue.resend_window_s == 1800.0


def test_mqtt_daemon_kind_gives_each_shard_its_own_client_id_and_daemon_id(tmp_path):
    """One beds file with `mqtt_client_id` read by two shards: two different client ids
    (one shared id would make the broker throw the daemons off in turn) and daemon ids."""
    from sleepstream.config import DeviceConfig, MqttOptions, RunConfig
    from sleepstream.sinks.mqtt import DaemonMqtt
    from sleepstream.sinks.registry import DaemonContext

    links = []
    for shard, bed in (((1, 2), "bed-a"), ((2, 2), "bed-b")):
        cfg = RunConfig(
            devices=(DeviceConfig(bed, "synthetic-night"),),
            mqtt=MqttOptions(url="mqtt://127.0.0.1:1", client_id="ward3"),
            state_dir=tmp_path / "state",
            shard=shard,
        )
        ctx = DaemonContext(cfg, tmp_path / "state", Metrics(), None, "mqtt://127.0.0.1:1")
        links.append(DaemonMqtt(ctx).link)
    assert [k.client_id for k in links] == ["ward3-1of2", "ward3-2of2"]
    assert links[0].daemon != links[1].daemon
    assert links[0].status_topic != links[1].status_topic


def test_mqtt_link_names_a_client_id_shared_with_another_client(mosquitto, tmp_path, caplog):
    """Two daemons configured with one client id throw each other off in a loop; each
    says so (ERROR naming the id) instead of reconnecting quietly all night."""
    caplog.set_level(logging.INFO, logger="sleepstream.sinks.mqtt_link")
    settings = mqtt_settings(mosquitto.url, client_id="ward3")

    async def scenario():
        links = [
            MqttLink(settings, outbox=Outbox(tmp_path / f"{b}.sqlite"), devices=[b])
            for b in ("bed-a", "bed-b")
        ]
        async with links[0], links[1]:
            for _ in range(100):
                if any("same client id" in r.getMessage() for r in caplog.records):
                    break
                await asyncio.sleep(0.1)

    asyncio.run(scenario())
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("same client id 'ward3'" in m and "--mqtt-client-id" in m for m in errors)
