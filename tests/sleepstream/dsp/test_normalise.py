"""Causal per-recording normalisation: robustness, warm-up, state and card round-trips."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sleepstream.dsp.normalise import (
    BLOCKING_FLAGS,
    NormalisationSpec,
    RunningScale,
    epoch_scale_uv,
    input_scales,
    normalise_night,
    usable_epochs,
    usable_from_flags,
)
from sleepstream.dsp.quality import QualityConfig
from sleepstream.errors import ConfigError, ModelError


@pytest.fixture(scope="module")
def night(sc4001_dir) -> np.ndarray:
    """SC4001 Fpz-Cz, trimmed: (841, 3000) µV, real EEG."""
    with np.load(sc4001_dir / "SC4001E0_FpzCz_30s_trimmed.npz") as d:
        return d["x"].astype(np.float32)


def _factors(x: np.ndarray, usable, spec, prior=None) -> np.ndarray:
    rs = RunningScale(spec, prior)
    return np.array([rs.apply(e, bool(u)) for e, u in zip(x, usable, strict=True)])


def test_normalise_epoch_scale_is_robust_std():
    """The per-epoch statistic is the std for Gaussian data and ignores a few huge samples."""
    rng = np.random.default_rng(0)
    x = rng.normal(0, 20.0, (4, 3000))
    s = epoch_scale_uv(x)
    assert s.shape == (4,) and np.allclose(s, 20.0, rtol=0.05)
    x[:, :30] = 5000.0  # 1 % spikes
    assert np.allclose(epoch_scale_uv(x), s, rtol=0.05)


def test_normalise_flagged_artefact_burst_does_not_move_scale(night):
    """A 20-min movement burst flagged by the DSP leaves the scale exactly where it was."""
    spec = NormalisationSpec()
    rs = RunningScale(spec)
    for e in night[:200]:
        rs.apply(e, True)
    before = rs.scale_uv
    burst = np.random.default_rng(1).normal(0, 400.0, (40, 3000))
    for e in burst:
        rs.apply(e, usable_from_flags(("amplitude", "clipping")))
    assert rs.scale_uv == before


def test_normalise_unflagged_artefact_burst_moves_scale_less_than_10pct(night):
    """Even unflagged, 10 min of 10x amplitude after 1 h of sleep moves the scale < 10 %."""
    spec = NormalisationSpec()
    rs = RunningScale(spec)
    for e in night[100:220]:
        rs.apply(e, True)
    before = rs.scale_uv
    for e in night[220:240] * 10.0:
        rs.apply(e, True)
    assert abs(rs.scale_uv / before - 1.0) < 0.10
    # a running mean of the per-epoch std (what the median guards against) moves > 50 %
    s = epoch_scale_uv(np.concatenate([night[100:220], night[220:240] * 10.0]))
    assert s.mean() / s[:120].mean() > 1.5


def test_normalise_warm_up_blends_prior_out(night):
    """Before any usable epoch the prior rules; after many, the recording's own scale does."""
    spec = NormalisationSpec(prior_weight_epochs=10.0)
    gain = 4.0
    x = night[200:500] * gain
    rs = RunningScale(spec, prior_scale_uv=spec.reference_uv)
    assert rs.input_scale == pytest.approx(1.0)  # nothing seen yet: prior = reference
    f = [rs.apply(e, True) for e in x]
    own = np.exp(np.median(np.log(epoch_scale_uv(x))))
    # first epoch: prior weighs 10, the epoch 1 (the current epoch counts)
    log_first = (10 * np.log(spec.reference_uv) + np.log(epoch_scale_uv(x[0]))) / 11
    assert f[0] == pytest.approx(spec.reference_uv / np.exp(log_first), rel=1e-6)
    # after 240 clean epochs (the whole window) the prior weighs 10/250 of the log-scale
    assert f[-1] == pytest.approx(spec.reference_uv / own, rel=0.1)
    # stationary signal: the factor moves monotonically from the prior's to its own
    noise = np.random.default_rng(2).normal(0, 60.0, (40, 3000))
    rs = RunningScale(spec)
    g = np.array([rs.apply(e, True) for e in noise])
    assert np.all(np.diff(g) < 0) and g[0] < 1.0 and g[-1] > spec.reference_uv / 60.0
    assert g[9] == pytest.approx(spec.reference_uv / np.sqrt(spec.reference_uv * 60.0), rel=0.05)


def test_normalise_gain_invariant_given_scaled_prior(night):
    """Any amplifier gain gives the same model input when the prior scales with it."""
    spec = NormalisationSpec()
    ok = np.ones(300, bool)
    a = normalise_night(night[:300], ok, spec, prior_scale_uv=12.0)
    b = normalise_night(night[:300] * 7.5, ok, spec, prior_scale_uv=12.0 * 7.5)
    assert np.allclose(a, b, rtol=1e-4, atol=1e-3)


def test_normalise_night_matches_streaming_apply(night):
    """normalise_night is the daemon's RunningScale run along the night, from ``start``."""
    spec = NormalisationSpec(window_epochs=50)
    usable = np.ones(300, bool)
    usable[[3, 40, 41, 42, 200]] = False
    x = night[:300]
    f = _factors(x[17:], usable[17:], spec, prior=30.0)
    out = normalise_night(x, usable, spec, start=17, prior_scale_uv=30.0)
    assert out.shape == (283, 3000) and out.dtype == np.float32
    assert np.array_equal(out, (x[17:] * f[:, None]).astype(np.float32))
    assert np.array_equal(input_scales(x, usable, spec, start=17, prior_scale_uv=30.0), f)


def test_normalise_state_survives_gaps(night):
    """Unusable epochs (gaps, whatever their number) neither update nor reset the state."""
    spec = NormalisationSpec()
    rs = RunningScale(spec)
    for e in night[:100]:
        rs.apply(e, True)
    before = rs.scale_uv
    for _ in range(500):
        rs.apply(np.zeros(3000, np.float32), usable_from_flags(("gap",)))
    assert rs.scale_uv == before and rs.n_seen == 600 and rs.n_used == 100


def test_normalise_state_round_trip_equals_uninterrupted(night):
    """Persisting the JSON state and restoring it (daemon restart) changes nothing."""
    spec = NormalisationSpec(window_epochs=60)
    full = _factors(night[:200], np.ones(200, bool), spec, prior=22.0)
    rs = RunningScale(spec, 22.0)
    first = [rs.apply(e, True) for e in night[:120]]
    saved = json.loads(json.dumps(rs.state_dict()))
    restored = RunningScale(spec)  # prior comes back from the state
    restored.load_state(saved)
    rest = [restored.apply(e, True) for e in night[120:200]]
    assert np.array_equal(np.array(first + rest), full)


def test_normalise_state_of_another_spec_refused(night):
    """A state saved under other parameters is refused, naming both specs."""
    rs = RunningScale(NormalisationSpec(window_epochs=60))
    rs.apply(night[0], True)
    other = RunningScale(NormalisationSpec(window_epochs=61))
    with pytest.raises(ConfigError, match="window_epochs"):
        other.load_state(rs.state_dict())
    with pytest.raises(ConfigError, match="malformed"):
        other.load_state({"format": "sleepstream-normalisation-state/1"})


def test_normalise_card_round_trip():
    """to_card/from_card round-trip, through JSON, for both kinds."""
    for spec in (
        NormalisationSpec(),
        NormalisationSpec(reference_uv=20.0, window_epochs=120, prior_weight_epochs=4.5),
        NormalisationSpec.none(),
    ):
        card = json.loads(json.dumps(spec.to_card()))
        assert NormalisationSpec.from_card(card) == spec
    assert NormalisationSpec.none().to_card() == {"kind": "none"}
    assert NormalisationSpec().to_card()["model_input"].startswith("samples_uv * reference_uv")


@pytest.mark.parametrize(
    ("card", "match"),
    [
        ({"kind": "per-epoch-zscore"}, "'per-epoch-zscore' is not implemented"),
        ({}, "None is not implemented"),
        ("InputNorm(mode='scale')", "expected a dict"),
        ({"kind": "running-robust-scale", "window": 3}, "unknown parameter 'window'"),
        ({"kind": "running-robust-scale", "quantile": "half"}, "quantile='half'"),
        ({"kind": "running-robust-scale", "quantile": 1.5}, "quantile=1.5 is out of range"),
    ],
)
def test_normalise_from_card_refuses_what_it_does_not_implement(card, match):
    """Unknown kinds and parameters raise ModelError naming them."""
    with pytest.raises(ModelError, match=match):
        NormalisationSpec.from_card(card)


def test_normalise_kind_none_is_identity(night):
    """Kind none: input_scale 1.0 and the night unchanged."""
    spec = NormalisationSpec.none()
    assert RunningScale(spec).apply(night[0], True) == 1.0
    assert np.array_equal(normalise_night(night[:5], None, spec, start=2), night[2:5])


def test_normalise_usable_epochs_flags_what_it_can_see():
    """Offline usable mask: NaN, flat, over-amplitude and clipped epochs are not usable."""
    rng = np.random.default_rng(3)
    x = rng.normal(0, 20.0, (5, 3000))
    x[1, 10] = np.nan
    x[2] = 3.0
    x[3, 100] = 900.0
    x[4, :200] = 191.0
    assert usable_epochs(x).tolist() == [True, False, False, False, True]
    q = QualityConfig(clip_uv=191.0, clip_fraction=0.05)
    assert usable_epochs(x, q).tolist() == [True, False, False, False, False]
    assert usable_from_flags(("line_noise", "clock_reset"))
    assert all(not usable_from_flags((f,)) for f in BLOCKING_FLAGS)


def test_normalise_rejects_bad_shapes_and_priors(night):
    """Wrong shapes, start and prior values raise one-line errors."""
    spec = NormalisationSpec()
    with pytest.raises(ValueError, match="expected \\(3000,\\)"):
        RunningScale(spec).apply(night[:2], True)
    with pytest.raises(ValueError, match="start=9"):
        normalise_night(night[:5], None, spec, start=9)
    with pytest.raises(ConfigError, match="prior_scale_uv=-1"):
        RunningScale(spec, prior_scale_uv=-1.0)


def test_quantile_1d_is_numpys_linear_quantile_bit_for_bit():
    """The daemon's partial-sort quantile equals np.quantile exactly (ties, tiny and
    epoch-sized arrays, q at the ends), so training (whole nights, np.percentile) and the
    daemon (one epoch at a time) compute the same scale."""
    from sleepstream.dsp.normalise import quantile_1d

    rng = np.random.default_rng(5)
    qs = (0.0, 0.1, 0.25, 1 / 3, 0.5, 0.75, 0.9, 1.0)
    for n in [*range(1, 64), 239, 240, 3000]:
        for x in (
            rng.standard_normal(n),
            np.round(rng.standard_normal(n) * 2),
            rng.standard_cauchy(n),
        ):
            assert quantile_1d(x, qs) == tuple(float(v) for v in np.quantile(x, qs)), n


def test_one_epochs_scale_equals_the_batched_scale():
    """epoch_scale_uv of one (3000,) epoch (fast path) == the same row of a batch."""
    from sleepstream.dsp.normalise import epoch_scale_uv

    x = np.random.default_rng(6).standard_normal((20, 3000)) * 25
    batch = epoch_scale_uv(x)
    assert [float(epoch_scale_uv(row)) for row in x] == batch.tolist()
