"""The daemon's lifecycle (issue 13 classes 7, 8, 10): one daemon per device and state dir,
signals, what a new user sees first, and private files on disk."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import stat
import subprocess
import time

import pytest

from sleepstream.cli import main
from sleepstream.config import DeviceConfig, MqttOptions, RunConfig
from sleepstream.daemon import Daemon
from sleepstream.errors import AlreadyRunningError
from sleepstream.state_dir import DeviceLock


def _synthetic(name: str = "bed1", n_epochs: int = 3, **kw: object) -> DeviceConfig:
    opts = {"n_epochs": n_epochs, "speed": "max", "trim_wake_minutes": None, **kw}
    return DeviceConfig(name, "synthetic-night", None, opts)


def _config(tmp_path, mosquitto, tiny_model, *devices: DeviceConfig, **kw: object) -> RunConfig:
    fields = dict(
        mqtt=MqttOptions(url=mosquitto.url),
        metrics_port=None,
        model=tiny_model,
        state_dir=tmp_path / "state",
        print_mode="none",
    )
    fields.update(kw)
    return RunConfig(devices=devices or (_synthetic(),), **fields)  # type: ignore[arg-type]


def _wait_file_text(path, needle: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and needle in path.read_text(errors="replace"):
            return True
        time.sleep(0.1)
    return False


# ----------------------------------------------------------------------- class 7: locks


def test_device_lock_is_exclusive_per_device_and_state_dir(tmp_path):
    """Same device and state dir: refused, naming the device and the holder's pid; another
    device or another state dir: fine; released on exit."""
    (tmp_path / "a").mkdir()
    with DeviceLock(tmp_path / "a", "bed1"):
        with pytest.raises(AlreadyRunningError) as err:
            DeviceLock(tmp_path / "a", "bed1").__enter__()
        assert "bed1" in str(err.value) and str(os.getpid()) in str(err.value)
        (tmp_path / "b").mkdir()
        with DeviceLock(tmp_path / "a", "bed2"), DeviceLock(tmp_path / "b", "bed1"):
            pass
    with DeviceLock(tmp_path / "a", "bed1"):
        pass


@pytest.mark.network
def test_daemon_refuses_a_device_already_run_from_the_same_state_dir(
    tmp_path, tiny_model, mosquitto
):
    """A beds file naming a device that another daemon holds is refused before the model
    loads or anything listens (AlreadyRunningError, exit 15)."""
    cfg = _config(tmp_path, mosquitto, tiny_model, _synthetic("bed1"), _synthetic("bed2"))
    (tmp_path / "state").mkdir()
    with (
        DeviceLock(tmp_path / "state", "bed2"),
        pytest.raises(AlreadyRunningError, match="bed2"),
    ):
        asyncio.run(Daemon(cfg, install_signals=False).run())
    assert not (tmp_path / "state" / "outbox").exists()
    assert AlreadyRunningError.exit_code == 15


@pytest.mark.network
@pytest.mark.slow
def test_second_daemon_is_refused_and_sighup_stops_the_first_gracefully(
    tmp_path, helpers, subscribe
):
    """Two `sleepstream run` on one state dir: the second exits 15 with one line and
    never listens; SIGHUP then stops the first like SIGTERM: exit 0, the night closed,
    `offline` published."""
    state, p1, p2 = tmp_path / "state", helpers.free_port(), helpers.free_port()
    env = helpers.daemon_env()
    common = ["--source", "synthetic-night", "--state-dir", str(state), "--no-metrics"]
    err1 = tmp_path / "first.err"
    with open(err1, "w") as ef:
        first = subprocess.Popen(
            helpers.sleepstream_cmd("run", *common, "--broker-port", str(p1), "--quiet"),
            stdout=subprocess.DEVNULL, stderr=ef, env=env,
        )  # fmt: skip
    try:
        assert helpers.wait_port(p1, 120), err1.read_text()
        sub = subscribe(p1, "sleepstream/#")
        assert sub.wait_for(lambda s: len(s.stage_events()) >= 2, 120)
        second = subprocess.run(
            helpers.sleepstream_cmd("run", *common, "--broker-port", str(p2), "--log-level",
                                    "warning"),
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
        assert second.returncode == 15, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "already run" in lines[0] and "bed1" in lines[0], lines
        assert not helpers.wait_port(p2, 0.5)
        first.send_signal(signal.SIGHUP)
        assert first.wait(120) == 0, err1.read_text()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    (manifest,) = state.glob("nights/bed1/*/night.json")
    assert json.loads(manifest.read_text())["status"] == "closed"
    assert sub.statuses()[-1] == "offline"
    assert "Traceback" not in err1.read_text()


@pytest.mark.network
@pytest.mark.slow
def test_second_sigterm_during_shutdown_aborts_without_traceback(tmp_path, helpers):
    """A shutdown stuck delivering to an unreachable broker is cut short by a second
    SIGTERM: exit 0, a warning, no CancelledError traceback."""
    dead = helpers.free_port()  # nothing listens: the outbox cannot drain
    err = tmp_path / "daemon.err"
    with open(err, "w") as ef:
        proc = subprocess.Popen(
            helpers.sleepstream_cmd(
                "run", "--source", "synthetic-night", "--state-dir", str(tmp_path / "s"),
                "--mqtt", f"mqtt://127.0.0.1:{dead}", "--flush-timeout", "300",
                "--no-metrics", "--no-record",
            ),
            stdout=subprocess.PIPE, stderr=ef, text=True, env=helpers.daemon_env(),
        )  # fmt: skip
    try:
        assert proc.stdout is not None
        scored = 0
        while scored < 2:  # two epochs scored and queued in the outbox
            line = proc.stdout.readline()
            assert line, err.read_text()
            scored += not line.startswith("#")
        proc.send_signal(signal.SIGTERM)
        assert _wait_file_text(err, "shutting down gracefully", 60), err.read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 0, err.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = err.read_text()
    assert "aborting the shutdown" in text
    assert "Traceback" not in text and "CancelledError" not in text


# ----------------------------------------------------------------- class 8: first contact

FAILING_SOURCES = {
    "openbci-without-dongle": (["--board", "openbci", "--serial-port", "/dev/ttyUSB-none"], 8),
    "muse-s-without-bluetooth": (["--board", "muse-s"], 8),
    "unknown-board": (["--board", "toaster"], 8),
    "missing-edf": (["--source", "edf:/nonexistent/night.edf"], 3),
    "missing-hypnogram": (["--source", "synthetic-night:/nonexistent/hyp.txt"], None),
    "missing-profile": (["--board", "synthetic", "--profile", "/nonexistent/p.toml"], 6),
    "bad-option-for-source": (["--board", "synthetic", "--speed", "3"], 2),
    "missing-model": (["--model", "/nonexistent/model.onnx"], 7),
    "missing-tls-ca-file": (["--mqtt", "mqtts://127.0.0.1:1", "--mqtt-ca-file", "/none.pem"], None),
    "unwritable-state-dir": (["--state-dir", "/proc/sleepstream"], 10),
    "lookahead-past-the-model": (["--lookahead", "99999999999"], 2),
    "path-name-too-long": (["--mqtt-ca-file", "x" * 300], 2),
}


@pytest.mark.parametrize("case", sorted(FAILING_SOURCES))
def test_failing_source_or_profile_starts_nothing(case, tmp_path, capsys, caplog, helpers):
    """A source or profile that cannot work fails with one line and its exit code before
    any listener starts (no embedded broker, no exporter) and before any file is made
    (no night folder, no outbox)."""
    argv, code = FAILING_SOURCES[case]
    port, state = helpers.free_port(), tmp_path / "state"
    caplog.set_level(logging.INFO)
    rc = main(["run", "--state-dir", str(state), *argv, "--broker-port", str(port),
               "--metrics-port", "0"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and (code is None or rc == code), (rc, err)
    errors = [ln for ln in err if ln.startswith("sleepstream: error: ")]
    assert len(errors) == 1 and err[-1] == errors[0], err  # one line, and the last one
    assert not any("Traceback" in ln or "--- Logging error" in ln for ln in err), err
    started = [
        r.getMessage()
        for r in caplog.records
        if r.name in ("sleepstream.broker", "sleepstream.metrics")
    ]
    assert started == []
    assert not (state / "nights").exists() and not (state / "outbox").exists()


def test_version_and_readme_profile_commands(capsys):
    """`sleepstream --version`, `profiles list` and `profiles show openbci` (README) work."""
    from sleepstream import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"sleepstream {__version__}"
    assert main(["profiles", "list"]) == 0
    assert "openbci" in capsys.readouterr().out
    assert main(["profiles", "show", "openbci"]) == 0
    assert "derivation Fp1 - C3" in capsys.readouterr().out


@pytest.mark.network
@pytest.mark.parametrize("mode", ["line", "json"])
def test_lookahead_revisions_show_on_the_daemon_output(mode, tmp_path, tiny_model, mosquitto):
    """--lookahead K: the daemon's own output (text or JSON lines) shows each revision."""
    out = io.StringIO()
    cfg = _config(tmp_path, mosquitto, tiny_model, _synthetic(n_epochs=5), lookahead=2,
                  print_mode=mode)  # fmt: skip
    asyncio.run(Daemon(cfg, install_signals=False, stdout=out).run())
    lines = [ln for ln in out.getvalue().splitlines() if ln and not ln.startswith("#")]
    if mode == "json":
        events = [json.loads(ln) for ln in lines]
        revised = [e["epoch_index"] for e in events if e["revised"]]
        assert [e["epoch_index"] for e in events if not e["revised"]] == list(range(5))
    else:
        revised = [int(ln.split("#")[1].split()[0]) for ln in lines if "revised, +2" in ln]
    assert revised == [0, 1, 2]


# ------------------------------------------------------------------- class 10: privacy


@pytest.mark.network
def test_files_are_private_whatever_the_umask_and_open_state_dir_warns(
    tmp_path, tiny_model, mosquitto, caplog
):
    """With umask 000 and a world-writable state dir that already exists: every file the
    daemon writes is 0600 (no group/other bits), every folder it owns 0700, and a warning
    names the state dir's mode."""
    state = tmp_path / "state"
    old = os.umask(0)
    try:
        state.mkdir(mode=0o777)
        (state / "nights").mkdir(mode=0o777)
        caplog.set_level(logging.WARNING)
        cfg = _config(tmp_path, mosquitto, tiny_model, _synthetic(n_epochs=2), record=True)
        asyncio.run(Daemon(cfg, install_signals=False).run())
    finally:
        os.umask(old)
    assert any("accessible to its group or others" in r.getMessage() for r in caplog.records)
    made = list(state.rglob("*"))
    assert any(p.suffix == ".sqlite" for p in made) and any(p.name == "night.json" for p in made)
    for p in made:
        mode = stat.S_IMODE(p.stat().st_mode)
        if p.is_dir():
            assert mode == 0o700, (p, oct(mode))
        else:
            assert mode & 0o077 == 0, (p, oct(mode))


class SlowBoard:
    """Stands in for a board that takes minutes to answer (hardware is mocked here: no
    physical board); every other part of the daemon is real."""

    name = "slow-board"
    fs = 250.0
    channels: tuple[str, ...] = ()
    received_samples = dropped_samples = reconnects = queue_depth = 0
    start_datetime = None
    from_file = False

    def __init__(self) -> None:
        self.entering = asyncio.Event()

    async def __aenter__(self):
        self.entering.set()
        await asyncio.sleep(3600)
        return self

    async def __aexit__(self, *exc):
        return None

    def __aiter__(self):
        return self

    async def __anext__(self):
        raise StopAsyncIteration


@pytest.mark.network
def test_stop_during_start_up_ends_it_where_it_is(tmp_path, tiny_model, mosquitto):
    """SIGTERM while a board is still connecting: the start-up is abandoned (nothing
    listens, no sink starts) and run() returns normally."""
    board = SlowBoard()
    cfg = _config(tmp_path, mosquitto, tiny_model, record=True)

    async def scenario():
        daemon = Daemon(cfg, install_signals=False, build_source=lambda dev: (board, None))
        task = asyncio.create_task(daemon.run())
        await asyncio.wait_for(board.entering.wait(), 60)
        daemon.request_stop()
        return daemon, await asyncio.wait_for(task, 60)

    daemon, result = asyncio.run(scenario())
    assert result.stopped_by_signal and not daemon.started.is_set()
    assert daemon.factories == {} and not (tmp_path / "state" / "nights").exists()
