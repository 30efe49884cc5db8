"""Aligning a reference hypnogram on a recorded night's grid."""

from __future__ import annotations

import numpy as np
import pytest

from sleepstream.errors import HypnogramError
from sleepstream.io.night import Hypnogram
from sleepstream.report.night import load_night
from sleepstream.report.reference import align_reference, load_reference, reference_agreement
from sleepstream.scoring import agreement
from sleepstream.types import UNSCORED


def hyp(stages) -> Hypnogram:
    s = np.asarray(stages, dtype=np.int8)
    return Hypnogram(s, 30.0 * np.arange(s.size), "ref")


@pytest.fixture(scope="module")
def sc4001_stages(sc4001_dir) -> np.ndarray:
    return load_reference(sc4001_dir / "SC4001EC-Hypnogram.edf").stages.astype(np.int64)


def test_align_same_length_is_epoch_for_epoch(make_night):
    """A reference as long as the night is compared epoch for epoch."""
    night = load_night(make_night([0, 1, 2, 3]))
    stages, info = align_reference(hyp([0, 2, 2, 3]), night)
    np.testing.assert_array_equal(stages, [0, 2, 2, 3])
    assert info["rule"] == "same length" and info["offset_s"] == 0


def test_align_ignores_an_unscored_tail_but_not_a_scored_one(make_night):
    """Extra unscored epochs at the reference's end are ignored; extra scored ones are an error."""
    night = load_night(make_night([0, 1, 2]))
    stages, info = align_reference(hyp([0, 1, 1, UNSCORED, UNSCORED]), night)
    np.testing.assert_array_equal(stages, [0, 1, 1])
    assert info["rule"].startswith("reference longer")
    with pytest.raises(HypnogramError, match="reference has 5 epochs .* night has 3"):
        align_reference(hyp([0, 1, 1, 2, 2]), night)


def test_align_trimmed_sc4001_reference_on_an_841_epoch_night(make_night, sc4001_stages):
    """The real SC4001 hypnogram (2880 epochs) aligns on an 841-epoch night by its wake trim."""
    sleep = np.flatnonzero((sc4001_stages > 0) & (sc4001_stages != UNSCORED))
    a = sleep[0] - 60
    truth = sc4001_stages[a : sleep[-1] + 61]
    night = load_night(make_night(truth))
    stages, info = align_reference(hyp(sc4001_stages), night)
    np.testing.assert_array_equal(stages, truth)
    assert info["offset_s"] == 30.0 * a and "trim" in info["rule"]


def test_align_with_manifest_offset_and_agreement(make_night, sc4001_dir, sc4001_stages):
    """With source_offset_s in night.json the reference epochs are taken from that offset."""
    truth = sc4001_stages[1000:1100]
    pred = truth.copy()
    pred[::7] = (pred[::7] + 1) % 5
    night_dir = make_night(pred, source_offset_s=30_000.0)
    stages, m = reference_agreement(sc4001_dir / "SC4001EC-Hypnogram.edf", load_night(night_dir))
    np.testing.assert_array_equal(stages, truth)
    assert m["alignment"]["rule"] == "manifest source_offset_s"
    expected = agreement(truth, pred)
    assert m["accuracy"] == pytest.approx(expected["accuracy"])
    assert m["kappa"] == pytest.approx(expected["kappa"])
    assert m["confusion"] == expected["confusion"]
    assert m["accuracy"] < 1.0


def test_align_offset_past_the_reference_end_is_an_error(make_night):
    """An offset that runs the night past the reference's end is a one-line HypnogramError."""
    night = load_night(make_night([0, 1, 2]))
    with pytest.raises(HypnogramError, match="reference covers 120 s") as err:
        align_reference(hyp([0, 1, 2, 2]), night, offset_s=60.0)
    assert "\n" not in str(err.value)


def test_load_reference_reads_another_recorded_night(make_night):
    """A night directory can be the reference of another night."""
    a = make_night([0, 1, 2, 3])
    ref = load_reference(a)
    np.testing.assert_array_equal(ref.stages, [0, 1, 2, 3])
