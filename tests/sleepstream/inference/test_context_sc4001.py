"""The whole SC4001 night: the split context stager equals the window path to 1e-5."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sleepstream.inference import ContextStager, load_stager, softmax


@pytest.fixture(scope="module")
def sc4001_epochs(sc4001_dir: Path) -> list:
    """Every epoch of the whole night (Fpz-Cz, 2650 epochs) from the DSP epoch buffer in
    30-s chunks."""
    from sleepstream.dsp.epochs import EpochBuffer
    from sleepstream.io import read_edf

    x = read_edf(sc4001_dir / "SC4001E0-PSG.edf", "EEG Fpz-Cz").signal
    buf = EpochBuffer(100.0)
    out = []
    for a in range(0, x.size, 3000):
        seg = x[a : a + 3000]
        out += buf.push(seg, np.arange(a, a + seg.size) / 100.0, 0.0)
    return out + buf.flush()


def _window_path(window, eps: list, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The pre-split path: each epoch's 20-epoch window (zeros before the first epoch)
    through the window graph; probabilities of the last row and of row -1-k."""
    s = window.seq_len
    x = np.concatenate([np.zeros((s - 1, 3000), np.float32), np.stack([e.samples for e in eps])])
    causal, revised = [], []
    for a in range(0, len(eps), 200):  # slices bound the memory (200 windows = 48 MB)
        wins = np.stack([x[i : i + s] for i in range(a, min(a + 200, len(eps)))])
        p = softmax(window.logits(wins))
        causal.append(p[:, -1])
        revised.append(p[:, -1 - k])
    return np.concatenate(causal), np.concatenate(revised)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["split", "window"])
def test_context_sc4001_equals_window_path(tiny_pair, sc4001_epochs, mode: str) -> None:
    """One checkpoint exported as a window graph and as split graphs: the context stager
    (one encoder call per epoch and a ring per device, or a ring of epochs in window mode)
    equals the window path on every epoch of the night to 1e-5, causal and with
    lookahead 2, fed in uneven batches."""
    window, split = (load_stager(p) for p in tiny_pair)
    eps = sc4001_epochs
    assert len(eps) == 2650 and [e.index for e in eps] == list(range(2650))
    ref, ref_rev = _window_path(window, eps, 2)
    ctx = ContextStager(split if mode == "split" else window, lookahead=2)
    got, rev = [], {}
    rng = np.random.default_rng(0)
    i = 0
    while i < len(eps):
        m = int(rng.integers(1, 40))
        for sc in ctx.score([("sc4001", e) for e in eps[i : i + m]]):
            got.append(sc.prediction)
            if sc.revised is not None:
                rev[sc.revised.epoch_index] = sc.revised.probabilities
        i += m
    scorable = np.array([e.scorable for e in eps])
    assert [p.epoch_index for p in got] == list(range(2650))
    assert [p.stage >= 0 for p in got] == scorable.tolist()
    p_got = np.stack([p.probabilities for p in got])
    assert np.abs(p_got[scorable] - ref[scorable]).max() < 1e-5
    want = [t - 2 for t in range(2, 2650) if scorable[t - 2]]
    assert sorted(rev) == want
    assert max(np.abs(rev[k] - ref_rev[k + 2]).max() for k in want) < 1e-5
