"""The daemon's lifecycle with real parts: mosquitto, EDF replay, Prometheus over HTTP,
SIGTERM, several devices in one process, a restart on the same state directory."""

import asyncio
import json
import re
import signal
import subprocess
import time
import urllib.request

import pytest

from sleepstream.config import DeviceConfig, MqttOptions, RunConfig, load_beds
from sleepstream.daemon import Daemon

# every test here runs a whole daemon (most in a subprocess): the slow tier
pytestmark = [pytest.mark.network, pytest.mark.slow]

T0 = 28830.0  # SC4001: onset of the first epoch of the trimmed night (s)


def _edf_device(sc4001_dir, name="bed1", n_epochs=12, speed="max"):
    return DeviceConfig(
        name,
        f"edf:{sc4001_dir / 'SC4001E0-PSG.edf'}",
        "edf-replay",
        {"start": T0, "until": T0 + 30.0 * n_epochs, "speed": speed},
    )


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def _sample(text: str, name: str, device: str) -> float:
    m = re.search(rf'^{name}{{device="{device}"}} ([0-9.e+]+)$', text, re.M)
    assert m, f"{name} for {device} not in the scrape"
    return float(m.group(1))


def test_daemon_metrics_latency_count_equals_published_epochs(
    sc4001_dir, tiny_model, mosquitto, subscribe, tmp_path
):
    """Scraped over HTTP: histogram count == events acknowledged == events received."""
    sub = subscribe(mosquitto.port, "sleepstream/+/stage")
    cfg = RunConfig(
        devices=(_edf_device(sc4001_dir, n_epochs=12),),
        mqtt=MqttOptions(url=mosquitto.url),
        metrics_port=0,
        model=tiny_model,
        state_dir=tmp_path / "state",
        print_mode="none",
    )

    async def scenario():
        daemon = Daemon(cfg, stay=True, install_signals=False)
        task = asyncio.create_task(daemon.run())
        await asyncio.wait_for(daemon.idle.wait(), 300)
        await asyncio.to_thread(sub.wait_for, lambda s: len(s.stage_events()) >= 12, 20)
        text = await asyncio.to_thread(_scrape, daemon.metrics.port)
        daemon.request_stop()
        result = await task
        return text, result

    text, result = asyncio.run(scenario())
    received = len({e["event_id"] for e in sub.stage_events()})
    assert received == 12
    assert _sample(text, "sleepstream_epoch_latency_seconds_count", "bed1") == received
    assert _sample(text, "sleepstream_events_published_total", "bed1") == received
    assert _sample(text, "sleepstream_samples_received_total", "bed1") == 12 * 3000
    assert _sample(text, "sleepstream_broker_connected", "bed1") == 1
    assert 'sleepstream_queue_depth{device="bed1",queue="outbox"} 0.0' in text
    assert 'sleepstream_queue_depth{device="bed1",queue="source"} 0.0' in text
    assert "sleepstream_inference_seconds_count" in text
    assert result.devices["bed1"].published == 12


def test_daemon_runs_several_devices_in_one_loop_from_beds_toml(
    sc4001_dir, tiny_model, mosquitto, subscribe, tmp_path
):
    """beds.toml with two beds: both publish every epoch in order; inference is batched."""
    edf = sc4001_dir / "SC4001E0-PSG.edf"
    beds = tmp_path / "beds.toml"
    beds.write_text(
        f'[daemon]\nmqtt = "{mosquitto.url}"\nmodel = "{tiny_model}"\n'
        f'state_dir = "{tmp_path / "state"}"\n'
        + "".join(
            f'[[device]]\nname = "{n}"\nsource = "edf:{edf}"\nprofile = "edf-replay"\n'
            f"start = {T0}\nuntil = {T0 + 300.0}\n"
            for n in ("bed-a", "bed-b")
        )
    )
    cfg = load_beds(beds).with_(metrics_port=None, print_mode="none")
    sub = subscribe(mosquitto.port, "sleepstream/+/stage")
    daemon = Daemon(cfg, install_signals=False)
    result = asyncio.run(daemon.run())
    assert sub.wait_for(lambda s: len(s.stage_events()) >= 20, 20)
    for bed in ("bed-a", "bed-b"):
        idx = [e["epoch_index"] for e in sub.stage_events() if e["device"] == bed]
        assert idx == list(range(10))
        assert result.devices[bed].published == 10
    batches = daemon.metrics.registry.get_sample_value("sleepstream_inference_batch_epochs_sum")
    calls = daemon.metrics.registry.get_sample_value("sleepstream_inference_batch_epochs_count")
    assert batches == 20 and calls < 20  # at least one call scored several epochs


def test_daemon_sigterm_publishes_offline_and_exits_zero(mosquitto, subscribe, tmp_path, helpers):
    """SIGTERM: pending events flushed in order, retained 'offline' published, exit code 0."""
    sub = subscribe(mosquitto.port)
    proc = subprocess.Popen(
        helpers.sleepstream_cmd(
            "run",
            "--source",
            "synthetic-night",
            "--speed",
            "60",
            "--device",
            "night",
            "--mqtt",
            mosquitto.url,
            "--no-metrics",
            "--quiet",
            "--state-dir",
            str(tmp_path / "state"),
        ),  # fmt: skip
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=helpers.daemon_env() | _model_env(),
    )
    try:
        assert sub.wait_for(lambda s: len(s.stage_events()) >= 3, 120), proc.stderr
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read()
    assert rc == 0, err[-2000:]
    assert "Traceback" not in err
    assert sub.wait_for(lambda s: s.statuses()[-1:] == ["offline"], 10)
    assert sub.statuses()[0] == "online"
    idx = [e["epoch_index"] for e in sub.stage_events()]
    assert idx == list(range(len(idx)))


def _model_env():
    """Point the daemon at the tiny test model unless a default student is shipped."""
    from sleepstream.inference import default_model_path

    return {} if default_model_path().is_file() else {"SLEEPSTREAM_MODEL": str(_TINY[0])}


_TINY: list = []


@pytest.fixture(autouse=True)
def _remember_tiny(tiny_model):
    _TINY[:] = [tiny_model]


def test_daemon_kill9_restart_delivers_events_scored_before_the_kill(
    sc4001_dir, tiny_model, helpers, subscribe, tmp_path
):
    """Broker down, daemon SIGKILLed, broker up, restart on the same state dir: every
    epoch scored before the kill is delivered, in order."""
    port = helpers.free_port()
    work = tmp_path / "mq"
    work.mkdir()
    broker = helpers.Mosquitto(work, port)
    state = tmp_path / "state"
    edf = sc4001_dir / "SC4001E0-PSG.edf"
    cmd = helpers.sleepstream_cmd(
        "run", "--source", f"edf:{edf}", "--start", str(T0), "--speed", "30",
        "--mqtt", f"mqtt://127.0.0.1:{port}", "--no-metrics", "--json",
        "--model", str(tiny_model), "--state-dir", str(state), "--device", "bed1",
    )  # fmt: skip
    out = (tmp_path / "first.out").open("w+")
    first = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL, env=helpers.daemon_env())
    try:
        deadline = time.monotonic() + 180
        while (
            time.monotonic() < deadline
            and len((tmp_path / "first.out").read_text().splitlines()) < 4
        ):
            time.sleep(0.2)
        first.kill()  # SIGKILL: no flush, no offline
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
        out.close()
    scored = [json.loads(x) for x in (tmp_path / "first.out").read_text().splitlines()]
    assert len(scored) >= 4
    broker.start()
    try:
        sub = subscribe(port, "sleepstream/bed1/stage")
        second = subprocess.Popen(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=helpers.daemon_env(),
        )
        try:
            want = [e["event_id"] for e in scored]
            assert sub.wait_for(
                lambda s: set(want) <= {e["event_id"] for e in s.stage_events()}, 120
            )
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(60)
        got = [e["event_id"] for e in sub.stage_events() if e["event_id"] in set(want)]
        assert list(dict.fromkeys(got)) == want  # in order, each at least once
    finally:
        broker.stop()


def test_daemon_systemd_unit_is_hardened_and_env_example_names_real_flags():
    """The unit has the hardening of the issue; every SLEEPSTREAM_* in the example env file
    is a real ``sleepstream run`` option (or the password variable)."""
    import argparse
    from pathlib import Path

    from sleepstream.commands import run as run_cmd

    root = Path(__file__).resolve().parents[2] / "systemd"
    unit = (root / "sleepstream@.service").read_text()
    for directive in (
        "EnvironmentFile=-/etc/sleepstream/%i.env", "Restart=on-failure", "DynamicUser=yes",
        "ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes",
        "StateDirectory=sleepstream/%i", "SupplementaryGroups=dialout",
        "DeviceAllow=char-ttyUSB rw", "KillSignal=SIGTERM",
    ):  # fmt: skip
        assert f"\n{directive}\n" in unit, directive
    parser = argparse.ArgumentParser()
    run_cmd.add_arguments(parser)
    dests = {a.dest.upper() for a in parser._actions}
    env = (root / "sleepstream.env.example").read_text()
    names = set(re.findall(r"^#?SLEEPSTREAM_([A-Z_]+)=", env, re.M))
    assert names, "no variables in the example"
    assert names - {"MQTT_PASSWORD"} <= dests, names - dests
