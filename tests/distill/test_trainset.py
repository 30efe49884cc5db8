"""Training windows: augmentation, per-pass normalisation, night-start windows, class
balance and hypnogram-assembled nights."""

from __future__ import annotations

import numpy as np
import pytest

from distill.assembled import AssembledNights
from distill.augment import AugmentConfig
from distill.data import Recording
from distill.folds import within_night_blocks
from distill.normalise import NightNorm, night_scales, session_starts, usable_epochs
from distill.trainset import Augmentation, TrainSet, class_weights
from sleepstream.dsp.normalise import NormalisationSpec, normalise_night
from sleepstream.errors import UsageError

SPEC = NormalisationSpec(window_epochs=20, prior_weight_epochs=2.0).to_card()


def noisy_recording(n: int = 80, seed: int = 0, channels: int = 2) -> Recording:
    """Gaussian epochs whose amplitude drifts over the night (10-40 µV), per derivation."""
    rng = np.random.default_rng(seed)
    amp = np.linspace(10.0, 40.0, n)[:, None]
    sig = {
        f"ch{c}": (amp * (1 + c) * rng.standard_normal((n, 3000))).astype(np.float32).ravel()
        for c in range(channels)
    }
    return Recording("noisy", sig, (np.arange(n) % 5).astype(np.int64), "synthetic")


def test_trainset_windows_never_show_heldout_epochs(id_recording):
    """Training windows, time shifts included, never contain a held-out epoch."""
    rec = id_recording(200)
    fold = within_night_blocks(rec, k=4, guard=8)[1]
    ts = TrainSet([rec], [fold.train[rec.name]], seq=8, stride=2)
    rng = np.random.default_rng(0)
    x, y = ts.batch(ts.plan(rng), rng, Augmentation(shift=300))
    seen = set(np.unique(x).astype(int).tolist()) - {0}
    held = set((np.flatnonzero(fold.test[rec.name] | fold.val[rec.name]) + 1).tolist())
    assert seen and not (seen & held)
    assert (y >= 0).sum() > 0


def test_window_gain_is_one_draw_per_window_within_bounds():
    """Window-level gain multiplies each window by one factor in [1/g, g]."""
    rec = noisy_recording(40, channels=1)
    ts = TrainSet([rec], [np.ones(40, bool)], seq=4, stride=4)
    items = ts.plan(np.random.default_rng(0))
    plain, _ = ts.batch(items, np.random.default_rng(1), Augmentation())
    aug = Augmentation(AugmentConfig(gain=True, gain_max=1.5))
    x, _ = ts.batch(items, np.random.default_rng(1), aug)
    ratio = x.reshape(len(x), -1) / plain.reshape(len(x), -1)
    assert np.allclose(ratio, ratio[:, :1], rtol=1e-4)
    assert ratio.min() >= 1 / 1.5 - 1e-5 and ratio.max() <= 1.5 + 1e-5 and ratio.std() > 0


def test_window_mix_takes_the_other_derivation_of_the_same_epochs(id_recording):
    """mix with weight 1 shows the other derivation of exactly the same epochs."""
    rec = id_recording(30, channels=2)
    ts = TrainSet([rec], [np.ones(30, bool)], seq=3, stride=1)
    aug = Augmentation(AugmentConfig(mix=True, mix_range=(1.0, 1.0)), channel_swap=True)
    rng = np.random.default_rng(0)
    items = ts.plan(rng)
    x, _ = ts.batch(items, np.random.default_rng(3), aug)
    plain, _ = ts.batch(items, np.random.default_rng(3), Augmentation(channel_swap=True))
    flip = np.where(plain > 1000, plain - 1000, plain + 1000)
    assert np.allclose(x, flip)


def test_channel_swap_uses_both_derivations(id_recording):
    """With channel swap, training windows come from both derivations."""
    rec = id_recording(60, channels=2)
    ts = TrainSet([rec], [np.ones(60, bool)], seq=4, stride=1)
    rng = np.random.default_rng(0)
    x, _ = ts.batch(ts.plan(rng), rng, Augmentation(channel_swap=True))
    high = (x[:, -1, 0, 0] > 1000).mean()
    assert 0.2 < high < 0.8
    x, _ = ts.batch(ts.plan(rng), rng, Augmentation.off())
    assert (x[:, -1, 0, 0] < 1000).all()


def test_augmentation_json_roundtrip_and_first_release_form():
    """Augmentation survives JSON; the first release's dict maps to gain + white noise."""
    a = Augmentation(AugmentConfig(gain=True, filter=True, noise_beta=(1.0, 2.0)), 100, True,
                     "night")  # fmt: skip
    assert Augmentation.from_json(a.to_json()) == a
    old = Augmentation.from_json(
        {"amplitude": 1.2, "shift": 300, "noise": 0.1, "channel_swap": True}
    )
    assert old.signal.active == ("noise", "gain")
    assert old.signal.gain_max == 1.2 and old.signal.noise_beta == (0.0, 0.0)
    assert old.shift == 300 and old.channel_swap
    with pytest.raises(UsageError, match="where"):
        Augmentation(where="epoch")


def test_pass_view_normalises_causally_from_the_night_start_and_from_the_cut():
    """Per-pass factors equal normalise_night run from 0 before the cut and from the cut
    after it; a window across the cut shows nothing before it."""
    rec = noisy_recording(80)
    ts = TrainSet([rec], [np.ones(80, bool)], seq=6, stride=1,
                  norm=NightNorm.build([rec], SPEC))  # fmt: skip
    spec = NormalisationSpec.from_card(SPEC)
    rng = np.random.default_rng(5)
    views = ts.pass_view(rng)
    assert len(views[0].starts) == 2 and views[0].starts[0] == 0
    cut = int(views[0].starts[1])
    assert 0 < cut < 80
    for ch, flat in rec.signals.items():
        ep = flat.reshape(80, 3000)
        ok = usable_epochs(ep)
        want_a = normalise_night(ep, ok, spec)[:cut]
        want_b = normalise_night(ep, ok, spec, start=cut)
        got = ep * views[0].scales[ch][:, None]
        np.testing.assert_allclose(got[:cut], want_a, rtol=1e-5)
        np.testing.assert_allclose(got[cut:], want_b, rtol=1e-5)
    s = cut - 2  # window covering epochs cut-2 .. cut+3
    x, y = ts.batch(np.array([[0, s]]), np.random.default_rng(0), Augmentation(), views)
    assert (x[0, :2] == 0).all() and (y[0, :2] == -1).all()
    ep0 = rec.signals["ch0"].reshape(80, 3000)  # no channel swap: the first derivation
    want0 = normalise_night(ep0, usable_epochs(ep0), spec, start=cut)
    np.testing.assert_allclose(x[0, 2:, 0], want0[:4], rtol=1e-5)
    assert (y[0, 2:] >= 0).all()


def test_sessions_vary_per_pass_and_restart_the_normaliser_cold():
    """One random cut per pass by default; with session_len, sessions of that length with
    a random phase, each normalised from its own cold start."""
    cuts = {tuple(session_starts(60, 0, np.random.default_rng(i))) for i in range(40)}
    assert len(cuts) > 10 and all(c[0] == 0 and len(c) <= 2 for c in cuts)
    st = session_starts(100, 30, np.random.default_rng(3))
    assert st[0] == 0 and (np.diff(st[1:]) == 30).all() and st[1] < 30
    rec = noisy_recording(100, channels=1)
    ts = TrainSet([rec], [np.ones(100, bool)], seq=3, norm=NightNorm.build([rec], SPEC),
                  session_len=30)  # fmt: skip
    v = ts.pass_view(np.random.default_rng(3))[0]
    assert np.array_equal(v.starts, st)
    ep = rec.primary.reshape(100, 3000)
    spec = NormalisationSpec.from_card(SPEC)
    bounds = [*st.tolist(), 100]
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        want = normalise_night(ep[:b], usable_epochs(ep[:b]), spec, start=a)
        np.testing.assert_allclose(ep[a:b] * v.scales["ch0"][a:b, None], want, rtol=1e-5)


def test_night_scales_equal_normalise_night():
    """The factor path (training) equals sleepstream's normalise_night (the daemon's code)."""
    rec = noisy_recording(50, channels=1)
    ep = rec.primary.reshape(50, 3000).copy()
    ep[7] = 0.0  # flat: not usable, must not move the scale
    ok = usable_epochs(ep)
    assert not ok[7] and ok.sum() == 49
    f = night_scales(ep, ok, SPEC, start=3)
    want = normalise_night(ep, ok, NormalisationSpec.from_card(SPEC), start=3)
    np.testing.assert_allclose(ep[3:] * f[:, None], want, rtol=1e-5, atol=1e-6)


def test_night_level_augmentation_draws_once_per_session_before_the_normaliser():
    """where=night: one gain per session and pass; the normaliser sees the augmented night."""
    rec = noisy_recording(60, channels=2)
    aug = Augmentation(AugmentConfig(gain=True, gain_max=3.0), where="night")
    ts = TrainSet([rec], [np.ones(60, bool)], seq=4, norm=NightNorm.build([rec], SPEC))
    v = ts.pass_view(np.random.default_rng(2), aug)[0]
    bounds = [*(3000 * v.starts).tolist(), 60 * 3000]
    assert len(bounds) == 3
    for ch, sig in rec.signals.items():
        g = v.signals[ch] / sig
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            assert np.allclose(g[a:b], g[a], rtol=1e-4) and abs(np.log(g[a])) > 1e-3
        assert not np.isclose(g[0], g[-1])
        ep = v.signals[ch].reshape(60, 3000)
        ok = usable_epochs(ep)
        cut = int(v.starts[-1])
        assert np.allclose(v.scales[ch][cut:], night_scales(ep, ok, SPEC, cut), rtol=1e-6)
    plain = ts.pass_view(np.random.default_rng(2), Augmentation(where="night"))[0]
    assert plain.signals["ch0"] is rec.signals["ch0"]  # nothing active: the night as it is


def test_start_windows_pad_history_like_the_daemon(id_recording):
    """start_windows=1: every window keeps only its last h+1 epochs, h in [0, seq-2]."""
    rec = id_recording(200)
    ts = TrainSet([rec], [np.ones(200, bool)], seq=5, stride=1, start_windows=1.0)
    rng = np.random.default_rng(0)
    x, y = ts.batch(ts.plan(rng), rng, Augmentation())
    kept = (y >= 0).sum(axis=1)
    assert set(kept.tolist()) == {1, 2, 3, 4}
    assert (y[:, -1] >= 0).all()
    for xi, yi in zip(x, y, strict=True):
        assert (xi[yi < 0] == 0).all()
        assert (np.flatnonzero(yi >= 0) == np.arange(5 - (yi >= 0).sum(), 5)).all()
    off = TrainSet([rec], [np.ones(200, bool)], seq=5, stride=1)
    _, y0 = off.batch(off.plan(np.random.default_rng(0)), rng, Augmentation())
    assert (y0 >= 0).all()


def test_class_weights_upweight_rare_stage():
    """The rarest stage gets the largest weight; absent stages get 0."""
    y = np.array([0] * 50 + [1] * 5 + [2] * 100 + [-1] * 7)
    w = class_weights(y)
    assert w[1] == w.max() and w[3] == 0 and w[4] == 0
    assert w[1] > w[0] > w[2]


def test_weighted_sampler_oversamples_rare_stage(id_recording):
    """The weighted sampler draws windows of the rare stage more often."""
    y = np.array([2] * 90 + [1] * 10)
    rec = id_recording(100)
    rec = type(rec)(rec.name, rec.signals, y, rec.dataset)
    ts = TrainSet([rec], [np.ones(100, bool)], seq=1, stride=1)
    rng = np.random.default_rng(0)
    plain = ts.plan(rng)
    weighted = ts.plan(rng, class_weights(y, power=1.0))
    assert (y[plain[:, 1]] == 1).mean() == pytest.approx(0.1)
    assert (y[weighted[:, 1]] == 1).mean() > 0.3


def test_assembled_pools_follow_the_pass_normalisation():
    """With a pass view, assembled epochs carry their epoch's normalisation factor."""
    rec = noisy_recording(40, channels=1)
    asm = AssembledNights.from_recordings([np.arange(40) % 5], [rec], [np.ones(40, bool)])
    ts = TrainSet([rec], [np.ones(40, bool)], seq=4, norm=NightNorm.build([rec], SPEC))
    views = ts.pass_view(np.random.default_rng(0))
    pools = asm.pass_pools(views)
    want = rec.primary.reshape(40, 3000) * views[0].scales["ch0"][:, None]
    np.testing.assert_allclose(pools["ch0"], want, rtol=1e-6)
