"""FitNets: hint MSE through a learned regressor on ``epoch_features``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distill.methods import build
from distill.methods.fitnets import hint_loss
from sleepstream.errors import UsageError


def test_hint_loss_matches_numpy_and_is_zero_when_equal():
    """hint_loss is the element mean of squared differences; 0 for equal features."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 3, 4))
    assert hint_loss(torch.tensor(a), torch.tensor(b)).item() == pytest.approx(
        float(((a - b) ** 2).mean())
    )
    assert hint_loss(torch.tensor(b), torch.tensor(b)).item() == 0.0


def test_fitnets_regressor_maps_student_to_teacher_width(tiny_chain):
    """The regressor is Linear(student width → teacher width) of the chosen feature."""
    d = build(
        "fitnets", tiny_chain["student"], [tiny_chain["teacher"]], feature="sequence_features"
    )
    assert d.regressor.in_features == tiny_chain["student"].sequence_dim
    assert d.regressor.out_features == tiny_chain["teacher"].sequence_dim


def test_fitnets_rejects_unknown_feature(tiny_chain):
    """An unknown hint feature name is a UsageError naming the valid ones."""
    with pytest.raises(UsageError, match="epoch_features"):
        build("fitnets", tiny_chain["student"], [tiny_chain["teacher"]], feature="conv3")
