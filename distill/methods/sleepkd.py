"""SleepKD (Liang et al., IJCAI 2023): multi-level epoch and sequence feature KD with a TA.

``L = α·MSE(Φ(F_e^T), F_e^S) + β·MSE(Φ(F_s^T), F_s^S) + γ·KL(p^T ‖ p^S) + δ·CE(y, p^S)``,
trained along the chain teacher → TA → student (:mod:`distill.distillation`).

Presets
-------
``paper``
    One joint loss. In the epoch stage (encoder pre-training) the terms that exist there
    are used (epoch MSE, soft KL and hard CE on ``epoch_logits``); in the sequence stage
    all four terms on ``logits``. α = β = 0.1 (the code's feature scale; the paper gives
    no values), γ = δ = 1, T = 1, Φ max-pool or learnable linear.
``code``
    The official code: stage 1 = 0.1·epoch MSE + 1·KL on the epoch logits; stage 2 =
    0.1·sequence MSE + 1·KL on the sequence logits; no hard label; T = 1; max-pool Φ.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from distill.methods.align import KINDS, Align
from distill.methods.base import DistillConfig, Distiller, flat_valid, logits_key
from distill.methods.fitnets import feature_dim
from distill.methods.kd import kd_loss
from distill.methods.registry import register
from sleepstream.errors import UsageError

PRESETS = ("paper", "code")


def feature_mse(aligned_teacher: Tensor, student: Tensor) -> Tensor:
    """``MSE(Φ(F^T), F^S)``; both ``(..., Ds)``. Scalar ≥ 0, 0 when equal."""
    return F.mse_loss(student, aligned_teacher)


def sleepkd_loss(
    *,
    epoch_t: Tensor | None,
    epoch_s: Tensor | None,
    seq_t: Tensor | None,
    seq_s: Tensor | None,
    logits_t: Tensor,
    logits_s: Tensor,
    target: Tensor,
    alpha: float,
    beta: float,
    gamma: float,
    delta: float,
    temperature: float = 1.0,
    class_weights: Tensor | None = None,
) -> dict[str, Tensor]:
    """The four weighted SleepKD terms from already-aligned teacher features.

    Parameters
    ----------
    epoch_t, epoch_s : Tensor (..., De) or None   Φ(teacher) and student epoch features
    seq_t, seq_s : Tensor (..., Ds) or None       Φ(teacher) and student sequence features
    logits_t, logits_s : Tensor (N, C)            scored positions only
    target : Tensor (N,)                          stage indices
    alpha, beta, gamma, delta : float             weights of epoch, seq, soft, hard terms
    temperature : float                           of the soft KL (T² scaled)
    class_weights : Tensor (C,), optional          per-stage weights of the hard CE

    Returns
    -------
    dict with ``loss_epoch``, ``loss_seq``, ``loss_kd``, ``loss_ce``; a term whose weight
    is 0 or whose features are None is left out.
    """
    terms: dict[str, Tensor] = {}
    if alpha and epoch_t is not None:
        terms["loss_epoch"] = alpha * feature_mse(epoch_t, epoch_s)
    if beta and seq_t is not None:
        terms["loss_seq"] = beta * feature_mse(seq_t, seq_s)
    if gamma:
        terms["loss_kd"] = gamma * kd_loss(logits_s, logits_t, temperature)
    if delta:
        terms["loss_ce"] = delta * (
            F.cross_entropy(logits_s, target.long(), weight=class_weights)
            if target.numel()
            else logits_s.sum() * 0
        )
    if not terms:  # every weight 0: keep the graph so the trainer can still step
        terms["loss_kd"] = logits_s.sum() * 0.0
    return terms


@dataclass(frozen=True)
class SleepKDConfig(DistillConfig):
    """Weights α (epoch MSE), β (sequence MSE), γ (soft KL), δ (hard CE), T, Φ and chain.

    ``two_stage`` uses the code's stage split (epoch terms in stage 1, sequence terms in
    stage 2); otherwise the joint loss. ``chain`` trains through the TA (variant b);
    ``chain=False`` distils teacher → student directly (variant a).
    """

    preset: str = "paper"
    alpha: float = 0.1
    beta: float = 0.1
    gamma: float = 1.0
    delta: float = 1.0
    temperature: float = 1.0
    phi: str = "maxpool"
    two_stage: bool = False
    chain: bool = True

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise UsageError(f"unknown sleepkd preset {self.preset!r}; valid: {', '.join(PRESETS)}")
        if self.phi not in KINDS:
            raise UsageError(f"unknown sleepkd phi {self.phi!r}; valid: {', '.join(KINDS)}")
        if self.temperature <= 0:
            raise UsageError(f"sleepkd temperature must be > 0, got {self.temperature}")
        for k in ("alpha", "beta", "gamma", "delta"):
            if getattr(self, k) < 0:
                raise UsageError(f"sleepkd {k} must be ≥ 0, got {getattr(self, k)}")

    @classmethod
    def from_preset(cls, preset: str) -> SleepKDConfig:
        """The ``paper`` or ``code`` preset."""
        if preset == "code":
            return cls(
                preset="code", alpha=0.1, beta=0.1, gamma=1.0, delta=0.0,
                temperature=1.0, phi="maxpool", two_stage=True,
            )  # fmt: skip
        if preset == "paper":
            return cls()
        raise UsageError(f"unknown sleepkd preset {preset!r}; valid: {', '.join(PRESETS)}")


@register("sleepkd")
class SleepKD(Distiller):
    """Multi-level (epoch + sequence features through Φ) plus soft and hard labels."""

    uses_assistant = True
    Config = SleepKDConfig

    def __init__(self, student, guides, config):
        super().__init__(student, guides, config)
        t = self.teacher
        self.phi_epoch = Align(
            feature_dim(t, "epoch_features"), feature_dim(student, "epoch_features"), config.phi
        )
        self.phi_seq = Align(
            feature_dim(t, "sequence_features"),
            feature_dim(student, "sequence_features"),
            config.phi,
        )

    def terms(self, out, x, y, *, epoch, stage):
        cfg = self.config
        key = logits_key(stage)
        (t_out,) = self.guide_outputs(x, [len(self.guides) - 1])
        use_epoch = cfg.alpha > 0 and (stage == "epoch" or not cfg.two_stage)
        use_seq = cfg.beta > 0 and stage == "sequence"
        terms = sleepkd_loss(
            epoch_t=self.phi_epoch(t_out["epoch_features"]) if use_epoch else None,
            epoch_s=out["epoch_features"] if use_epoch else None,
            seq_t=self.phi_seq(t_out["sequence_features"]) if use_seq else None,
            seq_s=out["sequence_features"] if use_seq else None,
            logits_t=flat_valid(t_out[key], y),
            logits_s=flat_valid(out[key], y),
            target=flat_valid(y, y),
            alpha=cfg.alpha,
            beta=cfg.beta,
            gamma=cfg.gamma,
            delta=cfg.delta,
            temperature=cfg.temperature,
            class_weights=self.class_weights,
        )
        return terms
