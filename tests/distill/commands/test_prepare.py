"""`distill prepare` on a lab's own recordings, then training on them (issue 16 point 4).

The nights are stretches of SC4001's Fpz-Cz written by each format's own writer (FIF,
BrainVision, EEGLAB, EDF at 256 Hz, BrainFlow CSV, OpenBCI GUI; a BIDS tree by mne-bids)
with hypnograms in as many formats (see ``tests/distill/conftest.py``). What this checks:
every format's signal and stages arrive in the memory-mapped nights, subjects are kept
for the subject-wise folds, bad files give one line each while the others are kept, and
a training run takes the prepared nights. Nothing about accuracy: the nights are short.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from distill.cli import main

TINY = ["--model", "tiny-student", "--pretrain-epochs", "1", "--epochs", "1", "--seq-len", "3",
        "--pretrain-batch-size", "64", "--batch-size", "8", "--no-progress"]  # fmt: skip
#: Nights written at 100 Hz come back to float32 rounding; resampled ones (EDF 256 Hz,
#: Cyton 250 Hz) through two polyphase resamplers.
EXACT = ("s1-night1", "s1-night2", "s2-night1")


def _check_nights(prep: Path, stretches, names) -> None:
    from distill.prepared import load_prepared

    recs = load_prepared(prep)
    assert [r.name for r in recs] == names
    for rec, st in zip(recs, stretches, strict=True):
        assert isinstance(rec.primary, np.memmap)
        assert np.array_equal(rec.labels, st.y), rec.name  # every hypnogram format
        x = np.asarray(rec.primary, np.float64)
        if rec.name in EXACT:
            assert np.abs(x - st.x).max() < 1e-3, rec.name
        else:
            assert np.corrcoef(x, st.x)[0, 1] > 0.999, rec.name


@pytest.mark.slow
def test_prepare_pairs_of_every_format_keeps_subjects_and_trains(lab_pairs, tmp_path, capsys):
    """Six nights in six formats and six hypnogram formats (one: the FIF's own stage
    annotations) -> 6 memory-mapped nights of 3 subjects; a subject-wise fold trains on
    them; the sidecar names the training files."""
    pairs, stretches = lab_pairs
    prep = tmp_path / "prep"
    assert main(["prepare", str(pairs), "--dataset", "pairs", "--channels", "EEG Fpz-Cz",
                 "--out", str(prep), "--no-progress"]) == 0  # fmt: skip
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out == {"prepared": str(prep), "nights": 6, "failed": 0, "subjects": 3}
    man = json.loads((prep / "manifest.json").read_text())
    assert [(e["subject"], e["night"]) for e in man["nights"]] == [
        ("s1", 1), ("s1", 2), ("s2", 1), ("s2", 2), ("s3", 1), ("s3", 2)]  # fmt: skip
    assert man["nights"][0]["hypnogram"] == ""  # the recording's own annotations
    names = ["s1-night1", "s1-night2", "s2-night1", "s2-night2", "s3-BrainFlow-RAW_night1",
             "s3-OpenBCI-RAW-night2"]  # fmt: skip
    _check_nights(prep, stretches, names)

    from distill.checkpoint import read_sidecar

    run = tmp_path / "run"
    assert main(["train", *TINY, "--prepared", str(prep), "--split", "subject-kfold",
                 "--folds", "3", "--fold", "0", "--out", str(run)]) == 0  # fmt: skip
    meta = read_sidecar(run / "fold0" / "best.safetensors")
    assert meta["datasets"] == ["pairs"] and meta["fold"]["protocol"] == "subject-kfold"
    by_role = {role: {n[:2] for n, runs in meta["fold"][role].items() if runs}
               for role in ("train", "val", "test")}  # fmt: skip
    assert len(by_role["test"]) == len(by_role["val"]) == len(by_role["train"]) == 1
    assert by_role["train"] | by_role["val"] | by_role["test"] == {"s1", "s2", "s3"}
    files = {Path(e["psg"]).name: e["subject"] for e in man["nights"]}
    trained = {r["name"] for r in meta["recordings"]}
    assert len(trained) == 2 and {files[f] for f in trained} == by_role["train"]


@pytest.mark.slow
def test_prepare_pairs_names_each_bad_file_once_and_resumes(lab_pairs, tmp_path, capsys):
    """A truncated EDF, a corrupt FIF, an unsupported format, a missing recording and a
    recording with no stages give one line each naming the file (exit 3); the good nights
    are prepared once and reused by a rerun."""
    pairs, _ = lab_pairs
    lab = pairs.parent
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "cut.edf").write_bytes((lab / "s2" / "night2.edf").read_bytes()[:3000])
    (bad / "broken_raw.fif").write_bytes(b"not a fif file" * 100)
    (bad / "night.docx").write_bytes(b"PK\x03\x04 a word document")
    shutil.copy(lab / "s1" / "night2.vhdr", bad / "nostages.vhdr")
    for ext in (".vmrk", ".eeg"):
        shutil.copy(lab / "s1" / f"night2{ext}", bad / f"nostages{ext}")
    text = (bad / "nostages.vhdr").read_text().replace("night2.", "nostages.")
    (bad / "nostages.vhdr").write_text(text)
    header, *rows = pairs.read_text().splitlines()
    absolute = [header]  # the lab's rows, their paths made absolute
    for row in rows:
        cells = row.split("\t")
        cells[:2] = [str(lab / c) if c else "" for c in cells[:2]]
        absolute.append("\t".join(cells))
    absolute += [f"cut.edf\t{lab / 's2' / 'night2-Hypnogram.edf'}\ts4", "gone.fif\t\ts4",
                 "nostages.vhdr\t\ts5", "broken_raw.fif\t\ts6",
                 f"night.docx\t{lab / 's1' / 'night2.hyp'}\ts6"]  # fmt: skip
    (bad / "pairs.tsv").write_text("\n".join(absolute) + "\n")
    prep = tmp_path / "prep"
    args = ["prepare", str(bad), "--dataset", "pairs", "--channels", "Fpz-Cz", "--out",
            str(prep), "--no-progress"]  # fmt: skip
    assert main(args) == 3
    err = capsys.readouterr().err.splitlines()
    names = ("cut.edf", "gone.fif", "nostages", "broken_raw.fif", "night.docx")
    lines = {name: [e for e in err if name in e] for name in names}
    assert all(len(v) == 1 for v in lines.values()) and len(err) == len(names), err
    assert "no such file" in lines["gone.fif"][0]
    assert "no scored sleep stage" in lines["nostages"][0]
    assert "cannot read" in lines["broken_raw.fif"][0]
    assert "unsupported recording format '.docx'" in lines["night.docx"][0]
    man = json.loads((prep / "manifest.json").read_text())
    assert len(man["nights"]) == 6 and len(man["failed"]) == 5
    npy = prep / "nights" / f"{man['nights'][3]['key']}.npy"
    mtime = npy.stat().st_mtime_ns
    assert main(args) == 3  # resumable: nothing prepared twice
    assert npy.stat().st_mtime_ns == mtime


@pytest.mark.slow
def test_prepare_bids_tree_keeps_sessions_of_a_subject_together(lab_bids, tmp_path, capsys):
    """A BIDS tree (mne-bids: EDF and BrainVision, stages in events.tsv) -> 4 nights of 3
    subjects; without --channels the error lists the file's channels; a final model
    holds a whole subject (both sessions) out for early stopping."""
    root, stretches = lab_bids
    prep = tmp_path / "prep"
    assert main(["prepare", str(root), "--dataset", "bids", "--out", str(prep)]) == 2
    assert "--channels" in capsys.readouterr().err and not prep.exists()
    assert main(["prepare", str(root), "--dataset", "bids", "--channels", "EEG Fpz-Cz",
                 "--out", str(prep), "--no-progress"]) == 0  # fmt: skip
    man = json.loads((prep / "manifest.json").read_text())
    assert [(e["subject"], e["night"]) for e in man["nights"]] == [
        ("sub-01", 1), ("sub-01", 2), ("sub-02", 1), ("sub-03", 1)]  # fmt: skip
    names = [f"sub-0{s}_ses-{n}_task-sleep" for s, n in ((1, 1), (1, 2), (2, 1), (3, 1))]
    _check_bids(prep, stretches, names)

    from distill.checkpoint import read_sidecar

    run = tmp_path / "run"
    assert main(["train", *TINY, "--prepared", str(prep), "--split", "full", "--seed", "1",
                 "--out", str(run)]) == 0  # fmt: skip
    meta = read_sidecar(run / "best.safetensors")
    val = sorted(n for n, runs in meta["fold"]["val"].items() if runs)
    train = sorted(n for n, runs in meta["fold"]["train"].items() if runs)
    assert len({n[:6] for n in val}) == 1 and not {n[:6] for n in val} & {n[:6] for n in train}
    assert len(val) + len(train) == 4


def _check_bids(prep: Path, stretches, names) -> None:
    from distill.prepared import load_prepared

    recs = load_prepared(prep)
    assert [r.name for r in recs] == names
    for rec, st in zip(recs, stretches, strict=True):
        assert np.array_equal(rec.labels, st.y), rec.name
        x = np.asarray(rec.primary, np.float64)
        assert np.corrcoef(x, st.x)[0, 1] > 0.9999, rec.name  # EDF: 16-bit digitised


@pytest.mark.slow
def test_reproduce_on_a_labs_pairs_file_folds_by_subject(lab_pairs, tmp_path):
    """`distill reproduce --dataset pairs` prepares the lab's list itself and runs the
    subject-wise k-fold on it (one fold, plain KD only: plumbing, not accuracy)."""
    pairs, _ = lab_pairs
    out = tmp_path / "res"
    assert main(["reproduce", "--dataset", "pairs", "--data", str(pairs), "--channels",
                 "EEG Fpz-Cz", "--folds", "3", "--fold", "0", "--methods", "kd", "--family",
                 "tiny", "--quick", "--prepared", str(tmp_path / "prep"), "--out", str(out),
                 "--runs", str(tmp_path / "runs"), *TINY[2:]]) == 0  # fmt: skip
    res = json.loads((out / "reproduce-pairs-tiny-quick.json").read_text())
    assert res["n_subjects"] == 3 and not res["failed_files"]
    labels = [r["label"] for r in res["rows"]]
    assert labels[0] == "teacher" and "kd" in labels, labels
    fs = res["fold_subjects"]
    assert sorted(s for f in fs.values() for s in f["test"]) == ["s1", "s2", "s3"]
    n_test = res["rows"][0]["modes"]["causal"]["per_seed"][0]["n_epochs"]
    assert n_test == 2 * 16  # both nights of the test subject, and only them
