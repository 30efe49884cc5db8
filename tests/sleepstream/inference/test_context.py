"""The per-device context stager: each epoch encoded once, equal to the window path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from sleepstream.inference import load_stager, softmax
from sleepstream.inference.context import ContextError, ContextStager
from sleepstream.types import UNSCORED


@dataclass(frozen=True)
class Ep:
    """An epoch as the DSP will emit it: (3000,) µV samples and its input scale."""

    index: int
    samples: np.ndarray
    input_scale: float = 1.0
    quality: tuple[str, ...] = ()
    unscored_reasons: tuple[str, ...] = ()


def _night(n: int, seed: int, start: int = 0) -> list[Ep]:
    rng = np.random.default_rng(seed)
    return [
        Ep(
            start + i,
            (rng.standard_normal(3000) * 30).astype(np.float32),
            float(rng.uniform(0.5, 2)),
        )
        for i in range(n)
    ]


def _reference(stager, night: list[Ep]) -> np.ndarray:
    """Logits (n, S, 5) of each epoch's zero-padded window, built explicitly (today's path)."""
    s = stager.seq_len
    x = np.stack([(e.samples.astype(np.float64) * e.input_scale).astype(np.float32) for e in night])
    padded = np.concatenate([np.zeros((s - 1, 3000), np.float32), x])
    wins = np.stack([padded[i : i + s] for i in range(len(night))])
    return stager.logits(wins)


@pytest.fixture(scope="module")
def stagers(tiny_pair: tuple[Path, Path]):
    window, split = tiny_pair
    return load_stager(window), load_stager(split)


@pytest.mark.parametrize("mode", ["window", "split"])
def test_context_interleaved_devices_equal_window_path(stagers, mode: str) -> None:
    """Three devices with their own phases, interleaved in uneven batches: every causal
    prediction equals the zero-padded window path to 1e-5 (probabilities)."""
    win, split = stagers
    ctx = ContextStager(win if mode == "window" else split)
    nights = {"a": _night(30, 1), "b": _night(25, 2, start=7), "c": _night(3, 3, start=100)}
    queue = [(k, e) for i in range(30) for k, n in nights.items() if i < len(n) for e in [n[i]]]
    got: dict[str, list] = {k: [] for k in nights}
    rng = np.random.default_rng(0)
    while queue:
        m = int(rng.integers(1, 9))
        for sc in ctx.score(queue[:m]):
            got[sc.device].append(sc.prediction)
        queue = queue[m:]
    for key, night in nights.items():
        ref = softmax(_reference(win, night)[:, -1])
        preds = got[key]
        assert [p.epoch_index for p in preds] == [e.index for e in night]
        np.testing.assert_allclose(np.stack([p.probabilities for p in preds]), ref, atol=1e-5)
        assert ctx.next_index(key) == night[-1].index + 1


def test_context_split_and_window_modes_agree(stagers) -> None:
    """The same checkpoint as one window graph or as encoder + head gives the same logits."""
    win, split = stagers
    assert (win.mode, split.mode) == ("window", "split") and split.state_dim == 5
    x = np.random.default_rng(4).standard_normal((3, 20, 1, 3000)).astype(np.float32) * 40
    x[0, :12] = 0.0
    np.testing.assert_allclose(split.logits(x), win.logits(x), atol=1e-5)


def test_context_lookahead_reads_same_output(stagers) -> None:
    """lookahead=K revises epoch t-K from position -1-K of epoch t's window; none before K
    epochs exist, none for an unscored epoch; one head row per epoch (no second call)."""
    _, split = stagers
    night = _night(12, 5)
    night[4] = Ep(4, night[4].samples, 1.0, ("gap",), ("gap",))
    ctx = ContextStager(split, lookahead=2)
    calls = []
    head = split.head
    split.head = lambda states: calls.append(len(states)) or head(states)  # count rows
    try:
        out = ctx.score([("d", e) for e in night])
    finally:
        del split.head
    ref = softmax(_reference(split, night))
    assert sum(calls) == 12  # 11 causal rows + the gap epoch's row for epoch 2's revision
    revised = {sc.revised.epoch_index: sc for sc in out if sc.revised is not None}
    assert sorted(revised) == [0, 1, 2, 3, 5, 6, 7, 8, 9]  # not 4 (gap), none for 10, 11
    for t, sc in enumerate(out):
        if t - 2 in revised and revised[t - 2] is sc:
            np.testing.assert_allclose(sc.revised.probabilities, ref[t, -3], atol=1e-5)
            assert sc.revised_epoch is night[t - 2]
    assert out[4].prediction.stage == UNSCORED and out[4].prediction.reasons == ("gap",)


def test_context_gap_epochs_enter_ring(stagers) -> None:
    """An unscored (gap) epoch is unscored itself but stays context for the next epochs."""
    _, split = stagers
    night = _night(8, 6)
    night[3] = Ep(3, night[3].samples, 1.0, ("gap",), ("gap",))
    ctx = ContextStager(split)
    preds = [sc.prediction for sc in ctx.score([("d", e) for e in night])]
    ref = softmax(_reference(split, night)[:, -1])
    assert preds[3].stage == UNSCORED
    for t in (4, 5, 7):
        np.testing.assert_allclose(preds[t].probabilities, ref[t], atol=1e-5)


def test_context_noncontiguous_index_raises_and_changes_nothing(stagers) -> None:
    """A skipped or repeated index raises ContextError naming the device; the ring is
    unchanged, so the correct next epoch still scores as if nothing happened."""
    _, split = stagers
    night = _night(6, 7)
    ctx = ContextStager(split)
    ctx.score([("a", e) for e in night[:3]] + [("b", night[0])])
    with pytest.raises(ContextError, match=r"'a'.*epoch 4 follows epoch 2"):
        ctx.score([("b", night[1]), ("a", night[4])])
    with pytest.raises(ContextError, match="epoch 2 follows epoch 2"):
        ctx.score([("a", night[2])])
    assert ctx.next_index("a") == 3 and ctx.next_index("b") == 1
    rest = ctx.score([("a", e) for e in night[3:]])
    ref = softmax(_reference(split, night)[:, -1])
    np.testing.assert_allclose(rest[-1].prediction.probabilities, ref[-1], atol=1e-5)


def test_context_reset_starts_padded(stagers) -> None:
    """reset(key) forgets the device: its next epoch (any index) starts a padded window."""
    _, split = stagers
    night = _night(5, 8)
    ctx = ContextStager(split)
    ctx.score([("a", e) for e in night])
    ctx.reset("a")
    again = _night(2, 9, start=40)
    preds = [sc.prediction for sc in ctx.score([("a", e) for e in again])]
    ref = softmax(_reference(split, again)[:, -1])
    np.testing.assert_allclose(np.stack([p.probabilities for p in preds]), ref, atol=1e-5)


def test_context_restart_restores_ring_when_grid_continues(stagers) -> None:
    """A ring saved before a restart continues exactly when the next index follows it;
    when the grid does not continue, the device starts padded instead."""
    _, split = stagers
    night = _night(30, 10)
    ctx = ContextStager(split)
    ctx.score([("a", e) for e in night[:22]] + [("b", e) for e in night[:4]])
    saved = {k: ctx.state_dict(k) for k in ("a", "b")}
    fresh = ContextStager(split)
    assert fresh.load_state("a", saved["a"]) and fresh.load_state("b", saved["b"])
    cont = fresh.score([("a", e) for e in night[22:]])
    ref = softmax(_reference(split, night)[:, -1])
    np.testing.assert_allclose(cont[-1].prediction.probabilities, ref[-1], atol=1e-5)
    other = _night(2, 11, start=0)  # b's grid restarted at 0: a new night
    preds = [sc.prediction for sc in fresh.score([("b", e) for e in other])]
    np.testing.assert_allclose(
        preds[1].probabilities, softmax(_reference(split, other)[:, -1])[1], atol=1e-5
    )
    bad = dict(saved["a"], model_id="other-model")
    assert not ContextStager(split).load_state("a", bad)


def test_context_nonfinite_epoch_blocks_its_windows(stagers) -> None:
    """A non-finite epoch is unscored 'nonfinite' and so is every epoch whose window holds it."""
    _, split = stagers
    night = _night(24, 12)
    bad = night[2].samples.copy()
    bad[5] = np.nan
    night[2] = Ep(2, bad)
    preds = [sc.prediction for sc in ContextStager(split).score([("d", e) for e in night])]
    blocked = [p.epoch_index for p in preds if p.stage == UNSCORED]
    assert blocked == list(range(2, 22)) and preds[2].reasons == ("nonfinite",)


def test_context_input_scale_is_applied(stagers) -> None:
    """The model input is samples * input_scale: scaling samples or the factor is the same."""
    _, split = stagers
    rng = np.random.default_rng(13)
    x = (rng.standard_normal(3000) * 30).astype(np.float32)
    a = ContextStager(split).score([("d", Ep(0, x, 2.0))])[0].prediction
    b = ContextStager(split).score([("d", Ep(0, x * 2.0, 1.0))])[0].prediction
    c = ContextStager(split).score([("d", Ep(0, x, 1.0))])[0].prediction
    np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-6)
    assert not np.allclose(a.probabilities, c.probabilities, atol=1e-4)


def test_context_lookahead_past_the_model_is_a_usage_error(stagers) -> None:
    """A lookahead the model's context cannot give is a UsageError naming --lookahead and
    the model's limit (exit 2 at the command line), not a traceback."""
    from sleepstream.errors import UsageError

    _, split = stagers
    for k in (20, 99999999999, -1):
        with pytest.raises(UsageError, match=rf"--lookahead {k}: .* at most 19 epochs ahead"):
            ContextStager(split, lookahead=k)
    assert ContextStager(split, lookahead=19).lookahead == 19
