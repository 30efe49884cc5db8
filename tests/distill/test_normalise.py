"""Normalisation along nights (distill.normalise) and in evaluation (card / sidecar spec)."""

from __future__ import annotations

import numpy as np
import pytest

from distill.data import Recording
from distill.evaluate import normalisation_of, score_fold
from distill.normalise import normalise_recording, spec_from_cli, usable_epochs
from sleepstream.dsp.normalise import NormalisationSpec, normalise_night
from sleepstream.errors import ModelError, UsageError


def drifting(n: int = 40, name: str = "r", gain: float = 1.0) -> Recording:
    rng = np.random.default_rng(len(name))
    amp = gain * np.linspace(5.0, 50.0, n)[:, None]
    x = (amp * rng.standard_normal((n, 3000))).astype(np.float32)
    return Recording(name, {"a": x.ravel(), "b": (2 * x).ravel()}, np.arange(n) % 5, "t")


def test_spec_from_cli_builds_the_card_dict_and_rejects_bad_input():
    """--normalise KIND --normalise-param k=v gives NormalisationSpec.to_card(); errors name it."""
    d = spec_from_cli("running-robust-scale", ["window_epochs=60", "reference_uv=20"])
    assert d == NormalisationSpec(window_epochs=60, reference_uv=20.0).to_card()
    assert spec_from_cli("none") == {"kind": "none"}
    with pytest.raises(UsageError, match="zscore"):
        spec_from_cli("zscore")
    with pytest.raises(UsageError, match="window"):
        spec_from_cli("running-robust-scale", ["window"])
    with pytest.raises(UsageError, match="colour"):
        spec_from_cli("running-robust-scale", ["colour=3"])


def test_normalise_recording_is_normalise_night_from_each_recordings_start():
    """Every derivation, from epoch 0 with a cold normaliser; kind none returns the recording."""
    rec = drifting()
    card = NormalisationSpec(window_epochs=10, prior_weight_epochs=0.0).to_card()
    out = normalise_recording(rec, card)
    for ch in ("a", "b"):
        ep = rec.signals[ch].reshape(-1, 3000)
        want = normalise_night(ep, usable_epochs(ep), NormalisationSpec.from_card(card))
        np.testing.assert_array_equal(out.signals[ch].reshape(-1, 3000), want)
    # without a prior, the derivations' factor-2 amplitude difference is removed
    ratio = np.std(out.signals["b"][-3000:]) / np.std(out.signals["a"][-3000:])
    assert ratio == pytest.approx(1.0, rel=1e-4)
    assert normalise_recording(rec, {"kind": "none"}) is rec


def test_normalisation_of_reads_sidecars_and_cards():
    """Sidecar key, card v2 input_contract, v1 string (graph does it) and absence; unknown
    kinds are refused with ModelError naming the kind."""
    spec = NormalisationSpec().to_card()
    assert normalisation_of({"normalisation": spec}) == spec
    assert normalisation_of({"input_contract": {"normalisation": spec}}) == spec
    assert normalisation_of({"input_contract": {"normalisation": "in-graph"}}) == {"kind": "none"}
    assert normalisation_of({}) == {"kind": "none"}
    with pytest.raises(ModelError, match="zscore"):
        normalisation_of({"input_contract": {"normalisation": {"kind": "zscore"}}})


def test_score_fold_normalises_each_test_recording_from_its_own_start():
    """Scoring with a spec equals scoring recordings normalised one by one beforehand."""
    recs = [drifting(30, "x1"), drifting(30, "x22", gain=3.0)]
    card = NormalisationSpec(window_epochs=10).to_card()

    def predict(x: np.ndarray) -> np.ndarray:  # stage = amplitude bucket of each epoch
        s = x[:, :, 0, :].std(axis=-1)
        out = np.zeros(x.shape[:2] + (5,), np.float32)
        out[
            np.arange(len(x))[:, None], np.arange(x.shape[1]), np.clip(s // 8, 0, 4).astype(int)
        ] = 1
        return out

    got = score_fold(predict, recs, None, 3, ["causal"], card)
    want = score_fold(predict, [normalise_recording(r, card) for r in recs], None, 3, ["causal"])
    raw = score_fold(predict, recs, None, 3, ["causal"])
    assert np.array_equal(got["causal"][1], want["causal"][1])
    assert not np.array_equal(got["causal"][1], raw["causal"][1])
