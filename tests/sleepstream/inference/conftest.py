"""A small real exported stager for the inference tests (exported once per session)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_onnx_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny-student`` trained 3 SGD steps on noise and exported (needs torch, distill)."""
    pytest.importorskip("torch")
    import torch

    from distill.export import export_tiny_student

    torch.set_num_threads(1)
    return export_tiny_student(tmp_path_factory.mktemp("tiny"), seed=0)


@pytest.fixture()
def tiny_onnx(tiny_onnx_master: Path, tmp_path: Path) -> Path:
    """A private copy (ONNX + card) that a test may corrupt."""
    dst = tmp_path / tiny_onnx_master.name
    shutil.copy(tiny_onnx_master, dst)
    card = tiny_onnx_master.with_name(tiny_onnx_master.stem + ".card.json")
    shutil.copy(card, tmp_path / card.name)
    return dst


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One checkpoint exported both ways: ``(window .onnx, split .card.json)``.

    ``tiny-teacher`` with a 20-epoch context (the daemon's default) and moved BatchNorm
    statistics, so that padding and context really change the output.
    """
    pytest.importorskip("torch")
    import torch

    from distill.export import export_student
    from distill.models import build

    torch.set_num_threads(1)
    torch.manual_seed(7)
    model = build("tiny-teacher", seq_len=20).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    root = tmp_path_factory.mktemp("pair")
    window = export_student(model, root / "w" / "m.onnx", seq_len=20, mode="window")
    split = export_student(model, root / "s" / "m.onnx", seq_len=20, mode="split")
    return window, split
