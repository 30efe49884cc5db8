"""The on-disk night cache: content-hash keys, npz without pickle, opt-out."""

from __future__ import annotations

import numpy as np

from sleepstream.io import read_edf
from sleepstream.io.cache import default_cache_dir, load_night


def test_cache_round_trip_and_content_key(tmp_path, make_edf, make_sine):
    """A cached night equals the fresh one; changed file content gives a new entry."""
    cache = tmp_path / "cache"
    path = make_edf(tmp_path / "r.edf", {"EEG": make_sine(200, 90)}, 200)
    first = read_edf(path, fs=100, cache=cache)
    entries = list(cache.glob("*.npz"))
    assert len(entries) == 1
    again = load_night(entries[0])  # np.load(allow_pickle=False) inside
    np.testing.assert_array_equal(again.signal, first.signal)
    np.testing.assert_array_equal(again.stages, first.stages)
    assert again.fs == 100.0 and again.meta["source_fs"] == 200.0
    assert read_edf(path, fs=100, cache=cache).channel == "EEG"
    assert len(list(cache.glob("*.npz"))) == 1
    make_edf(path, {"EEG": make_sine(200, 90, amp=20)}, 200)
    changed = read_edf(path, fs=100, cache=cache)
    assert len(list(cache.glob("*.npz"))) == 2
    assert np.max(changed.signal) < np.max(first.signal)


def test_cache_corrupt_entry_is_rebuilt(tmp_path, make_edf, make_sine):
    """A damaged cache entry is ignored and rewritten."""
    cache = tmp_path / "cache"
    path = make_edf(tmp_path / "r.edf", {"EEG": make_sine(100, 60)}, 100)
    read_edf(path, cache=cache)
    (entry,) = cache.glob("*.npz")
    entry.write_bytes(b"garbage")
    night = read_edf(path, cache=cache)
    assert night.n_epochs == 2 and load_night(entry).n_epochs == 2


def test_cache_dir_env_and_opt_out(tmp_path, monkeypatch, make_edf, make_sine):
    """SLEEPSTREAM_CACHE_DIR moves the default cache; SLEEPSTREAM_NO_CACHE turns it off."""
    from sleepstream.io import read_sleep_edf

    monkeypatch.setenv("SLEEPSTREAM_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    psg = make_edf(tmp_path / "p.edf", {"EEG Fpz-Cz": make_sine(100, 60)}, 100)
    hyp = tmp_path / "h.hyp"
    hyp.write_bytes(b"W\rW\r")
    monkeypatch.setenv("SLEEPSTREAM_NO_CACHE", "1")
    read_sleep_edf(psg, hyp)
    assert not (tmp_path / "c").exists()
    monkeypatch.delenv("SLEEPSTREAM_NO_CACHE")
    read_sleep_edf(psg, hyp)
    assert len(list((tmp_path / "c").glob("sleep-edf-*.npz"))) == 1
