"""The alignment map Φ of SleepKD: teacher feature width ``Dt`` → student width ``Ds``.

- ``maxpool`` (the official code): a fixed sliding max over the feature axis with window
  ``Dt - Ds + 1`` and stride 1, so the output has exactly ``Ds`` values; the identity
  when the widths are equal. No parameters.
- ``linear``: a learned ``nn.Linear(Dt, Ds)`` (the paper's learnable Φ).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from sleepstream.errors import UsageError

KINDS = ("maxpool", "linear")


def maxpool_align(feature: Tensor, out_dim: int) -> Tensor:
    """Sliding max over the last axis (window ``D - out_dim + 1``, stride 1).

    Parameters
    ----------
    feature : Tensor, shape (..., D) with D ≥ out_dim
    out_dim : int

    Returns
    -------
    Tensor, shape (..., out_dim)
    """
    d = feature.shape[-1]
    if out_dim > d:
        raise UsageError(f"max-pool Φ cannot widen features from {d} to {out_dim}; use phi=linear")
    if out_dim == d:
        return feature
    lead = feature.shape[:-1]
    pooled = F.max_pool1d(feature.reshape(-1, 1, d), kernel_size=d - out_dim + 1, stride=1)
    return pooled.reshape(*lead, out_dim)


class Align(nn.Module):
    """Φ: maps a teacher feature ``(..., Dt)`` to the student width ``(..., Ds)``."""

    def __init__(self, teacher_dim: int, student_dim: int, kind: str = "maxpool"):
        super().__init__()
        if kind not in KINDS:
            raise UsageError(f"unknown Φ kind {kind!r}; valid: {', '.join(KINDS)}")
        if kind == "maxpool" and student_dim > teacher_dim:
            raise UsageError(
                f"max-pool Φ cannot widen features from {teacher_dim} to {student_dim}; "
                "use phi=linear"
            )
        self.kind = kind
        self.out_dim = student_dim
        self.linear = nn.Linear(teacher_dim, student_dim) if kind == "linear" else None

    def forward(self, feature: Tensor) -> Tensor:
        if self.linear is not None:
            return self.linear(feature)
        return maxpool_align(feature, self.out_dim)
