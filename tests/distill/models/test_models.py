"""The model zoo's signal contract: output dict, shapes, any seq length, normalisation."""

from __future__ import annotations

import pytest
import torch

from distill.models import MODEL_SPECS, build, spec

torch.set_num_threads(1)
FAMILIES_FAST = [n for n in MODEL_SPECS if not n.startswith("deepsleepnet-t")]


@pytest.mark.parametrize("name", sorted(MODEL_SPECS))
def test_build_forward_shapes(name: str) -> None:
    """forward((2, 3, 1, 3000)) returns the four named outputs with the declared widths."""
    torch.manual_seed(0)
    model = build(name).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 1, 3000) * 30)
    assert set(out) == {"logits", "epoch_logits", "epoch_features", "sequence_features"}
    assert out["logits"].shape == (2, 3, 5)
    assert out["epoch_logits"].shape == (2, 3, 5)
    assert out["epoch_features"].shape == (2, 3, model.epoch_dim)
    assert out["sequence_features"].shape == (2, 3, model.sequence_dim)
    assert all(torch.isfinite(v).all() for v in out.values())
    assert model.seq_len >= 1 and model.role == spec(name).role


@pytest.mark.parametrize("seq", [1, 2, 7])
def test_build_any_seq_length(seq: int) -> None:
    """Any context length works, and the epoch head does not depend on the neighbours."""
    torch.manual_seed(0)
    model = build("tiny-student").eval()
    x = torch.randn(1, seq, 1, 3000) * 30
    with torch.no_grad():
        out = model(x)
        alone = model(x[:, -1:])
    assert out["logits"].shape == (1, seq, 5)
    torch.testing.assert_close(out["epoch_logits"][:, -1], alone["epoch_logits"][:, 0])


def test_build_unknown_name_lists_valid() -> None:
    """An unknown model name raises ValueError that lists the valid names."""
    with pytest.raises(ValueError, match="tiny-student"):
        build("no-such-model")


def test_build_rejects_wrong_input_shape() -> None:
    """A (batch, seq, 3000) input without the channel axis is refused with a clear message."""
    model = build("tiny-student")
    with pytest.raises(ValueError, match=r"\(batch, seq, 1, 3000\)"):
        model(torch.zeros(1, 2, 3000))


def test_build_input_is_raw_microvolts() -> None:
    """Normalisation is inside the model: a 1000x smaller input (V instead of µV) changes the output."""
    torch.manual_seed(0)
    model = build("tiny-student").eval()
    x = torch.randn(1, 2, 1, 3000) * 40
    with torch.no_grad():
        a, b = model(x)["logits"], model(x * 1e-6)["logits"]
    assert not torch.allclose(a, b, atol=1e-3)


def test_build_kwargs_override() -> None:
    """build() keyword arguments override the variant's defaults."""
    model = build("tiny-student", seq_len=9, norm="epoch-z")
    assert model.seq_len == 9 and model.norm.mode == "epoch-z"


def test_forward_epochs_matches_full_forward() -> None:
    """forward_epochs (stage-1 pre-training) gives the same epoch outputs as forward."""
    torch.manual_seed(0)
    model = build("tiny-ta").eval()
    x = torch.randn(2, 3, 1, 3000) * 30
    with torch.no_grad():
        full, ep = model(x), model.forward_epochs(x)
    torch.testing.assert_close(full["epoch_features"], ep["epoch_features"])
    torch.testing.assert_close(full["epoch_logits"], ep["epoch_logits"])


@pytest.mark.parametrize("name", ["tiny-teacher", "salient-student", "transformer-student"])
def test_models_trainable_gradients_reach_all(name: str) -> None:
    """One backward pass reaches every trainable parameter (no dead branch in the graph)."""
    torch.manual_seed(0)
    model = build(name).train()
    out = model(torch.randn(2, 3, 1, 3000) * 30)
    (out["logits"].sum() + out["epoch_logits"].sum()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing
