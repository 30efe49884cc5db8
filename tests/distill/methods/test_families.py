"""Every method × every model family: one training step on the real (full-size) models."""

from __future__ import annotations

import pytest
import torch

from distill.distillation import family_models
from distill.methods import build, get, names
from distill.models import MODEL_SPECS
from distill.models import build as build_model

FAMILIES = sorted({s.family for s in MODEL_SPECS.values()} - {"tiny"})


@pytest.fixture(scope="module")
def guides_of():
    """Frozen guides per family, built once: teacher, then the TA where the family has one."""
    cache: dict[str, list[torch.nn.Module]] = {}

    def get_guides(family: str) -> list[torch.nn.Module]:
        if family not in cache:
            torch.manual_seed(0)
            roles = family_models(family)
            cache[family] = [build_model(roles[r]) for r in ("teacher", "ta") if roles[r]]
        return cache[family]

    return get_guides


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", names())
def test_method_steps_on_every_family(method, family, guides_of):
    """Build, one forward/backward on two (2-epoch) windows: finite terms, student gets gradients."""
    guides = guides_of(family)
    if not get(method).uses_assistant:
        guides = guides[:1]
    torch.manual_seed(1)
    student = build_model(family_models(family)["student"])
    d = build(method, student, guides)
    d.train()
    x = 30.0 * torch.randn(2, 2, 1, 3000)
    y = torch.tensor([[2, 3], [0, -1]])
    _, terms = d(x, y, epoch=0, stage="sequence")
    assert all(torch.isfinite(v) and v.item() >= 0 for v in terms.values())
    torch.stack(list(terms.values())).sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert all(p.grad is None for g in guides for p in g.parameters())
