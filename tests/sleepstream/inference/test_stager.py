"""The run-time stager: ONNX Runtime only, batched predictions, unscorable epochs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sleepstream.errors import ModelError
from sleepstream.inference import ContextStager, load_stager, softmax
from sleepstream.types import UNSCORED, Epoch


def _epochs(n: int, seed: int = 0) -> list[Epoch]:
    rng = np.random.default_rng(seed)
    return [
        Epoch(
            i, 30.0 * i, "2026-01-01T00:00:00Z", (rng.standard_normal(3000) * 30).astype(np.float32)
        )
        for i in range(n)
    ]


def _windows(stager, eps: list[Epoch]) -> np.ndarray:
    """Zero-padded causal windows (n, seq, 1, 3000) of consecutive epochs of one device."""
    s = stager.seq_len
    x = np.concatenate([np.zeros((s - 1, 3000), np.float32), np.stack([e.samples for e in eps])])
    return np.stack([x[i : i + s] for i in range(len(eps))])[:, :, None, :]


def test_predictions_are_softmax_of_last_position(tiny_onnx: Path) -> None:
    """A prediction is the softmax of its window's last logits, argmax stage, max-prob
    confidence, the model's id; every epoch scored once."""
    stager = load_stager(tiny_onnx)
    eps = _epochs(4)
    preds = [sc.prediction for sc in ContextStager(stager).score([("d", e) for e in eps])]
    probs = softmax(stager.logits(_windows(stager, eps))[:, -1])
    assert [p.epoch_index for p in preds] == [0, 1, 2, 3]
    for p, ref in zip(preds, probs, strict=True):
        np.testing.assert_allclose(p.probabilities, ref, atol=1e-6)
        assert p.stage == int(np.argmax(ref)) and p.confidence == pytest.approx(ref.max())
        assert p.model_id == stager.model_id and abs(p.probabilities.sum() - 1) < 1e-6


def test_small_max_batch_changes_nothing(tiny_onnx: Path) -> None:
    """ORT calls split by max_batch (here 1 window each) give the same logits."""
    x = _windows(load_stager(tiny_onnx), _epochs(5, seed=1))
    np.testing.assert_allclose(
        load_stager(tiny_onnx, max_batch=2).logits(x), load_stager(tiny_onnx).logits(x), atol=1e-6
    )


def test_bounded_pool_gives_same_logits(tiny_onnx: Path) -> None:
    """Chunks run on a pool of 2 ORT threads come back in order, equal to one thread."""
    x = _windows(load_stager(tiny_onnx), _epochs(9, seed=2))
    pooled = load_stager(tiny_onnx, max_batch=5, workers=2)
    try:
        np.testing.assert_array_equal(
            pooled.logits(x), load_stager(tiny_onnx, max_batch=5).logits(x)
        )
    finally:
        pooled.close()


def test_unscorable_epochs_get_reasons(tiny_onnx: Path) -> None:
    """Epochs with unscored reasons get UNSCORED, zero probabilities, their reasons and flags."""
    good, flagged = _epochs(2)
    flagged = Epoch(1, 30.0, "t", flagged.samples, quality=("flat",), unscored_reasons=("flat",))
    preds = [
        sc.prediction
        for sc in ContextStager(load_stager(tiny_onnx)).score([("d", good), ("d", flagged)])
    ]
    assert preds[0].stage != UNSCORED
    assert preds[1].stage == UNSCORED and preds[1].reasons == ("flat",)
    assert preds[1].quality == ("flat",) and preds[1].confidence == 0.0
    assert not preds[1].probabilities.any()


def test_logits_dynamic_batch_and_shape(tiny_onnx: Path) -> None:
    """logits() accepts (B, seq, 3000) or (B, seq, 1, 3000) and any batch size."""
    stager = load_stager(tiny_onnx)
    x = np.random.default_rng(0).standard_normal((3, stager.seq_len, 3000)).astype(np.float32)
    a = stager.logits(x)
    b = stager.logits(x[:, :, None, :])
    assert a.shape == (3, stager.seq_len, 5)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ModelError, match="input must be"):
        stager.logits(x[:, :, :100])


@pytest.mark.slow
def test_load_stager_without_torch(tiny_onnx: Path) -> None:
    """In a fresh interpreter, loading and running the stager never imports torch or distill."""
    code = (
        "import sys, numpy as np\n"
        "from sleepstream.inference import load_stager\n"
        f"s = load_stager({str(tiny_onnx)!r})\n"
        "out = s.logits(np.zeros((2, s.seq_len, 1, 3000), np.float32))\n"
        "assert out.shape == (2, s.seq_len, 5), out.shape\n"
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'distill'))]\n"
        "assert not bad, bad\n"
        "print('ok', s.model_id)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("ok tiny-student-")


def test_load_stager_default_missing_is_model_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With no shipped default model, load_stager() raises ModelError (not a traceback)."""
    import sleepstream.inference.stager as stager_mod

    monkeypatch.setattr(stager_mod, "MODELS_DIR", tmp_path)
    with pytest.raises(ModelError, match=r"default\.card\.json: no default model"):
        load_stager()
