"""Acceptance figures on the real data: SC4001, the 39 Sleep-EDF-20 hypnograms, DREAMS."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sleepstream.io import (
    find_isruc_pairs,
    find_sleep_edf_pairs,
    load_dreams,
    load_pairs,
    load_sleep_edf20_hypnograms,
    read_dreams_hypnogram_5s,
)
from sleepstream.types import EPOCH_SAMPLES, UNSCORED


def test_load_sc4001_counts(sc4001_night):
    """SC4001 Fpz-Cz gives 841 trimmed epochs: W 188, N1 58, N2 250, N3 220, REM 125."""
    assert sc4001_night.fs == 100.0
    assert sc4001_night.channel == "EEG Fpz-Cz"
    assert sc4001_night.n_epochs == 841
    assert sc4001_night.hypnogram.stage_counts() == {
        "W": 188,
        "N1": 58,
        "N2": 250,
        "N3": 220,
        "REM": 125,
    }


def test_load_sc4001_epochs_equal_reference_npz(sc4001_night, sc4001_dir):
    """The epochs and labels equal the provided SC4001E0_FpzCz_30s_trimmed.npz (1e-3 µV)."""
    with np.load(sc4001_dir / "SC4001E0_FpzCz_30s_trimmed.npz", allow_pickle=False) as ref:
        x = sc4001_night.epochs()
        assert x.shape == ref["x"].shape == (841, EPOCH_SAMPLES)
        assert x.dtype == np.float32
        np.testing.assert_allclose(x, ref["x"], rtol=0, atol=1e-3)
        np.testing.assert_array_equal(sc4001_night.stages, ref["y"])
        assert sc4001_night.meta["trim_offset_s"] == float(ref["epoch_onset_s"][0])


def test_load_sleep_edf20_hypnograms_totals(hypnograms_dir):
    """The 39 trimmed hypnograms total 42,308 epochs: W 8285 N1 2804 N2 17799 N3 5703 REM 7717."""
    hyps = load_sleep_edf20_hypnograms(hypnograms_dir)
    assert len(hyps) == 39
    totals = {k: sum(h.stage_counts()[k] for h in hyps) for k in ("W", "N1", "N2", "N3", "REM")}
    assert totals == {"W": 8285, "N1": 2804, "N2": 17799, "N3": 5703, "REM": 7717}
    assert sum(len(h) for h in hyps) == 42308
    assert all((h.stages != UNSCORED).all() for h in hyps)


def test_load_sleep_edf20_hypnograms_sc4001_matches_edf(hypnograms_dir, sc4001_night):
    """The SC4001 text hypnogram, trimmed, equals the stages read from the EDF+ file."""
    hyp = load_sleep_edf20_hypnograms(hypnograms_dir)[0]
    assert Path(hyp.source).name.startswith("SC4001")
    np.testing.assert_array_equal(hyp.stages, sc4001_night.stages)
    assert hyp.onsets[0] == sc4001_night.meta["trim_offset_s"]


@pytest.fixture(scope="module")
def dreams_nights(dreams_dir):
    return load_dreams(dreams_dir)


def test_load_dreams_sixty_epochs_at_100hz(dreams_nights):
    """Every DREAMS excerpt gives 60 epochs of 3000 samples at 100 Hz."""
    assert len(dreams_nights) == 8
    for night in dreams_nights:
        assert night.fs == 100.0
        assert night.epochs().shape == (60, EPOCH_SAMPLES)
        assert night.meta["source_fs"] in (50.0, 100.0, 200.0)


def test_load_dreams_labels_follow_majority_rule(dreams_nights, dreams_dir):
    """Each 30-s label is held by a strict majority (>= 4) of its six 5-s entries."""
    for i, night in enumerate(dreams_nights, start=1):
        five = read_dreams_hypnogram_5s(dreams_dir / f"Hypnogram_excerpt{i}.txt").reshape(60, 6)
        votes = (five == night.stages[:, None]).sum(axis=1)
        assert (votes >= 4).all(), f"excerpt{i}"


def test_load_dreams_excerpt8_grid_shift(dreams_dir):
    """Excerpts 1-7 are constant over 20-s blocks from 0 s; excerpt 8 only from 30 s."""

    def constant_blocks(entries: np.ndarray) -> bool:
        return bool((entries.reshape(-1, 4) == entries.reshape(-1, 4)[:, :1]).all())

    for i in range(1, 9):
        five = read_dreams_hypnogram_5s(dreams_dir / f"Hypnogram_excerpt{i}.txt")
        if i < 8:
            assert constant_blocks(five), f"excerpt{i}"
        else:
            assert not constant_blocks(five)
            assert (five[:6] == five[0]).all() and (five[358:] == five[358]).all()
            assert constant_blocks(five[6:358])


def test_load_dreams_matches_source_counts(dreams_nights):
    """Stage totals stay close to the README's 20-s scoring (N2-heavy, 7 REM blocks in #7)."""
    counts = [n.hypnogram.stage_counts() for n in dreams_nights]
    assert sum(c["N2"] for c in counts) > sum(c["W"] + c["N1"] + c["REM"] for c in counts)
    assert [c["REM"] > 0 for c in counts] == [False] * 6 + [True, False]


def test_find_sleep_edf_pairs_matches_differing_letters(tmp_path, sc4001_dir):
    """SC4001E0-PSG.edf pairs with SC4001EC-Hypnogram.edf; an unpaired PSG is skipped."""
    cassette = tmp_path / "sleep-cassette"
    cassette.mkdir()
    for name in ("SC4001E0-PSG.edf", "SC4001EC-Hypnogram.edf"):
        (cassette / name).symlink_to(sc4001_dir / name)
    (cassette / "SC4002E0-PSG.edf").write_bytes(b"")
    (cassette / "SC4011E0-PSG.edf").write_bytes(b"")
    (cassette / "SC4011EH-Hypnogram.edf").write_bytes(b"")
    pairs = find_sleep_edf_pairs(tmp_path)
    assert [(p.psg.name, p.hypnogram.name) for p in pairs] == [
        ("SC4001E0-PSG.edf", "SC4001EC-Hypnogram.edf"),
        ("SC4011E0-PSG.edf", "SC4011EH-Hypnogram.edf"),
    ]
    nights = load_pairs(pairs[:1], cache=False)
    assert nights[0].n_epochs == 841


def test_find_isruc_pairs_orders_subjects(tmp_path):
    """ISRUC subject folders N/N.rec + N/N_1.txt are paired and sorted by number."""
    for n in (10, 2, 1):
        d = tmp_path / str(n)
        d.mkdir()
        (d / f"{n}.rec").write_bytes(b"0")
        (d / f"{n}_1.txt").write_text("0\n")
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / "3.rec").write_bytes(b"0")  # no scorer file
    pairs = find_isruc_pairs(tmp_path)
    assert [p.subject for p in pairs] == ["1", "2", "10"]
    assert all(p.hypnogram.name == f"{p.subject}_1.txt" for p in pairs)
