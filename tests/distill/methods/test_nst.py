"""NST: polynomial-kernel MMD between normalised channel distributions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distill.methods.nst import as_positions, poly_mmd


def _np_mmd(fs, ft, degree=2, coef=0.0):
    out = []
    for a, b in zip(fs, ft, strict=True):  # per item: (P, C)
        a = a / np.linalg.norm(a, axis=0, keepdims=True)
        b = b / np.linalg.norm(b, axis=0, keepdims=True)

        def k(u, v):
            return np.mean([(u[:, i] @ v[:, j] + coef) ** degree
                            for i in range(u.shape[1]) for j in range(v.shape[1])])  # fmt: skip

        out.append(k(b, b) + k(a, a) - 2 * k(a, b))
    return float(np.mean(out))


def test_poly_mmd_matches_numpy_loop():
    """poly_mmd equals a double loop over channel pairs in numpy, widths 3 vs 6."""
    rng = np.random.default_rng(0)
    fs, ft = rng.normal(size=(2, 4, 3)), rng.normal(size=(2, 4, 6))
    assert poly_mmd(torch.tensor(fs), torch.tensor(ft)).item() == pytest.approx(
        _np_mmd(fs, ft), rel=1e-9
    )


def test_poly_mmd_hand_value():
    """One item, 2 positions: student channel e1, teacher channels e1 and e2 → 1 + 1/2 − 1."""
    fs = torch.tensor([[[1.0], [0.0]]])
    ft = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    # k(ft,ft) = mean(1,0,0,1) = .5 ; k(fs,fs) = 1 ; k(fs,ft) = mean(1, 0) = .5
    assert poly_mmd(fs, ft).item() == pytest.approx(0.5 + 1.0 - 1.0)


def test_poly_mmd_nonnegative_zero_when_equal_and_scale_free():
    """≥ 0; 0 for equal maps; unchanged when a channel is rescaled (normalisation)."""
    g = torch.Generator().manual_seed(2)
    fs, ft = torch.randn(3, 5, 4, generator=g), torch.randn(3, 5, 7, generator=g)
    assert poly_mmd(fs, ft).item() >= 0
    assert poly_mmd(ft, ft.clone()).item() == pytest.approx(0.0, abs=1e-6)
    assert poly_mmd(fs * 10.0, ft).item() == pytest.approx(poly_mmd(fs, ft).item(), rel=1e-5)


def test_as_positions_uses_batch_when_sequence_is_one_epoch():
    """(B, 1, D) becomes (1, B, D); (B, S≥2, D) is left alone."""
    assert as_positions(torch.zeros(4, 1, 3)).shape == (1, 4, 3)
    assert as_positions(torch.zeros(4, 2, 3)).shape == (4, 2, 3)
