"""Issue 13 class 4 / faults' R18: the stage events and the night files tell the same time.

A recording that states no time zone (EDF) is dated by its own local clock everywhere:
stdout and MQTT events carry ``epoch_start`` without an offset and ``time_zone: null``,
exactly the strings of hypnogram.csv (never a made-up ``+00:00``); a live source's events
are UTC (``...Z``, ``time_zone: "UTC"``). Whole daemon runs: ``slow``.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
from pathlib import Path

import numpy as np
import pytest

from sleepstream.cli import main
from sleepstream.config import DeviceConfig, MqttOptions, RunConfig
from sleepstream.daemon import Daemon

pytestmark = [pytest.mark.network, pytest.mark.slow]

START = dt.datetime(1989, 4, 24, 16, 13)


def _edf(path: Path, seconds: int = 95) -> Path:
    """A tiny real EDF (noise in µV, 100 Hz) whose header says 24.04.89 16.13.00."""
    import edfio

    rng = np.random.default_rng(7)
    sig = edfio.EdfSignal(rng.normal(0, 30, seconds * 100), 100.0, label="EEG Fpz-Cz",
                          physical_dimension="uV", physical_range=(-500, 500))  # fmt: skip
    edfio.Edf([sig], recording=edfio.Recording(startdate=START.date()),
              starttime=START.time()).write(path)  # fmt: skip
    return path


def _hypnogram_starts(state: Path) -> dict[int, str]:
    (night,) = state.glob("nights/*/*/night.json")
    with (night.parent / "hypnogram.csv").open() as f:
        return {int(r["epoch_index"]): r["epoch_start"] for r in csv.DictReader(f)}


def _night(state: Path) -> dict:
    (night,) = state.glob("nights/*/*/night.json")
    return json.loads(night.read_text())


def test_replayed_edf_events_say_the_zone_is_unknown_like_the_night_files(
    tmp_path, tiny_model, mosquitto, subscribe, capsys
):
    """`run --source edf:<tiny EDF> --speed max --json`: no +00:00 anywhere on stdout,
    every event (stdout and MQTT) has time_zone null and the EDF's local clock, and the
    same epoch_start strings as hypnogram.csv; night.json says the zone is unknown."""
    sub = subscribe(mosquitto.port)
    state = tmp_path / "state"
    rc = main(["run", "--source", f"edf:{_edf(tmp_path / 'tiny.edf')}", "--speed", "max",
               "--json", "--no-metrics", "--mqtt", mosquitto.url, "--model", str(tiny_model),
               "--state-dir", str(state)])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0
    assert "+00:00" not in out
    events = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
    assert [e["epoch_index"] for e in events] == [0, 1, 2]
    assert {e["time_zone"] for e in events} == {None}
    want = {i: (START + dt.timedelta(seconds=30 * i)).isoformat(timespec="milliseconds")
            for i in range(3)}  # fmt: skip
    assert {e["epoch_index"]: e["epoch_start"] for e in events} == want
    assert _hypnogram_starts(state) == want
    manifest = _night(state)
    assert manifest["time_zone"] is None and manifest["start"] == want[0]
    assert sub.wait_for(lambda s: len(s.stage_events()) >= 3, 20)
    mqtt = sub.stage_events()
    assert {e["epoch_index"]: e["epoch_start"] for e in mqtt} == want
    assert {e["time_zone"] for e in mqtt} == {None}


def test_live_source_events_are_utc_like_its_night_files(
    tmp_path, tiny_model, mosquitto, subscribe
):
    """A live (synthetic-night) source: every event says time_zone "UTC" with a ...Z start
    near this machine's clock, and night.json says UTC too."""
    sub = subscribe(mosquitto.port)
    out = io.StringIO()
    dev = DeviceConfig("bed1", "synthetic-night", None,
                       {"n_epochs": 2, "speed": "max", "trim_wake_minutes": None})  # fmt: skip
    cfg = RunConfig(devices=(dev,), mqtt=MqttOptions(url=mosquitto.url), metrics_port=None,
                    model=tiny_model, state_dir=tmp_path / "state", print_mode="json", record=True)  # fmt: skip
    before = dt.datetime.now(dt.UTC)
    asyncio.run(Daemon(cfg, install_signals=False, stdout=out).run())
    events = [json.loads(ln) for ln in out.getvalue().splitlines() if ln.startswith("{")]
    assert sub.wait_for(lambda s: len(s.stage_events()) >= 2, 20)
    for e in events + sub.stage_events():
        assert e["time_zone"] == "UTC" and e["epoch_start"].endswith("Z"), e
        t = dt.datetime.fromisoformat(e["epoch_start"])
        assert abs((t - before).total_seconds()) < 600
    assert _night(tmp_path / "state")["time_zone"] == "UTC"
    csv_starts = _hypnogram_starts(tmp_path / "state")  # the recorder's own clock (UTC):
    for e in events:  # the same to within the first chunk's arrival
        t_csv = dt.datetime.fromisoformat(csv_starts[e["epoch_index"]])
        assert csv_starts[e["epoch_index"]].endswith("Z")
        assert abs((dt.datetime.fromisoformat(e["epoch_start"]) - t_csv).total_seconds()) < 2
