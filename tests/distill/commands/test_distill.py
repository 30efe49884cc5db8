"""``distill distill`` end to end on the real SC4001 night with the tiny models.

Each method runs one epoch per training stage through the CLI, from a shared tiny
teacher, and is evaluated on the real DREAMS excerpts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill.cli import main
from distill.methods import names

FAST = ["--quick", "--pretrain-epochs", "1", "--epochs", "1", "--seq-len", "3",
        "--pretrain-batch-size", "256", "--batch-size", "64", "--assembled-ratio", "0",
        "--channels", "EEG Fpz-Cz", "--no-progress", "--mode", "causal"]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_teacher(shared_data, tmp_path_factory) -> Path:
    """A tiny teacher trained for one epoch per stage through ``distill distill --method kd``."""
    out = tmp_path_factory.mktemp("teacher-run")
    rc = main(["distill", "--method", "kd", "--family", "tiny", "--out", str(out),
               "--data", str(shared_data), "--no-eval", *FAST])  # fmt: skip
    assert rc == 0
    return out / "teacher" / "best.safetensors"


@pytest.mark.slow
@pytest.mark.parametrize("method", names())
def test_distill_runs_each_method_end_to_end(method, tiny_teacher, shared_data, tmp_path, capsys):
    """Every method trains its (TA and) student from the given teacher and scores DREAMS."""
    capsys.readouterr()
    rc = main(["distill", "--method", method, "--family", "tiny", "--teacher", str(tiny_teacher),
               "--out", str(tmp_path), "--data", str(shared_data), *FAST])  # fmt: skip
    assert rc == 0
    lines = [json.loads(s) for s in capsys.readouterr().out.splitlines() if s.startswith("{")]
    summary = lines[-1]["summary"]
    assert summary["method"] == method
    roles = set(summary["models"])
    assert ("ta" in roles) == (method in ("takd", "dgkd", "sleepkd"))
    student = summary["models"]["student"]
    assert student["dreams_causal"]["accuracy"] >= 0 and student["n_params"] > 0
    assert (tmp_path / "student" / "best.safetensors").is_file()
    assert not (tmp_path / "teacher").exists()
    side = json.loads((tmp_path / "student" / "best.json").read_text())
    assert side["distillation"]["method"] == method
