"""What a training run is: optimiser, stages and the whole run's configuration.

Stored in every checkpoint sidecar (:meth:`TrainConfig.to_json`); :class:`Runtime
<distill.runtime.Runtime>` (device, precision, loader, processes) is kept apart: it says
where a run executes, not what it is.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import torch

from distill.trainset import Augmentation
from sleepstream.errors import UsageError

OPTIMISERS = ("adam", "adamw", "sgd")
SCHEDULES = ("none", "cosine", "step")


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and learning-rate schedule for one stage.

    ``schedule``: ``"none"``, ``"cosine"`` (to ``lr * min_lr_ratio`` over the stage) or
    ``"step"`` (× ``gamma`` every ``step_size`` epochs); ``warmup`` epochs ramp linearly.
    """

    name: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9
    schedule: str = "cosine"
    warmup: int = 0
    step_size: int = 10
    gamma: float = 0.5
    min_lr_ratio: float = 0.05
    grad_clip: float = 5.0

    def __post_init__(self) -> None:
        if self.name not in OPTIMISERS:
            raise UsageError(f"optimizer {self.name!r}: valid: {', '.join(OPTIMISERS)}")
        if self.schedule not in SCHEDULES:
            raise UsageError(f"schedule {self.schedule!r}: valid: {', '.join(SCHEDULES)}")
        if self.lr <= 0:
            raise UsageError(f"lr must be > 0, got {self.lr}")

    def build(self, params) -> torch.optim.Optimizer:
        if self.name == "sgd":
            return torch.optim.SGD(
                params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay
            )
        cls = torch.optim.Adam if self.name == "adam" else torch.optim.AdamW
        return cls(params, lr=self.lr, betas=self.betas, weight_decay=self.weight_decay)

    def lr_at(self, epoch: int, total: int) -> float:
        """Learning rate for training epoch ``epoch`` (0-based) of ``total``."""
        if self.warmup and epoch < self.warmup:
            return self.lr * (epoch + 1) / (self.warmup + 1)
        if self.schedule == "cosine":
            span = max(1, total - self.warmup - 1)
            t = min(1.0, (epoch - self.warmup) / span)
            lo = self.lr * self.min_lr_ratio
            return lo + 0.5 * (self.lr - lo) * (1 + math.cos(math.pi * t))
        if self.schedule == "step":
            return self.lr * self.gamma ** ((epoch - self.warmup) // self.step_size)
        return self.lr


@dataclass(frozen=True)
class StageConfig:
    """One training stage: epochs, batch size, early-stopping patience, optimiser."""

    epochs: int = 20
    batch_size: int = 32
    patience: int = 5
    optim: OptimConfig = field(default_factory=OptimConfig)
    stride: int = 0  # epochs between window starts (0 = seq, non-overlapping)

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1:
            raise UsageError(f"stage needs epochs >= 0 and batch_size >= 1, got {self}")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (stored in every checkpoint sidecar)."""

    model: str = "deepsleepnet-teacher"
    model_kwargs: dict = field(default_factory=dict)
    seq_len: int = 20
    seed: int = 0
    pretrain: StageConfig = field(default_factory=lambda: StageConfig(epochs=10, batch_size=64))
    sequence: StageConfig = field(default_factory=lambda: StageConfig(epochs=20, batch_size=16))
    augment: Augmentation = field(default_factory=Augmentation)
    balance: str = "weights"  # "weights" (weighted CE), "sampler" (weighted sampling), "none"
    weight_power: float = 0.5
    assembled_ratio: float = 1.0  # hypnogram-assembled windows per real window (stage 2)
    val_mode: str = "causal"
    val_stride: int = 5  # causal validation: one window per 5 epochs (see make_validator)
    threads: int = 1
    #: ``NormalisationSpec.to_card()`` dict applied along every night (``{"kind": "none"}``).
    normalise: dict = field(default_factory=lambda: {"kind": "none"})
    #: Sessions per pass (epochs) when nights are normalised or augmented whole: the
    #: normaliser restarts at each session start; 0 = one random cut per night and pass.
    session_len: int = 0
    #: Fraction of stage-2 real windows with a short, zero-padded history (night start).
    start_windows: float = 0.0

    def __post_init__(self) -> None:
        if self.balance not in ("weights", "sampler", "none"):
            raise UsageError(f"balance {self.balance!r}: valid: weights, sampler, none")
        if self.seq_len < 1:
            raise UsageError(f"seq_len must be >= 1, got {self.seq_len}")
        if self.session_len < 0:
            raise UsageError(f"session_len must be >= 0 epochs, got {self.session_len}")
        if not 0.0 <= self.start_windows <= 1.0:
            raise UsageError(f"start_windows must be in [0, 1], got {self.start_windows}")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["augment"] = self.augment.to_json()
        return d

    #: Fields added after the first release, with the value that means "as before":
    #: left out of :func:`config_tag`-style hashes when at that value.
    NEW_DEFAULTS: ClassVar[dict[str, Any]] = {
        "normalise": {"kind": "none"},
        "session_len": 0,
        "start_windows": 0.0,
    }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TrainConfig:
        def stage(s: dict) -> StageConfig:
            o = dict(s["optim"])
            o["betas"] = tuple(o["betas"])
            return StageConfig(**{**s, "optim": OptimConfig(**o)})

        return cls(
            **{
                **d,
                "pretrain": stage(d["pretrain"]),
                "sequence": stage(d["sequence"]),
                "augment": Augmentation.from_json(d["augment"]),
            }
        )
