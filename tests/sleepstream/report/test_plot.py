"""The night's figure and the per-epoch spectrogram."""

from __future__ import annotations

import numpy as np

from sleepstream.report.night import load_night, read_channel
from sleepstream.report.plot import epoch_spectrogram, render_png, render_svgs
from sleepstream.report.times import night_times


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
        out = tmp_path / "n.png"
        out.write_bytes(
            render_png(
                night,
                times=night_times(night.manifest),
                spectrogram=(freqs, power, channel),
                reference=ref,
                title_lines=["a title", "a second line"],
            )
        )
        img = matplotlib.image.imread(out)
        assert img.shape[0] > 600 and img.shape[1] > 1200
        assert img[..., :3].std() > 0.1  # not a blank canvas


def test_clock_axis_shows_the_recordings_clock_and_says_its_zone(make_night):
    """A night dated by an EDF (naive) gets clock-time ticks from its start and a label
    saying the zone is not stated; a live (UTC) night says UTC."""
    import datetime as dt
    import re

    stages = [0] * 240  # 2 h
    for start, zone in ((dt.datetime(1989, 4, 24, 23, 10), "time zone not stated"),
                        (None, "UTC")):  # fmt: skip
        kw = {"start_datetime": start} if start else {}
        night = load_night(make_night(stages, device=f"d{zone[:3]}", **kw))
        svgs = render_svgs(night, times=night_times(night.manifest))
        ticks = re.findall(r">(\d\d:\d\d)</text>", svgs["hypnogram"])
        assert zone in svgs["hypnogram"]
        if start:
            assert ticks[:4] == ["23:30", "00:00", "00:30", "01:00"]
            assert "night of 1989-04-24" in svgs["hypnogram"]
        assert set(svgs) == {"hypnogram", "hypnodensity", "spectrogram"}
        assert all(s.startswith("<svg") for s in svgs.values())
