"""Registry of distillation methods: one decorated class per method.

An unknown name raises :class:`UnknownMethodError` (a ``UsageError`` and a
``ValueError``) whose message lists the valid names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from distill.methods.base import DistillConfig, Distiller
from sleepstream.errors import UsageError

_METHODS: dict[str, type[Distiller]] = {}
#: Listing order of the built-in methods (the paper's table order); others follow by name.
_ORDER = ("kd", "fitnets", "nst", "takd", "dgkd", "dkd", "sleepkd")


class UnknownMethodError(UsageError, ValueError):
    """The method name is not registered; the message lists the valid ones."""


def register(name: str) -> Callable[[type[Distiller]], type[Distiller]]:
    """Class decorator: register a :class:`Distiller` under ``name``."""

    def deco(cls: type[Distiller]) -> type[Distiller]:
        if name in _METHODS:
            raise ValueError(f"method {name!r} is already registered by {_METHODS[name]!r}")
        cls.name = name
        _METHODS[name] = cls
        return cls

    return deco


def names() -> list[str]:
    """Registered method names: the paper's table order, then any others by name."""
    rank = {n: i for i, n in enumerate(_ORDER)}
    return sorted(_METHODS, key=lambda n: (rank.get(n, len(rank)), n))


def get(name: str) -> type[Distiller]:
    """The class registered as ``name``."""
    try:
        return _METHODS[name]
    except KeyError:
        raise UnknownMethodError(
            f"unknown distillation method {name!r}; valid methods: {', '.join(names())}"
        ) from None


def make_config(name: str, **overrides: Any) -> DistillConfig:
    """The method's default config with ``overrides`` applied (a ``preset`` key first).

    Unknown fields raise :class:`~sleepstream.errors.UsageError` naming them.
    """
    cls = get(name)
    preset = overrides.pop("preset", None)
    if preset is not None:
        if not hasattr(cls.Config, "from_preset"):
            raise UsageError(f"method {name!r} has no presets")
        base = cls.Config.from_preset(preset)
    else:
        base = cls.Config()
    valid = {f.name for f in dataclasses.fields(cls.Config)}
    bad = sorted(set(overrides) - valid)
    if bad:
        raise UsageError(
            f"method {name!r}: unknown option(s) {', '.join(bad)}; valid: {', '.join(sorted(valid))}"
        )
    return dataclasses.replace(base, **overrides)


def build(
    name: str,
    student: nn.Module,
    guides: Sequence[nn.Module],
    config: DistillConfig | None = None,
    **overrides: Any,
) -> Distiller:
    """Build the distiller ``name`` for ``student`` taught by ``guides`` (largest first)."""
    cls = get(name)
    cfg = config if config is not None else make_config(name, **overrides)
    return cls(student, guides, cfg)
