"""Hinton knowledge distillation (Hinton, Vinyals & Dean 2015): soft labels at temperature T."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from distill.methods.base import DistillConfig, Distiller, Outputs, flat_valid, hard_ce, logits_key
from distill.methods.registry import register
from sleepstream.errors import UsageError


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 4.0) -> Tensor:
    """``T² · KL(softmax(t/T) ‖ softmax(s/T))``, averaged over rows.

    Parameters
    ----------
    student_logits, teacher_logits : Tensor, shape (..., C)
    temperature : float
        Softening temperature T > 0; the T² factor keeps gradient scale independent of T.

    Returns
    -------
    Tensor, scalar, ≥ 0; 0 when the logits are equal.
    """
    c = student_logits.shape[-1]
    log_ps = F.log_softmax(student_logits.reshape(-1, c) / temperature, dim=-1)
    log_pt = F.log_softmax(teacher_logits.reshape(-1, c) / temperature, dim=-1)
    kl = (log_pt.exp() * (log_pt - log_ps)).sum(dim=-1)
    return kl.mean() * temperature**2


@dataclass(frozen=True)
class KDConfig(DistillConfig):
    """Weights of the hard-label CE and the soft KD term, and the temperature."""

    temperature: float = 4.0
    ce_weight: float = 0.1
    kd_weight: float = 0.9

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise UsageError(f"kd temperature must be > 0, got {self.temperature}")


def soft_and_hard(
    student_out: Outputs,
    guide_out: Outputs,
    y: Tensor,
    stage: str,
    cfg: KDConfig,
    class_weights: Tensor | None = None,
) -> dict[str, Tensor]:
    """The weighted CE and KD terms shared by ``kd`` and ``takd``."""
    key = logits_key(stage)
    s, t = student_out[key], guide_out[key]
    return {
        "loss_ce": cfg.ce_weight * hard_ce(s, y, class_weights),
        "loss_kd": cfg.kd_weight * kd_loss(flat_valid(s, y), flat_valid(t, y), cfg.temperature),
    }


@register("kd")
class KD(Distiller):
    """Hinton KD from one teacher."""

    Config = KDConfig

    def terms(self, out, x, y, *, epoch, stage):
        (t_out,) = self.guide_outputs(x, [len(self.guides) - 1])
        return soft_and_hard(out, t_out, y, stage, self.config, self.class_weights)
