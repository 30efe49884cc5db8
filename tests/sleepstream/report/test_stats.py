"""AASM sleep statistics, checked against YASA on real Sleep-EDF hypnograms."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from sleepstream.report.stats import sleep_statistics, statistics_text
from sleepstream.types import UNSCORED

HALF_EPOCH_MIN = 0.5  # one 30-s epoch, in minutes


def yasa_stats(stages: np.ndarray) -> dict:
    import yasa

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # yasa.sleep_statistics is deprecated
        return yasa.sleep_statistics(np.asarray(stages), sf_hyp=1 / 30)


def assert_matches_yasa(stages: np.ndarray) -> None:
    ours, ref = sleep_statistics(stages), yasa_stats(stages)
    pairs = {
        "time_in_bed_min": "TIB",
        "sleep_period_time_min": "SPT",
        "total_sleep_time_min": "TST",
        "waso_min": "WASO",
        "sleep_onset_latency_min": "SOL",
    }
    for key, ykey in pairs.items():
        assert abs(ours[key] - ref[ykey]) <= HALF_EPOCH_MIN, (key, ours[key], ref[ykey])
    for stage in ("N1", "N2", "N3", "REM", "NREM"):
        assert abs(ours["stage_min"][stage] - ref[stage]) <= HALF_EPOCH_MIN
        assert ours["stage_pct_of_tst"][stage] == pytest.approx(ref[f"%{stage}"], abs=0.5)
        if stage != "NREM":
            assert abs(ours["stage_latency_min"][stage] - ref[f"Lat_{stage}"]) <= HALF_EPOCH_MIN
    # AASM REM latency counts from sleep onset; YASA's Lat_REM from the record start
    assert abs(ours["rem_latency_min"] - (ref["Lat_REM"] - ref["SOL"])) <= HALF_EPOCH_MIN
    assert ours["sleep_efficiency_pct"] == pytest.approx(ref["SE"], abs=0.1)
    assert ours["sleep_maintenance_efficiency_pct"] == pytest.approx(ref["SME"], abs=0.1)


def read(path: Path) -> np.ndarray:
    from sleepstream.io.readers import read_hypnogram

    return read_hypnogram(path).stages.astype(np.int64)


def trim(stages: np.ndarray) -> np.ndarray:
    sleep = np.flatnonzero((stages > 0) & (stages != UNSCORED))
    return stages[max(0, sleep[0] - 60) : sleep[-1] + 61]


def test_sleep_statistics_match_yasa_on_sc4001(sc4001_dir):
    """The real SC4001 expert hypnogram, whole (with unscored epochs) and trimmed, matches YASA."""
    stages = read(sc4001_dir / "SC4001EC-Hypnogram.edf")
    assert np.any(stages == UNSCORED)
    assert_matches_yasa(stages)
    trimmed = trim(stages)
    assert trimmed.size == 841
    assert_matches_yasa(trimmed)


@pytest.mark.parametrize("night", ["SC4002E0", "SC4051E0", "SC4101E0", "SC4152E0", "SC4192E0"])
def test_sleep_statistics_match_yasa_on_sleep_edf20(hypnograms_dir, night):
    """Five of the 39 real Sleep-EDF-20 hypnograms, trimmed, match YASA's statistics."""
    assert_matches_yasa(trim(read(hypnograms_dir / f"{night}-PSG.edf.csv")))


def test_stage_transitions_match_yasa_transition_matrix(hypnograms_dir):
    """Transition counts equal YASA's transition matrix on a real night without unscored epochs."""
    import yasa

    stages = trim(read(hypnograms_dir / "SC4012E0-PSG.edf.csv"))
    assert not np.any(stages == UNSCORED)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        counts, _ = yasa.transition_matrix(stages)
    ours = np.array(sleep_statistics(stages)["transition_counts"])
    np.testing.assert_array_equal(ours, counts.to_numpy())
    assert sleep_statistics(stages)["n_stage_transitions"] == int(
        counts.to_numpy().sum() - np.trace(counts.to_numpy())
    )


def test_awakenings_count_wake_bouts_inside_the_sleep_period():
    """W runs after sleep onset and before the last sleep epoch count; the final awakening does not."""
    s = np.array([0, 0, 1, 2, 0, 0, 2, 3, 0, 4, UNSCORED, 4, 0, 0])
    st = sleep_statistics(s)
    assert st["n_awakenings"] == 2
    assert st["waso_min"] == 1.5
    assert st["sleep_onset_latency_min"] == 1.0
    assert st["rem_latency_min"] == 3.5
    assert st["unscored_min"] == 0.5
    # unscored breaks the chain: 4 -> ? -> 4 adds no transition
    assert st["n_stage_transitions"] == 8  # 0>1 1>2 2>0 0>2 2>3 3>0 0>4 4>0


def test_sleep_statistics_without_sleep_have_no_latencies():
    """A night of only W gives zero sleep and None for latencies, and the text still renders."""
    st = sleep_statistics(np.zeros(20, dtype=int))
    assert st["total_sleep_time_min"] == 0 and st["sleep_efficiency_pct"] == 0
    assert st["sleep_onset_latency_min"] is None and st["rem_latency_min"] is None
    assert "—" in statistics_text(st)


def test_sleep_statistics_reject_unknown_codes():
    """Codes outside -1..4 are a ValueError naming them."""
    with pytest.raises(ValueError, match="7"):
        sleep_statistics(np.array([0, 7]))
