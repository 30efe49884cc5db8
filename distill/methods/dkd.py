"""Decoupled KD (Zhao et al. 2022): target-class (TCKD) and non-target-class (NCKD) terms."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from distill.methods.base import DistillConfig, Distiller, flat_valid, hard_ce, logits_key
from distill.methods.registry import register
from sleepstream.errors import UsageError


def _kl(log_p_t: Tensor, log_p_s: Tensor) -> Tensor:
    """Row-wise KL(p_t ‖ p_s) from log-probabilities, summed over classes."""
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=-1)


def dkd_terms(
    student_logits: Tensor, teacher_logits: Tensor, target: Tensor, temperature: float
) -> tuple[Tensor, Tensor]:
    """TCKD and NCKD (each times T², averaged over rows).

    Parameters
    ----------
    student_logits, teacher_logits : Tensor, shape (N, C)
    target : Tensor, shape (N,), int64 class index
    temperature : float

    Returns
    -------
    (tckd, nckd) : scalars, each ≥ 0 and 0 when the logits are equal.
    TCKD is the binary KL between ``[p_target, 1 - p_target]``; NCKD the KL between the
    distributions over the non-target classes only.
    """
    t = temperature
    gt = F.one_hot(target.long(), student_logits.shape[-1]).bool()
    log_ps = F.log_softmax(student_logits / t, dim=-1)
    log_pt = F.log_softmax(teacher_logits / t, dim=-1)
    # binary (target, rest) in log space: log p_gt and log(1 - p_gt)
    ls_gt = log_ps.masked_select(gt)
    lt_gt = log_pt.masked_select(gt)
    ls_b = torch.stack([ls_gt, torch.log1p(-ls_gt.exp().clamp(max=1 - 1e-7))], dim=-1)
    lt_b = torch.stack([lt_gt, torch.log1p(-lt_gt.exp().clamp(max=1 - 1e-7))], dim=-1)
    tckd = _kl(lt_b, ls_b).mean() * t**2
    neg = torch.finfo(student_logits.dtype).min
    ls_nt = F.log_softmax((student_logits / t).masked_fill(gt, neg), dim=-1)
    lt_nt = F.log_softmax((teacher_logits / t).masked_fill(gt, neg), dim=-1)
    nt = ~gt
    nckd = (lt_nt.exp() * (lt_nt - ls_nt)).masked_fill(~nt, 0.0).sum(-1).mean() * t**2
    return tckd, nckd


def dkd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    target: Tensor,
    alpha: float = 1.0,
    beta: float = 8.0,
    temperature: float = 4.0,
) -> Tensor:
    """``α·TCKD + β·NCKD`` (see :func:`dkd_terms`)."""
    tckd, nckd = dkd_terms(student_logits, teacher_logits, target, temperature)
    return alpha * tckd + beta * nckd


@dataclass(frozen=True)
class DKDConfig(DistillConfig):
    """α (TCKD), β (NCKD), T, CE weight, and a linear warm-up of the KD term in epochs."""

    alpha: float = 1.0
    beta: float = 8.0
    temperature: float = 4.0
    ce_weight: float = 1.0
    warmup_epochs: int = 5

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise UsageError(f"dkd temperature must be > 0, got {self.temperature}")
        if self.warmup_epochs < 0:
            raise UsageError(f"dkd warmup_epochs must be ≥ 0, got {self.warmup_epochs}")


@register("dkd")
class DKD(Distiller):
    """Decoupled KD from one teacher; the KD term ramps up over ``warmup_epochs``."""

    Config = DKDConfig

    def terms(self, out, x, y, *, epoch, stage):
        cfg = self.config
        key = logits_key(stage)
        (t_out,) = self.guide_outputs(x, [len(self.guides) - 1])
        target = flat_valid(y, y)
        s, t = flat_valid(out[key], y), flat_valid(t_out[key], y)
        ramp = 1.0 if cfg.warmup_epochs == 0 else min((epoch + 1) / cfg.warmup_epochs, 1.0)
        if target.numel() == 0:
            kd = s.sum() * 0.0
        else:
            kd = dkd_loss(s, t, target, cfg.alpha, cfg.beta, cfg.temperature)
        return {
            "loss_ce": cfg.ce_weight * hard_ce(out[key], y, self.class_weights),
            "loss_kd": ramp * kd,
        }
