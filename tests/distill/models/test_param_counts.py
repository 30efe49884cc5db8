"""Parameter counts of every family against the papers (Keras-style counts)."""

from __future__ import annotations

import pytest
import torch

from distill.models import MODEL_SPECS, build, count_params

PAPER = {name: s for name, s in MODEL_SPECS.items() if s.paper_params is not None}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_param_counts_match_paper(name: str) -> None:
    """n_params (trainable + BN moving stats) is within the family's tolerance of the paper."""
    spec = PAPER[name]
    with torch.device("meta"):
        n = count_params(build(name))["n_params"]
    assert abs(n - spec.paper_params) <= spec.tolerance * spec.paper_params, (n, spec.paper_params)


def test_param_counts_deepsleepnet_exact() -> None:
    """The DeepSleepNet family reproduces the SleepKD paper's counts exactly."""
    with torch.device("meta"):
        got = [
            count_params(build(f"deepsleepnet-{r}"))["n_params"]
            for r in ("teacher", "ta", "student")
        ]
    assert got == [5_502_474, 3_448_330, 1_552_906]


def test_param_counts_ordered_within_family() -> None:
    """Within each family the teacher is larger than the TA, which is larger than the student."""
    by_family: dict[str, dict[str, int]] = {}
    with torch.device("meta"):
        for name, spec in MODEL_SPECS.items():
            by_family.setdefault(spec.family, {})[spec.role] = count_params(build(name))["n_params"]
    assert set(by_family) == {"deepsleepnet", "salient", "transformer", "tiny"}
    for family, roles in by_family.items():
        sizes = [roles[r] for r in ("teacher", "ta", "student") if r in roles]
        assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == len(sizes), family


def test_count_params_split_trainable_and_bn_stats() -> None:
    """n_params = n_trainable + BN running mean/var; the LSTM's redundant bias is frozen."""
    model = build("tiny-student")
    c = count_params(model)
    bn = sum(
        m.running_mean.numel() * 2 for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)
    )
    assert c["n_bn_stats"] == bn > 0
    assert c["n_params"] == c["n_trainable"] + bn
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all("bias_hh" in n for n in frozen)


def test_model_specs_complete() -> None:
    """The registry holds exactly the names of the team contract, with family and role."""
    expected = {
        f"{fam}-{role}"
        for fam, roles in {
            "deepsleepnet": ("teacher", "ta", "student"),
            "salient": ("teacher", "student"),
            "transformer": ("teacher", "student"),
            "tiny": ("teacher", "ta", "student"),
        }.items()
        for role in roles
    }
    assert set(MODEL_SPECS) == expected
    for name, spec in MODEL_SPECS.items():
        assert name == f"{spec.family}-{spec.role}"
