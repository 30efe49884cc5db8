"""The base distiller: a student, frozen guides (teacher, assistants) and a typed config.

A distiller is the loss callback of the training loop. ``forward_train`` returns the
student's outputs and a dict of already-weighted loss terms; the trainer sums the dict
and logs each term. The guides are never registered as sub-modules, so
``distiller.parameters()`` holds only what is trained: the student plus any alignment
map or regressor the method owns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sleepstream.errors import UsageError
from sleepstream.types import UNSCORED

#: Training stages of the two-stage recipe: epoch-encoder pre-training, then sequence.
STAGES: tuple[str, ...] = ("epoch", "sequence")
#: Other names of the stages (``distill.train`` calls stage 1 ``pretrain``).
STAGE_ALIASES = {"pretrain": "epoch"}

Outputs = Mapping[str, Tensor]


def canonical_stage(stage: str) -> str:
    """``epoch`` or ``sequence`` (``pretrain`` is accepted for ``epoch``)."""
    stage = STAGE_ALIASES.get(stage, stage)
    if stage not in STAGES:
        raise UsageError(f"unknown training stage {stage!r}; valid stages: {', '.join(STAGES)}")
    return stage


def logits_key(stage: str) -> str:
    """Model output holding the logits trained in ``stage`` (``epoch`` or ``sequence``)."""
    return "epoch_logits" if canonical_stage(stage) == "epoch" else "logits"


def flat_valid(t: Tensor, y: Tensor) -> Tensor:
    """Rows of ``t`` (shape ``(B, S, ...)``) where the label ``y`` (``(B, S)``) is scored.

    Returns shape ``(N, ...)`` with N the number of scored positions.
    """
    keep = (y != UNSCORED).reshape(-1)
    return t.reshape(keep.shape[0], *t.shape[2:])[keep]


def hard_ce(logits: Tensor, y: Tensor, weight: Tensor | None = None) -> Tensor:
    """Cross-entropy of ``logits`` ``(B, S, C)`` against stages ``y`` ``(B, S)``.

    Unscored positions (``-1``) are left out; an all-unscored batch gives 0 (with grad).
    ``weight`` ``(C,)`` optionally weights the stages (class imbalance: N1 is rare).
    """
    flat = logits.reshape(-1, logits.shape[-1])
    target = y.reshape(-1).long()
    if not bool((target != UNSCORED).any()):
        return flat.sum() * 0.0
    return F.cross_entropy(flat, target, weight=weight, ignore_index=UNSCORED)


@dataclass(frozen=True)
class DistillConfig:
    """Common base of the method configs (all frozen)."""


class Distiller(nn.Module):
    """Student plus frozen guides; subclasses implement :meth:`forward_train`.

    Parameters
    ----------
    student : nn.Module
        The model being trained (signal contract of :mod:`distill.models`).
    guides : sequence of nn.Module
        The frozen models that teach, ordered from the largest (the teacher) to the
        nearest (the last assistant). Single-guide methods use ``guides[-1]``.
    config : DistillConfig
        The method's frozen config.
    """

    name: ClassVar[str] = ""
    #: True when the method trains an assistant (TA) between teacher and student.
    uses_assistant: ClassVar[bool] = False
    Config: ClassVar[type[DistillConfig]] = DistillConfig

    def __init__(self, student: nn.Module, guides: Sequence[nn.Module], config: DistillConfig):
        super().__init__()
        if not guides:
            raise UsageError(f"method {self.name!r} needs at least one teacher")
        if not isinstance(config, self.Config):
            raise UsageError(
                f"method {self.name!r} takes a {self.Config.__name__}, got {type(config).__name__}"
            )
        self.student = student
        self.config = config
        #: Optional per-stage weights ``(5,)`` of every hard-label CE term (not trained).
        self.class_weights: Tensor | None = None
        self._guides: tuple[nn.Module, ...] = tuple(guides)  # a tuple: not registered
        for g in self._guides:
            g.eval()
            g.requires_grad_(False)

    # -- guides stay frozen --------------------------------------------------------
    @property
    def guides(self) -> tuple[nn.Module, ...]:
        """The frozen teacher and assistants, largest first."""
        return self._guides

    @property
    def teacher(self) -> nn.Module:
        """The nearest guide (the TA when one precedes the student)."""
        return self._guides[-1]

    def train(self, mode: bool = True) -> Distiller:
        super().train(mode)
        for g in self._guides:
            g.eval()
        return self

    @torch.no_grad()
    def guide_outputs(self, x: Tensor, which: Sequence[int] | None = None) -> list[Outputs]:
        """Outputs of the guides (eval mode, no grad) for input ``x`` ``(B, S, 1, 3000)``."""
        idx = range(len(self._guides)) if which is None else which
        out = []
        for i in idx:
            g = self._guides[i]
            g.eval()
            out.append({k: v.detach() for k, v in g(x).items()})
        return out

    # -- the callback ---------------------------------------------------------------
    def forward(
        self, x: Tensor, y: Tensor | None = None, *, epoch: int = 0, stage: str = "sequence"
    ) -> Outputs | tuple[Outputs, dict[str, Tensor]]:
        """Student outputs at evaluation; ``(outputs, losses)`` when training with labels."""
        if y is None or not self.training:
            return self.student(x)
        return self.forward_train(x, y, epoch=epoch, stage=stage)

    def forward_train(
        self, x: Tensor, y: Tensor, *, epoch: int, stage: str
    ) -> tuple[Outputs, dict[str, Tensor]]:
        """Student outputs and weighted loss terms for one batch (see :meth:`terms`)."""
        out = self.student(x)
        return out, self.terms(out, x, y, epoch=epoch, stage=canonical_stage(stage))

    def terms(
        self, out: Outputs, x: Tensor, y: Tensor, *, epoch: int, stage: str
    ) -> dict[str, Tensor]:
        """Weighted loss terms given the student's outputs ``out`` for input ``x``.

        Parameters
        ----------
        x : Tensor, shape (B, S, 1, 3000), float32, µV
        y : Tensor, shape (B, S), int64; ``-1`` marks unscored epochs
        epoch : int
            Training epoch (0-based), for schedules such as DKD's warm-up.
        stage : {"epoch", "sequence"}
            Epoch-encoder pre-training or sequence training.

        Returns
        -------
        dict of str to scalar Tensor, summed by the trainer (``loss_ce``, ``loss_kd``, ...).
        """
        raise NotImplementedError

    def callback(self):
        """Loss callback for :func:`distill.train.fit`: ``(outputs, batch) -> (loss, logs)``.

        ``batch`` carries ``x``, ``y``, ``epoch`` and ``stage`` (``pretrain``/``sequence``);
        ``outputs`` are the student's outputs for ``batch["x"]``.
        """

        def loss_fn(outputs: Outputs, batch: Mapping) -> tuple[Tensor, dict[str, float]]:
            terms = self.terms(
                outputs,
                batch["x"],
                batch["y"],
                epoch=int(batch["epoch"]),
                stage=canonical_stage(batch["stage"]),
            )
            loss = torch.stack(list(terms.values())).sum()
            return loss, {k: float(v.detach()) for k, v in terms.items()}

        return loss_fn

    def loss(self, x: Tensor, y: Tensor, *, epoch: int, stage: str = "sequence") -> Tensor:
        """Sum of the loss terms (convenience for loops that want one scalar)."""
        _, terms = self.forward_train(x, y, epoch=epoch, stage=stage)
        return torch.stack(list(terms.values())).sum()
