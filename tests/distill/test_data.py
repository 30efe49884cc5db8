"""Recordings and windows."""

from __future__ import annotations

import numpy as np
import pytest

from distill.data import (
    gather_windows,
    load_sc4001_recording,
    make_windows,
    score_position,
)
from sleepstream.errors import UsageError


def _ids(x: np.ndarray) -> np.ndarray:
    """Epoch ids of a window batch built from :func:`id_recording` (0 = padding)."""
    return np.round(x[..., 0, :].mean(axis=-1)).astype(int)


def test_make_windows_causal_scored_epoch_is_last(id_recording):
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


def test_make_windows_offline_centred(id_recording):
    """Offline windows put the target in the middle and pad past the night end."""
    rec = id_recording(30)
    x, y = make_windows(rec, seq=5, mode="offline", targets=np.array([10, 29]))
    assert _ids(x)[0].tolist() == [9, 10, 11, 12, 13]
    assert _ids(x)[1].tolist() == [28, 29, 30, 0, 0]
    assert y[1, 3:].tolist() == [-1, -1]
    with pytest.raises(UsageError):
        score_position(5, "sideways")


def test_gather_windows_keep_mask_hides_epochs(id_recording):
    """Epochs outside the keep mask are zeroed and labelled -1."""
    rec = id_recording(20)
    keep = np.ones(20, bool)
    keep[5:8] = False
    x, y = gather_windows(rec.primary, rec.labels, np.array([3]), 6, keep=keep)
    assert _ids(x)[0].tolist() == [4, 5, 0, 0, 0, 9]
    assert y[0, 2:5].tolist() == [-1, -1, -1]


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
