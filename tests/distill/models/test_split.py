"""The split form: epoch encoder + sequence head compose exactly to the window model."""

from __future__ import annotations

import pytest
import torch

from distill.models import MODEL_SPECS, build, spec

torch.set_num_threads(1)
SPLITTABLE = [n for n, s in MODEL_SPECS.items() if s.splittable]
FAST = [n for n in SPLITTABLE if n.startswith(("tiny-", "transformer-student"))]


def test_split_families_declared() -> None:
    """DeepSleepNet, tiny and transformer families split; SalientSleepNet does not."""
    fams = {s.family: s.splittable for s in MODEL_SPECS.values()}
    assert fams == {"deepsleepnet": True, "tiny": True, "transformer": True, "salient": False}
    assert not build("salient-student").splittable


@pytest.mark.parametrize("name", FAST + ["deepsleepnet-student"])
def test_split_composes_to_window_model(name: str) -> None:
    """sequence_logits(epoch_state(each epoch)) equals forward()["logits"] for seq 1, 4, 7."""
    torch.manual_seed(0)
    model = build(name).eval()
    for s in (1, 4, 7):
        x = torch.randn(2, s, 1, 3000, generator=torch.Generator().manual_seed(s)) * 40
        x[0, :2] = 0.0  # a padded start: missing past epochs are all-zero epochs
        with torch.no_grad():
            ref = model(x)["logits"]
            states = model.epoch_state(x.reshape(-1, 1, 3000))
            got = model.sequence_logits(states.reshape(2, s, -1))
        assert states.shape == (2 * s, model.state_dim)
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("name", "dim"),
    [("deepsleepnet-student", 5), ("tiny-teacher", 5), ("transformer-student", 64)],
)
def test_split_state_dim(name: str, dim: int) -> None:
    """DeepSleepNet's head reads only the 5 epoch logits; the transformer's the d_model feature."""
    assert build(name).state_dim == dim


def test_split_epoch_state_rejects_windows() -> None:
    """epoch_state takes single epochs (N, 1, 3000), not windows."""
    with pytest.raises(ValueError, match=r"\(N, 1, 3000\)"):
        build("tiny-student").epoch_state(torch.zeros(1, 2, 1, 3000))


def test_split_spec_property_matches_class() -> None:
    """ModelSpec.splittable reads the class attribute without building the model."""
    assert spec("deepsleepnet-teacher").splittable and not spec("salient-teacher").splittable
