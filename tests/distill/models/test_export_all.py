"""Every registered model exports to ONNX with parity (one parametrised test over the zoo)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from distill.export import export_student
from distill.models import MODEL_SPECS, build

torch.set_num_threads(1)
# Paper-size teachers/TAs take 5-20 s each to export and check on one core; the
# SalientSleepNet student ~3 s (over the fast tier's 1 s per test).
SLOW = {"deepsleepnet-teacher", "deepsleepnet-ta", "salient-teacher", "transformer-teacher",
        "salient-student"}  # fmt: skip
NAMES = [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in MODEL_SPECS]


@pytest.mark.parametrize("name", NAMES)
def test_export_every_model(name: str, tmp_path: Path) -> None:
    """build(name) exports (seq_len 3) to a graph ONNX Runtime runs with |Δ logits| < 1e-4."""
    torch.manual_seed(0)
    model = build(name).eval()
    path = export_student(model, tmp_path / f"{name}.onnx", seq_len=3, card_fields={})
    card = json.loads(path.with_name(f"{name}.card.json").read_text())
    assert card["architecture"] == name and card["family"] == MODEL_SPECS[name].family
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(2, 3, 1, 3000, generator=torch.Generator().manual_seed(1)) * 40
    with torch.no_grad():
        ref = model(x)["logits"].numpy()
    got = sess.run(["logits"], {"eeg": x.numpy()})[0]
    assert got.shape == (2, 3, 5)
    assert np.abs(got - ref).max() < 1e-4
