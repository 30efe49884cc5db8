"""Hinton KD loss: golden values, invariants."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distill.methods.kd import kd_loss


def np_log_softmax(z: np.ndarray) -> np.ndarray:
    """Reference log-softmax over the last axis, in float64."""
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _np_kd(s: np.ndarray, t: np.ndarray, temp: float) -> float:
    lps, lpt = np_log_softmax(s / temp), np_log_softmax(t / temp)
    return float((np.exp(lpt) * (lpt - lps)).sum(-1).mean() * temp**2)


def test_kd_loss_hand_value():
    """Two classes, logits 0/0 vs log 3/0 at T=1: KL([.75,.25] ‖ [.5,.5]) by hand."""
    s = torch.zeros(1, 2)
    t = torch.tensor([[np.log(3.0), 0.0]], dtype=torch.float32)
    expected = 0.75 * np.log(0.75 / 0.5) + 0.25 * np.log(0.25 / 0.5)
    assert kd_loss(s, t, 1.0).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("temp", [1.0, 2.0, 4.0])
def test_kd_loss_matches_numpy(temp):
    """kd_loss equals an independent numpy KL·T² on random (2, 3, 5) logits."""
    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(2, 3, 5)) * 3, rng.normal(size=(2, 3, 5)) * 3
    got = kd_loss(torch.tensor(s), torch.tensor(t), temp).item()
    assert got == pytest.approx(_np_kd(s.reshape(-1, 5), t.reshape(-1, 5), temp), rel=1e-9)


def test_kd_loss_nonnegative_and_zero_when_equal():
    """≥ 0 for random logits and exactly 0 when student equals teacher."""
    g = torch.Generator().manual_seed(3)
    for _ in range(5):
        s, t = torch.randn(7, 5, generator=g) * 4, torch.randn(7, 5, generator=g) * 4
        assert kd_loss(s, t, 2.0).item() >= 0
    assert kd_loss(t, t.clone(), 4.0).item() == pytest.approx(0.0, abs=1e-6)
