"""`distill prepare` + `distill reproduce --quick` end to end on a folder laid out like
Sleep-EDF, made of the real SC4001 files under several subject names (symlinks in tmp).

What this checks: plumbing (prepare, memory-mapped nights, subject folds, every method's
row in the table, resume after a kill) and fold integrity. It says nothing about
accuracy: every "subject" is the same night.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from distill.cli import main

QUICK = ["--family", "tiny", "--quick", "--pretrain-epochs", "1", "--epochs", "1",
         "--seq-len", "3", "--pretrain-batch-size", "256", "--batch-size", "64",
         "--no-progress"]  # fmt: skip


def sleep_edf_like(root: Path, sc4001: Path, subjects=("00", "01", "02")) -> Path:
    """``SC4ssN`` nights (N = 1, 2) of each subject, all SC4001, plus one corrupt night."""
    root.mkdir()
    for s in subjects:
        for n in (1, 2):
            (root / f"SC4{s}{n}E0-PSG.edf").symlink_to(sc4001 / "SC4001E0-PSG.edf")
            (root / f"SC4{s}{n}EC-Hypnogram.edf").symlink_to(sc4001 / "SC4001EC-Hypnogram.edf")
    (root / "SC4031E0-PSG.edf").write_bytes((sc4001 / "SC4001E0-PSG.edf").read_bytes()[:5000])
    (root / "SC4031EC-Hypnogram.edf").symlink_to(sc4001 / "SC4001EC-Hypnogram.edf")
    return root


@pytest.mark.slow
def test_prepare_keeps_good_nights_names_the_bad_one_and_resumes(sc4001_dir, tmp_path, capsys):
    """One line for the truncated file, exit 3; the 6 good nights are memory-mapped; a
    second run reuses them."""
    from distill.prepared import load_prepared, subjects

    data = sleep_edf_like(tmp_path / "sleep-edf", sc4001_dir)
    prep = tmp_path / "prep"
    args = ["prepare", str(data), "--dataset", "sleep-edf-20", "--out", str(prep),
            "--channels", "EEG Fpz-Cz,EEG Pz-Oz", "--no-progress"]  # fmt: skip
    assert main(args) == 3
    err = capsys.readouterr().err
    bad = [line for line in err.splitlines() if "SC4031" in line]
    assert len(bad) == 1 and "truncated" in bad[0] and err.count("SC4031E0-PSG.edf") == 1
    man = json.loads((prep / "manifest.json").read_text())
    assert len(man["nights"]) == 6 and [Path(f["psg"]).name for f in man["failed"]] == [
        "SC4031E0-PSG.edf"
    ]
    recs = load_prepared(prep)
    assert isinstance(recs[0].signals["EEG Pz-Oz"], np.memmap)
    assert recs[0].n_epochs == 841 and set(subjects(prep).values()) == {"SC400", "SC401", "SC402"}
    mtime = (prep / "nights" / f"{man['nights'][0]['key']}.npy").stat().st_mtime_ns
    assert main(args) == 3  # resumable: the prepared night is not written again
    assert (prep / "nights" / f"{man['nights'][0]['key']}.npy").stat().st_mtime_ns == mtime
    # a final model on the prepared nights: one subject held out for early stopping
    from distill.checkpoint import read_sidecar

    run = tmp_path / "run"
    assert main(["train", "--model", "tiny-student", "--prepared", str(prep), "--split", "full",
                 "--out", str(run), "--pretrain-epochs", "1", "--epochs", "0",
                 "--pretrain-batch-size", "256", "--no-progress"]) == 0  # fmt: skip
    meta = read_sidecar(run / "best.safetensors")
    assert meta["datasets"] == ["sleep-edf-20"] and meta["fold"]["protocol"] == "full"
    val = [n for n, runs in meta["fold"]["val"].items() if runs]
    assert len(val) == 2 and val[0][:5] == val[1][:5]  # both nights of one subject
    assert len(meta["recordings"]) == 4  # the 4 training nights, by file name + sha256
    assert {r["sha256"] for r in meta["recordings"]} == {_sha(sc4001_dir)}
    assert meta["machine"]["device"] == "cpu" and meta["started_at"].endswith("+00:00")


def _sha(sc4001_dir: Path) -> str:
    from sleepstream.io.cache import file_digest

    return file_digest(sc4001_dir / "SC4001E0-PSG.edf")


@pytest.mark.slow
def test_reproduce_quick_writes_every_method_keeps_folds_apart_and_resumes(sc4001_dir, tmp_path):
    data = sleep_edf_like(tmp_path / "sleep-edf", sc4001_dir)
    out, runs = tmp_path / "res", tmp_path / "runs"
    cmd = [sys.executable, "-m", "distill", "reproduce", "--data", str(data), "--dataset",
           "sleep-edf-20", "--folds", "3", "--fold", "0", "--prepared", str(tmp_path / "prep"),
           "--out", str(out), "--runs", str(runs), *QUICK]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    err = (tmp_path / "stderr.txt").open("w")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
    first = []
    for line in proc.stdout:  # kill right after the second finished unit
        if line.startswith('{"row"'):
            first.append(json.loads(line)["row"])
            if len(first) == 2:
                proc.send_signal(signal.SIGKILL)
                break
    proc.wait()
    err.close()
    assert first == ["teacher", "student (from scratch)"], (tmp_path / "stderr.txt").read_text()[
        -2000:
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
    assert done.returncode == 0, done.stderr[-2000:]
    second = [json.loads(x)["row"] for x in done.stdout.splitlines() if x.startswith('{"row"')]
    assert not set(first) & set(second)  # finished units are not trained again
    res = json.loads((out / "reproduce-sleep-edf-20-tiny-quick.json").read_text())
    labels = [r["label"] for r in res["rows"]]
    from distill import methods

    for name in methods.names():
        assert name in labels
    assert labels[0] == "teacher" and "TA" in labels and "sleepkd:preset=code" in labels
    assert all(r["modes"]["causal"]["n_seeds"] == 1 for r in res["rows"])
    assert res["n_subjects"] == 3 and len(res["failed_files"]) == 1
    # fold integrity (all 3 folds are defined even though only fold 0 was trained)
    assert res["folds"] == ["fold0"]
    fs = res["fold_subjects"]
    for f in fs.values():
        assert not (set(f["train"]) & set(f["test"]) or set(f["val"]) & set(f["test"]))
        assert not set(f["train"]) & set(f["val"]) and f["train"] and f["val"] and f["test"]
    tested = sorted(s for f in fs.values() for s in f["test"])
    assert tested == ["SC400", "SC401", "SC402"]  # every subject tested exactly once
    n_test = res["rows"][0]["modes"]["causal"]["per_seed"][0]["n_epochs"]
    assert n_test == 2 * 841  # both nights of the test subject, and only them
    md = (out / "reproduce-sleep-edf-20-tiny-quick.md").read_text()
    assert "F1 N1" in md and "subject-wise k-fold" in md
