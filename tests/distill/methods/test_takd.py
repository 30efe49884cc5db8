"""TAKD: each chain step is plain KD from the nearest guide."""

from __future__ import annotations

import torch

from distill.methods import build
from distill.methods.kd import kd_loss


def test_takd_step_distils_from_nearest_guide_only(tiny_chain, batch):
    """With guides (teacher, TA), the KD term is computed against the TA's logits."""
    x, y = batch
    d = build("takd", tiny_chain["student"], [tiny_chain["teacher"], tiny_chain["ta"]],
              ce_weight=0.0, kd_weight=1.0, temperature=2.0)  # fmt: skip
    d.train()
    out, terms = d(x, y, epoch=0, stage="sequence")
    keep = (y != -1).reshape(-1)
    with torch.no_grad():
        ta_logits = tiny_chain["ta"](x)["logits"].reshape(-1, 5)[keep]
        t_logits = tiny_chain["teacher"](x)["logits"].reshape(-1, 5)[keep]
    s = out["logits"].reshape(-1, 5)[keep]
    assert torch.allclose(terms["loss_kd"], kd_loss(s, ta_logits, 2.0))
    assert not torch.allclose(terms["loss_kd"], kd_loss(s, t_logits, 2.0))
