"""Neuron selectivity transfer (Huang & Wang 2017): MMD between feature distributions.

Each feature channel is one sample: its activation pattern over the positions, L2-normalised.
The loss is the (biased) squared MMD between the teacher's and the student's channel
sets under the polynomial kernel ``k(a, b) = (aᵀb + c)^d`` (d = 2, c = 0 in the paper),
so teacher and student may have different widths. Positions are the ``S`` epochs of a
sequence; with ``S == 1`` (epoch pre-training) the batch becomes the position axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from distill.methods.base import DistillConfig, Distiller, flat_valid, hard_ce, logits_key
from distill.methods.fitnets import FEATURES
from distill.methods.kd import kd_loss
from distill.methods.registry import register
from sleepstream.errors import UsageError


def poly_mmd(fs: Tensor, ft: Tensor, degree: int = 2, coef: float = 0.0) -> Tensor:
    """Squared MMD between channel sets, polynomial kernel, averaged over the batch.

    Parameters
    ----------
    fs : Tensor, shape (B, P, Cs)  student feature map, P positions, Cs channels
    ft : Tensor, shape (B, P, Ct)  teacher feature map, same P

    Returns
    -------
    Tensor, scalar ≥ 0; 0 when ``fs`` equals ``ft``.
    """
    fs = F.normalize(fs, dim=1)
    ft = F.normalize(ft, dim=1)

    def k(a: Tensor, b: Tensor) -> Tensor:
        return (a.transpose(1, 2) @ b + coef).pow(degree).mean(dim=(1, 2))

    return (k(ft, ft) + k(fs, fs) - 2 * k(fs, ft)).mean()


def as_positions(feature: Tensor) -> Tensor:
    """``(B, S, D)`` → ``(B, S, D)`` when S ≥ 2, else ``(1, B, D)`` (batch as positions)."""
    if feature.shape[1] >= 2:
        return feature
    return feature.reshape(1, -1, feature.shape[-1])


@dataclass(frozen=True)
class NSTConfig(DistillConfig):
    """Feature name, kernel and weights of the CE, soft-KD and MMD terms."""

    feature: str = "sequence_features"
    degree: int = 2
    coef: float = 0.0
    ce_weight: float = 1.0
    kd_weight: float = 1.0
    temperature: float = 1.0
    nst_weight: float = 50.0

    def __post_init__(self) -> None:
        if self.feature not in FEATURES:
            raise UsageError(f"nst feature {self.feature!r} unknown; valid: {', '.join(FEATURES)}")


@register("nst")
class NST(Distiller):
    """CE plus soft KD plus polynomial-kernel MMD on one feature map."""

    Config = NSTConfig

    def terms(self, out, x, y, *, epoch, stage):
        cfg = self.config
        key = logits_key(stage)
        feature = "epoch_features" if stage == "epoch" else cfg.feature
        (t_out,) = self.guide_outputs(x, [len(self.guides) - 1])
        mmd = poly_mmd(
            as_positions(out[feature]), as_positions(t_out[feature]), cfg.degree, cfg.coef
        )
        return {
            "loss_ce": cfg.ce_weight * hard_ce(out[key], y, self.class_weights),
            "loss_kd": cfg.kd_weight
            * kd_loss(flat_valid(out[key], y), flat_valid(t_out[key], y), cfg.temperature),
            "loss_nst": cfg.nst_weight * mmd,
        }
