"""Epochs out of the chain: chunk-size independence, grid, gaps, bad input (no model context)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from sleepstream.dsp import EpochBuffer, EpochConfig, FilterConfig
from sleepstream.types import EPOCH_SAMPLES

# Chunk sizes in samples, the first is the reference; one-sample chunks take seconds
# (slow tier).
SIZES = [(3000, 250, 7), pytest.param((3000, 1), marks=pytest.mark.slow, id="3000-1")]
UTC0 = datetime(2024, 1, 1, 22, 0, tzinfo=UTC)  # the chain_factory fixture uses this origin


def _key(e):
    return (e.index, e.start_time, e.start_clock, e.gap_fraction, e.quality, e.unscored_reasons)


def _assert_same(a, b):
    assert [_key(e) for e in a] == [_key(e) for e in b]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x.samples, y.samples, rtol=0, atol=1e-6)


def _messy_100hz(eeg, n_epochs=4):
    """100-Hz signal with jitter, a NaN burst, a 3-s hole, a backward jump, lead-off."""
    fs = 100.0
    n = int(n_epochs * 30 * fs) + 1234
    rng = np.random.default_rng(7)
    x = eeg(n, fs, seed=1)
    ts = np.arange(n) / fs + rng.uniform(-0.3, 0.3, n) / fs
    x[3500:3650] = np.nan  # 1.5-s NaN burst in epoch 1
    x[3700] = np.inf
    keep = np.ones(n, dtype=bool)
    keep[6500:6800] = False  # 3-s hole in epoch 2
    ts[9000:] -= 0.4  # backward jump in epoch 3: 40 samples overlap
    eoff = np.zeros(n, dtype=bool)
    eoff[9500:9600] = True
    return x[keep], ts[keep], eoff[keep], fs


@pytest.mark.parametrize("sizes", SIZES)
def test_epochs_identical_for_any_chunk_size_100hz(eeg, chunk_signal, chain_factory, run, sizes):
    """Samples, indices and flags are identical for chunks of 3000, 250, 7 and 1 samples."""
    x, ts, eoff, fs = _messy_100hz(eeg)
    outs = []
    for size in sizes:
        chain = chain_factory(fs=fs, filters=FilterConfig(bandpass_hz=(0.3, 35.0)))
        outs.append(run(chain, chunk_signal(x, ts, fs, size, electrode_off=eoff)))
    ref = outs[0]
    assert [e.index for e in ref] == [0, 1, 2, 3]
    assert "nonfinite" in ref[1].quality and "gap" in ref[2].quality
    assert "time_backwards" in ref[3].quality and "electrode_off" in ref[3].quality
    for out in outs[1:]:
        _assert_same(out, ref)


@pytest.mark.parametrize("sizes", SIZES)
def test_epochs_identical_for_any_chunk_size_250hz(eeg, chunk_signal, chain_factory, run, sizes):
    """A 250-Hz source through notch, band-pass and resampler: same epochs for any chunking."""
    fs = 250.0
    n = int(2.2 * 30 * fs)
    x = eeg(n, fs, seed=2, offset_uv=-1500.0)
    x += 10 * np.sin(2 * np.pi * 50 * np.arange(n) / fs)
    ts = 1000.0 + np.arange(n) / fs
    x[9000:9100] = np.nan
    outs = []
    for size in sizes:
        chain = chain_factory(fs=fs, filters=FilterConfig(notch_hz=50.0, bandpass_hz=(0.3, 35.0)))
        outs.append(run(chain, chunk_signal(x, ts, fs, size)))
    assert [e.index for e in outs[0]] == [0, 1]
    assert outs[0][0].start_time == 1000.0 and outs[0][1].start_time == 1030.0
    for out in outs[1:]:
        _assert_same(out, outs[0])


def test_epochs_samples_are_signal_on_grid_without_filters(eeg, chunk_signal, chain_factory, run):
    """At 100 Hz without filters each epoch's samples are exactly the input on the 30-s grid."""
    fs = 100.0
    x = eeg(4 * 3000, fs, seed=3)
    out = run(chain_factory(fs=fs), chunk_signal(x, np.arange(x.size) / fs, fs, 128))
    assert len(out) == 4
    for e in out:
        np.testing.assert_array_equal(
            e.samples, x[e.index * 3000 : (e.index + 1) * 3000].astype(np.float32)
        )
        assert e.samples.shape == (EPOCH_SAMPLES,) and e.samples.dtype == np.float32
        assert e.start_time == 30.0 * e.index and e.input_scale == 1.0
        assert e.start_clock == (UTC0 + timedelta(seconds=30 * e.index)).isoformat(
            timespec="milliseconds"
        )
        assert e.scorable and e.quality == ()


def test_epochs_carry_no_model_context(eeg, chunk_signal, chain_factory, run):
    """The DSP does not know the model's sequence length: an epoch holds only its own
    3000 samples (the stager keeps each device's context), not a window of past epochs."""
    fs = 100.0
    x = eeg(4 * 3000, fs, seed=4)
    chain = chain_factory(fs=fs)
    out = run(chain, chunk_signal(x, np.arange(x.size) / fs, fs, 1000))
    assert all(e.samples.shape == (EPOCH_SAMPLES,) for e in out)
    assert not hasattr(chain.buffer, "_context") and not hasattr(chain.buffer, "context_indices")


def test_epochs_gap_inside_epoch_unscored(eeg, chunk_signal, chain_factory, run):
    """5 s missing inside epoch 1 -> unscored with reason gap; neighbours scorable."""
    fs = 100.0
    x = eeg(3 * 3000, fs, seed=5)
    ts = np.arange(x.size) / fs
    keep = np.ones(x.size, dtype=bool)
    keep[4000:4500] = False
    out = run(chain_factory(fs=fs), chunk_signal(x[keep], ts[keep], fs, 250))
    assert [e.index for e in out] == [0, 1, 2]
    assert out[1].unscored_reasons == ("gap",)
    assert out[1].gap_fraction == pytest.approx(500 / 3000)
    assert out[0].scorable and out[2].scorable
    # after the gap the samples are back on the grid
    np.testing.assert_array_equal(out[2].samples, x[6000:9000].astype(np.float32))


def test_epochs_short_gap_flagged_but_scorable(eeg, chunk_signal, chain_factory, run):
    """A 1-s hole (3 %) raises the gap flag but stays below the 10 % threshold."""
    fs = 100.0
    x = eeg(2 * 3000, fs, seed=6)
    ts = np.arange(x.size) / fs
    keep = np.ones(x.size, dtype=bool)
    keep[1000:1100] = False
    out = run(chain_factory(fs=fs), chunk_signal(x[keep], ts[keep], fs, 100))
    assert out[0].quality == ("gap",) and out[0].scorable
    assert out[0].gap_fraction == pytest.approx(100 / 3000)


def test_epochs_multi_epoch_gap_emits_every_index(eeg, chunk_signal, chain_factory, run):
    """A 100-s hole from t=45 s emits epochs 1..4 unscored (gap) and never skips an index."""
    fs = 100.0
    x = eeg(8 * 3000, fs, seed=7)
    ts = np.arange(x.size) / fs
    keep = (ts < 45.0) | (ts >= 145.0)
    out = run(chain_factory(fs=fs), chunk_signal(x[keep], ts[keep], fs, 300))
    assert [e.index for e in out] == list(range(8))
    reasons = [e.unscored_reasons for e in out]
    assert reasons == [(), ("gap",), ("gap",), ("gap",), ("gap",), (), (), ()]
    assert [round(e.gap_fraction, 3) for e in out[1:5]] == [0.5, 1.0, 1.0, 0.833]
    np.testing.assert_array_equal(out[5].samples, x[15000:18000].astype(np.float32))


def test_epochs_backwards_timestamps_dropped_and_flagged(eeg, chunk_signal, chain_factory, run):
    """A 2-s backward jump drops the overlap, flags time_backwards, keeps the grid."""
    fs = 100.0
    x = eeg(3 * 3000 + 200, fs, seed=8)
    ts = np.arange(x.size) / fs
    ts[4000:] -= 2.0  # the source re-sends 2 s
    chain = chain_factory(fs=fs)
    out = run(chain, chunk_signal(x, ts, fs, 64))
    assert [e.index for e in out] == [0, 1, 2]
    assert out[1].quality == ("time_backwards",) and out[1].scorable
    assert chain.stats().samples_dropped == 200
    # the re-sent samples did not shift the grid: epoch 2 holds samples stamped 60..90 s
    np.testing.assert_array_equal(out[2].samples, x[6200:9200].astype(np.float32))


def test_epochs_nan_burst_flagged_and_next_epoch_clean(eeg, chunk_signal, chain_factory, run):
    """A NaN burst is flagged (unscored when > 10 %) and leaves later epochs unaffected."""
    fs = 250.0
    x = eeg(int(5 * 30 * fs), fs, seed=9, offset_uv=300.0)
    ts = np.arange(x.size) / fs
    filt = FilterConfig(notch_hz=50.0, bandpass_hz=(0.3, 35.0))
    clean = run(chain_factory(fs=fs, filters=filt), chunk_signal(x, ts, fs, 500))
    bad = x.copy()
    bad[int(40 * fs) : int(45 * fs)] = np.nan  # 5 s in epoch 1
    bad[int(40 * fs) + 10] = -np.inf
    dirty = run(chain_factory(fs=fs, filters=filt), chunk_signal(bad, ts, fs, 500))
    assert dirty[1].unscored_reasons == ("nonfinite",)
    assert all(np.isfinite(e.samples).all() for e in dirty)
    assert dirty[0].scorable and dirty[0].quality == ()
    for k in (3, 4):
        assert dirty[k].quality == () and dirty[k].scorable
        np.testing.assert_allclose(dirty[k].samples, clean[k].samples, atol=1e-3)


def test_epochs_small_nan_burst_scorable(eeg, chunk_signal, chain_factory, run):
    """A 1-s NaN burst (3 %) is flagged nonfinite but the epoch stays scorable."""
    fs = 100.0
    x = eeg(3000, fs, seed=10)
    x[100:200] = np.nan
    out = run(chain_factory(fs=fs), chunk_signal(x, np.arange(x.size) / fs, fs, 100))
    assert out[0].quality == ("nonfinite",) and out[0].scorable


def test_epochs_explicit_origin_aligns_grid(eeg, chunk_signal, chain_factory, run):
    """With origin=0 a stream starting at 45.3 s yields epoch 1 (half gap), then 2, 3."""
    fs = 100.0
    x = eeg(int(75 * fs), fs, seed=11)
    ts = 45.3 + np.arange(x.size) / fs
    chain = chain_factory(fs=fs, origin=0.0)
    out = run(chain, chunk_signal(x, ts, fs, 97))
    assert [e.index for e in out] == [1, 2, 3]
    assert [e.start_time for e in out] == [30.0, 60.0, 90.0]
    assert out[0].gap_fraction == pytest.approx(15.3 / 30) and out[0].unscored_reasons == ("gap",)


def test_epochs_flush_partial_policy(eeg, chunk_signal, chain_factory, run):
    """flush() drops a trailing partial epoch unless emit_partial pads it as gap."""
    fs = 100.0
    x = eeg(int(50 * fs), fs, seed=12)
    ts = np.arange(x.size) / fs
    assert [e.index for e in run(chain_factory(fs=fs), chunk_signal(x, ts, fs, 500))] == [0]
    out = run(chain_factory(fs=fs, emit_partial=True), chunk_signal(x, ts, fs, 500))
    assert [e.index for e in out] == [0, 1]
    assert out[1].gap_fraction == pytest.approx(10 / 30) and out[1].unscored_reasons == ("gap",)


def test_epochs_last_sample_at_is_arrival_of_last_sample(eeg, chunk_signal, chain_factory, run):
    """last_sample_at is received_at of the chunk holding the epoch's last sample."""
    fs = 100.0
    x = eeg(2 * 3000, fs, seed=13)
    out = run(chain_factory(fs=fs), chunk_signal(x, np.arange(x.size) / fs, fs, 700))
    # chunk_signal stamps received_at with the chunk's first sample index
    assert [e.last_sample_at for e in out] == [2800.0, 5600.0]


def test_epoch_buffer_standalone_100hz(eeg):
    """EpochBuffer takes 100-Hz µV samples with timestamps directly."""
    x = eeg(6000, 100.0, seed=14)
    buf = EpochBuffer(config=EpochConfig(clock_origin=UTC0))
    out = buf.push(x[:3500], np.arange(3500) / 100, 1.0) + buf.push(
        x[3500:], np.arange(3500, 6000) / 100, 2.0
    )
    assert [e.index for e in out] == [0, 1]
    np.testing.assert_array_equal(out[0].samples, x[:3000].astype(np.float32))
    np.testing.assert_array_equal(out[1].samples, x[3000:].astype(np.float32))
    with pytest.raises(ValueError, match="timestamps"):
        buf.push(x[:10], np.arange(5), 3.0)


def _host_stamped(n: int, fs: float, seed: int) -> np.ndarray:
    """BrainFlow-like host timestamps: 10-sample packets stamped 0-8 ms late, and every
    ~2 s a 70-ms stall whose backlog is caught up over the next 20 samples."""
    rng = np.random.default_rng(seed)
    late = np.repeat(rng.uniform(0.0, 0.008, n // 10 + 1), 10)[:n]
    for s in range(200, n - 40, 500):
        late[s : s + 20] += np.linspace(0.07, 0.0, 20)
    return np.arange(n) / fs + late


def test_epochs_host_timestamp_jitter_tolerated(eeg, chunk_signal, chain_factory, run):
    """Host-stamped jitter with stalls raises no flag; without the confirmation it would."""
    fs = 250.0
    n = int(61 * fs)
    ts = _host_stamped(n, fs, 15)
    x = eeg(n, fs, seed=15)
    chain = chain_factory(fs=fs)
    out = run(chain, chunk_signal(x, ts, fs, 50))
    assert [e.quality for e in out] == [(), ()]
    assert chain.stats().samples_filled == 0 and chain.stats().samples_dropped == 0
    hasty = run(chain_factory(fs=fs, confirm_gap_s=0.0), chunk_signal(x, ts, fs, 50))
    assert any("gap" in e.quality for e in hasty)


def test_epochs_real_gap_found_despite_jitter(eeg, chunk_signal, chain_factory, run):
    """A 0.5-s hole in a jittery host-stamped stream is filled with 125 +- 2 samples."""
    fs = 250.0
    n = int(61 * fs)
    ts = _host_stamped(n, fs, 16)
    keep = np.ones(n, dtype=bool)
    keep[4000:4125] = False
    x = eeg(n, fs, seed=16)
    outs = []
    for size in (1, 50, 3000):
        chain = chain_factory(fs=fs)
        outs.append(run(chain, chunk_signal(x[keep], ts[keep], fs, size)))
        assert abs(chain.stats().samples_filled - 125) <= 2
    assert [e.quality for e in outs[0]] == [("gap",), ()]
    for out in outs[1:]:
        _assert_same(out, outs[0])


@pytest.mark.parametrize("seed", [0, 1])
def test_epochs_random_chunking_equals_one_shot(eeg, chain_factory, seed):
    """Random chunk sizes (1-600) on a 256-Hz stream with jitter, stalls, a gap, a
    backward jump, NaN and lead-off give exactly the epochs of a single push."""
    from sleepstream.types import Chunk

    fs = 256.0
    n = int(95 * fs)
    rng = np.random.default_rng(100 + seed)
    ts = _host_stamped(n, fs, seed)
    x = eeg(n, fs, seed=seed, offset_uv=250.0)
    x[rng.integers(0, n, 40)] = np.nan
    x[9000:9300] = np.inf
    keep = np.ones(n, dtype=bool)
    keep[12000:12800] = False
    ts[18000:] -= 0.5
    eoff = np.zeros(n, dtype=bool)
    eoff[20000:20500] = True
    x, ts, eoff = x[keep], ts[keep], eoff[keep]
    filt = FilterConfig(notch_hz=50.0, bandpass_hz=(0.3, 35.0))

    def go(bounds):
        chain = chain_factory(fs=fs, filters=filt)
        out = []
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            out += chain.push(Chunk(x[None, a:b], ts[a:b], fs, ("EEG",), float(b), eoff[a:b]))
        return out + chain.flush(), chain.stats()

    cuts = np.cumsum(rng.integers(1, 600, n))
    bounds = [0, *[int(c) for c in cuts if c < x.size], x.size]
    one, s1 = go([0, x.size])
    many, s2 = go(bounds)
    assert [e.index for e in one] == [0, 1, 2]
    assert s1 == s2
    _assert_same(many, one)
    assert all(np.isfinite(e.samples).all() for e in one)
    flags = set().union(*(e.quality for e in one))
    assert {"nonfinite", "gap", "time_backwards", "electrode_off"} <= flags
