"""Trim, resampling and hypnogram-to-recording fitting."""

from __future__ import annotations

import numpy as np
import pytest

from sleepstream.errors import HypnogramError
from sleepstream.io import Night, resample_night, resample_signal, trim_hypnogram, trim_wake
from sleepstream.io.processing import fit_to_recording, make_hypnogram, sleep_window
from sleepstream.types import UNSCORED


def _night(stages, fs=100.0):
    n = len(stages)
    signal = np.arange(int(n * 30 * fs), dtype=np.float32)
    return Night(signal, fs, "EEG", make_hypnogram(np.array(stages), "h"), {"path": "x"})


def test_sleep_window_keeps_thirty_minutes_each_side():
    """The window starts 60 epochs before the first sleep epoch and ends 60 after the last."""
    stages = np.array([0] * 100 + [2] * 10 + [0] * 5 + [4] + [0] * 100 + [UNSCORED] * 20)
    window = sleep_window(stages)
    assert (window.start, window.stop) == (100 - 60, 115 + 60 + 1)


def test_sleep_window_clips_at_record_edges_and_ignores_unscored():
    """Near the edges the window is clipped; unscored epochs never count as sleep."""
    stages = np.array([UNSCORED] * 3 + [1] + [0] * 10)
    assert sleep_window(stages) == slice(0, 14)
    assert sleep_window(np.array([0, UNSCORED, 0])) == slice(0, 3)


def test_trim_wake_cuts_signal_and_shifts_onsets():
    """Trimming cuts the signal to the kept epochs and counts onsets from the cut."""
    night = _night([0] * 70 + [2] * 3 + [0] * 70)
    trimmed = trim_wake(night)
    assert trimmed.n_epochs == 60 + 3 + 60
    assert trimmed.meta["trim_offset_s"] == 10 * 30.0
    assert trimmed.hypnogram.onsets[0] == 0.0
    assert trimmed.signal[0] == 10 * 3000
    np.testing.assert_array_equal(trimmed.epochs()[0], night.epochs()[10])
    assert trimmed.signal.size == trimmed.n_epochs * 3000


def test_trim_hypnogram_keeps_recording_onsets():
    """A hypnogram alone keeps its onsets in recording time."""
    hyp = trim_hypnogram(make_hypnogram(np.array([0] * 100 + [3] + [0] * 100), "h"))
    assert len(hyp) == 121 and hyp.onsets[0] == 40 * 30.0


@pytest.mark.parametrize("fs", [50.0, 128.0, 200.0, 250.0, 256.0, 512.0, 100.0])
def test_resample_signal_keeps_frequency_and_duration(fs, make_sine):
    """Any rate becomes 100 Hz: same duration, same 10-Hz sine amplitude and phase."""
    out = resample_signal(make_sine(fs, 60.0), fs, 100.0)
    assert out.dtype == np.float32
    assert abs(out.size - 6000) <= 1
    ref = make_sine(100.0, 60.0)[: out.size]
    inner = slice(200, out.size - 200)  # away from the filter edges
    assert np.max(np.abs(out[inner] - ref[inner])) < 1.0  # µV, on a 50-µV sine


def test_resample_night_gives_3000_sample_epochs():
    """A 200-Hz night resampled to 100 Hz epochs into (n, 3000) and keeps source_fs."""
    night = _night([0, 2, 2], fs=200.0)
    out = resample_night(night)
    assert out.fs == 100.0 and out.meta["source_fs"] == 200.0
    assert out.epochs().shape == (3, 3000)


def test_fit_to_recording_drops_unscored_tail():
    """Unscored epochs past the recording end are dropped (Sleep-EDF's trailing '?')."""
    hyp = make_hypnogram(np.array([0, 1, 2, UNSCORED, UNSCORED]), "h")
    assert len(fit_to_recording(hyp, 3 * 30.0 + 12, "rec")) == 3


def test_fit_to_recording_rejects_longer_hypnogram():
    """Scored epochs past the end: the hypnogram is longer than the recording."""
    hyp = make_hypnogram(np.array([0, 1, 2, 2]), "hyp.txt")
    with pytest.raises(HypnogramError, match="hyp.txt: hypnogram is longer than the recording"):
        fit_to_recording(hyp, 90.0, "rec.edf")


def test_fit_to_recording_rejects_shorter_hypnogram():
    """A hypnogram that stops before the last whole epoch is shorter than the recording."""
    hyp = make_hypnogram(np.array([0, 1]), "hyp.txt")
    with pytest.raises(HypnogramError, match="shorter than the recording rec.edf"):
        fit_to_recording(hyp, 120.0, "rec.edf")
    lenient = fit_to_recording(hyp, 120.0, "rec.edf", strict=False)
    np.testing.assert_array_equal(lenient.stages, [0, 1, UNSCORED, UNSCORED])
