"""Hypnogram-assembled nights: real stage orders filled with real epochs of each stage."""

from __future__ import annotations

import numpy as np

from distill.assembled import AssembledNights, trimmed_stage_sequences


def test_assembled_nights_follow_real_hypnograms(hypnograms_dir):
    """Assembled windows copy a real stage order and fill it with pool epochs of that stage."""
    from sleepstream.io.datasets import load_sleep_edf20_hypnograms

    seqs = trimmed_stage_sequences(load_sleep_edf20_hypnograms(hypnograms_dir))
    assert len(seqs) == 38  # SC4001's own hypnogram is excluded
    pool_labels = np.repeat(np.arange(5), 4)
    pool = np.repeat((100 + np.arange(20, dtype=np.float32))[:, None], 3000, axis=1)
    asm = AssembledNights(seqs, {"a": pool, "b": -pool}, pool_labels)
    x, y, others = asm.sample(16, 10, np.random.default_rng(0), others=True)
    joined = ",".join(",".join(map(str, s.tolist())) for s in seqs)
    for i in range(16):
        assert ",".join(map(str, y[i].tolist())) in joined
        for p in range(10):
            if y[i, p] >= 0:
                row = int(abs(x[i, p, 0, 0])) - 100
                assert pool_labels[row] == y[i, p]
    assert (x[:, :, 0, 0] < 0).any() and (x[:, :, 0, 0] > 0).any()
    assert np.array_equal(others["other0"], -x)  # the other derivation of the same rows
