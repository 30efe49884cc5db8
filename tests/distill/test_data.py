"""Recordings, windows and splits."""

from __future__ import annotations

import numpy as np
import pytest

from distill.data import (
    Fold,
    Recording,
    full_night_fold,
    gather_windows,
    load_sc4001_recording,
    make_windows,
    mask_to_runs,
    nightwise_kfold,
    runs_to_mask,
    score_position,
    within_night_blocks,
)
from sleepstream.errors import UsageError


def id_recording(n: int = 60, name: str = "night", channels: int = 1) -> Recording:
    """Epoch ``i`` holds the constant ``i + 1`` (derivation ``c`` adds ``1000 * c``)."""
    base = np.repeat(np.arange(1, n + 1, dtype=np.float32), 3000)
    sig = {f"ch{c}": base + 1000.0 * c for c in range(channels)}
    return Recording(name, sig, (np.arange(n) % 5).astype(np.int64), "synthetic")


def _ids(x: np.ndarray) -> np.ndarray:
    """Epoch ids of a window batch built from :func:`id_recording` (0 = padding)."""
    return np.round(x[..., 0, :].mean(axis=-1)).astype(int)


def test_make_windows_causal_scored_epoch_is_last():
    """Causal windows end on the target; history before the night is zero, label -1."""
    rec = id_recording(30)
    x, y = make_windows(rec, seq=5, mode="causal", targets=np.array([0, 2, 29]))
    assert x.shape == (3, 5, 1, 3000) and x.dtype == np.float32 and y.shape == (3, 5)
    ids = _ids(x)
    assert ids[0].tolist() == [0, 0, 0, 0, 1]
    assert ids[1].tolist() == [0, 0, 1, 2, 3]
    assert ids[2].tolist() == [26, 27, 28, 29, 30]
    assert y[0].tolist() == [-1, -1, -1, -1, rec.labels[0]]
    assert score_position(5, "causal") == 4


def test_make_windows_offline_centred():
    """Offline windows put the target in the middle and pad past the night end."""
    rec = id_recording(30)
    x, y = make_windows(rec, seq=5, mode="offline", targets=np.array([10, 29]))
    assert _ids(x)[0].tolist() == [9, 10, 11, 12, 13]
    assert _ids(x)[1].tolist() == [28, 29, 30, 0, 0]
    assert y[1, 3:].tolist() == [-1, -1]
    with pytest.raises(UsageError):
        score_position(5, "sideways")


def test_gather_windows_keep_mask_hides_epochs():
    """Epochs outside the keep mask are zeroed and labelled -1."""
    rec = id_recording(20)
    keep = np.ones(20, bool)
    keep[5:8] = False
    x, y = gather_windows(rec.primary, rec.labels, np.array([3]), 6, keep=keep)
    assert _ids(x)[0].tolist() == [4, 5, 0, 0, 0, 9]
    assert y[0, 2:5].tolist() == [-1, -1, -1]


def test_within_night_blocks_guard_separates_train_from_heldout():
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


def test_within_night_blocks_neighbour_validation():
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


def test_fold_json_roundtrip():
    """A fold survives its JSON form (run-length masks)."""
    rec = id_recording(50)
    fold = full_night_fold(rec, k=5, guard=3)
    back = Fold.from_json(fold.to_json())
    assert np.array_equal(back.train[rec.name], fold.train[rec.name])
    assert np.array_equal(back.val[rec.name], fold.val[rec.name])
    assert mask_to_runs(runs_to_mask([[2, 5], [7, 9]], 12)) == [[2, 5], [7, 9]]


def test_nightwise_kfold_tests_each_night_once():
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


def test_load_sc4001_recording_has_both_derivations(sc4001_dir):
    """SC4001 loads with Fpz-Cz and Pz-Oz on one 841-epoch grid."""
    rec = load_sc4001_recording(sc4001_dir)
    assert rec.channels == ("EEG Fpz-Cz", "EEG Pz-Oz")
    assert rec.n_epochs == 841 and rec.primary.shape == (841 * 3000,)
    assert np.bincount(rec.labels[rec.labels >= 0], minlength=5).tolist() == [
        188,
        58,
        250,
        220,
        125,
    ]
    assert not np.allclose(rec.signals["EEG Fpz-Cz"], rec.signals["EEG Pz-Oz"])


def test_subject_kfold_keeps_a_subjects_nights_together():
    """Both nights of a subject share their role in every fold; each subject is tested
    once; validation subjects are neither trained nor tested; k = subjects is LOSO."""
    from distill.data import subject_kfold

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
