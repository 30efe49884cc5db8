"""The shipped default student: its card's DREAMS figures are reproduced by ``distill evaluate``."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sleepstream.dsp.normalise import NormalisationSpec
from sleepstream.inference import load_stager
from sleepstream.inference.stager import default_model_path

CARD = default_model_path().with_name("default.card.json")


def test_default_student_card_matches_model_and_describes_training():
    """The card's sha256 matches the ONNX graphs, and it says what data, recipe and
    selection made it (SC4001 only; DREAMS never used for selection)."""
    stager = load_stager(None)  # raises ModelError on a sha256 or contract mismatch
    card = json.loads(CARD.read_text())
    assert stager.seq_len == card["input_contract"]["seq_len"]
    training = card["training"]
    assert training["datasets"] == ["sc4001"]
    assert [r["name"] for r in training["recordings"]] == ["SC4001E0-PSG.edf"]
    assert stager.card.training_recordings[0]["sha256"] == training["recordings"][0]["sha256"]
    assert training["recipe"]["name"] in training["description"]
    assert "DREAMS was never used" in training["description"]
    # the card declares the normalisation the daemon applies, with the recipe's parameters
    assert stager.normalisation == NormalisationSpec.from_card(training["recipe"]["normalise"])
    assert card["metrics"]["protocol"] == "cross-dataset"


@pytest.mark.slow
def test_default_student_evaluate_reproduces_card_dreams_metrics(tmp_path: Path, dreams_dir):
    """`distill evaluate --onnx` on DREAMS gives exactly the card's causal and offline metrics."""
    card = json.loads(CARD.read_text())["metrics"]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "distill",
            "evaluate",
            "--onnx",
            str(default_model_path()),
            "--protocol",
            "cross-dataset",
            "--mode",
            "both",
            "--data",
            str(dreams_dir.parent),
            "--out",
            str(tmp_path),
            "--stem",
            "again",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    again = json.loads((tmp_path / "again.json").read_text())
    for mode in ("causal", "offline"):
        got, want = again["modes"][mode]["pooled"], card["modes"][mode]["pooled"]
        assert got["confusion"] == want["confusion"], mode
        for key in ("accuracy", "macro_f1", "kappa"):
            assert got[key] == pytest.approx(want[key], abs=1e-9), (mode, key)
