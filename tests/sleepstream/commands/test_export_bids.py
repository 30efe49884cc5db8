"""``sleepstream export-bids``: a night recorded by a real replay, written as BIDS with
mne-bids, read back by mne-bids with the same stages."""

from __future__ import annotations

import argparse
import csv
import json
import subprocess

import numpy as np
import pytest

from sleepstream.errors import DataFileError, UsageError

pytestmark = [pytest.mark.network, pytest.mark.slow]  # a real replay records the night (~25 s)


@pytest.fixture(scope="module")
def recorded_night(sc4001_dir, tiny_model, tmp_path_factory):
    """A night recorded by ``sleepstream replay --state-dir`` of 16 SC4001 epochs as an
    EDF+D with a 3-epoch pause (so the night has a gap)."""
    import os
    import sys

    from sleepstream.io import read_sleep_edf
    from sleepstream.io.writers import write_edf_d

    tmp = tmp_path_factory.mktemp("bids-night")
    night = read_sleep_edf(
        sc4001_dir / "SC4001E0-PSG.edf", sc4001_dir / "SC4001EC-Hypnogram.edf", cache=False
    )
    keep = list(range(1021, 1029)) + list(range(1032, 1040))
    x = np.concatenate([night.signal[k * 3000 : (k + 1) * 3000] for k in keep])
    path = write_edf_d(tmp / "n.edf", x, 100.0, [30.0 * (k - 1021) for k in keep],
                       record_s=30.0, physical_max=300.0)  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLEEPSTREAM_")}
    proc = subprocess.run(
        [sys.executable, "-m", "sleepstream", "replay", str(path), "--speed", "max",
         "--model", str(tiny_model), "--json-summary", "--broker-port", "0",
         "--state-dir", str(tmp / "state")],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return next((tmp / "state" / "nights").glob("*/*"))


def _args(night_dir, root, **kw):
    from sleepstream.commands import export_bids

    parser = argparse.ArgumentParser()
    export_bids.add_arguments(parser)
    argv = [str(night_dir), "--bids-root", str(root), "--subject", kw.get("subject", "01"),
            "--session", kw.get("session", "1")] + (["--overwrite"] if kw.get("overwrite") else [])  # fmt: skip
    return parser.parse_args(argv)


def test_export_bids_round_trips_through_mne_bids(recorded_night, tmp_path, capsys):
    """mne-bids reads the export back: the stage annotations equal the recorded stages,
    the EEG equals the raw segments (EDF quantisation), the gap is BAD_ACQ_SKIP, the
    events carry stage/confidence/quality/model id and the sidecar names the model."""
    import mne_bids

    from sleepstream.commands import export_bids
    from sleepstream.io import open_recording, read_channels, read_hypnogram
    from sleepstream.io.annotations import stage_hypnogram
    from sleepstream.report.night import load_night

    root = tmp_path / "bids"
    assert export_bids.run(_args(recorded_night, root)) == 0
    eeg = root / "sub-01" / "ses-1" / "eeg" / "sub-01_ses-1_task-sleep_eeg.edf"
    assert capsys.readouterr().out.strip() == str(eeg) and eeg.is_file()
    night = load_night(recorded_night)
    bids_path = mne_bids.BIDSPath(subject="01", session="1", task="sleep", datatype="eeg",
                                  root=root)  # fmt: skip
    raw = mne_bids.read_raw_bids(bids_path, verbose="error")
    ann = raw.annotations
    back = stage_hypnogram(
        [type("A", (), {"onset": o, "duration": d, "text": t})() for o, d, t in
         zip(ann.onset, ann.duration, ann.description, strict=True)], "bids",
    )  # fmt: skip
    assert back is not None and back.stages.tolist() == night.stages.tolist()
    assert list(night.stages[8:11]) == [-1, -1, -1]  # the gap epochs, unscored
    assert "BAD_ACQ_SKIP" in set(ann.description)
    events = eeg.with_name("sub-01_ses-1_task-sleep_events.tsv")
    assert read_hypnogram(events).stages.tolist() == night.stages.tolist()
    with events.open() as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t") if r["trial_type"] != "BAD_ACQ_SKIP"]
    model_id = night.manifest["model"]["id"]
    assert len(rows) == night.n_epochs and {r["model_id"] for r in rows} == {model_id}
    assert rows[9]["stage"] == "unscored" and rows[9]["quality"] == "gap"
    assert rows[0]["stage"] in ("W", "N1", "N2", "N3", "REM") and rows[0]["quality"] == "ok"
    assert 0.0 < float(rows[0]["confidence"]) <= 1.0
    sidecar = json.loads(events.with_suffix(".json").read_text())
    assert sidecar["StageScoring"]["ModelID"] == model_id
    assert sidecar["StageScoring"]["ModelCardSHA256"] == night.manifest["model"]["card_sha256"]
    assert eeg.with_name("sub-01_ses-1_task-sleep_channels.tsv").is_file()
    x, _ = read_channels(open_recording(eeg), [0])
    seg, _ = read_channels(open_recording(recorded_night / "raw_0000.edf"), [0])
    n = min(seg.shape[1], 8 * 3000)
    np.testing.assert_allclose(x[0, :n], seg[0, :n], atol=0.02)


def test_export_bids_refuses_to_overwrite_and_bad_labels(recorded_night, tmp_path):
    """A second export needs --overwrite; a label with '_' or '-' is a usage error."""
    from sleepstream.commands import export_bids

    root = tmp_path / "bids"
    export_bids.run(_args(recorded_night, root))
    with pytest.raises(UsageError, match="already exists; give --overwrite"):
        export_bids.run(_args(recorded_night, root))
    assert export_bids.run(_args(recorded_night, root, overwrite=True)) == 0
    with pytest.raises(UsageError, match="--subject 'a_b': a BIDS label is letters and digits"):
        export_bids.run(_args(recorded_night, root, subject="a_b"))


def test_export_bids_of_a_folder_that_is_no_night(tmp_path):
    """A folder without night.json is a one-line DataFileError."""
    from sleepstream.commands import export_bids

    with pytest.raises(DataFileError, match="no night.json"):
        export_bids.run(_args(tmp_path, tmp_path / "bids"))


def test_export_bids_command_line(recorded_night, tmp_path, helpers):
    """`sleepstream export-bids` prints the EEG file it wrote; a bad session label is one
    line on stderr with the usage exit code."""
    ok = subprocess.run(
        helpers.sleepstream_cmd("export-bids", str(recorded_night), "--bids-root",
                                str(tmp_path / "b"), "--subject", "03", "--session", "2"),
        capture_output=True, text=True, timeout=120, env=helpers.daemon_env(),
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert ok.stdout.strip().endswith("sub-03_ses-2_task-sleep_eeg.edf")
    bad = subprocess.run(
        helpers.sleepstream_cmd("export-bids", str(recorded_night), "--bids-root",
                                str(tmp_path / "b"), "--subject", "03", "--session", "x-1"),
        capture_output=True, text=True, timeout=120, env=helpers.daemon_env(),
    )  # fmt: skip
    assert bad.returncode == UsageError.exit_code
    assert len(bad.stderr.strip().splitlines()) == 1 and "--session 'x-1'" in bad.stderr
