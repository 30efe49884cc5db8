"""Quality flags, unscorable verdicts and the confidence factor."""

from __future__ import annotations

import numpy as np
import pytest

from sleepstream.dsp import FilterConfig, QualityConfig, confidence_factor
from sleepstream.dsp.quality import FLAG_ORDER, RawEpochTracker


def _one_epoch(x, fs, chain_factory, chunk_signal, run, **kw):
    out = run(chain_factory(fs=fs, **kw), chunk_signal(x, np.arange(x.size) / fs, fs, 500))
    assert len(out) >= 1
    return out


def test_quality_clean_eeg_has_no_flags(eeg, chain_factory, chunk_signal, run):
    """Ordinary EEG-like signal: no flags, scorable."""
    out = _one_epoch(eeg(6000, 100.0), 100.0, chain_factory, chunk_signal, run)
    assert all(e.quality == () and e.scorable for e in out)


def test_quality_flat_line_unscored(chain_factory, chunk_signal, run):
    """A constant (disconnected) signal is flat and unscored, with no other verdict."""
    x = np.full(3000, 42.0) + np.random.default_rng(0).normal(0, 0.05, 3000)
    (e,) = _one_epoch(x, 100.0, chain_factory, chunk_signal, run)
    assert e.quality == ("flat",) and e.unscored_reasons == ("flat",)


def test_quality_clipping_at_saturation_bound(eeg, chain_factory, chunk_signal, run):
    """Samples at the configured saturation bound raise clipping (scorable, lower confidence)."""
    x = eeg(3000, 100.0, seed=1)
    x[1000:1100] = 187_500.0
    (e,) = _one_epoch(
        x,
        100.0,
        chain_factory,
        chunk_signal,
        run,
        quality=QualityConfig(clip_uv=187_500.0, amplitude_uv=1e9),
    )
    assert e.quality == ("clipping",) and e.scorable


def test_quality_clipping_from_repeated_extremes(eeg, chain_factory, chunk_signal, run):
    """A signal clipped by the ADC (runs of identical max/min values) raises clipping."""
    x = np.clip(eeg(3000, 100.0, seed=2), -25.0, 25.0)
    (e,) = _one_epoch(x, 100.0, chain_factory, chunk_signal, run)
    assert "clipping" in e.quality and e.scorable
    (ok,) = _one_epoch(eeg(3000, 100.0, seed=2), 100.0, chain_factory, chunk_signal, run)
    assert "clipping" not in ok.quality


def test_quality_amplitude_beyond_physiological(eeg, chain_factory, chunk_signal, run):
    """An 800-µV movement artefact raises amplitude but stays scorable."""
    x = eeg(3000, 100.0, seed=3)
    x[1500:1600] += 800.0 * np.hanning(100)
    (e,) = _one_epoch(x, 100.0, chain_factory, chunk_signal, run)
    assert e.quality == ("amplitude",) and e.scorable


@pytest.mark.parametrize("line", [50.0, 60.0])
def test_quality_line_noise_seen_before_notch(eeg, chain_factory, chunk_signal, run, line):
    """Strong mains hum is flagged from the raw signal even though the notch removes it."""
    fs = 250.0
    t = np.arange(int(30 * fs) + 200) / fs
    base = eeg(t.size, fs, seed=4)
    hum = base + 60.0 * np.sin(2 * np.pi * line * t)
    filt = FilterConfig(notch_hz=line, bandpass_hz=(0.3, 35.0))
    (e,) = _one_epoch(hum, fs, chain_factory, chunk_signal, run, filters=filt)
    assert e.quality == ("line_noise",) and e.scorable
    # the model input has the hum removed: it matches the hum-free signal closely
    (ref,) = _one_epoch(base, fs, chain_factory, chunk_signal, run, filters=filt)
    assert ref.quality == ()
    resid = e.samples[500:] - ref.samples[500:]
    assert np.std(resid) < 0.05 * np.std(ref.samples[500:])


def test_quality_electrode_off_unscored_above_fraction(eeg, chain_factory, chunk_signal, run):
    """Lead-off on 20 % of an epoch -> unscored; on 1 % -> flagged only."""
    fs = 100.0
    x = eeg(6000, fs, seed=5)
    eoff = np.zeros(x.size, dtype=bool)
    eoff[500:1100] = True
    eoff[4000:4030] = True
    out = run(
        chain_factory(fs=fs), chunk_signal(x, np.arange(x.size) / fs, fs, 250, electrode_off=eoff)
    )
    assert out[0].unscored_reasons == ("electrode_off",)
    assert out[1].quality == ("electrode_off",) and out[1].scorable


def test_quality_thresholds_come_from_config(eeg, chain_factory, chunk_signal, run):
    """Raising gap_max_fraction keeps a 17 %-gap epoch scorable."""
    fs = 100.0
    x = eeg(3000, fs, seed=6)
    keep = np.ones(3000, dtype=bool)
    keep[1000:1500] = False
    ts = np.arange(3000) / fs
    strict = run(chain_factory(fs=fs), chunk_signal(x[keep], ts[keep], fs, 100))
    lax = run(
        chain_factory(fs=fs, quality=QualityConfig(gap_max_fraction=0.25)),
        chunk_signal(x[keep], ts[keep], fs, 100),
    )
    assert strict[0].unscored_reasons == ("gap",)
    assert lax[0].quality == ("gap",) and lax[0].scorable


def test_confidence_factor_multiplies_per_flag():
    """No flag -> 1; each flag multiplies its factor; unknown flags are neutral."""
    assert confidence_factor(()) == 1.0
    assert confidence_factor(("clipping",)) == pytest.approx(0.7)
    assert confidence_factor(("clipping", "line_noise")) == pytest.approx(0.7 * 0.85)
    assert confidence_factor(("something_new",)) == 1.0
    cfg = QualityConfig(confidence_factors=(("amplitude", 0.5),))
    assert confidence_factor(("amplitude", "clipping"), cfg) == pytest.approx(0.5)
    assert all(0 < confidence_factor((f,)) <= 1 for f in FLAG_ORDER)


def test_raw_tracker_epoch_boundaries_at_non_integer_rate():
    """At 256 Hz epochs are 7680 input samples; stats close exactly on the boundary."""
    tr = RawEpochTracker(256.0, QualityConfig())
    v = np.zeros(7680 * 2 + 5)
    f = np.zeros(v.size, dtype=bool)
    f[7680 : 7680 + 768] = True
    closed = tr.add(v, f, np.zeros_like(f), None, None, 1.0)
    assert [r for r, _ in closed] == [0, 1]
    assert closed[0][1].n == 7680 and closed[0][1].n_filled == 0
    assert closed[1][1].n_filled == 768


def test_quality_config_from_profile_thresholds_maps_every_key():
    """Every [quality] key of a profile reaches the QualityConfig (none keeps its default)."""
    from dataclasses import fields

    from sleepstream.profiles import QualityThresholds

    defaults = QualityThresholds()
    # every threshold moved off its default, so a dropped key shows as a default value
    th = QualityThresholds(**{f.name: getattr(defaults, f.name) * 0.5 for f in fields(defaults)})
    q = QualityConfig.from_thresholds(th, line_hz=50.0)
    got = {
        "flat_std_uv": q.flat_std_uv,
        "clip_uv": q.clip_uv,
        "clip_fraction": q.clip_fraction,
        "amplitude_uv": q.amplitude_uv,
        "line_noise_ratio": q.line_ratio,
        "max_gap_fraction": q.gap_max_fraction,
        "max_nonfinite_fraction": q.nonfinite_max_fraction,
        "max_electrode_off_fraction": q.electrode_off_max_fraction,
    }
    assert set(got) == {f.name for f in fields(QualityThresholds)}
    for name, value in got.items():
        assert value == getattr(th, name), name
    assert q.line_hz == 50.0
