"""SignalChain: sample-rate policy, bad chunks, counters, and a real night on the grid."""

from __future__ import annotations

import numpy as np
import pytest

from sleepstream.dsp import EpochConfig, FilterConfig, Montage, SignalChain
from sleepstream.errors import ChannelNotFoundError, SourceError
from sleepstream.types import Chunk


def test_chain_rejects_sample_rate_other_than_profile(eeg, chunk_signal, chain_factory):
    """A first chunk at 256 Hz for a 250-Hz profile raises SourceError naming both rates."""
    x = eeg(512, 256.0)
    chain = chain_factory(fs=250.0)
    with pytest.raises(SourceError, match=r"256 Hz.*fs=250 Hz"):
        chain.push(chunk_signal(x, np.arange(512) / 256, 256.0, 512)[0])


def test_chain_accepts_rate_within_tolerance(eeg, chunk_signal):
    """251 Hz within a 1 % tolerance of 250 Hz is accepted and resampled from 251 Hz."""
    fs = 251.0
    x = eeg(int(31 * fs), fs)
    chain = SignalChain(Montage("EEG"), expected_fs=250.0, fs_tolerance=0.01)
    out = []
    for c in chunk_signal(x, np.arange(x.size) / fs, fs, 500):
        out += chain.push(c)
    assert chain.fs == 251.0 and [e.index for e in out] == [0]
    with pytest.raises(SourceError, match="±1 %"):
        SignalChain(Montage("EEG"), expected_fs=240.0, fs_tolerance=0.01).push(
            chunk_signal(x, np.arange(x.size) / fs, fs, 500)[0]
        )


def test_chain_allows_other_rate_when_profile_says_so(eeg, chunk_signal):
    """allow_other_fs builds the chain for the source's rate (resampled to 100 Hz)."""
    fs = 256.0
    x = eeg(int(31 * fs), fs)
    chain = SignalChain(Montage("EEG"), expected_fs=250.0, allow_other_fs=True)
    out = []
    for c in chunk_signal(x, np.arange(x.size) / fs, fs, 300):
        out += chain.push(c)
    assert chain.fs == 256.0 and [e.index for e in out] == [0]
    assert 0.0 < chain.delay_s < 0.5


def test_chain_rate_change_mid_stream_is_source_error(eeg, chunk_signal, chain_factory):
    """A chunk whose fs differs from the first one raises SourceError."""
    chain = chain_factory(fs=100.0)
    x = eeg(200, 100.0)
    chain.push(chunk_signal(x, np.arange(200) / 100, 100.0, 100)[0])
    with pytest.raises(SourceError, match="changed mid-stream from 100 Hz to 200 Hz"):
        chain.push(chunk_signal(x, np.arange(200) / 200 + 1, 200.0, 100)[0])


def test_chain_wrong_channel_lists_available(chain_factory):
    """A profile channel missing from the source raises ChannelNotFoundError."""
    c = Chunk(np.zeros((2, 10)), np.arange(10) / 100, 100.0, ("Fp1", "Fp2"), 0.0)
    with pytest.raises(ChannelNotFoundError, match="'EEG' not found; available: Fp1, Fp2"):
        chain_factory(fs=100.0).push(c)


def test_chain_timestamp_count_mismatch_is_source_error(chain_factory):
    """Timestamps that do not match the samples raise SourceError, not an IndexError."""
    c = Chunk(np.zeros((1, 10)), np.arange(9) / 100, 100.0, ("EEG",), 0.0)
    with pytest.raises(SourceError, match="10 samples but 9 timestamps"):
        chain_factory(fs=100.0).push(c)


def test_chain_stats_count_samples_gaps_drops(eeg, chunk_signal, chain_factory, run):
    """stats() counts samples in, filled, dropped and unscored epochs."""
    fs = 100.0
    x = eeg(9200, fs, seed=3)
    ts = np.arange(9200) / fs
    keep = np.ones(9200, dtype=bool)
    keep[3000:3600] = False
    ts[7000:] -= 1.0
    chain = chain_factory(fs=fs)
    out = run(chain, chunk_signal(x[keep], ts[keep], fs, 333))
    s = chain.stats()
    assert s.samples_in == 8600 and s.samples_filled == 600 and s.samples_dropped == 100
    assert s.epochs == len(out) == 3 and s.epochs_unscored == 1  # 9100 placed samples
    assert out[1].unscored_reasons == ("gap",) and out[2].quality == ("time_backwards",)


@pytest.fixture(scope="module")
def sc4001_night(sc4001_dir):
    """The untrimmed SC4001 Fpz-Cz night at 100 Hz, read by sleepstream.io."""
    from sleepstream.io import read_sleep_edf

    return read_sleep_edf(
        sc4001_dir / "SC4001E0-PSG.edf", sc4001_dir / "SC4001EC-Hypnogram.edf", cache=False
    )


def test_chain_real_sc4001_epochs_on_hypnogram_grid(sc4001_night):
    """SC4001 Fpz-Cz streamed in 256-sample chunks lands exactly on the hypnogram's grid."""
    night = sc4001_night
    n_ep = 240  # the first 2 h keep the test fast; the grid logic is the same all night
    x = night.signal[: n_ep * 3000 + 1700].astype(np.float64)
    ts = np.arange(x.size) / night.fs
    chain = SignalChain(Montage("EEG Fpz-Cz"), epochs=EpochConfig(), expected_fs=100.0)
    out = []
    for i in range(0, x.size, 256):
        out += chain.push(
            Chunk(x[None, i : i + 256], ts[i : i + 256], night.fs, ("EEG Fpz-Cz",), 0.0)
        )
    out += chain.flush()
    assert [e.index for e in out] == list(range(n_ep))
    np.testing.assert_array_equal([e.start_time for e in out], night.hypnogram.onsets[:n_ep])
    ref = night.epochs()[:n_ep]
    np.testing.assert_array_equal(np.stack([e.samples for e in out]), ref)
    assert all(e.scorable and e.quality == () for e in out)  # real EEG: no false alarms


def test_chain_real_sc4001_filtered_scored_epochs_unflagged(sc4001_night):
    """With notch + band-pass every human-scored epoch of 2 h of SC4001 stays scorable."""
    night = sc4001_night
    start = 800  # into the sleep period (lights off ~ epoch 840)
    sl = slice(start * 3000, (start + 240) * 3000)
    x = night.signal[sl].astype(np.float64)
    ts = start * 30.0 + np.arange(x.size) / night.fs
    chain = SignalChain(
        Montage("EEG Fpz-Cz"),
        filters=FilterConfig(notch_hz=50.0, bandpass_hz=(0.3, 35.0)),
        epochs=EpochConfig(origin=0.0),
        expected_fs=100.0,
    )
    out = []
    for i in range(0, x.size, 3000):
        out += chain.push(
            Chunk(x[None, i : i + 3000], ts[i : i + 3000], 100.0, ("EEG Fpz-Cz",), 0.0)
        )
    assert [e.index for e in out] == list(range(start, start + 240))
    stages = night.stages[start : start + 240]
    assert (stages >= 0).sum() > 200
    flagged = [e.index for e, s in zip(out, stages, strict=True) if s >= 0 and not e.scorable]
    assert flagged == []
    assert np.median([e.samples.std() for e in out]) > 5.0


def _stream(chain: SignalChain, x: np.ndarray, fs: float, channel: str, size: int) -> list:
    ts = np.arange(x.size) / fs
    out = []
    for i in range(0, x.size, size):
        out += chain.push(Chunk(x[None, i : i + size], ts[i : i + size], fs, (channel,), 0.0))
    return out + chain.flush()


@pytest.mark.parametrize("excerpt, tol", [(2, 0.01), (3, 0.05)])
def test_chain_real_dreams_resampled_like_offline(dreams_dir, excerpt, tol):
    """DREAMS at 200 Hz / 50 Hz streamed to 100 Hz matches offline resample_poly, no lag."""
    from sleepstream.io.dreams import read_dreams_signal
    from sleepstream.io.processing import resample_signal

    x, fs, channel = read_dreams_signal(dreams_dir / f"excerpt{excerpt}.txt")
    x = x[: int(300 * fs)].astype(np.float64)
    chain = SignalChain(Montage(channel), epochs=EpochConfig(), expected_fs=fs)
    out = _stream(chain, x, fs, channel, 97)
    assert [e.index for e in out] == list(range(10))
    y = np.concatenate([e.samples for e in out]).astype(np.float64)
    ref = resample_signal(x, fs)[: y.size].astype(np.float64)
    core = slice(100, -100)
    assert np.std(y[core] - ref[core]) < tol * np.std(ref[core])
    lags = range(-3, 4)
    xc = [np.dot(y[500:-500], ref[500 + lag : ref.size - 500 + lag]) for lag in lags]
    assert lags[int(np.argmax(xc))] == 0


def test_chain_real_dreams_saturated_epoch_flagged_clipping(dreams_dir):
    """DREAMS excerpt 1 saturates at ±328 µV in epoch 4 (86 samples): flagged clipping only there."""
    from sleepstream.dsp import QualityConfig
    from sleepstream.io.dreams import read_dreams_signal

    x, fs, channel = read_dreams_signal(dreams_dir / "excerpt1.txt")
    x = x[: 20 * 3000].astype(np.float64)
    out = _stream(SignalChain(Montage(channel), expected_fs=fs), x, fs, channel, 500)
    assert [e.index for e in out if "clipping" in e.quality] == [4]
    assert all(e.scorable for e in out)
    # with the amplifier's rail known, the 23 railed samples of epoch 16 count too
    q = QualityConfig(clip_uv=327.7, clip_fraction=0.005)
    out = _stream(SignalChain(Montage(channel), quality=q, expected_fs=fs), x, fs, channel, 500)
    assert [e.index for e in out if "clipping" in e.quality] == [4, 16]


@pytest.mark.slow
def test_chain_brainflow_synthetic_board_host_timestamps(chain_factory):
    """BrainFlow's synthetic board (real host timestamps, 250 Hz) for 32 s: one clean epoch,
    no backward drops, and fill only where the board really fell behind (< 1 %)."""
    import time

    bf = pytest.importorskip("brainflow.board_shim")
    bf.BoardShim.disable_board_logger()
    board_id = bf.BoardIds.SYNTHETIC_BOARD.value
    fs = float(bf.BoardShim.get_sampling_rate(board_id))
    ts_row = bf.BoardShim.get_timestamp_channel(board_id)
    eeg_row = bf.BoardShim.get_eeg_channels(board_id)[0]
    board = bf.BoardShim(board_id, bf.BrainFlowInputParams())
    chain = chain_factory(fs=fs, filters=FilterConfig(notch_hz=50.0, bandpass_hz=(0.3, 35.0)))
    out = []
    board.prepare_session()
    try:
        board.start_stream()
        t_end = time.monotonic() + 32.0
        while time.monotonic() < t_end:
            time.sleep(0.05)
            data = board.get_board_data()
            if data.shape[1]:
                c = Chunk(data[[eeg_row]], data[ts_row], fs, ("EEG",), time.perf_counter())
                out += chain.push(c)
        board.stop_stream()
    finally:
        board.release_session()
    s = chain.stats()
    assert [e.index for e in out] == [0]
    assert s.samples_dropped == 0 and "time_backwards" not in out[0].quality
    assert s.samples_filled < 0.01 * s.samples_in
    assert out[0].scorable


def test_chain_from_shipped_profiles(eeg):
    """Every shipped profile maps onto a chain that turns its channels into epochs."""
    from sleepstream.profiles import available_profiles, load_profile

    names = list(available_profiles())
    assert "cyton" in names and "edf-replay" in names
    for name in names:
        p = load_profile(name)
        chain = SignalChain.from_profile(p)
        assert chain.expected_fs == p.fs and chain.fs_tolerance == p.fs_tolerance
        assert chain.quality_config.clip_uv == p.quality.clip_uv
        assert chain.filter_config.notch_hz == p.notch_hz
        chans = (p.channel, *p.reference)
        n = int(p.fs * 31)
        rows = np.zeros((len(chans), n))
        rows[0] = eeg(n, p.fs, seed=1) / p.scale_to_uv
        out = []
        for i in range(0, n, 1000):
            c = Chunk(
                rows[:, i : i + 1000], np.arange(i, min(n, i + 1000)) / p.fs, p.fs, chans, 0.0
            )
            out += chain.push(c)
        assert [e.index for e in out] == [0], name
        assert out[0].scorable, (name, out[0].quality)


def test_chain_from_profile_mean_reference():
    """A profile with two references stages channel - mean(references)."""
    import dataclasses

    from sleepstream.profiles import load_profile

    p = dataclasses.replace(load_profile("edf-replay"), channel="C3", reference=("A1", "A2"))
    chain = SignalChain.from_profile(p)
    assert chain.montage.name == "C3-mean(A1,A2)" and chain.fs_tolerance == p.fs_tolerance


def _normalised_run(x, fs, size, chunked_fn, gap_at=None):
    from sleepstream.dsp.normalise import NormalisationSpec, RunningScale

    ts = np.arange(x.size) / fs
    if gap_at is not None:  # 40 s of samples missing: one whole gap epoch
        keep = (ts < gap_at) | (ts >= gap_at + 40.0)
        x, ts = x[keep], ts[keep]
    scale = RunningScale(NormalisationSpec(prior_weight_epochs=2.0), prior_scale_uv=5.0)
    chain = SignalChain(Montage("EEG"), normaliser=scale)
    out = []
    for c in chunked_fn(x, ts, fs, size):
        out += chain.push(c)
    out += chain.flush()
    return out, scale


@pytest.mark.parametrize("fs", [100.0, pytest.param(250.0, marks=pytest.mark.slow)])
def test_chain_normaliser_input_scale_is_chunk_invariant(eeg, chunk_signal, fs):
    """The last stage's factor per epoch is identical for chunks of 1, 7, 250 and 3000
    samples, at 100 Hz and 250 Hz, through a gap and an amplitude change."""
    chunked = chunk_signal
    n = int(fs * 30 * 8)
    x = eeg(n, fs, seed=3)
    x[n // 2 :] *= 3.0  # a louder second half: the scale has to move
    runs = {s: _normalised_run(x, fs, s, chunked, gap_at=95.0)[0] for s in (1, 7, 250, 3000)}
    ref = runs[3000]
    assert len(ref) >= 7 and len({e.input_scale for e in ref}) > 3
    for size, epochs in runs.items():
        assert [e.index for e in epochs] == [e.index for e in ref], size
        np.testing.assert_allclose(
            [e.input_scale for e in epochs], [e.input_scale for e in ref], rtol=1e-6, err_msg=size
        )


def test_chain_normaliser_unusable_epochs_do_not_move_the_scale(eeg, chunk_signal):
    """A gap epoch gets the current factor but does not update the running scale."""
    chunked = chunk_signal
    x = eeg(100 * 30 * 6, 100.0, seed=1)
    epochs, scale = _normalised_run(x, 100.0, 250, chunked, gap_at=65.0)
    gap = [e for e in epochs if "gap" in e.quality and not e.scorable]
    assert gap, [e.quality for e in epochs]
    assert scale.n_seen == len(epochs) and scale.n_used == len(epochs) - len(gap)
    k = gap[0].index
    assert epochs[k].input_scale == pytest.approx(epochs[k - 1].input_scale, rel=1e-12)


def test_chain_without_normaliser_keeps_input_scale_one(eeg, chunk_signal, chain_factory, run):
    """No normalisation declared by the model: every epoch's factor is exactly 1."""
    x = eeg(100 * 30 * 3, 100.0)
    epochs = run(chain_factory(), chunk_signal(x, np.arange(x.size) / 100.0, 100.0, 500))
    assert epochs and all(e.input_scale == 1.0 for e in epochs)


@pytest.mark.parametrize(
    ("origin", "first", "second"),
    [
        # a recording that states no zone (EDF): its local clock, no offset
        ("1989-04-24T16:13:00", "1989-04-24T16:13:00.000", "1989-04-24T16:13:30.000"),
        # a zone that is known: UTC
        ("2026-03-01T23:59:45+01:00", "2026-03-01T22:59:45.000+00:00",
         "2026-03-01T23:00:15.000+00:00"),
    ],
    ids=["zone-unknown", "zone-known"],
)  # fmt: skip
def test_chain_clock_origin_keeps_a_zone_less_recording_naive(eeg, origin, first, second):
    """R18 (issue 13 class 4): a naive clock origin gives epoch starts without an offset
    (never a made-up +00:00); an aware one gives UTC; None gives this machine's clock."""
    from datetime import datetime

    from sleepstream.profiles import load_profile

    p = load_profile("edf-replay")
    n = int(61 * p.fs)
    x = eeg(n, p.fs, seed=3)
    for start, want in ((datetime.fromisoformat(origin), (first, second)), (None, None)):
        chain = SignalChain.from_profile(p, clock_origin=start)
        out = chain.push(Chunk(x[None, :] / p.scale_to_uv, np.arange(n) / p.fs, p.fs,
                               (p.channel,), 0.0)) + chain.flush()  # fmt: skip
        assert [e.index for e in out] == [0, 1]
        if want is not None:
            assert (out[0].start_clock, out[1].start_clock) == want
        else:  # live: now, aware
            assert datetime.fromisoformat(out[0].start_clock).tzinfo is not None
