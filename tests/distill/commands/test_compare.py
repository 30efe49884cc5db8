"""``distill compare`` / ``distill ablate`` write the table JSON + Markdown (tiny models)."""

from __future__ import annotations

import json

import pytest

from distill.cli import main

FAST = ["--family", "tiny", "--quick", "--pretrain-epochs", "1", "--epochs", "1",
        "--seq-len", "3", "--pretrain-batch-size", "256", "--batch-size", "64",
        "--assembled-ratio", "0", "--channels", "EEG Fpz-Cz", "--no-progress",
        "--mode", "causal", "--seeds", "2"]  # fmt: skip


@pytest.mark.slow
def test_compare_writes_mean_and_sd_over_seeds(shared_data, tmp_path):
    """Two seeds, two methods: rows scratch/kd/sleepkd/teacher/TA with mean ± sd, and the .md."""
    rc = main(["compare", "--methods", "kd,sleepkd:preset=code", "--out", str(tmp_path / "res"),
               "--runs", str(tmp_path / "runs"), "--data", str(shared_data), *FAST])  # fmt: skip
    assert rc == 0
    res = json.loads((tmp_path / "res" / "compare-tiny-cross-dataset-quick.json").read_text())
    labels = [r["label"] for r in res["rows"]]
    assert labels == ["teacher", "student (from scratch)", "kd", "sleepkd:preset=code", "TA"]
    kd = res["rows"][2]["modes"]["causal"]
    assert kd["n_seeds"] == 2 and len(kd["per_seed"]) == 2
    accs = [r["accuracy"] for r in kd["per_seed"]]
    assert kd["mean"]["accuracy"] == pytest.approx(sum(accs) / 2)
    assert res["ta_from"] == "sleepkd:preset=code"
    md = (tmp_path / "res" / "compare-tiny-cross-dataset-quick.md").read_text()
    assert "| kd |" in md and "±" in md and "cross-dataset" in md


@pytest.mark.slow
def test_ablate_lists_full_l1_to_l4_and_variants(shared_data, tmp_path):
    """The ablation table has the full loss, L1–L4 and variant a rows."""
    rc = main(["ablate", "--out", str(tmp_path / "res"), "--runs", str(tmp_path / "runs"),
               "--data", str(shared_data), *FAST[:-2], "--seeds", "1"])  # fmt: skip
    assert rc == 0
    res = json.loads((tmp_path / "res" / "ablate-tiny-cross-dataset-paper-quick.json").read_text())
    labels = [r["label"] for r in res["rows"]]
    assert labels[0] == "teacher" and labels[1] == "student (from scratch)"
    assert [lab[:2] for lab in labels[3:7]] == ["L1", "L2", "L3", "L4"]
    assert labels[-1].startswith("variant a")
    assert all(r["modes"]["causal"]["n_seeds"] == 1 for r in res["rows"])
