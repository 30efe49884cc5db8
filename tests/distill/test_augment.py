"""Augmentations: each flag does what it says, alone, deterministically given the rng."""

from __future__ import annotations

import json

import numpy as np
import pytest

from distill.augment import AugmentConfig, augment
from sleepstream.errors import UsageError


@pytest.fixture(scope="module")
def sc4001(sc4001_dir):
    """Real SC4001 Fpz-Cz epochs (841, 3000) µV and the Pz-Oz derivation of the same epochs."""
    from distill.data import load_sc4001_recording

    rec = load_sc4001_recording(sc4001_dir)
    fpz, pz = (rec.signals[c].reshape(-1, 3000) for c in ("EEG Fpz-Cz", "EEG Pz-Oz"))
    return fpz, pz


def _windows(e: np.ndarray, b: int, s: int, first: int = 100) -> np.ndarray:
    return e[first : first + b * s].reshape(b, s, 1, 3000).astype(np.float32)


def test_augment_all_off_is_identity_copy(sc4001):
    """No flag on: the same values, float32, in a new array."""
    x = _windows(sc4001[0], 4, 3)
    out = augment(x, AugmentConfig(), np.random.default_rng(0))
    assert out.dtype == np.float32 and out is not x and np.array_equal(out, x)


def test_augment_deterministic_given_rng_and_input_untouched(sc4001):
    """Same generator state -> same output; another seed -> another; x is not modified."""
    fpz, pz = sc4001
    x, d = _windows(fpz, 4, 3), _windows(pz, 4, 3)
    keep = x.copy()
    cfg = AugmentConfig.from_names(AugmentConfig.FLAGS)
    a = augment(x, cfg, np.random.default_rng(7), pz_oz=d)
    b = augment(x, cfg, np.random.default_rng(7), pz_oz=d)
    c = augment(x, cfg, np.random.default_rng(8), pz_oz=d)
    assert np.array_equal(a, b) and not np.allclose(a, c) and np.array_equal(x, keep)
    assert a.shape == x.shape and np.isfinite(a).all()


def test_augment_gain_one_factor_per_item_in_range(sc4001):
    """gain: each item is multiplied by one factor in [1/gain_max, gain_max]; both ways occur."""
    x = _windows(sc4001[0], 64, 2)
    out = augment(x, AugmentConfig(gain=True, gain_max=4.0), np.random.default_rng(1))
    g = (out.reshape(64, -1) * x.reshape(64, -1)).sum(1) / (x.reshape(64, -1) ** 2).sum(1)
    assert np.allclose(out, x * g[:, None, None, None].astype(np.float32), rtol=1e-5, atol=1e-3)
    assert g.min() >= 0.25 - 1e-6 and g.max() <= 4.0 + 1e-6
    assert g.min() < 0.5 and g.max() > 2.0


def test_augment_sign_flip_negates_whole_items(sc4001):
    """sign_flip: each item is x or -x, and both happen."""
    x = _windows(sc4001[0], 32, 2)
    out = augment(x, AugmentConfig(sign_flip=True), np.random.default_rng(2))
    same = np.all(out == x, axis=(1, 2, 3))
    neg = np.all(out == -x, axis=(1, 2, 3))
    assert np.all(same ^ neg) and same.any() and neg.any()


def _band_power(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    flat = x.reshape(x.shape[0], -1)
    p = np.abs(np.fft.rfft(flat, axis=1)) ** 2
    f = np.fft.rfftfreq(flat.shape[1], 0.01)
    return p[:, (f >= lo) & (f < hi)].sum(1)


def test_augment_filter_changes_spectral_balance_only(sc4001):
    """filter: a zero-range filter is the identity; a tilted one moves the 1-4 / 12-30 Hz balance."""
    x = _windows(sc4001[0], 16, 2)
    flat = augment(x, AugmentConfig(filter=True, tilt=0.0, eq_db=0.0), np.random.default_rng(3))
    assert np.allclose(flat, x, atol=1e-3)
    out = augment(x, AugmentConfig(filter=True, tilt=1.0, eq_bands=0), np.random.default_rng(3))
    before = np.log(_band_power(x, 1, 4) / _band_power(x, 12, 30))
    after = np.log(_band_power(out, 1, 4) / _band_power(out, 12, 30))
    shift = after - before
    # an amplitude tilt t changes the log power ratio by about -2 t log(~17/2.5) ≈ -3.8 t
    assert np.abs(shift).max() > 1.0 and (shift > 0).any() and (shift < 0).any()


def test_augment_time_scale_moves_frequencies_keeps_epochs():
    """time_scale: a 10-Hz sine comes out at 10/k Hz, centred on each epoch (labels stay)."""
    t = np.arange(2 * 3000) / 100.0
    x = np.sin(2 * np.pi * 10.0 * t).reshape(1, 2, 1, 3000).astype(np.float32)
    x = np.repeat(x, 8, axis=0)
    cfg = AugmentConfig(time_scale=True, time_scale_max=0.1)
    out = augment(x, cfg, np.random.default_rng(4))
    f = np.fft.rfftfreq(3000, 0.01)
    peaks = np.array(
        [f[np.argmax(np.abs(np.fft.rfft(out[i, 1, 0] * np.hanning(3000))))] for i in range(8)]
    )
    assert np.all((peaks > 10 / 1.1 - 0.1) & (peaks < 10 / 0.9 + 0.1))
    assert np.ptp(peaks) > 0.5
    # the sample at each epoch centre comes from the same instant as before
    assert np.allclose(out[:, :, 0, 1499:1501], x[:, :, 0, 1499:1501], atol=0.05)


def test_augment_noise_is_coloured_and_bounded(sc4001):
    """noise: added noise is at most noise_max x the item's robust std and is 1/f-like."""
    x = _windows(sc4001[0], 16, 2)
    cfg = AugmentConfig(noise=True, noise_max=0.3, noise_beta=(2.0, 2.0))
    n = (augment(x, cfg, np.random.default_rng(5)) - x).reshape(16, -1)
    q25, q75 = np.percentile(x.reshape(16, -1), [25, 75], axis=1)
    assert np.all(n.std(1) <= 0.3 * (q75 - q25) / 1.349 * 1.001 + 1e-3)
    low, high = _band_power(n[:, None], 1, 2), _band_power(n[:, None], 20, 21)
    assert np.all(low > 50 * high)  # brown noise: power ratio ~ (20/1.5)^2 ≈ 180


def test_augment_mix_blends_the_other_derivation(sc4001):
    """mix: weight 0 gives x, weight 1 the other derivation; it needs that derivation."""
    fpz, pz = sc4001
    x, d = _windows(fpz, 4, 2), _windows(pz, 4, 2)
    rng = np.random.default_rng(6)
    assert np.allclose(augment(x, AugmentConfig(mix=True, mix_range=(0, 0)), rng, pz_oz=d), x)
    assert np.allclose(augment(x, AugmentConfig(mix=True, mix_range=(1, 1)), rng, pz_oz=d), d)
    half = augment(x, AugmentConfig(mix=True, mix_range=(0.5, 0.5)), rng, pz_oz=d)
    assert np.allclose(half, (x + d) / 2, atol=1e-4)
    with pytest.raises(UsageError, match="needs another derivation"):
        augment(x, AugmentConfig(mix=True), rng)
    with pytest.raises(UsageError, match="derivation 'pz_oz' shape"):
        augment(x, AugmentConfig(mix=True), rng, pz_oz=d[:2])


def test_augment_config_names_round_trip_and_errors():
    """from_names/to_dict round-trip through JSON; unknown names and bad ranges are refused."""
    cfg = AugmentConfig.from_names("gain, filter,noise", gain_max=8.0)
    assert cfg.active == ("filter", "noise", "gain") and cfg.gain_max == 8.0
    assert AugmentConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert AugmentConfig.from_names("none").active == ()
    with pytest.raises(UsageError, match="'tilt'.*valid: none, mix"):
        AugmentConfig.from_names("gain,tilt")
    with pytest.raises(UsageError, match="gain_max=0.5"):
        AugmentConfig(gain_max=0.5)
    with pytest.raises(UsageError, match="unknown key 'colour'"):
        AugmentConfig.from_dict({"colour": 1})
    with pytest.raises(UsageError, match="x shape"):
        augment(np.zeros((2, 3000), np.float32), cfg, np.random.default_rng(0))
