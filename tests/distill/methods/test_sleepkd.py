"""SleepKD: Φ, the four-term loss, the ``paper`` and ``code`` presets, stage behaviour."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distill.methods import build, make_config
from distill.methods.align import Align, maxpool_align
from distill.methods.sleepkd import sleepkd_loss
from sleepstream.errors import UsageError


def test_maxpool_align_is_sliding_max_like_the_official_code():
    """Window Dt−Ds+1, stride 1: [1,5,2,0,3] → width 3 is [5,5,3]; equal width is identity."""
    f = torch.tensor([[1.0, 5.0, 2.0, 0.0, 3.0]])
    assert maxpool_align(f, 3).tolist() == [[5.0, 5.0, 3.0]]
    assert maxpool_align(f, 5) is f
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2, 3, 1024))
    ref = np.stack([a[..., i : i + 513].max(-1) for i in range(512)], -1)  # 1024 → 512
    assert np.allclose(maxpool_align(torch.tensor(a), 512).numpy(), ref)


def test_align_maxpool_cannot_widen_but_linear_can():
    """Max-pool Φ from 8 to 16 is a UsageError; the learnable Φ has Linear(8, 16)."""
    with pytest.raises(UsageError, match="linear"):
        Align(8, 16, "maxpool")
    assert Align(8, 16, "linear")(torch.zeros(2, 8)).shape == (2, 16)


def test_sleepkd_loss_matches_numpy_terms():
    """Each weighted term equals its numpy value: MSEs, KL(p_T‖p_S) at T=1, CE."""
    rng = np.random.default_rng(3)
    et, es, st, ss = (rng.normal(size=(4, 6)) for _ in range(4))
    lt, ls = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    y = np.array([0, 1, 2, 4])
    t = {k: torch.tensor(v) for k, v in dict(et=et, es=es, st=st, ss=ss, lt=lt, ls=ls).items()}
    terms = sleepkd_loss(
        epoch_t=t["et"], epoch_s=t["es"], seq_t=t["st"], seq_s=t["ss"], logits_t=t["lt"],
        logits_s=t["ls"], target=torch.tensor(y), alpha=0.1, beta=0.4, gamma=0.3, delta=0.2,
    )  # fmt: skip

    def logsm(z):
        z = z - z.max(-1, keepdims=True)
        return z - np.log(np.exp(z).sum(-1, keepdims=True))

    pt, lps = np.exp(logsm(lt)), logsm(ls)
    assert terms["loss_epoch"].item() == pytest.approx(0.1 * ((et - es) ** 2).mean())
    assert terms["loss_seq"].item() == pytest.approx(0.4 * ((st - ss) ** 2).mean())
    assert terms["loss_kd"].item() == pytest.approx(0.3 * (pt * (np.log(pt) - lps)).sum(-1).mean())
    assert terms["loss_ce"].item() == pytest.approx(0.2 * -lps[np.arange(4), y].mean())


def test_sleepkd_feature_and_soft_terms_zero_when_student_equals_teacher():
    """With identical features and logits the MSE and KL terms vanish; all terms ≥ 0."""
    g = torch.Generator().manual_seed(0)
    e, s, lg = (torch.randn(5, 4, generator=g) for _ in range(3))
    lg = torch.randn(5, 5, generator=g)
    terms = sleepkd_loss(
        epoch_t=e, epoch_s=e.clone(), seq_t=s, seq_s=s.clone(), logits_t=lg, logits_s=lg.clone(),
        target=lg.argmax(-1), alpha=1, beta=1, gamma=1, delta=1,
    )  # fmt: skip
    assert all(v.item() >= 0 for v in terms.values())
    for k in ("loss_epoch", "loss_seq", "loss_kd"):
        assert terms[k].item() == pytest.approx(0.0, abs=1e-7)


def test_sleepkd_presets_hold_the_documented_weights():
    """code: MSE×0.1, KL×1, no hard label, T=1, max-pool Φ, two stages; paper: joint, δ>0."""
    code = make_config("sleepkd", preset="code")
    assert (code.alpha, code.beta, code.gamma, code.delta, code.temperature) == (0.1, 0.1, 1, 0, 1)
    assert code.phi == "maxpool" and code.two_stage
    paper = make_config("sleepkd", preset="paper", phi="linear", delta=0.5)
    assert not paper.two_stage and paper.delta == 0.5 and paper.phi == "linear"
    with pytest.raises(UsageError, match="paper, code"):
        make_config("sleepkd", preset="poster")


def test_sleepkd_code_preset_uses_epoch_terms_in_stage_one_and_sequence_terms_in_two(
    tiny_chain, batch
):
    """Stage epoch: epoch MSE + KL only; stage sequence: sequence MSE + KL only; never CE."""
    x, y = batch
    d = build("sleepkd", tiny_chain["student"], [tiny_chain["ta"]], preset="code")
    d.train()
    _, t1 = d(x, y, epoch=0, stage="epoch")
    _, t2 = d(x, y, epoch=0, stage="sequence")
    assert set(t1) == {"loss_epoch", "loss_kd"}
    assert set(t2) == {"loss_seq", "loss_kd"}


def test_sleepkd_paper_preset_joint_loss_and_ablations_drop_terms(tiny_chain, batch):
    """Paper preset uses all four terms in the sequence stage; a zero weight drops its term."""
    x, y = batch
    full = build("sleepkd", tiny_chain["student"], [tiny_chain["ta"]], preset="paper")
    full.train()
    assert set(full(x, y, epoch=0, stage="sequence")[1]) == {
        "loss_epoch", "loss_seq", "loss_kd", "loss_ce"
    }  # fmt: skip
    for weight, term in [("beta", "loss_seq"), ("alpha", "loss_epoch"), ("gamma", "loss_kd"),
                         ("delta", "loss_ce")]:  # fmt: skip
        d = build("sleepkd", tiny_chain["student"], [tiny_chain["ta"]], **{weight: 0.0})
        d.train()
        assert term not in d(x, y, epoch=0, stage="sequence")[1]
