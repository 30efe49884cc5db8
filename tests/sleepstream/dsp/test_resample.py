"""Streaming polyphase resampler: rates, pass-band, stop-band, chunk independence."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from sleepstream.dsp.resample import StreamingResampler
from sleepstream.errors import ConfigError

RATES = [250.0, 256.0, 125.0, 200.0, 50.0, 512.0]


def _run(r: StreamingResampler, x: np.ndarray, size: int) -> np.ndarray:
    parts = [r.process(x[i : i + size]) for i in range(0, x.size, size)]
    return np.concatenate([*parts, r.flush()])


@pytest.mark.parametrize("fs", RATES)
def test_resampler_rate_and_alignment(fs):
    """Output count is duration x 100 Hz and sample k sits at time k / 100 s."""
    x = np.sin(2 * np.pi * 3 * np.arange(int(20 * fs)) / fs)
    y = _run(StreamingResampler(fs), x, 1000)
    assert y.size == 2000  # 20 s of input, flushed
    t = np.arange(y.size) / 100
    np.testing.assert_allclose(y[100:-100], np.sin(2 * np.pi * 3 * t)[100:-100], atol=2e-3)


@pytest.mark.parametrize("fs", RATES)
def test_resampler_passes_10hz_with_unit_gain(fs):
    """A 10-Hz sine keeps its amplitude (within 0.5 %) and phase."""
    t = np.arange(int(20 * fs)) / fs
    y = _run(StreamingResampler(fs), 50.0 * np.sin(2 * np.pi * 10 * t), 777)
    ref = 50.0 * np.sin(2 * np.pi * 10 * np.arange(y.size) / 100)
    assert np.max(np.abs(y[200:-200] - ref[200:-200])) < 0.25


@pytest.mark.parametrize(
    "fs, f",
    [
        (fs, f)
        for fs in (250.0, 256.0, 125.0, 200.0, 512.0)
        for f in (55.0, 60.0, 80.0)
        if f < fs / 2
    ],
)
def test_resampler_rejects_above_50hz(fs, f):
    """Components above the output Nyquist (50 Hz) are attenuated by >= 60 dB-ish (< 0.2 %)."""
    t = np.arange(int(20 * fs)) / fs
    y = _run(StreamingResampler(fs), np.sin(2 * np.pi * f * t), 1000)
    assert np.max(np.abs(y[200:-200])) < 2e-3


@pytest.mark.parametrize("fs", [250.0, 256.0, 50.0])
def test_resampler_chunk_size_independent(fs):
    """Chunks of 1, 7, 250 and 3000 samples give bit-identical output."""
    rng = np.random.default_rng(3)
    x = rng.normal(0, 20, int(12 * fs))
    outs = [_run(StreamingResampler(fs), x, size) for size in (1, 7, 250, 3000)]
    for y in outs[1:]:
        np.testing.assert_array_equal(y, outs[0])


def test_resampler_matches_offline_polyphase():
    """Away from the edges the output equals scipy's upfirdn with the same FIR, delay removed."""
    fs = 250.0
    rng = np.random.default_rng(4)
    x = rng.normal(0, 20, 5000)
    r = StreamingResampler(fs)
    y = _run(r, x, 333)
    h = np.zeros(r.numtaps)  # rebuild the prototype FIR from its polyphase rows
    for p in range(r.up):
        taps = r._H[p][: len(range(p, r.numtaps, r.up))]
        h[p :: r.up] = taps
    full = signal.upfirdn(h, x, up=r.up, down=1)
    ref = full[r.delay :: r.down][: y.size]
    np.testing.assert_allclose(y[100:-100], ref[100:-100], atol=1e-9)


def test_resampler_identity_at_100hz():
    """At 100 Hz the resampler is the identity with no delay."""
    x = np.random.default_rng(5).normal(size=1234)
    r = StreamingResampler(100.0)
    assert r.identity and r.delay_s == 0.0
    np.testing.assert_array_equal(_run(r, x, 10), x)


def test_resampler_rejects_impossible_rate():
    """A rate with no small rational factor to 100 Hz is a ConfigError naming it."""
    with pytest.raises(ConfigError, match="173.3"):
        StreamingResampler(173.3, max_denominator=100)
    with pytest.raises(ConfigError, match="fs_in"):
        StreamingResampler(0.0)
