"""The DREAMS 5-s -> 30-s majority rule and the excerpt reader."""

from __future__ import annotations

import numpy as np
import pytest

from sleepstream.errors import DataFileError, HypnogramError
from sleepstream.io import majority_30s, read_dreams_excerpt
from sleepstream.types import UNSCORED


def test_majority_30s_takes_most_common_stage():
    """4 of 6 entries decide the epoch whichever side they sit on."""
    five = np.array([0, 0, 0, 0, 2, 2, 1, 1, 3, 3, 3, 3])
    np.testing.assert_array_equal(majority_30s(five), [0, 3])


def test_majority_30s_breaks_ties_with_centre_entry():
    """On a 3-3 or 2-2-2 tie the entry starting at 15 s (index 3) wins."""
    five = np.array([2, 2, 2, 4, 4, 4, 0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(majority_30s(five), [4, 1])


def test_majority_30s_unscored_majority_is_unscored():
    """Movement/unknown entries (negative codes) can make the epoch unscored."""
    five = np.array([UNSCORED] * 4 + [2, 2])
    np.testing.assert_array_equal(majority_30s(five), [UNSCORED])


def test_majority_30s_rejects_partial_epoch():
    """A 5-s count that is not a multiple of 6 is an error."""
    with pytest.raises(HypnogramError, match="not a whole number of 30-s epochs"):
        majority_30s(np.zeros(7, dtype=np.int8))


def _write_excerpt(tmp_path, n, fs_channel="[C3-A1]", codes=None):
    sig = tmp_path / "excerptX.txt"
    sig.write_text(fs_channel + "\n" + "\n".join(f"{v:.4f}" for v in np.sin(np.arange(n))) + "\n")
    hyp = tmp_path / "Hypnogram_excerptX.txt"
    codes = [5] * 6 + [2] * 348 + [0] * 6 if codes is None else codes
    hyp.write_text("[Hypnogram]\n" + "\n".join(str(c) for c in codes) + "\n")
    return sig, hyp


def test_read_dreams_excerpt_infers_rate_and_channel(tmp_path):
    """fs = samples / 1800 s, channel from the first line, sibling hypnogram found."""
    sig, _ = _write_excerpt(tmp_path, 50 * 1800)
    night = read_dreams_excerpt(sig)
    assert night.fs == 50.0 and night.channel == "C3-A1"
    assert night.n_epochs == 60 and night.stages[0] == 0 and night.stages[-1] == 3
    night100 = read_dreams_excerpt(sig, fs=100)
    assert night100.epochs().shape == (60, 3000)


def test_read_dreams_excerpt_unknown_code(tmp_path):
    """A code outside the DREAMS table is an unknown stage label naming the file."""
    sig, hyp = _write_excerpt(tmp_path, 50 * 1800, codes=[5] * 359 + [7])
    with pytest.raises(HypnogramError, match=r"Hypnogram_excerptX.txt: unknown stage code 7"):
        read_dreams_excerpt(sig, hyp)


def test_read_dreams_excerpt_rejects_text_without_channel(tmp_path):
    """A text file without the [CHANNEL] line is not a DREAMS excerpt."""
    bad = tmp_path / "excerptY.txt"
    bad.write_text("1.0\n2.0\n")
    with pytest.raises(DataFileError, match="excerptY.txt: not a DREAMS excerpt"):
        read_dreams_excerpt(bad, tmp_path / "none.txt")


def test_read_dreams_excerpt_does_not_cache_by_default(tmp_path, monkeypatch):
    """The DREAMS licence forbids derivatives: nothing is written to the cache by default."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("SLEEPSTREAM_CACHE_DIR", str(cache))
    sig, _ = _write_excerpt(tmp_path, 50 * 1800)
    read_dreams_excerpt(sig, fs=100)
    assert not cache.exists()
    read_dreams_excerpt(sig, fs=100, cache=True)
    assert len(list(cache.glob("dreams-*.npz"))) == 1
