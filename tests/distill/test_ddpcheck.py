"""DDP on CPU (gloo, 2 processes) equals one process with the same global batch."""

from __future__ import annotations

import pytest

from distill.ddpcheck import ddp_vs_single


@pytest.mark.slow
def test_two_gloo_processes_match_each_other_and_one_process():
    """After 2 steps the ranks hold identical parameters, equal (1e-6) to one process with
    2 micro-batches; one process with the whole batch at once (BatchNorm over 8 windows,
    other dropout masks) differs, so the comparison can fail."""
    res = ddp_vs_single(steps=2, world=2, batch=8)
    assert res["max_abs_diff_across_ranks"] == 0.0
    assert res["max_abs_diff_vs_single"] <= 1e-6
    other = ddp_vs_single(steps=2, world=2, batch=8, single_micro=1)
    assert other["max_abs_diff_vs_single"] > 1e-4
