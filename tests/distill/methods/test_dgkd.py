"""DGKD: every kept guide contributes a KD term; random drop keeps at least one."""

from __future__ import annotations

import pytest
import torch

from distill.methods.dgkd import dgkd_loss, drop_mask
from distill.methods.kd import kd_loss


def test_dgkd_loss_is_sum_over_kept_guides():
    """Loss equals the sum of kd_loss over the guides whose keep flag is set."""
    g = torch.Generator().manual_seed(0)
    s = torch.randn(6, 5, generator=g)
    guides = [torch.randn(6, 5, generator=g) for _ in range(3)]
    got = dgkd_loss(s, guides, [True, False, True], 2.0)
    assert got.item() == pytest.approx(
        (kd_loss(s, guides[0], 2.0) + kd_loss(s, guides[2], 2.0)).item()
    )
    assert dgkd_loss(guides[1], [guides[1], guides[1]], [True, True], 2.0).item() == pytest.approx(
        0.0, abs=1e-6
    )


def test_drop_mask_keeps_at_least_one_guide():
    """Over many draws with a high drop rate no mask is empty, and both guides get dropped."""
    g = torch.Generator().manual_seed(1)
    masks = [drop_mask(2, 0.9, g) for _ in range(200)]
    assert all(any(m) for m in masks)
    assert any(not m[0] for m in masks) and any(not m[1] for m in masks)
    assert drop_mask(1, 0.9, g) == [True]
