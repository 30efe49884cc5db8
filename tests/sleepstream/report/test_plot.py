"""The night's figure and the per-epoch spectrogram."""

from __future__ import annotations

import numpy as np

from sleepstream.report.night import load_night, read_channel
from sleepstream.report.plot import epoch_spectrogram, render_png
from sleepstream.report.stats import sleep_statistics


def test_epoch_spectrogram_finds_the_frequency_and_marks_missing_epochs():
    """A 12 Hz sine peaks at 12 Hz; an epoch with missing samples is NaN."""
    fs = 100.0
    t = np.arange(3 * 3000) / fs
    x = 20 * np.sin(2 * np.pi * 12 * t)
    x[3000 + 10] = np.nan
    freqs, power = epoch_spectrogram(x, fs, 30.0 * np.arange(3))
    assert power.shape == (freqs.size, 3) and freqs.max() <= 25
    assert freqs[np.nanargmax(power[:, 0])] == 12.0
    assert np.all(np.isnan(power[:, 1])) and np.all(np.isfinite(power[:, 2]))


def test_render_png_draws_a_readable_figure(make_night, tmp_path):
    """The PNG has the expected size and is not blank, with and without a reference."""
    import matplotlib.image

    rng = np.random.default_rng(1)
    stages = [0, 0, 1, 2, 2, 3, 3, 2, 4, 4, 0, 2]
    eeg = rng.normal(0, 20, (1, len(stages) * 3000))
    night = load_night(make_night(stages, eeg=eeg))
    signal, fs, channel = read_channel(night)
    freqs, power = epoch_spectrogram(signal, fs, night.onsets)
    for ref in (None, np.array(stages)):
        out = render_png(
            night,
            tmp_path / "n.png",
            spectrogram=(freqs, power, channel),
            reference=ref,
            summary={"statistics": sleep_statistics(night.stages)},
        )
        img = matplotlib.image.imread(out)
        assert img.shape[0] > 600 and img.shape[1] > 1200
        assert img[..., :3].std() > 0.1  # not a blank canvas
