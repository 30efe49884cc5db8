"""Model zoo: teacher, teacher-assistant and student stagers behind one signal contract.

Every model takes ``(batch, seq, 1, 3000)`` float32 raw EEG in µV at 100 Hz and returns
a dict with ``logits``, ``epoch_logits`` ``(B, S, 5)``, ``epoch_features`` ``(B, S, De)``
and ``sequence_features`` ``(B, S, Ds)`` (see :mod:`distill.models.base`). Models expose
``.epoch_dim``, ``.sequence_dim`` and ``.seq_len`` (default context, epochs).

Splittable families (``spec(name).splittable``: DeepSleepNet, tiny, transformer) also
expose the split form ``epoch_state`` / ``sequence_logits`` (``.state_dim``); the
SalientSleepNet family is not splittable (its U-Net spans the whole window).

>>> from distill.models import build, MODEL_SPECS
>>> model = build("tiny-student")

Parameter counts: :func:`count_params` returns ``n_params`` (trainable + BatchNorm
moving mean/variance, the Keras-style total the SleepKD paper reports) and
``n_trainable``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from distill.models.base import Stager, count_params

__all__ = ["MODEL_SPECS", "ModelSpec", "Stager", "build", "count_params", "spec"]


@dataclass(frozen=True)
class ModelSpec:
    """One registered model.

    Attributes
    ----------
    name : str
        Registry key, e.g. ``"deepsleepnet-student"``.
    family : str
        ``deepsleepnet``, ``salient``, ``transformer`` or ``tiny``.
    role : str
        ``teacher``, ``ta`` or ``student``.
    target : str
        ``"module:Class"`` import string (imported lazily).
    kwargs : dict
        Constructor arguments of this variant.
    paper_params : int or None
        Parameter count the paper reports (Keras style), if any.
    tolerance : float
        Relative tolerance the parameter-count test allows against ``paper_params``.
    """

    name: str
    family: str
    role: str
    target: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    paper_params: int | None = None
    tolerance: float = 0.01

    @property
    def model_class(self) -> type:
        """The model class (imported on first use)."""
        module_name, cls_name = self.target.split(":")
        return getattr(importlib.import_module(module_name), cls_name)

    @property
    def splittable(self) -> bool:
        """Whether the family factors into an epoch encoder and a sequence head
        (exported as two graphs; see :mod:`distill.models.base`, "Split form")."""
        return bool(getattr(self.model_class, "splittable", False))


def _dsn(name: str, role: str, family: str, paper: int | None, tol: float = 0.01) -> ModelSpec:
    from distill.models.deepsleepnet import DEEPSLEEPNET_VARIANTS

    return ModelSpec(
        name,
        family,
        role,
        "distill.models.deepsleepnet:DeepSleepNet",
        dict(DEEPSLEEPNET_VARIANTS[name]),
        paper,
        tol,
    )


def _specs() -> dict[str, ModelSpec]:
    specs = [
        _dsn("deepsleepnet-teacher", "teacher", "deepsleepnet", 5_502_474),
        _dsn("deepsleepnet-ta", "ta", "deepsleepnet", 3_448_330),
        _dsn("deepsleepnet-student", "student", "deepsleepnet", 1_552_906),
        _dsn("tiny-teacher", "teacher", "tiny", None),
        _dsn("tiny-ta", "ta", "tiny", None),
        _dsn("tiny-student", "student", "tiny", None),
    ]
    from distill.models.salient import _specs as salient_specs
    from distill.models.transformer import _specs as transformer_specs

    specs += salient_specs() + transformer_specs()
    return {s.name: s for s in specs}


#: Registry: model name -> :class:`ModelSpec`.
MODEL_SPECS: dict[str, ModelSpec] = _specs()


def spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name``; ``ValueError`` listing valid names if unknown."""
    try:
        return MODEL_SPECS[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; valid models: {', '.join(MODEL_SPECS)}"
        ) from None


def build(name: str, **kw: Any) -> Stager:
    """Build model ``name`` (fresh weights); ``kw`` override the variant's constructor args.

    Common overrides: ``seq_len`` (default context), ``dropout``, ``norm``
    (``"scale"`` or ``"epoch-z"``), ``scale_uv`` (µV).
    """
    s = spec(name)
    model = s.model_class(**{**s.kwargs, **kw})
    model.model_name = name
    model.family = s.family
    model.role = s.role
    return model
