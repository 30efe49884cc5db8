"""Registry completeness: every registered method builds, trains one step, and is tested."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from distill.methods import STAGES, UnknownMethodError, build, get, make_config, names
from sleepstream.errors import UsageError

EXPECTED = ["kd", "fitnets", "nst", "takd", "dgkd", "dkd", "sleepkd"]


def _guides(method, chain):
    """Teacher only, or teacher → TA for methods that use an assistant."""
    if get(method).uses_assistant:
        return [chain["teacher"], chain["ta"]]
    return [chain["teacher"]]


def test_registry_lists_the_seven_methods_in_paper_order():
    """names() returns the seven methods in the paper's table order."""
    assert names() == EXPECTED


def test_registry_unknown_name_lists_valid_names():
    """An unknown method is a UsageError and a ValueError whose message lists every name."""
    with pytest.raises(UnknownMethodError) as exc:
        get("hinton")
    assert isinstance(exc.value, UsageError) and isinstance(exc.value, ValueError)
    for n in EXPECTED:
        assert n in str(exc.value)


def test_registry_unknown_option_is_usage_error():
    """A config field that does not exist is rejected with the valid fields."""
    with pytest.raises(UsageError, match="temperature"):
        make_config("kd", temprature=3.0)


@pytest.mark.parametrize("method", names())
def test_method_has_its_own_test_module(method):
    """Each registered method has tests/distill/methods/test_<name>.py (no untested method)."""
    assert (Path(__file__).parent / f"test_{method}.py").is_file()


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("method", names())
def test_method_step_trains_student_only(method, stage, tiny_chain, batch):
    """One optimiser step: finite terms ≥ 0, grads reach the student, guides bit-identical."""
    x, y = batch
    guides = _guides(method, tiny_chain)
    before = [{k: v.clone() for k, v in g.state_dict().items()} for g in guides]
    d = build(method, tiny_chain["student"], guides)
    d.train()
    opt = torch.optim.Adam(d.parameters(), lr=1e-2)
    out, terms = d(x, y, epoch=0, stage=stage)
    assert out["logits"].shape == (2, 3, 5)
    assert terms and all(torch.isfinite(v) and v.item() >= 0 for v in terms.values())
    torch.stack(list(terms.values())).sum().backward()
    student_grads = [p.grad for p in d.student.parameters() if p.grad is not None]
    assert any(g.abs().sum() > 0 for g in student_grads)
    for g in guides:
        assert all(p.grad is None and not p.requires_grad for p in g.parameters())
        assert not g.training
    own = {id(p) for p in d.parameters()}
    assert not own & {id(p) for g in guides for p in g.parameters()}
    opt.step()
    for g, sd in zip(guides, before, strict=True):
        for k, v in g.state_dict().items():
            assert torch.equal(v, sd[k]), f"{method}: guide tensor {k} changed"


def test_alignment_and_regressor_receive_gradients(tiny_chain, batch):
    """Learnable Φ (sleepkd phi=linear) and the FitNets regressor get non-zero gradients."""
    x, y = batch
    for method, kw, attr in [
        ("sleepkd", {"phi": "linear"}, "phi_seq"),
        ("fitnets", {}, "regressor"),
    ]:
        d = build(method, tiny_chain["student"], [tiny_chain["teacher"]], **kw)
        d.train()
        _, terms = d(x, y, epoch=0, stage="sequence")
        torch.stack(list(terms.values())).sum().backward()
        grads = [p.grad for p in getattr(d, attr).parameters()]
        assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_distiller_eval_returns_student_outputs(tiny_chain, batch):
    """In eval mode (or without labels) the distiller is just the student."""
    x, _ = batch
    d = build("kd", tiny_chain["student"], [tiny_chain["teacher"]]).eval()
    with torch.no_grad():
        assert torch.equal(d(x)["logits"], tiny_chain["student"](x)["logits"])


def test_callback_matches_terms_and_accepts_trainer_stage_names(tiny_chain, batch):
    """callback()(outputs, batch) sums the terms; ``pretrain`` means the epoch stage."""
    x, y = batch
    d = build("sleepkd", tiny_chain["student"], [tiny_chain["ta"]], preset="code")
    d.train()
    out = d.student(x)
    loss, logs = d.callback()(out, {"x": x, "y": y, "epoch": 0, "stage": "pretrain"})
    terms = d.terms(out, x, y, epoch=0, stage="epoch")
    assert set(logs) == {"loss_epoch", "loss_kd"}
    assert loss.item() == pytest.approx(sum(v.item() for v in terms.values()), rel=1e-6)
    with pytest.raises(UsageError, match="sequence"):
        d.callback()(out, {"x": x, "y": y, "epoch": 0, "stage": "finetune"})


def test_class_weights_reweight_the_hard_label_term(tiny_chain, batch):
    """Setting class_weights changes loss_ce exactly as a weighted cross-entropy does."""
    x, y = batch
    d = build("kd", tiny_chain["student"], [tiny_chain["teacher"]], ce_weight=1.0)
    d.train()
    out = d.student(x)
    w = torch.tensor([1.0, 3.0, 1.0, 0.5, 2.0])
    d.class_weights = w
    got = d.terms(out, x, y, epoch=0, stage="sequence")["loss_ce"]
    ref = torch.nn.functional.cross_entropy(
        out["logits"].reshape(-1, 5), y.reshape(-1), weight=w, ignore_index=-1
    )
    assert got.item() == pytest.approx(ref.item(), rel=1e-6)
