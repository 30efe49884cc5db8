"""Teacher-assistant KD (Mirzadeh et al. 2020): teacher → TA → student, each step plain KD.

The chain itself is :mod:`distill.distillation`; here each step distils from the nearest
guide only (``guides[-1]``), with the same loss as :mod:`distill.methods.kd`.
"""

from __future__ import annotations

from distill.methods.base import Distiller
from distill.methods.kd import KDConfig, soft_and_hard
from distill.methods.registry import register


@register("takd")
class TAKD(Distiller):
    """Plain KD from the nearest guide; trained through a TA chain."""

    uses_assistant = True
    Config = KDConfig

    def terms(self, out, x, y, *, epoch, stage):
        (t_out,) = self.guide_outputs(x, [len(self.guides) - 1])
        return soft_and_hard(out, t_out, y, stage, self.config, self.class_weights)
