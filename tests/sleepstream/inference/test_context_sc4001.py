"""The whole SC4001 night: the split context stager equals today's window path to 1e-5."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from sleepstream.inference import ContextStager, load_stager


@dataclass(frozen=True)
class Ep:
    """The scored epoch of a window-carrying DSP epoch, as the new Epoch will carry it."""

    index: int
    samples: np.ndarray
    input_scale: float
    quality: tuple[str, ...]
    unscored_reasons: tuple[str, ...]


@pytest.fixture(scope="module")
def sc4001_epochs(sc4001_dir: Path) -> list:
    """Every epoch of the whole night (Fpz-Cz, 2650 epochs) from the DSP epoch buffer in
    30-s chunks, each with today's 20-epoch zero-padded window."""
    from sleepstream.dsp.epochs import EpochBuffer, EpochConfig
    from sleepstream.io import read_edf

    x = read_edf(sc4001_dir / "SC4001E0-PSG.edf", "EEG Fpz-Cz").signal
    buf = EpochBuffer(100.0, EpochConfig(seq_len=20))
    out = []
    for a in range(0, x.size, 3000):
        seg = x[a : a + 3000]
        out += buf.push(seg, np.arange(a, a + seg.size) / 100.0, 0.0)
    return out + buf.flush()


def test_context_sc4001_split_equals_window_path(tiny_pair, sc4001_epochs) -> None:
    """One checkpoint, exported as a window graph and as split graphs: the window path
    (Stager.predict on each epoch's window) and the split context stager (one encoder
    call per epoch, a ring per device) agree to 1e-5 on every epoch of the night, causal
    and with lookahead 2, fed in uneven batches."""
    window, split = (load_stager(p) for p in tiny_pair)
    eps = sc4001_epochs
    assert len(eps) == 2650 and [e.index for e in eps] == list(range(2650))
    ref, ref_rev = [], []
    for a in range(0, len(eps), 200):  # today's path, in slices that bound the memory
        ref += window.predict(eps[a : a + 200])
        ref_rev += window.predict(eps[a : a + 200], lookahead=2)
    ctx = ContextStager(split, lookahead=2)
    got, rev = [], {}
    rng = np.random.default_rng(0)
    i = 0
    while i < len(eps):
        m = int(rng.integers(1, 40))
        items = [
            ("sc4001", Ep(e.index, e.window[-1], 1.0, e.quality, e.unscored_reasons))
            for e in eps[i : i + m]
        ]
        for sc in ctx.score(items):
            got.append(sc.prediction)
            if sc.revised is not None:
                rev[sc.revised.epoch_index] = sc.revised
        i += m
    assert [p.epoch_index for p in got] == [p.epoch_index for p in ref]
    assert [p.stage for p in got] == [p.stage for p in ref]
    p_got = np.stack([p.probabilities for p in got])
    p_ref = np.stack([p.probabilities for p in ref])
    assert np.abs(p_got - p_ref).max() < 1e-5
    want = {p.epoch_index: p for p in ref_rev[2:] if p.stage >= 0}
    assert sorted(rev) == sorted(want)
    assert max(np.abs(rev[k].probabilities - want[k].probabilities).max() for k in want) < 1e-5
