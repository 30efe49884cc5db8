"""FitNets (Romero et al. 2015): hint regression on a named intermediate feature.

A learned linear regressor maps the student's feature (width ``Ds``) to the teacher's
width ``Dt``; the hint loss is the MSE between the regressed student feature and the
teacher's. The default hint layer is ``epoch_features`` (the epoch encoder's output).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from distill.methods.base import DistillConfig, Distiller, hard_ce, logits_key
from distill.methods.registry import register
from sleepstream.errors import UsageError

FEATURES = ("epoch_features", "sequence_features")
_DIM_ATTR = {"epoch_features": "epoch_dim", "sequence_features": "sequence_dim"}


def hint_loss(regressed_student: Tensor, teacher_feature: Tensor) -> Tensor:
    """Mean squared error between the regressed student feature and the teacher's.

    Both shape ``(..., Dt)``; returns a scalar ≥ 0, 0 when equal.
    """
    return F.mse_loss(regressed_student, teacher_feature)


@dataclass(frozen=True)
class FitNetsConfig(DistillConfig):
    """Hint feature name and the weights of CE and hint terms."""

    feature: str = "epoch_features"
    ce_weight: float = 1.0
    hint_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.feature not in FEATURES:
            raise UsageError(
                f"fitnets feature {self.feature!r} unknown; valid: {', '.join(FEATURES)}"
            )


def feature_dim(model: nn.Module, feature: str) -> int:
    """Width of ``feature`` for a model of the signal contract (``epoch_dim``/``sequence_dim``)."""
    return int(getattr(model, _DIM_ATTR[feature]))


@register("fitnets")
class FitNets(Distiller):
    """CE plus hint MSE through a learned linear regressor (student → teacher width)."""

    Config = FitNetsConfig

    def __init__(self, student, guides, config):
        super().__init__(student, guides, config)
        f = config.feature
        self.regressor = nn.Linear(feature_dim(student, f), feature_dim(self.teacher, f))

    def terms(self, out, x, y, *, epoch, stage):
        cfg = self.config
        (t_out,) = self.guide_outputs(x, [len(self.guides) - 1])
        hint = hint_loss(self.regressor(out[cfg.feature]), t_out[cfg.feature])
        return {
            "loss_ce": cfg.ce_weight * hard_ce(out[logits_key(stage)], y, self.class_weights),
            "loss_hint": cfg.hint_weight * hint,
        }
