"""The cross-derivation proxy (distill.proxy): SC4001 alone, derivation- and time-disjoint."""

from __future__ import annotations

import numpy as np
import pytest

from distill.data import Recording
from distill.proxy import cross_derivation_folds, excerpts, parse_directions
from sleepstream.errors import UsageError

CH = ("EEG Fpz-Cz", "EEG Pz-Oz")


def two_derivations(n: int = 200) -> Recording:
    base = np.repeat(np.arange(1, n + 1, dtype=np.float32), 3000)
    return Recording("SC4001", {CH[0]: base, CH[1]: -base}, np.arange(n) % 5, "sc4001")


def test_block_folds_are_derivation_and_time_disjoint():
    """Train on A only; early-stop and score on B only, on blocks no training window sees."""
    recs, folds = cross_derivation_folds(two_derivations(), k=4, guard=10)
    a, b = (r.name for r in recs)
    assert (a, b) == ("SC4001/EEG Fpz-Cz", "SC4001/EEG Pz-Oz")
    assert [f.name for f in folds] == [f"{d}-block{j}" for d in ("fpz-pz", "pz-fpz")
                                       for j in range(4)]  # fmt: skip
    for f in folds:
        src, dst = (a, b) if f.name.startswith("fpz-pz") else (b, a)
        assert not f.train[dst].any() and f.train[src].any()
        assert not f.val[src].any() and f.val[dst].any() and set(f.test) == {dst}
        held = np.flatnonzero(f.val[dst] | f.test[dst])
        train = np.flatnonzero(f.train[src])
        assert np.abs(train[:, None] - held[None, :]).min() > 10  # guard of 10 epochs
        assert not (f.val[dst] & f.test[dst]).any()
    tested = sum(f.test[b].astype(int) for f in folds if f.name.startswith("fpz-pz"))
    assert (tested == 1).all()  # every epoch of B scored exactly once per direction


def test_whole_night_fold_and_bad_arguments():
    """k=0: one fold per direction over the whole night; k=1,2 and a missing derivation fail."""
    recs, folds = cross_derivation_folds(two_derivations(30), k=0, directions=["pz-fpz"])
    assert [f.name for f in folds] == ["pz-fpz"] and folds[0].test["SC4001/EEG Fpz-Cz"].all()
    with pytest.raises(UsageError, match="--folds 2"):
        cross_derivation_folds(two_derivations(30), k=2)
    one = Recording("SC4001", {CH[0]: np.zeros(30 * 3000, np.float32)}, np.zeros(30, int))
    with pytest.raises(UsageError, match="Pz-Oz"):
        cross_derivation_folds(one, k=0)
    assert parse_directions("both") == ["fpz-pz", "pz-fpz"]
    with pytest.raises(UsageError, match="fpz-pz"):
        parse_directions("up-down")


def test_excerpts_cut_the_test_runs_into_cold_start_recordings():
    """Excerpts cover exactly the test epochs, in runs of at most `length`."""
    recs, folds = cross_derivation_folds(two_derivations(200), k=4, guard=10)
    f = folds[1]
    ex = excerpts(recs, f.test, 20)
    (dst,) = f.test
    want = np.flatnonzero(f.test[dst])
    got = np.concatenate([np.round(-r.primary.reshape(-1, 3000)[:, 0]).astype(int) - 1
                          for r in ex])  # fmt: skip
    assert np.array_equal(np.sort(got), want)
    assert all(r.n_epochs <= 20 for r in ex) and ex[0].name == f"{dst}@{want[0]}"
