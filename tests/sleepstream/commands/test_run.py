"""``sleepstream run`` end to end: Quickstart defaults, BrainFlow, LSL, bad input."""

import asyncio
import json
import os
import signal
import subprocess
import threading
import time

import numpy as np
import pytest

from sleepstream.cli import main

# every test here runs a whole daemon (most in a subprocess): the slow tier
pytestmark = [pytest.mark.network, pytest.mark.slow]


def _model_env(tiny_model) -> dict:
    """Use the shipped default student when it exists, else the tiny test model."""
    from sleepstream.inference import default_model_path

    return {} if default_model_path().is_file() else {"SLEEPSTREAM_MODEL": str(tiny_model)}


def _read_lines_until(proc, path, n, timeout):
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    while time.monotonic() < deadline and proc.poll() is None:
        lines = path.read_text().splitlines()
        if len(lines) >= n:
            break
        time.sleep(0.2)
    return path.read_text().splitlines()


def test_run_without_flags_starts_embedded_broker_and_prints_stages(
    tiny_model, tmp_path, helpers, subscribe
):
    """Quickstart: ``sleepstream run`` alone (synthetic-night, embedded broker) prints stages
    and publishes them on the embedded broker (ports moved off the defaults via env)."""
    port, mport = helpers.free_port(), helpers.free_port()
    env = helpers.daemon_env(tmp_path / "xdg") | _model_env(tiny_model)
    env |= {"SLEEPSTREAM_BROKER_PORT": str(port), "SLEEPSTREAM_METRICS_PORT": str(mport)}
    out = tmp_path / "stdout.txt"
    with out.open("w") as f:
        proc = subprocess.Popen(
            helpers.sleepstream_cmd("run"), stdout=f, stderr=subprocess.PIPE, text=True, env=env
        )
    try:
        assert helpers.wait_port(port, 120), "embedded broker did not start"
        sub = subscribe(port, "sleepstream/+/stage")
        lines = _read_lines_until(proc, out, 8, 180)
        assert len(lines) >= 8, proc.stderr.read() if proc.poll() is not None else lines
        assert sub.wait_for(lambda s: len(s.stage_events()) >= 1, 60)
    finally:
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(60)
    assert rc == 0
    header = [ln for ln in lines if ln.startswith("# ")]
    epochs = [ln for ln in lines if not ln.startswith("#")]
    # the demo's header says what runs where and what the columns are
    assert any("model" in ln for ln in header) and any(f":{port}" in ln for ln in header)
    assert any("columns" in ln and "true" in ln for ln in header)
    stages = {"W", "N1", "N2", "N3", "REM", "unscored"}
    assert epochs and all(any(s in line.split() for s in stages) for line in epochs)
    # and the synthetic night's true stage beside the scored one on every line
    assert all(line.split()[-2] == "true" and line.split()[-1] in stages for line in epochs)
    state = tmp_path / "xdg" / "sleepstream"  # the per-user default state directory
    assert len(list(state.glob("outbox/*.sqlite"))) == 1  # the daemon's one outbox
    assert len(list(state.glob("nights/bed1/*/night.json"))) == 1  # the night is recorded


def test_run_openbci_without_dongle_fails_fast_with_clear_message(tmp_path, helpers, tiny_model):
    """No board attached: exit code 8 within seconds, names --serial-port, no traceback."""
    t0 = time.monotonic()
    proc = subprocess.run(
        helpers.sleepstream_cmd(
            "run",
            "--board",
            "openbci",
            "--model",
            str(tiny_model),
            "--no-metrics",
            "--broker-port",
            str(helpers.free_port()),
            "--state-dir",
            str(tmp_path / "s"),
        ),  # fmt: skip
        capture_output=True,
        text=True,
        timeout=120,
        env=helpers.daemon_env(),
    )
    elapsed = time.monotonic() - t0
    assert proc.returncode == 8, proc.stderr
    assert "OpenBCI" in proc.stderr and "--serial-port" in proc.stderr
    assert "/dev/tty" in proc.stderr  # the ports it looked at
    assert "Traceback" not in proc.stderr
    assert elapsed < 60  # generous bound for a loaded CI machine; typically ~2 s


def test_run_rejects_an_option_that_does_not_apply_to_the_source(capsys):
    """``--serial-port`` with an EDF source is a usage error (exit 2), before any I/O."""
    rc = main(["run", "--source", "edf:/nonexistent.edf", "--serial-port", "/dev/ttyUSB0",
               "--no-metrics", "--state-dir", "/tmp/unused-sleepstream"])  # fmt: skip
    assert rc == 2
    assert "--serial-port" in capsys.readouterr().err


def test_run_rejects_two_sources(capsys):
    """Two source flags at once are refused with exit code 2."""
    assert main(["run", "--board", "synthetic", "--lsl", "X"]) == 2
    assert "one source" in capsys.readouterr().err


def test_run_brainflow_synthetic_board_publishes_epochs(
    mosquitto, subscribe, tmp_path, helpers, tiny_model
):
    """BrainFlow's synthetic board runs for >= 65 s and publishes >= 2 epochs."""
    sub = subscribe(mosquitto.port, "sleepstream/+/stage")
    proc = subprocess.Popen(
        helpers.sleepstream_cmd(
            "run",
            "--board",
            "synthetic",
            "--mqtt",
            mosquitto.url,
            "--no-metrics",
            "--quiet",
            "--model",
            str(tiny_model),
            "--state-dir",
            str(tmp_path / "s"),
            "--device",
            "synth",
        ),  # fmt: skip
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=helpers.daemon_env(),
    )
    t0 = time.monotonic()
    try:
        sub.wait_for(lambda s: len(s.stage_events()) >= 2 and time.monotonic() - t0 >= 65, 150)
        running = proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
    assert running, proc.stderr.read()[-2000:]
    assert time.monotonic() - t0 >= 65
    assert rc == 0
    events = sub.stage_events()
    assert len(events) >= 2
    assert [e["epoch_index"] for e in events] == list(range(len(events)))
    assert all(e["device"] == "synth" for e in events)


def test_run_lsl_outlet_faster_than_real_time_delivers_events(
    sc4001_dir, mosquitto, subscribe, tmp_path, tiny_model
):
    """A real LSL outlet on loopback pushes 5 min of SC4001 at ~20x; stage events arrive."""
    pylsl = pytest.importorskip("pylsl")
    from sleepstream.config import DeviceConfig, MqttOptions, RunConfig
    from sleepstream.daemon import Daemon
    from sleepstream.sources.lsl import load_lsl_config

    load_lsl_config()
    x = np.load(sc4001_dir / "SC4001E0_FpzCz_30s_trimmed.npz")["x"][:10].reshape(-1)
    name = f"sleepstream-test-{os.getpid()}"
    stop = threading.Event()

    def push():
        info = pylsl.StreamInfo(name, "EEG", 1, 100.0, "float32", f"{name}-id")
        info.desc().append_child("channels").append_child("channel").append_child_value(
            "label", "Fpz-Cz"
        )
        outlet = pylsl.StreamOutlet(info, chunk_size=50)
        t_start = pylsl.local_clock()
        for i in range(0, x.size, 50):  # 0.5 s of signal every 25 ms: 20x real time
            if stop.is_set():
                break
            block = x[i : i + 50].astype(np.float32)[:, None]
            outlet.push_chunk(block.tolist(), t_start + (i + 49) / 100.0)
            time.sleep(0.025)
        stop.wait(5)
        del outlet

    sub = subscribe(mosquitto.port, "sleepstream/+/stage")
    thread = threading.Thread(target=push, daemon=True)
    thread.start()
    cfg = RunConfig(
        devices=(DeviceConfig("lsl-bed", f"lsl:{name}", "lsl-generic", {"timeout": 20.0}),),
        mqtt=MqttOptions(url=mosquitto.url),
        metrics_port=None,
        model=tiny_model,
        state_dir=tmp_path / "s",
        print_mode="none",
    )

    async def scenario():
        daemon = Daemon(cfg, install_signals=False)
        task = asyncio.create_task(daemon.run())
        ok = await asyncio.to_thread(sub.wait_for, lambda s: len(s.stage_events()) >= 5, 120)
        daemon.request_stop()
        await task
        return ok

    try:
        ok = asyncio.run(scenario())
    finally:
        stop.set()
        thread.join(10)
    assert ok, f"only {len(sub.stage_events())} events"
    events = sub.stage_events()
    assert [e["epoch_index"] for e in events] == list(range(len(events)))
    assert {e["device"] for e in events} == {"lsl-bed"}
    assert json.dumps(events[0])  # plain JSON
