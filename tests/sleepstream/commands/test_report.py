"""``sleepstream report``: statistics, figure and agreement on recorded nights, and bad inputs."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from sleepstream.cli import main
from sleepstream.report.stats import sleep_statistics
from sleepstream.scoring import agreement
from sleepstream.sinks.recorder import Recorder
from sleepstream.types import UNSCORED, Chunk, Epoch, StagePrediction

REPO = Path(__file__).resolve().parents[3]


def expert_window(sc4001_dir: Path) -> tuple[np.ndarray, int]:
    """The SC4001 expert stages trimmed to 30 min around sleep (841 epochs) and the first index."""
    from sleepstream.io.readers import read_hypnogram

    s = read_hypnogram(sc4001_dir / "SC4001EC-Hypnogram.edf").stages.astype(np.int64)
    sleep = np.flatnonzero((s > 0) & (s != UNSCORED))
    a = int(sleep[0]) - 60
    return s[a : int(sleep[-1]) + 61], a


@pytest.fixture(scope="module")
def sc4001_night(tmp_path_factory, sc4001_dir) -> tuple[Path, np.ndarray, np.ndarray]:
    """The real SC4001 night (Fpz-Cz, Pz-Oz) recorded by the Recorder with known predictions.

    The "predictions" are the expert stages with every 6th epoch moved to the next stage,
    so the expected agreement is known independently of the report.
    """
    import edfio

    truth, first = expert_window(sc4001_dir)
    pred = truth.copy()
    pred[::6] = np.where(pred[::6] == UNSCORED, UNSCORED, (pred[::6] + 1) % 5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the PSG's last data record is incomplete
        edf = edfio.read_edf(sc4001_dir / "SC4001E0-PSG.edf")
    a = first * 3000
    eeg = np.stack([edf.signals[i].data[a : a + truth.size * 3000] for i in (0, 1)])

    async def go() -> Path:
        async with Recorder(
            tmp_path_factory.mktemp("state"),
            device="sc4001",
            profile="edf-replay",
            model_id="expert-plus-errors",
            card_sha256="0" * 64,
            staged_channel="EEG Fpz-Cz",
        ) as rec:
            for k, s in enumerate(pred):
                for c in range(0, 3000, 750):
                    i = k * 3000 + c
                    await rec.write_chunk(
                        Chunk(
                            eeg[:, i : i + 750],
                            (i + np.arange(750)) / 100,
                            100.0,
                            ("EEG Fpz-Cz", "EEG Pz-Oz"),
                            0.0,
                        )
                    )
                p = np.full(5, 0.1)
                p[s] = 0.6
                await rec.publish(
                    Epoch(k, 30.0 * k, "1989-04-24T16:13:00Z", np.zeros((1, 3000), np.float32)),
                    StagePrediction(k, int(s), p, 0.6, "expert-plus-errors"),
                )
        return rec.night_dir

    return asyncio.run(go()), truth, pred


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["report", *map(str, argv)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_report_json_gives_statistics_png_and_agreement(sc4001_night, sc4001_dir, tmp_path, capsys):
    """On the recorded SC4001 night: AASM statistics, a PNG and the agreement with the expert."""
    import matplotlib.image

    night, truth, pred = sc4001_night
    png = tmp_path / "night.png"
    rc, out, err = run_cli(
        capsys, night, "--reference", sc4001_dir / "SC4001EC-Hypnogram.edf", "--json", "--png", png
    )
    assert rc == 0, err
    report = json.loads(out)
    assert report["n_epochs"] == 841 and report["device"] == "sc4001"
    assert report["statistics"] == json.loads(json.dumps(sleep_statistics(pred)))
    assert report["reference_statistics"]["total_sleep_time_min"] == pytest.approx(
        sleep_statistics(truth)["total_sleep_time_min"]
    )
    expected = agreement(truth, pred)
    ag = report["agreement"]
    assert ag["alignment"]["rule"] == "30-min wake trim of the reference"
    assert ag["alignment"]["offset_s"] == 961 * 30.0
    assert ag["accuracy"] == pytest.approx(expected["accuracy"])
    assert ag["kappa"] == pytest.approx(expected["kappa"])
    assert ag["macro_f1"] == pytest.approx(expected["macro_f1"])
    assert ag["confusion"] == expected["confusion"]
    assert 0.8 < ag["accuracy"] < 0.9  # one epoch in six was moved
    assert report["recording"]["segments"] == 85 and report["recording"]["gaps"] == 0
    assert report["png"] == str(png)
    img = matplotlib.image.imread(png)
    assert img.shape[0] > 800 and img[..., :3].std() > 0.1


def test_report_text_output_from_the_command_line(sc4001_night, sc4001_dir, tmp_path):
    """``python -m sleepstream report`` prints the statistics, agreement table and figure path."""
    night, _, _ = sc4001_night
    png = tmp_path / "r.png"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sleepstream",
            "report",
            str(night),
            "--reference",
            str(sc4001_dir / "SC4001EC-Hypnogram.edf"),
            "--png",
            str(png),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    for text in (
        "time in bed 420.5 min",
        "sleep onset latency",
        "WASO",
        "REM latency",
        "awakenings",
        "kappa",
        "| N3 |",
        f"figure: {png}",
    ):
        assert text in proc.stdout
    assert png.stat().st_size > 10_000


def test_report_without_reference_or_png(sc4001_night, capsys):
    """Without --reference there is no agreement; --no-png draws nothing."""
    night, _, pred = sc4001_night
    rc, out, _ = run_cli(capsys, night, "--json", "--no-png")
    report = json.loads(out)
    assert rc == 0 and "agreement" not in report and "png" not in report
    assert report["statistics"]["n_awakenings"] == sleep_statistics(pred)["n_awakenings"]


def test_report_missing_manifest_is_a_one_line_error(tmp_path, capsys):
    """A directory without night.json exits 3 with one line naming it."""
    rc, out, err = run_cli(capsys, tmp_path)
    assert rc == 3 and out == ""
    assert err.count("\n") == 1 and "no night.json" in err and str(tmp_path) in err


def test_report_corrupt_csv_is_a_one_line_error(sc4001_night, tmp_path, capsys):
    """A corrupt hypnogram.csv row exits 3 with one line naming the file and line."""
    night = shutil.copytree(sc4001_night[0], tmp_path / "night")
    csv = night / "hypnogram.csv"
    lines = csv.read_text().splitlines()
    lines[10] = "9,1989,270.000,N7,0.6,"
    csv.write_text("\n".join(lines) + "\n")
    rc, _, err = run_cli(capsys, night, "--no-png")
    assert rc == 3 and err.count("\n") == 1
    assert "hypnogram.csv: line 11: unknown stage 'N7'" in err


def test_report_reference_of_the_wrong_length_is_a_one_line_error(sc4001_night, tmp_path, capsys):
    """A 100-epoch .hyp reference for an 841-epoch night exits 5 with one line."""
    hyp = tmp_path / "short.hyp"
    hyp.write_text("\r".join(["W"] * 40 + ["2"] * 60) + "\r")
    rc, _, err = run_cli(capsys, sc4001_night[0], "--reference", hyp, "--no-png")
    assert rc == 5 and err.count("\n") == 1
    assert "reference has 100 epochs" in err and "night has 841" in err


def test_report_unreadable_reference_is_a_one_line_error(sc4001_night, tmp_path, capsys):
    """A missing reference file is a DataFileError (exit 3), one line."""
    rc, _, err = run_cli(capsys, sc4001_night[0], "--reference", tmp_path / "nope.edf", "--no-png")
    assert rc == 3 and err.count("\n") == 1 and "nope.edf" in err


def _daemon_records_nights() -> bool:
    daemon = REPO / "sleepstream" / "daemon.py"
    replay = REPO / "sleepstream" / "commands" / "replay.py"
    return any(p.exists() and "sinks.recorder" in p.read_text() for p in (daemon, replay))


@pytest.mark.slow
@pytest.mark.network
def test_replay_sc4001_then_report_with_the_expert_hypnogram(
    tmp_path, sc4001_dir, tiny_model, mosquitto
):
    """Acceptance: replay SC4001 at max speed with --state-dir, then report on its night."""
    if not _daemon_records_nights():
        pytest.skip("sleepstream replay does not create a Recorder yet (daemon wiring pending)")
    psg, hyp = sc4001_dir / "SC4001E0-PSG.edf", sc4001_dir / "SC4001EC-Hypnogram.edf"
    state = tmp_path / "state"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sleepstream",
            "replay",
            str(psg),
            "--hypnogram",
            str(hyp),
            "--channel",
            "EEG Fpz-Cz",
            "--speed",
            "max",
            "--mqtt",
            mosquitto.url,
            "--device",
            "sc4001",
            "--model",
            str(tiny_model),
            "--state-dir",
            str(state),
            "--json-summary",
            "--no-metrics",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    nights = sorted(state.glob("nights/sc4001/*/night.json"))
    assert len(nights) == 1
    check_recorded_replay(nights[0].parent, hyp, summary)


def check_recorded_replay(night: Path, hyp: Path, summary: dict) -> None:
    """The recorded replay: 841 stages in stages.edf, readable segments, report agreement."""
    import mne

    ann = mne.read_annotations(night / "stages.edf")
    assert len(ann) == 841
    rows = (night / "hypnogram.csv").read_text().splitlines()[1:]
    names = {"W": "W", "N1": "1", "N2": "2", "N3": "3", "REM": "R", "unscored": "?"}
    assert [f"Sleep stage {names[r.split(',')[3]]}" for r in rows] == list(ann.description)
    m = json.loads((night / "night.json").read_text())
    assert m["status"] == "closed" and m["segments"]
    for seg in m["segments"]:
        raw = mne.io.read_raw_edf(night / seg["file"], verbose="error")
        assert raw.n_times >= seg["n_samples"]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sleepstream",
            "report",
            str(night),
            "--reference",
            str(hyp),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["n_epochs"] == 841
    assert Path(report["png"]).stat().st_size > 10_000
    ag = report["agreement"]
    assert ag["accuracy"] == pytest.approx(summary["accuracy"], abs=1e-9)
    assert ag["kappa"] == pytest.approx(summary["kappa"], abs=1e-9)


@pytest.mark.slow
@pytest.mark.network
def test_recorder_in_the_daemon_pipeline_then_report(tmp_path, sc4001_dir, tiny_model, mosquitto):
    """The Recorder as a sink of the real daemon pipeline (SC4001 at max speed, real mosquitto)
    records 841 epochs that the report aligns with the expert hypnogram like replay does."""
    from sleepstream.commands.replay import (
        CollectSink,
        agreement_summary,
        edf_start_utc,
        reference_window,
    )
    from sleepstream.config import DeviceConfig, MqttOptions, RunConfig
    from sleepstream.daemon import Daemon, default_dsp
    from sleepstream.sources.edf_replay import EDFReplaySource

    psg, hyp_path = sc4001_dir / "SC4001E0-PSG.edf", sc4001_dir / "SC4001EC-Hypnogram.edf"
    hyp = reference_window(psg, hyp_path, trim=True)
    t0, t_end = float(hyp.onsets[0]), float(hyp.onsets[-1]) + 30.0
    dev = DeviceConfig("sc4001", f"edf:{psg}", "edf-replay")
    state = tmp_path / "state"
    config = RunConfig(
        devices=(dev,),
        mqtt=MqttOptions(url=mosquitto.url),
        metrics_port=None,
        model=tiny_model,
        state_dir=state,
        print_mode="none",
    )
    collector = CollectSink()

    async def go() -> tuple[Path, str]:
        async with Recorder(
            state,
            device="sc4001",
            profile="edf-replay",
            staged_channel="EEG Fpz-Cz",
            source_offset_s=t0,
        ) as rec:
            daemon = Daemon(
                config,
                build_source=lambda d: (
                    EDFReplaySource(psg, "EEG Fpz-Cz", speed="max", start=t0),
                    t_end,
                ),
                make_dsp=lambda d, src, n: default_dsp(d, src, n, utc_origin=edf_start_utc(psg)),
                extra_sinks=lambda name: [rec, collector],
            )
            await daemon.run()
        return rec.night_dir

    night = asyncio.run(go())
    summary = agreement_summary(collector.items, t0, hyp.stages)
    check_recorded_replay(night, hyp_path, summary)
