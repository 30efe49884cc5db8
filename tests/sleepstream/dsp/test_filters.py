"""Streaming notch / band-pass: state across chunks, start-up, invalid-run policy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from sleepstream.dsp.filters import (
    FilterBank,
    FilterConfig,
    StreamingSOS,
    design_bandpass,
    design_notch,
)
from sleepstream.errors import ConfigError


@pytest.mark.parametrize("size", [1, 7, 250, 3000])
def test_streaming_sos_chunks_equal_one_shot(size, eeg):
    """Chunked filtering equals one sosfilt call with zi = sosfilt_zi * x0, exactly."""
    fs = 250.0
    x = eeg(6000, fs, offset_uv=800.0)
    sos = np.vstack([design_notch(fs, 50.0), design_bandpass(fs, 0.3, 35.0)])
    f = StreamingSOS(sos)
    y = np.concatenate([f.process(x[i : i + size]) for i in range(0, x.size, size)])
    ref, _ = signal.sosfilt(sos, x, zi=signal.sosfilt_zi(sos) * x[0])
    np.testing.assert_array_equal(y, ref)


def test_bandpass_no_startup_transient_on_dc_offset():
    """A 5 mV DC offset does not ring at start-up: the output starts near 0 µV."""
    fs = 250.0
    x = np.full(2500, 5000.0) + np.sin(2 * np.pi * 10 * np.arange(2500) / fs)
    bank = FilterBank(fs, FilterConfig(bandpass_hz=(0.3, 35.0)))
    y = bank.process(x)
    assert np.max(np.abs(y)) < 5.0  # a cold start would swing by thousands of µV
    cold = signal.sosfilt(design_bandpass(fs, 0.3, 35.0), x)
    assert np.max(np.abs(cold)) > 1000.0


def test_notch_removes_line_keeps_eeg():
    """The 50-Hz notch removes a 50-Hz sine and passes 10 Hz."""
    fs = 250.0
    t = np.arange(int(20 * fs)) / fs
    bank = FilterBank(fs, FilterConfig(notch_hz=50.0))
    y = bank.process(np.sin(2 * np.pi * 50 * t))
    assert np.max(np.abs(y[int(5 * fs) :])) < 0.01
    bank = FilterBank(fs, FilterConfig(notch_hz=50.0))
    y = bank.process(np.sin(2 * np.pi * 10 * t))
    assert np.max(np.abs(y[int(5 * fs) :])) == pytest.approx(1.0, abs=0.01)


def test_notch_at_nyquist_is_skipped():
    """A 50-Hz notch at fs = 100 Hz is skipped (reported), not an error."""
    bank = FilterBank(100.0, FilterConfig(notch_hz=50.0))
    assert bank.notch_skipped and not bank.active


def test_filterbank_resets_after_long_invalid_run():
    """After >= reset_after_s of invalid samples the state restarts at the new level."""
    fs = 100.0
    x = np.concatenate([np.zeros(500), np.full(200, 0.0), np.full(1000, 3000.0)])
    invalid = np.zeros(x.size, dtype=bool)
    invalid[500:700] = True  # 2 s invalid (held at 0), then a new DC level
    bank = FilterBank(fs, FilterConfig(bandpass_hz=(0.3, 35.0), reset_after_s=1.0))
    y = bank.process(x, invalid)
    assert np.max(np.abs(y[700:])) < 1.0  # re-initialised: no step response
    # Same samples fed in small pieces: identical.
    bank2 = FilterBank(fs, FilterConfig(bandpass_hz=(0.3, 35.0), reset_after_s=1.0))
    y2 = np.concatenate(
        [bank2.process(x[i : i + 7], invalid[i : i + 7]) for i in range(0, x.size, 7)]
    )
    np.testing.assert_array_equal(y, y2)


def test_filterbank_short_invalid_run_keeps_state(eeg):
    """A short invalid run is filtered as held values; no reset (continuous output)."""
    fs = 100.0
    x = eeg(3000, fs)
    invalid = np.zeros(x.size, dtype=bool)
    invalid[1000:1010] = True
    x_held = x.copy()
    x_held[1000:1010] = x[999]
    bank = FilterBank(fs, FilterConfig(bandpass_hz=(0.3, 35.0)))
    y = bank.process(x_held, invalid)
    sos = design_bandpass(fs, 0.3, 35.0)
    ref, _ = signal.sosfilt(sos, x_held, zi=signal.sosfilt_zi(sos) * x_held[0])
    np.testing.assert_array_equal(y, ref)


def test_filterbank_outputs_zero_before_first_valid_sample():
    """Leading invalid samples give 0 and the filter starts at the first valid sample."""
    bank = FilterBank(100.0, FilterConfig(bandpass_hz=(0.3, 35.0)))
    invalid = np.array([True] * 5 + [False] * 5)
    y = bank.process(np.r_[np.zeros(5), np.full(5, 400.0)], invalid)
    np.testing.assert_array_equal(y[:5], 0.0)
    assert np.max(np.abs(y[5:])) < 1e-6


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"bandpass_hz": (0.3, 60.0)}, "high edge 60.0"),
        ({"bandpass_hz": (40.0, 30.0)}, "below high edge"),
        ({"bandpass_hz": (-1.0, 30.0)}, "low edge -1.0"),
    ],
)
def test_filter_config_errors_name_the_value(kw, match):
    """Impossible band edges raise ConfigError naming the value."""
    with pytest.raises(ConfigError, match=match):
        FilterBank(100.0, FilterConfig(**kw))
