"""Fixtures for the KD-method tests: the tiny teacher → TA → student chain and a batch."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture
def tiny_chain() -> dict[str, torch.nn.Module]:
    """Fresh ``tiny-{teacher,ta,student}`` models (seeded), from the real model zoo."""
    from distill.models import build

    torch.manual_seed(0)
    return {role: build(f"tiny-{role}") for role in ("teacher", "ta", "student")}


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` (2, 3, 1, 3000) µV-scale noise and stages ``y`` (2, 3) with one unscored epoch."""
    g = torch.Generator().manual_seed(1)
    x = 30.0 * torch.randn(2, 3, 1, 3000, generator=g)
    y = torch.tensor([[0, 2, 4], [1, -1, 3]])
    return x, y
