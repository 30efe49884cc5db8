"""Densely guided KD (Son et al. 2021): the teacher and every assistant guide the student.

Each guide contributes a KD term; during training each guide is dropped at random with
probability ``drop_prob`` (stochastic DGKD), keeping at least one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from distill.methods.base import DistillConfig, Distiller, flat_valid, hard_ce, logits_key
from distill.methods.kd import kd_loss
from distill.methods.registry import register
from sleepstream.errors import UsageError


def dgkd_loss(
    student_logits: Tensor, guide_logits: list[Tensor], keep: list[bool], temperature: float
) -> Tensor:
    """Sum of :func:`~distill.methods.kd.kd_loss` over the kept guides.

    Parameters
    ----------
    student_logits : Tensor, shape (N, C)
    guide_logits : list of Tensor, each shape (N, C)
    keep : list of bool, one per guide
    temperature : float
    """
    terms = [
        kd_loss(student_logits, t, temperature)
        for t, k in zip(guide_logits, keep, strict=True)
        if k
    ]
    return torch.stack(terms).sum() if terms else student_logits.sum() * 0.0


def drop_mask(n: int, drop_prob: float, generator: torch.Generator | None = None) -> list[bool]:
    """Which of ``n`` guides to keep: each dropped with ``drop_prob``, at least one kept."""
    if n <= 1 or drop_prob <= 0:
        return [True] * n
    keep = (torch.rand(n, generator=generator) >= drop_prob).tolist()
    if not any(keep):
        keep[int(torch.randint(n, (1,), generator=generator))] = True
    return keep


@dataclass(frozen=True)
class DGKDConfig(DistillConfig):
    """Temperature, weights, and the per-guide drop probability."""

    temperature: float = 4.0
    ce_weight: float = 0.1
    kd_weight: float = 0.9
    drop_prob: float = 0.5

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise UsageError(f"dgkd temperature must be > 0, got {self.temperature}")
        if not 0.0 <= self.drop_prob < 1.0:
            raise UsageError(f"dgkd drop_prob must be in [0, 1), got {self.drop_prob}")


@register("dgkd")
class DGKD(Distiller):
    """All guides teach the student; random drop of guides while training."""

    uses_assistant = True
    Config = DGKDConfig

    def terms(self, out, x, y, *, epoch, stage):
        cfg = self.config
        key = logits_key(stage)
        keep = drop_mask(len(self.guides), cfg.drop_prob)
        kept = [i for i, k in enumerate(keep) if k]
        guide_out = self.guide_outputs(x, kept)
        s = flat_valid(out[key], y)
        kd = dgkd_loss(
            s, [flat_valid(g[key], y) for g in guide_out], [True] * len(kept), cfg.temperature
        )
        return {
            "loss_ce": cfg.ce_weight * hard_ce(out[key], y, self.class_weights),
            "loss_kd": cfg.kd_weight * kd,
        }
