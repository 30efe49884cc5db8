"""Splits: within-night blocks, folds' JSON form, night-wise and subject-wise k-fold."""

from __future__ import annotations

import numpy as np
import pytest

from distill.folds import (
    Fold,
    full_night_fold,
    mask_to_runs,
    nightwise_kfold,
    runs_to_mask,
    subject_kfold,
    within_night_blocks,
)
from sleepstream.errors import UsageError


def test_within_night_blocks_guard_separates_train_from_heldout(id_recording):
    """Test blocks tile the night; train epochs stay `guard` epochs away from held-out ones."""
    rec = id_recording(300)
    folds = within_night_blocks(rec, k=5, guard=10)
    tested = np.sum([f.test[rec.name] for f in folds], axis=0)
    assert np.all(tested == 1)
    for f in folds:
        tr = np.flatnonzero(f.train[rec.name])
        held = np.flatnonzero(f.test[rec.name] | f.val[rec.name])
        assert not (f.test[rec.name] & f.val[rec.name]).any()
        assert np.abs(tr[:, None] - held[None, :]).min() > 10
        assert f.protocol == "within-night-blocks"
    with pytest.raises(UsageError):
        within_night_blocks(rec, k=2, guard=10)


def test_within_night_blocks_neighbour_validation(id_recording):
    """Neighbour validation: the last block validates on the previous one, not the first."""
    rec = id_recording(400)
    folds = within_night_blocks(rec, k=4, guard=10, val="neighbour")
    assert [mask_to_runs(f.val[rec.name]) for f in folds] == [
        [[100, 200]],
        [[200, 300]],
        [[300, 400]],
        [[200, 300]],
    ]
    assert mask_to_runs(folds[3].train[rec.name]) == [[0, 190]]
    assert mask_to_runs(within_night_blocks(rec, k=4, guard=10)[3].val[rec.name]) == [[0, 100]]


def test_fold_json_roundtrip(id_recording):
    """A fold survives its JSON form (run-length masks)."""
    rec = id_recording(50)
    fold = full_night_fold(rec, k=5, guard=3)
    back = Fold.from_json(fold.to_json())
    assert np.array_equal(back.train[rec.name], fold.train[rec.name])
    assert np.array_equal(back.val[rec.name], fold.val[rec.name])
    assert mask_to_runs(runs_to_mask([[2, 5], [7, 9]], 12)) == [[2, 5], [7, 9]]


def test_nightwise_kfold_tests_each_night_once(id_recording):
    """Every night is tested exactly once and never trained on in its own fold."""
    recs = [id_recording(10, name=f"n{i}") for i in range(5)]
    folds = nightwise_kfold(recs, k=5, seed=1)
    counts = {r.name: sum(int(f.test[r.name].any()) for f in folds) for r in recs}
    assert set(counts.values()) == {1}
    for f in folds:
        for r in recs:
            assert not (f.train[r.name] & (f.test[r.name] | f.val[r.name])).any()
    with pytest.raises(UsageError):
        nightwise_kfold(recs[:2], k=2)


def test_subject_kfold_keeps_a_subjects_nights_together(id_recording):
    """Both nights of a subject share their role in every fold; each subject is tested
    once; validation subjects are neither trained nor tested; k = subjects is LOSO."""
    recs = [id_recording(8, name=f"SC4{s:02d}{n}") for s in range(7) for n in (1, 2)]
    subj = {r.name: r.name[:5] for r in recs}
    for k in (3, 7):
        folds = subject_kfold(recs, subj, k, seed=1)
        assert len(folds) == k
        tested: list[str] = []
        for f in folds:
            roles = {}
            for r in recs:
                role = [n for n in ("train", "val", "test") if getattr(f, n)[r.name].all()]
                assert len(role) == 1 and not any(
                    getattr(f, n)[r.name].any() for n in ("train", "val", "test") if n != role[0]
                )
                assert roles.setdefault(subj[r.name], role[0]) == role[0]
            tested += [s for s, role in roles.items() if role == "test"]
            assert "val" in roles.values() and "train" in roles.values()
        assert sorted(tested) == sorted(set(subj.values()))
    with pytest.raises(UsageError, match="--folds 8"):
        subject_kfold(recs, subj, 8)
