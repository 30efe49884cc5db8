"""Hypnogram-assembled nights: synthetic training windows that follow real stage orders.

Only one night (SC4001, 841 epochs) has EEG, but the stage *order* of all 39 Sleep-EDF-20
nights is known (42,308 epochs). :class:`AssembledNights` builds synthetic windows whose
stage sequence is a real stretch of one of those hypnograms, filling each position with a
random real training epoch of that stage (one derivation per window). The hypnogram of
the night under test (``SC4001``) is excluded by default, so its stage order cannot leak.
:class:`distill.trainset.TrainSet` mixes them into each pass's plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from distill.data import Recording
from sleepstream.errors import UsageError
from sleepstream.types import EPOCH_SAMPLES, N_STAGES, UNSCORED

if TYPE_CHECKING:
    from distill.trainset import PassView


def trimmed_stage_sequences(hypnograms: Sequence, exclude: Sequence[str] = ("SC4001",)) -> list:
    """Stage arrays of the given hypnograms, dropping those whose source names ``exclude``."""
    out = []
    for h in hypnograms:
        src = str(getattr(h, "source", ""))
        if any(e in src for e in exclude):
            continue
        out.append(np.asarray(h.stages, dtype=np.int64))
    return out


@dataclass(frozen=True)
class AssembledNights:
    """Synthetic windows that follow real hypnograms, filled with real training epochs.

    Parameters
    ----------
    stage_sequences : list of ndarray (n_i,), int
        Real 30-s stage sequences (e.g. the trimmed Sleep-EDF-20 hypnograms).
    pools : dict of str to ndarray (n_pool, 3000) or PoolRows, float32, µV
        Training epochs per derivation (same rows in every derivation), indexed by row.
    pool_labels : ndarray, shape (n_pool,), int
        Stage of each pool epoch.
    pool_index : ndarray, shape (n_pool, 2), int, optional
        ``(recording index, epoch)`` of each pool row (for per-pass views).
    """

    stage_sequences: list
    pools: dict[str, np.ndarray]
    pool_labels: np.ndarray
    pool_index: np.ndarray | None = None

    @classmethod
    def from_recordings(
        cls, stage_sequences: list, recs: Sequence[Recording], masks: Sequence[np.ndarray]
    ) -> AssembledNights:
        """Pools of scored training epochs from ``recs`` (channels common to the recordings
        that have training epochs; recordings without any are left out)."""
        used = [i for i, m in enumerate(masks) if np.asarray(m, bool).any()] or [0]
        chans = [c for c in recs[used[0]].channels if all(c in recs[i].signals for i in used)]
        if not chans:
            raise UsageError("assembled nights: the recordings share no derivation")
        keeps = {i: np.asarray(masks[i], bool) & (recs[i].labels >= 0) for i in used}
        index = np.concatenate(
            [np.stack([np.full(int(keeps[i].sum()), i), np.flatnonzero(keeps[i])], 1) for i in used]
        ).astype(np.int64)
        signals = [r.signals for r in recs]
        pools = {ch: PoolRows(signals, index, ch) for ch in chans}
        labels = np.concatenate([recs[i].labels[keeps[i]] for i in used])
        return cls(list(stage_sequences), pools, labels, index)

    def pass_pools(self, views: Sequence[PassView]) -> dict[str, PoolRows]:
        """The pools as one pass shows them: rows of the pass's (augmented) signals,
        multiplied by the pass's normalisation factors."""
        if self.pool_index is None:
            raise UsageError("assembled nights: no pool index; build with from_recordings")
        signals = [v.signals for v in views]
        scales = [v.scales for v in views] if views[0].scales is not None else None
        return {ch: PoolRows(signals, self.pool_index, ch, scales) for ch in self.pools}

    def sample(
        self,
        n: int,
        seq: int,
        rng: np.random.Generator,
        channel_swap: bool = True,
        pools: dict[str, Any] | None = None,
        others: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """``n`` windows: ``x (n, seq, 1, 3000)`` float32, ``y (n, seq)`` int64, and (with
        ``others``) the same windows in every other derivation, ``{name: (n, seq, 1, 3000)}``.

        Positions whose stage is unscored or missing from the pool are zeros with label -1.
        ``pools`` replaces :attr:`pools` (see :meth:`pass_pools`).
        """
        pools = self.pools if pools is None else pools
        by_stage = [np.flatnonzero(self.pool_labels == s) for s in range(N_STAGES)]
        seqs = [s for s in self.stage_sequences if len(s) >= seq]
        if not seqs:
            raise UsageError(f"no hypnogram has {seq} epochs")
        chans = list(pools)
        x = np.zeros((n, seq, 1, EPOCH_SAMPLES), np.float32)
        y = np.full((n, seq), UNSCORED, np.int64)
        rows = np.full((n, seq), -1, np.int64)
        picked = []
        for i in range(n):
            stages = seqs[int(rng.integers(len(seqs)))]
            a = int(rng.integers(len(stages) - seq + 1))
            ch = chans[int(rng.integers(len(chans)))] if channel_swap else chans[0]
            picked.append(ch)
            for p, s in enumerate(stages[a : a + seq]):
                if s < 0 or by_stage[s].size == 0:
                    continue
                rows[i, p] = by_stage[s][int(rng.integers(by_stage[s].size))]
                x[i, p, 0] = pools[ch][rows[i, p]]
                y[i, p] = s
        extra: dict[str, np.ndarray] = {}
        if others:
            for k, ch in enumerate(chans[1:] if len(chans) > 1 else []):
                name = f"other{k}"
                extra[name] = np.zeros_like(x)
                for i in range(n):
                    alt = ch if picked[i] != ch else chans[0]
                    for p in np.flatnonzero(rows[i] >= 0):
                        extra[name][i, p, 0] = pools[alt][rows[i, p]]
        return x, y, extra


class PoolRows:
    """Pool row ``k`` = epoch ``index[k, 1]`` of recording ``index[k, 0]``, derivation
    ``ch``, read on access (nothing copied: memory-mapped nights stay on disk), times
    the epoch's normalisation factor when ``scales`` is given. Indexable like an
    ``(n_pool, 3000)`` array by one row."""

    def __init__(
        self,
        signals: Sequence[dict[str, np.ndarray]],
        index: np.ndarray,
        ch: str,
        scales: Sequence[dict[str, np.ndarray] | None] | None = None,
    ) -> None:
        self.signals, self.index, self.ch, self.scales = signals, index, ch, scales

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, k) -> np.ndarray:
        r, e = (int(v) for v in self.index[int(k)])
        row = np.asarray(self.signals[r][self.ch][e * EPOCH_SAMPLES : (e + 1) * EPOCH_SAMPLES])
        if self.scales is not None:
            return (row * self.scales[r][self.ch][e]).astype(np.float32)
        return row
