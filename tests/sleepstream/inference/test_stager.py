"""The run-time stager: ONNX Runtime only, batched predictions, unscorable epochs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sleepstream.errors import ModelError
from sleepstream.inference import load_stager, softmax
from sleepstream.types import UNSCORED, Epoch


def _epochs(n: int, seq: int, seed: int = 0) -> list[Epoch]:
    rng = np.random.default_rng(seed)
    return [
        Epoch(
            index=i,
            start_time=30.0 * i,
            start_utc="2026-01-01T00:00:00Z",
            window=(rng.standard_normal((seq, 3000)) * 30).astype(np.float32),
        )
        for i in range(n)
    ]


def test_predict_matches_logits_softmax(tiny_onnx: Path) -> None:
    """predict() returns softmax of the last position's logits, argmax stage, max-prob confidence."""
    stager = load_stager(tiny_onnx)
    eps = _epochs(4, stager.seq_len)
    preds = stager.predict(eps)
    logits = stager.logits(np.stack([e.window for e in eps])[:, :, None, :])
    probs = softmax(logits[:, -1])
    assert [p.epoch_index for p in preds] == [0, 1, 2, 3]
    for p, ref in zip(preds, probs, strict=True):
        np.testing.assert_allclose(p.probabilities, ref, atol=1e-6)
        assert p.stage == int(np.argmax(ref)) and p.confidence == pytest.approx(ref.max())
        assert p.model_id == stager.model_id and abs(p.probabilities.sum() - 1) < 1e-6


def test_predict_batched_equals_one_by_one(tiny_onnx: Path) -> None:
    """Batching (max_batch smaller than the input) does not change any prediction."""
    stager = load_stager(tiny_onnx, max_batch=2)
    eps = _epochs(5, stager.seq_len, seed=1)
    batched = stager.predict(eps)
    single = [stager.predict([e])[0] for e in eps]
    for a, b in zip(batched, single, strict=True):
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-6)


def test_predict_unscorable_epochs(tiny_onnx: Path) -> None:
    """Epochs with unscored reasons or non-finite samples get UNSCORED, zero probs, reasons."""
    stager = load_stager(tiny_onnx)
    good, flagged, nan = _epochs(3, stager.seq_len)
    flagged = Epoch(1, 30.0, "t", flagged.window, quality=("flat",), unscored_reasons=("flat",))
    win = nan.window.copy()
    win[-1, 10] = np.nan
    nan = Epoch(2, 60.0, "t", win)
    preds = stager.predict([good, flagged, nan])
    assert preds[0].stage != UNSCORED
    assert (
        preds[1].stage == UNSCORED
        and preds[1].reasons == ("flat",)
        and preds[1].quality == ("flat",)
    )
    assert preds[2].stage == UNSCORED and preds[2].reasons == ("nonfinite",)
    assert not preds[1].probabilities.any() and preds[1].confidence == 0.0


def test_predict_lookahead_scores_earlier_row(tiny_onnx: Path) -> None:
    """lookahead=k scores row seq-1-k and labels it epoch index-k; too early -> no_context."""
    stager = load_stager(tiny_onnx)
    eps = _epochs(3, stager.seq_len, seed=2)
    preds = stager.predict(eps, lookahead=1)
    logits = stager.logits(np.stack([e.window for e in eps])[:, :, None, :])
    assert preds[0].stage == UNSCORED and preds[0].reasons == ("no_context",)
    np.testing.assert_allclose(preds[2].probabilities, softmax(logits[2, -2]), atol=1e-6)
    assert preds[2].epoch_index == 1
    with pytest.raises(ModelError, match="lookahead"):
        stager.predict(eps, lookahead=stager.seq_len)


def test_predict_wrong_window_shape_raises(tiny_onnx: Path) -> None:
    """A window that is not (seq_len, 3000) raises ModelError naming the shape."""
    stager = load_stager(tiny_onnx)
    (ep,) = _epochs(1, stager.seq_len + 1)
    with pytest.raises(ModelError, match="window shape"):
        stager.predict([ep])


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
