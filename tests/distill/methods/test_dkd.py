"""DKD: golden TCKD/NCKD against numpy, the KD decomposition identity, invariants."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distill.methods.dkd import dkd_loss, dkd_terms
from distill.methods.kd import kd_loss


def np_log_softmax(z: np.ndarray) -> np.ndarray:
    """Reference log-softmax over the last axis, in float64."""
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _np_dkd(s, t, y, temp):
    ps, pt = np.exp(np_log_softmax(s / temp)), np.exp(np_log_softmax(t / temp))
    idx = np.arange(len(y))
    bs = np.stack([ps[idx, y], 1 - ps[idx, y]], 1)
    bt = np.stack([pt[idx, y], 1 - pt[idx, y]], 1)
    tckd = (bt * np.log(bt / bs)).sum(1).mean() * temp**2
    mask = np.ones_like(s, dtype=bool)
    mask[idx, y] = False
    nckd = 0.0
    for i in range(len(y)):
        qs = ps[i][mask[i]] / ps[i][mask[i]].sum()
        qt = pt[i][mask[i]] / pt[i][mask[i]].sum()
        nckd += (qt * np.log(qt / qs)).sum()
    return tckd, nckd / len(y) * temp**2


@pytest.mark.parametrize("temp", [1.0, 4.0])
def test_dkd_terms_match_numpy(temp):
    """TCKD and NCKD equal an independent numpy computation (renormalised non-target)."""
    rng = np.random.default_rng(1)
    s, t = rng.normal(size=(6, 5)) * 2, rng.normal(size=(6, 5)) * 2
    y = rng.integers(0, 5, size=6)
    tckd, nckd = dkd_terms(torch.tensor(s), torch.tensor(t), torch.tensor(y), temp)
    ref_t, ref_n = _np_dkd(s, t, y, temp)
    assert tckd.item() == pytest.approx(ref_t, rel=1e-6)
    assert nckd.item() == pytest.approx(ref_n, rel=1e-6)


def test_dkd_decomposes_classical_kd():
    """Per row, KD = TCKD + (1 - p_t[target]) · NCKD (Zhao et al. 2022, eq. 7)."""
    rng = np.random.default_rng(2)
    s, t = torch.tensor(rng.normal(size=(1, 5))), torch.tensor(rng.normal(size=(1, 5)))
    y = torch.tensor([3])
    tckd, nckd = dkd_terms(s, t, y, 1.0)
    pt_gt = torch.softmax(t, -1)[0, 3]
    assert kd_loss(s, t, 1.0).item() == pytest.approx((tckd + (1 - pt_gt) * nckd).item(), rel=1e-6)


def test_dkd_loss_nonnegative_and_zero_when_equal():
    """α·TCKD + β·NCKD is ≥ 0 and 0 when the student equals the teacher."""
    g = torch.Generator().manual_seed(5)
    s, t = torch.randn(8, 5, generator=g) * 3, torch.randn(8, 5, generator=g) * 3
    y = torch.randint(0, 5, (8,), generator=g)
    assert dkd_loss(s, t, y).item() >= 0
    assert dkd_loss(t, t.clone(), y).item() == pytest.approx(0.0, abs=1e-5)
