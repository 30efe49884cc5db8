"""Distillation methods: one small module per method, registered by name.

``names()`` lists them; ``build(name, student, guides, **overrides)`` makes the loss
callback for the training loop; an unknown name raises a ``UsageError`` listing the
valid names.
"""

from distill.methods import dgkd, dkd, fitnets, kd, nst, sleepkd, takd  # noqa: F401  (register)
from distill.methods.base import STAGES, DistillConfig, Distiller
from distill.methods.registry import UnknownMethodError, build, get, make_config, names, register

__all__ = [
    "STAGES",
    "DistillConfig",
    "Distiller",
    "UnknownMethodError",
    "build",
    "get",
    "make_config",
    "names",
    "register",
]
