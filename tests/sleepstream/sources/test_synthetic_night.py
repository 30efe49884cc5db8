"""Synthetic night: deterministic, stage spectra as designed, real or Markov hypnograms."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from sleepstream.sources.synthetic_night import (
    STAGE_STD_UV,
    NightGenerator,
    SyntheticNightSource,
    markov_stages,
)
from sleepstream.types import Stage

#: Twenty epochs of each stage, in blocks.
STAGES = np.repeat(np.arange(5, dtype=np.int8), 20)


def _band_fraction(epochs: np.ndarray, lo: float, hi: float, fs: float = 100.0) -> np.ndarray:
    f = np.fft.rfftfreq(epochs.shape[1], 1 / fs)
    p = np.abs(np.fft.rfft(epochs, axis=1)) ** 2
    return p[:, (f >= lo) & (f < hi)].sum(1) / p[:, (f >= 0.3) & (f < 35)].sum(1)


@pytest.fixture(scope="module")
def night() -> np.ndarray:
    """Epochs (100, 3000) of :data:`STAGES` at 100 Hz, seed 7."""
    return NightGenerator(STAGES, 100.0, seed=7).signal().reshape(-1, 3000)


def test_synthetic_night_is_deterministic_from_seed():
    """The same seed gives the same signal; another seed a different one."""
    a = NightGenerator(STAGES[:6], seed=3).signal()
    b = NightGenerator(STAGES[:6], seed=3).signal()
    c = NightGenerator(STAGES[:6], seed=4).signal()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    np.testing.assert_array_equal(markov_stages(200, 5), markov_stages(200, 5))


def test_synthetic_night_stage_spectra_differ_as_designed(night):
    """Delta power N3 > W, alpha W > N3, theta N1 > W, sigma N2 > N1 and N3, theta REM > N3."""
    med = {s: {} for s in Stage}
    for s in Stage:
        ep = night[s == STAGES]
        for band, (lo, hi) in {
            "delta": (0.5, 2),
            "theta": (4, 7),
            "alpha": (8, 12),
            "sigma": (12, 15),
        }.items():
            med[s][band] = float(np.median(_band_fraction(ep, lo, hi)))
        med[s]["delta_uv2"] = med[s]["delta"] * float(np.median(ep.var(axis=1)))
    assert med[Stage.N3]["delta_uv2"] > 2 * med[Stage.W]["delta_uv2"]
    assert med[Stage.N3]["delta"] > 1.3 * med[Stage.W]["delta"]
    assert med[Stage.W]["alpha"] > 2 * med[Stage.N3]["alpha"]
    assert med[Stage.N1]["theta"] > 2 * med[Stage.W]["theta"]
    assert med[Stage.N2]["sigma"] > 1.3 * med[Stage.N1]["sigma"]
    assert med[Stage.N2]["sigma"] > 5 * med[Stage.N3]["sigma"]
    assert med[Stage.REM]["theta"] > 3 * med[Stage.N3]["theta"]


def _features(epochs: np.ndarray) -> np.ndarray:
    """Log relative band powers (6 bands) and log std per epoch."""
    f = np.fft.rfftfreq(epochs.shape[1], 0.01)
    p = np.abs(np.fft.rfft(epochs - epochs.mean(1, keepdims=True), axis=1)) ** 2
    tot = p[:, (f >= 0.3) & (f < 35)].sum(1)
    bands = [(0.5, 2), (2, 4), (4, 7), (8, 12), (12, 15), (15, 30)]
    rel = [np.log(p[:, (f >= lo) & (f < hi)].sum(1) / tot) for lo, hi in bands]
    return np.stack([*rel, np.log(epochs.std(1))], axis=1)


def test_synthetic_night_looks_like_real_sleep_edf_to_a_real_data_classifier(
    sc4001_dir, hypnograms_dir
):
    """A spectral classifier fitted on the real SC4001 Fpz-Cz night stages the synthetic
    SC4001 night mostly right (the synthetic stages resemble the real ones)."""
    real = np.load(sc4001_dir / "SC4001E0_FpzCz_30s_trimmed.npz")
    fr, y = _features(real["x"].astype(np.float64)), real["y"].astype(int)
    mu, sd = fr.mean(0), fr.std(0)
    z = (fr - mu) / sd
    centroids = np.stack([z[y == k].mean(0) for k in range(5)])
    icov = np.linalg.inv(sum(np.cov(z[y == k].T) * np.sum(y == k) for k in range(5)) / y.size)

    def classify(zz: np.ndarray) -> np.ndarray:
        d = [np.einsum("ij,jk,ik->i", zz - c, icov, zz - c) for c in centroids]
        return np.argmin(np.stack(d, axis=1), axis=1)

    src = SyntheticNightSource(hypnograms_dir / "SC4001E0-PSG.edf.csv", seed=11)
    syn = src.generator.signal().reshape(-1, 3000)
    pred, truth = classify((_features(syn) - mu) / sd), src.stages.astype(int)
    assert np.mean(pred == truth) > 0.75
    for stage in (Stage.W, Stage.N2, Stage.N3, Stage.REM):
        assert np.mean(pred[truth == stage] == stage) > 0.8, stage.name


def test_synthetic_night_amplitudes_match_sleep_edf(night):
    """Median epoch std per stage is within 20 % of the Sleep-EDF Fpz-Cz figure."""
    for s in Stage:
        std = float(np.median(night[s == STAGES].std(axis=1)))
        assert std == pytest.approx(STAGE_STD_UV[s], rel=0.2)


def test_synthetic_night_has_no_steps_at_epoch_borders(night):
    """Cross-fading keeps the steps across epoch borders like any other sample step
    (independent epochs without the fade give a median border step ~3x the typical one)."""
    steps = np.abs(np.diff(night.ravel()))
    borders = steps[np.arange(1, STAGES.size) * 3000 - 1]
    assert np.median(borders) < 1.6 * np.median(steps)


def test_synthetic_night_follows_a_real_hypnogram(hypnograms_dir):
    """SC4001's hypnogram, trimmed as in Sleep-EDF-20, gives its 841 epochs and counts."""
    src = SyntheticNightSource(hypnograms_dir / "SC4001E0-PSG.edf.csv", speed="max")
    assert src.stages.size == 841
    assert np.bincount(src.stages, minlength=5).tolist() == [188, 58, 250, 220, 125]
    assert src.stage_at(0.0) == src.stages[0] and src.stage_at(841 * 30.0) == -1


def test_synthetic_night_streams_markov_night_without_shared_data():
    """With no hypnogram it streams a Markov night whose samples cover every epoch."""

    async def run(src):
        async with src:
            return [c async for c in src]

    src = SyntheticNightSource(n_epochs=4, seed=2, speed="max", chunk_seconds=7.0)
    chunks = asyncio.run(run(src))
    x = np.concatenate([c.samples[0] for c in chunks])
    ts = np.concatenate([c.timestamps for c in chunks])
    assert x.size == 4 * 3000 == src.n_samples == src.received_samples
    np.testing.assert_array_equal(x, NightGenerator(src.stages, 100.0, seed=2).signal())
    np.testing.assert_allclose(ts, np.arange(x.size) / 100.0)
    assert chunks[0].channels == ("EEG Fpz-Cz",) and chunks[0].fs == 100.0
