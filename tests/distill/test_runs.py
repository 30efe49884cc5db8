"""Resumable tables (distill.runs): finished units on disk, pooled rows, paired differences."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from distill.runs import Eta, ScoreStore, paired_differences, paired_markdown, table_rows


def unit(store: ScoreStore, label: str, seed: int, fold: str, n_right: int, n: int = 10):
    yt = np.zeros(n, int)
    yp = np.where(np.arange(n) < n_right, 0, 1)
    store.save(label, seed, fold, {"causal": (yt, yp)}, n_params=7, wall_s=2.0)


def test_store_survives_a_restart_and_ignores_torn_files(tmp_path):
    """Saved units load in a new store; a torn file or a missing mode counts as not done."""
    s = ScoreStore(tmp_path)
    unit(s, "kd", 0, "f0", 5)
    again = ScoreStore(tmp_path)
    u = again.load("kd", 0, "f0", ["causal"])
    assert (
        u is not None and u["n_params"] == 7 and u["modes"]["causal"]["y_pred"][:6] == [0] * 5 + [1]
    )
    assert again.load("kd", 0, "f0", ["causal", "offline"]) is None
    again.path("kd", 1, "f0").parent.mkdir(parents=True, exist_ok=True)
    again.path("kd", 1, "f0").write_text('{"label": "kd", "mo')
    assert again.load("kd", 1, "f0", ["causal"]) is None


def test_rows_pool_folds_per_seed_and_paired_differences_match_by_seed(tmp_path):
    """A seed counts once every fold is done; differences are row - reference per seed."""
    s = ScoreStore(tmp_path)
    for seed, (scr, kd) in enumerate([(4, 6), (5, 9), (6, 6)]):
        for f in ("f0", "f1"):
            unit(s, "scratch", seed, f, scr)
            unit(s, "kd", seed, f, kd)
    unit(s, "sleepkd", 0, "f0", 10)  # seed 0 lacks fold f1: not counted
    unit(s, "sleepkd", 1, "f0", 10)
    unit(s, "sleepkd", 1, "f1", 10)
    rows = table_rows(s, ["scratch", "kd", "sleepkd"], [0, 1, 2], ["f0", "f1"], ["causal"])
    kd = rows[1]["modes"]["causal"]
    assert kd["per_seed"][1]["accuracy"] == pytest.approx(0.9)
    assert kd["mean"]["accuracy"] == pytest.approx(0.7)
    assert rows[2]["modes"]["causal"]["seeds"] == [1]
    d = paired_differences(rows, "scratch", ["causal"])["causal"]
    assert d["kd"]["accuracy"]["per_seed"] == pytest.approx([0.2, 0.4, 0.0])
    assert d["kd"]["accuracy"]["wins"] == 2 and d["kd"]["accuracy"]["n"] == 3
    assert d["kd"]["accuracy"]["sd"] == pytest.approx(0.2)
    assert d["sleepkd"]["seeds"] == [1] and d["sleepkd"]["accuracy"]["mean"] == pytest.approx(0.5)
    assert "scratch" not in d
    md = "\n".join(paired_markdown({"causal": d}, "scratch", "causal"))
    assert "| kd | +20.00 ± 20.00 [2/3]" in md


def test_eta_counts_only_units_run_now():
    eta = Eta(total=4)
    eta.finished(None, cached=True)
    assert eta.left_s() is None
    eta.finished(10.0, cached=False)
    assert eta.left_s() == pytest.approx(20.0) and "2/4" in eta.line()


def test_grouped_score_pools_within_groups_and_averages_across():
    """The proxy score: kappa pooled per direction (group of folds), then averaged."""
    from distill.runs import grouped_score

    s = ScoreStore(Path(tempfile.mkdtemp()))
    y = np.array([0, 1, 2, 3] * 5)
    s.save("m", 0, "a-block0", {"causal": (y[:10], y[:10])})  # direction a: perfect
    s.save("m", 0, "a-block1", {"causal": (y[10:], y[10:])})
    s.save("m", 0, "b-block0", {"causal": (y, np.zeros_like(y))})  # direction b: chance
    groups = {"a": ["a-block0", "a-block1"], "b": ["b-block0"]}
    g = grouped_score(s, "m", [0], groups, "causal")
    assert g["per_seed"][0]["kappa"] == pytest.approx(0.5)  # (1 + 0) / 2
    assert grouped_score(s, "m", [0], {**groups, "c": ["c-block0"]}, "causal") is None
