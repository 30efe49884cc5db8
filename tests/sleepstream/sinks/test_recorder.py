"""The night recorder: raw EDF segments, stages EDF+, CSVs, manifest, disk full, crash."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sleepstream.errors import StorageError
from sleepstream.record import files
from sleepstream.sinks.recorder import Recorder
from sleepstream.types import UNSCORED, Chunk, Epoch, StagePrediction

CHANNELS = ("EEG Fpz-Cz", "EEG Pz-Oz")
FS = 100.0


@pytest.fixture(scope="module")
def sc4001_eeg(sc4001_dir: Path) -> np.ndarray:
    """The first 20 min of the two real SC4001 EEG channels, µV, shape (2, 120000)."""
    import warnings

    import edfio

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the PSG's last data record is incomplete
        edf = edfio.read_edf(sc4001_dir / "SC4001E0-PSG.edf")
    return np.stack([edf.signals[i].data[: 20 * 60 * 100] for i in (0, 1)])


def chunks(x: np.ndarray, size: int, t0: float = 0.0, fs: float = FS):
    """Chunks of ``x`` with sample-index timestamps starting at ``t0`` s."""
    for a in range(0, x.shape[1], size):
        b = min(a + size, x.shape[1])
        yield Chunk(x[:, a:b], t0 + np.arange(a, b) / fs, fs, CHANNELS, time.perf_counter())


def epoch(k: int, t0: float = 0.0) -> Epoch:
    return Epoch(
        k,
        t0 + 30.0 * k,
        f"2026-01-01T00:{k // 2:02d}:{30 * (k % 2):02d}Z",
        np.zeros(3000, np.float32),
    )


def prediction(k: int, stage: int) -> StagePrediction:
    p = np.full(5, 0.025)
    if stage == UNSCORED:
        return StagePrediction(k, UNSCORED, np.zeros(5), 0.0, "m", reasons=("gap",))
    p[stage] = 0.9
    return StagePrediction(k, stage, p, 0.9, "m")


def read_raw(path: Path):
    import mne

    return mne.io.read_raw_edf(path, preload=True, verbose="error")


def test_recorder_writes_raw_segments_stages_and_manifest(tmp_path, sc4001_eeg):
    """Real EEG in 250-sample chunks gives 5-min EDF segments MNE reads back with labels and units."""
    x = sc4001_eeg[:, : 12 * 60 * 100]

    async def go() -> Path:
        async with Recorder(
            tmp_path,
            device="bed/1",
            profile="edf-replay",
            model_id="m1",
            card_sha256="ab" * 32,
            staged_channel="EEG Fpz-Cz",
            start_datetime=dt.datetime(1989, 4, 24, 16, 13),
        ) as rec:
            for i, c in enumerate(chunks(x, 250)):
                await rec.write_chunk(c)
                if (i + 1) % 12 == 0:
                    k = (i + 1) // 12 - 1
                    await rec.publish(epoch(k), prediction(k, k % 5))
        return rec.night_dir

    night = asyncio.run(go())
    assert night.parent == tmp_path / "nights" / "bed_1"
    m = json.loads((night / "night.json").read_text())
    assert m["status"] == "closed" and m["device"] == "bed/1" and m["profile"] == "edf-replay"
    assert m["model"] == {"id": "m1", "card_sha256": "ab" * 32}
    assert m["start"] == "1989-04-24T16:13:00.000" and m["end"] == "1989-04-24T16:25:00.000"
    assert m["duration_s"] == 720.0 and m["dropped_samples"] == 0 and m["gaps"] == []
    assert [s["file"] for s in m["segments"]] == ["raw_0000.edf", "raw_0001.edf", "raw_0002.edf"]
    assert [s["n_samples"] for s in m["segments"]] == [30000, 30000, 12000]
    assert [s["start_s"] for s in m["segments"]] == [0.0, 300.0, 600.0]
    got = []
    for seg in m["segments"]:
        raw = read_raw(night / seg["file"])
        assert raw.ch_names == list(CHANNELS)
        assert set(raw._orig_units.values()) == {"µV"}
        got.append(raw.get_data()[:, : seg["n_samples"]] * 1e6)
    got = np.concatenate(got, axis=1)
    step = (x.max(axis=1) - x.min(axis=1)) / 65535  # 16-bit EDF resolution per channel
    assert got.shape == x.shape
    assert np.all(np.abs(got - x).max(axis=1) <= step)
    assert m["n_epochs"] == 24
    rows = (night / "hypnogram.csv").read_text().splitlines()
    assert rows[0] == "epoch_index,epoch_start,onset_s,stage,confidence,reasons"
    assert rows[1].startswith("0,1989-04-24T16:13:00.000,0.000,W,0.9000")
    assert rows[-1].startswith("23,1989-04-24T16:24:30.000,690.000,N3,")
    dens = (night / "hypnodensity.csv").read_text().splitlines()
    assert dens[0] == "epoch_index,epoch_start,p_W,p_N1,p_N2,p_N3,p_REM" and len(dens) == 25


def test_recorder_stages_reimport_with_mne(tmp_path, sc4001_dir):
    """The stages EDF+ of the real SC4001 night (841 epochs, one unscored) reads back identically."""
    import mne

    from sleepstream.io.readers import read_hypnogram

    hyp = read_hypnogram(sc4001_dir / "SC4001EC-Hypnogram.edf").stages.astype(int)
    sleep = np.flatnonzero((hyp > 0) & (hyp != UNSCORED))
    stages = hyp[sleep[0] - 60 : sleep[-1] + 61].copy()
    assert stages.size == 841
    stages[100] = UNSCORED

    async def go() -> Path:
        async with Recorder(tmp_path, device="d") as rec:
            for k, s in enumerate(stages):
                await rec.publish(epoch(k), prediction(k, int(s)))
        return rec.night_dir

    night = asyncio.run(go())
    ann = mne.read_annotations(night / "stages.edf")
    names = {"W": 0, "1": 1, "2": 2, "3": 3, "R": 4, "?": UNSCORED}
    back = np.array([names[d.removeprefix("Sleep stage ")] for d in ann.description])
    np.testing.assert_array_equal(back, stages)
    np.testing.assert_allclose(ann.onset, 30.0 * np.arange(841))
    np.testing.assert_allclose(ann.duration, 30.0)


def test_recorder_revision_replaces_the_epoch(tmp_path):
    """A second publish for the same epoch (lookahead revision) replaces the stage everywhere."""

    async def go() -> Path:
        async with Recorder(tmp_path, device="d") as rec:
            await rec.publish(epoch(0), prediction(0, 0))
            await rec.publish(epoch(1), prediction(1, 1))
            await rec.publish(epoch(1), prediction(1, 2))
        return rec.night_dir

    night = asyncio.run(go())
    lines = (night / "hypnogram.csv").read_text().splitlines()[1:]
    assert [ln.split(",")[3] for ln in lines] == ["W", "N2"]
    assert json.loads((night / "night.json").read_text())["n_revised"] == 1


def test_recorder_gap_rolls_segment_and_counts_dropped(tmp_path, sc4001_eeg):
    """A 5-s timestamp jump starts a new segment at the right time; a 3-sample hole is only counted."""
    x = sc4001_eeg[:, :6000]
    c1 = Chunk(x[:, :2000], np.arange(2000) / FS, FS, CHANNELS, 0.0)
    # 3 samples missing between c1 and c2
    c2 = Chunk(x[:, 2000:4000], (np.arange(2003, 4003)) / FS, FS, CHANNELS, 0.0)
    # 5 s missing before c3
    c3 = Chunk(x[:, 4000:6000], (np.arange(4503, 6503)) / FS, FS, CHANNELS, 0.0)

    async def go() -> Path:
        async with Recorder(tmp_path, device="d") as rec:
            for c in (c1, c2, c3):
                await rec.write_chunk(c)
        return rec.night_dir

    night = asyncio.run(go())
    m = json.loads((night / "night.json").read_text())
    assert m["dropped_samples"] == 503
    assert [g["missing_samples"] for g in m["gaps"]] == [3, 500]
    assert [(s["start_s"], s["n_samples"]) for s in m["segments"]] == [(0.0, 4000), (45.03, 2000)]
    raw = read_raw(night / "raw_0001.edf")
    np.testing.assert_allclose(raw.get_data()[0, :2000] * 1e6, x[0, 4000:], atol=0.01)


RECORDER_SCRIPT = r"""
import asyncio, sys, time
import numpy as np
from sleepstream.sinks.recorder import Recorder
from sleepstream.types import Chunk, Epoch, StagePrediction

x = np.load(sys.argv[2])
async def main():
    async with Recorder(sys.argv[1], device="killme", segment_seconds=10) as rec:
        n, k = 0, 0
        while True:  # a night that never ends: the test kills it
            a = n % x.shape[1]
            c = x[:, a:a + 250]
            await rec.write_chunk(Chunk(c, (n + np.arange(250)) / 100.0, 100.0,
                                        ("EEG Fpz-Cz", "EEG Pz-Oz"), time.perf_counter()))
            n += 250
            if n % 3000 == 0:
                p = np.full(5, 0.2)
                await rec.publish(Epoch(k, 30.0 * k, "2026-01-01T00:00:00Z",
                                        np.zeros(3000, np.float32)),
                                  StagePrediction(k, k % 5, p, 0.2, "m"))
                k += 1
asyncio.run(main())
"""


@pytest.mark.slow
def test_recorder_killed_mid_night_leaves_completed_segments_readable(tmp_path, sc4001_eeg):
    """SIGKILL of a recording process leaves every completed EDF segment readable by MNE."""
    data = tmp_path / "eeg.npy"
    np.save(data, sc4001_eeg[:, :24000])
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [sys.executable, "-c", RECORDER_SCRIPT, str(state), str(data)], stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 120
        segments: list = []
        while time.monotonic() < deadline and proc.poll() is None:
            found = list(state.glob("nights/killme/*/night.json"))
            if found:
                try:
                    segments = json.loads(found[0].read_text())["segments"]
                except json.JSONDecodeError:  # would be a bug: night.json is written atomically
                    raise
                if len(segments) >= 6:
                    break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert len(segments) >= 6
    night = next(state.glob("nights/killme/*"))
    m = json.loads((night / "night.json").read_text())
    assert m["status"] == "recording"
    edfs = sorted(night.glob("raw_*.edf"))
    assert len(edfs) >= len(m["segments"]) >= 6
    for path in edfs:
        raw = read_raw(path)
        assert raw.n_times == 1000 and raw.ch_names == ["EEG Fpz-Cz", "EEG Pz-Oz"]
    k = int(edfs[2].stem.split("_")[1])
    np.testing.assert_allclose(
        read_raw(edfs[2]).get_data()[0] * 1e6, sc4001_eeg[0, 1000 * k : 1000 * (k + 1)], atol=0.01
    )
    import mne

    stages = night / "stages.edf"
    if stages.exists():  # written after the first epoch; whatever version is there is whole
        assert len(mne.read_annotations(stages)) >= 1


def test_recorder_keeps_source_units_and_odd_rates(tmp_path, sc4001_eeg):
    """Volts from a source with scale_to_uv=1e6 are written in V; 512.5 Hz uses 2-s records."""
    x = sc4001_eeg[:1, :2050] * 1e-6  # volts
    fs = 512.5

    async def go() -> Path:
        async with Recorder(tmp_path, device="d", scale_to_uv=1e6) as rec:
            await rec.write_chunk(Chunk(x, np.arange(2050) / fs, fs, ("Fp1",), 0.0))
        return rec.night_dir

    night = asyncio.run(go())
    m = json.loads((night / "night.json").read_text())
    assert m["units"] == "V" and m["scale_to_uv"] == 1e6
    assert m["segments"][0]["n_samples"] == 2050
    raw = read_raw(night / "raw_0000.edf")
    assert raw.info["sfreq"] == fs and raw._orig_units == {"Fp1": "V"}
    step = np.ptp(x) / 65535  # 16-bit resolution; the 8-character range adds a little
    np.testing.assert_allclose(raw.get_data()[0, :2050], x[0], rtol=0, atol=2 * step)


def test_recorder_unusable_state_dir_is_a_storage_error_at_start(tmp_path):
    """A state directory that is a file is a set-up error: StorageError naming it, at start."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")

    async def go() -> None:
        async with Recorder(blocker, device="d"):
            pass

    with pytest.raises(StorageError, match="cannot create the night directory") as err:
        asyncio.run(go())
    assert str(blocker) in str(err.value)


def test_recorder_clock_reset_starts_a_new_segment(tmp_path, sc4001_eeg):
    """Timestamps that jump backwards are logged as a clock reset and start a new segment."""
    x = sc4001_eeg[:, :4000]

    async def go() -> Path:
        async with Recorder(tmp_path, device="d") as rec:
            await rec.write_chunk(Chunk(x[:, :2000], 100 + np.arange(2000) / FS, FS, CHANNELS, 0))
            await rec.write_chunk(Chunk(x[:, 2000:], 50 + np.arange(2000) / FS, FS, CHANNELS, 0))
        return rec.night_dir

    m = json.loads((asyncio.run(go()) / "night.json").read_text())
    assert [g.get("clock_reset") for g in m["gaps"]] == [True] and m["dropped_samples"] == 0
    assert [(s["start_s"], s["n_samples"]) for s in m["segments"]] == [(0.0, 2000), (-50.0, 2000)]


def test_recorder_publish_revised_keeps_the_revised_stage(tmp_path):
    """A lookahead revision from the pipeline replaces the causal stage and is counted."""

    async def go() -> Path:
        async with Recorder(tmp_path, device="d") as rec:
            for k in range(3):
                await rec.publish(epoch(k), prediction(k, 2))
            await rec.publish_revised(epoch(1), prediction(1, 3), 1)
        return rec.night_dir

    night = asyncio.run(go())
    lines = (night / "hypnogram.csv").read_text().splitlines()[1:]
    assert [ln.split(",")[3] for ln in lines] == ["N2", "N3", "N2"]
    m = json.loads((night / "night.json").read_text())
    assert m["n_revised"] == 1 and m["lookahead"] == 1


def _record(tmp_path, x, t0=0.0, **kw) -> Path:
    async def go() -> Path:
        async with Recorder(tmp_path / "state", device="d", segment_seconds=60, **kw) as rec:
            for i, c in enumerate(chunks(x, 500, t0=t0)):
                await rec.write_chunk(c)
                if (i + 1) % 6 == 0:
                    k = (i + 1) // 6 - 1  # the session's grid starts at its first sample
                    await rec.publish(epoch(k, t0=t0), prediction(k, 2))
        return rec.night_dir

    return asyncio.run(go())


def test_recorder_replayed_night_is_dated_by_the_recording_zone_unknown(tmp_path, sc4001_eeg):
    """A naive source start (EDF local time) dates everything, offset by the first sample,
    and every file says the zone is unknown (no ``Z``, no ``+00:00``)."""
    import edfio
    import mne

    x = sc4001_eeg[:, :9000]
    night = _record(tmp_path, x, t0=3600.0, start_datetime=dt.datetime(1989, 4, 24, 16, 13))
    m = json.loads((night / "night.json").read_text())
    assert m["start"] == "1989-04-24T17:13:00.000" and m["end"] == "1989-04-24T17:14:30.000"
    assert m["start_utc"] is None and m["end_utc"] is None and m["time_zone"] is None
    assert m["time_base"] == "recording" and "does not state a time zone" in m["time_note"]
    assert m["segments"][1]["start"] == "1989-04-24T17:14:00.000"
    text = (night / "hypnogram.csv").read_text()
    assert "Z," not in text and "+00:00" not in text
    assert text.splitlines()[1].startswith("0,1989-04-24T17:13:00.000,0.000,N2")
    assert text.splitlines()[3].startswith("2,1989-04-24T17:14:00.000,60.000,N2")
    raw = mne.io.read_raw_edf(night / "raw_0001.edf", verbose="error")
    assert raw.info["meas_date"].replace(tzinfo=None) == dt.datetime(1989, 4, 24, 17, 14)
    stages = edfio.read_edf(night / "stages.edf")
    assert (stages.startdate, stages.starttime) == (dt.date(1989, 4, 24), dt.time(17, 13))


def test_recorder_live_night_is_dated_in_utc_by_this_machine(tmp_path, sc4001_eeg, monkeypatch):
    """A live source (no start of its own): UTC from the wall clock at the first sample;
    the EDF headers hold this machine's local time and night.json says which."""
    import time as time_mod

    import mne

    monkeypatch.setenv("TZ", "Europe/Paris")
    time_mod.tzset()
    try:
        now = dt.datetime(2026, 3, 1, 22, 0, 0, tzinfo=dt.UTC)
        night = _record(tmp_path, sc4001_eeg[:, :6000], t0=5000.0, now=lambda: now)
        m = json.loads((night / "night.json").read_text())
        assert m["start"] == m["start_utc"] == "2026-03-01T21:59:55.010Z"  # minus the chunk
        assert m["time_zone"] == "UTC" and m["time_base"] == "system"
        assert m["edf_time"].endswith("UTC+0100")
        raw = mne.io.read_raw_edf(night / "raw_0000.edf", verbose="error")
        assert raw.info["meas_date"].replace(tzinfo=None) == dt.datetime(2026, 3, 1, 22, 59, 55)
        assert (night / "hypnogram.csv").read_text().splitlines()[1].split(",")[1] == (
            "2026-03-01T21:59:55.010Z"
        )
    finally:
        monkeypatch.delenv("TZ")
        time_mod.tzset()


def test_recorder_start_datetime_callable_is_read_at_the_first_sample(tmp_path, sc4001_eeg):
    """A source that learns its start when opened: the callable is asked at the first chunk;
    an aware start is kept in UTC."""
    known: list = [None]
    paris = dt.timezone(dt.timedelta(hours=2))

    async def go() -> Path:
        async with Recorder(
            tmp_path, device="d", start_datetime=lambda: known[0], segment_seconds=60
        ) as rec:
            known[0] = dt.datetime(2024, 6, 1, 23, 30, tzinfo=paris)  # the source opened
            for c in chunks(sc4001_eeg[:, :3000], 500):
                await rec.write_chunk(c)
        return rec.night_dir

    m = json.loads((asyncio.run(go()) / "night.json").read_text())
    assert m["start"] == m["start_utc"] == "2024-06-01T21:30:00.000Z"
    assert m["time_base"] == "recording"


def test_recorder_files_are_private_whatever_the_umask(tmp_path, sc4001_eeg):
    """Umask 000 and an existing world-readable nights/ folder: files 0600, folders 0700."""
    import stat

    (tmp_path / "state" / "nights").mkdir(parents=True, mode=0o777)
    os.chmod(tmp_path / "state" / "nights", 0o777)
    old = os.umask(0)
    try:
        night = _record(tmp_path, sc4001_eeg[:, :9000])
    finally:
        os.umask(old)
    made = sorted(p.name for p in night.iterdir())
    assert made == [
        "hypnodensity.csv", "hypnogram.csv", "night.json", "raw_0000.edf", "raw_0001.edf",
        "stages.edf",
    ]  # fmt: skip
    for p in night.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    for d in (night, night.parent, night.parent.parent):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d


def test_recorder_off_scale_values_are_clipped_and_counted(tmp_path):
    """Values no EDF header can state (|x| >= 1e8 source units, found by the fuzz test) are
    written clipped and counted; a flat off-scale channel is still written."""
    import edfio

    x = np.zeros((2, 3000))
    x[0, :1500], x[0, 1500:] = 1e10, -1e12
    x[1] = 5e9  # flat and off-scale
    x[0, 10] = 3.0

    async def go() -> Path:
        async with Recorder(tmp_path, device="d", segment_seconds=30) as rec:
            await rec.write_chunk(Chunk(x, np.arange(3000) / FS, FS, CHANNELS, 0.0))
        return rec.night_dir

    night = asyncio.run(go())
    m = json.loads((night / "night.json").read_text())
    assert m["off_scale_samples"] == 5999 and m["storage_errors"] == 0
    edf = edfio.read_edf(night / "raw_0000.edf")
    assert edf.signals[0].data.max() == pytest.approx(files.EDF_PHYSICAL_MAX, rel=1e-6)
    assert edf.signals[0].data.min() == pytest.approx(files.EDF_PHYSICAL_MIN, rel=1e-6)
    assert edf.signals[1].data == pytest.approx(np.full(3000, files.EDF_PHYSICAL_MAX), rel=1e-6)


def test_recorder_gap_right_after_a_full_segment_is_not_a_fault(tmp_path, sc4001_eeg):
    """A pause (EDF+D, LSL outage) just as a segment filled: a gap, two segments, no fault."""
    x = sc4001_eeg[:, :6000]

    async def go() -> Path:
        async with Recorder(tmp_path, device="d", segment_seconds=30) as rec:
            await rec.write_chunk(Chunk(x[:, :3000], np.arange(3000) / FS, FS, CHANNELS, 0))
            await rec.write_chunk(Chunk(x[:, 3000:], 40 + np.arange(3000) / FS, FS, CHANNELS, 0))
        return rec.night_dir

    m = json.loads((asyncio.run(go()) / "night.json").read_text())
    assert m["storage_errors"] == 0
    assert m["gaps"] == [{"onset_s": 30.0, "duration_s": 10.0, "missing_samples": 1000}]
    assert [(s["start_s"], s["n_samples"]) for s in m["segments"]] == [(0.0, 3000), (40.0, 3000)]


def test_recorder_end_of_stream_closes_the_night_before_the_daemon_stops(tmp_path, sc4001_eeg):
    """end_of_stream (the source ended; the daemon stays up) writes the open segment, the
    stages and status closed at once; leaving the block afterwards changes nothing."""
    x = sc4001_eeg[:, :4500]

    async def go() -> tuple[dict, dict, Path]:
        async with Recorder(tmp_path, device="d", segment_seconds=60) as rec:
            for i, c in enumerate(chunks(x, 500)):
                await rec.write_chunk(c)
                if i % 6 == 5:
                    await rec.publish(epoch(i // 6), prediction(i // 6, 2))
            await rec.end_of_stream()
            first = json.loads((rec.night_dir / "night.json").read_text())
            await rec.end_of_stream()
        return first, json.loads((rec.night_dir / "night.json").read_text()), rec.night_dir

    first, last, night = asyncio.run(go())
    assert first["status"] == "closed" and [s["n_samples"] for s in first["segments"]] == [4500]
    assert first == last
    assert len((night / "hypnogram.csv").read_text().splitlines()) == 2
