"""Training data: recordings, sequence windows, splits, augmentation, assembled nights.

Everything here is numpy; :mod:`distill.train` turns batches into tensors.

Shapes and units
----------------
- A :class:`Recording` holds one night as a flat signal per derivation, ``(n_epochs *
  3000,)`` float32 in µV at 100 Hz, and one label per 30-s epoch (``-1`` = unscored).
- A window is ``seq`` consecutive epochs: ``x (N, seq, 1, 3000)`` float32 µV and
  ``y (N, seq)`` int64. Positions that are unscored, before the night starts (zero-padded
  history) or outside the allowed split get the label ``-1`` and are masked out of the loss.
- Causal windows end on the scored epoch (position ``seq - 1``, what the daemon sees);
  offline windows are centred on it (position ``seq // 2``).

Splits (:class:`Fold`) hold one boolean mask per recording for train, validation and test.
``within-night-blocks`` cuts one night into ``k`` contiguous blocks and leaves a guard gap of
``seq`` epochs between training epochs and held-out blocks, so no training window contains a
held-out epoch. It is optimistic (same night, same subject) and every report says so.

Hypnogram-assembled nights
--------------------------
Only one night (SC4001, 841 epochs) has EEG, but the stage *order* of all 39 Sleep-EDF-20
nights is known (42,308 epochs). :class:`AssembledNights` builds synthetic windows whose
stage sequence is a real stretch of one of those hypnograms, filling each position with a
random real SC4001 training epoch of that stage (one derivation per window). The sequence
model thus sees real transition statistics far beyond one night; the epochs themselves are
still only SC4001's. The hypnogram of the night under test (``SC4001``) is excluded by
default, so its stage order cannot leak into training.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from sleepstream.errors import UsageError
from sleepstream.types import EPOCH_SAMPLES, N_STAGES, UNSCORED

#: Derivations of SC4001 used for channel-swap augmentation.
SC4001_CHANNELS: tuple[str, ...] = ("EEG Fpz-Cz", "EEG Pz-Oz")

CAUSAL = "causal"
OFFLINE = "offline"
MODES = (CAUSAL, OFFLINE)


def score_position(seq: int, mode: str) -> int:
    """Index of the scored epoch inside a window: ``seq - 1`` (causal) or ``seq // 2``."""
    if mode == CAUSAL:
        return seq - 1
    if mode == OFFLINE:
        return seq // 2
    raise UsageError(f"mode {mode!r}: expected one of {', '.join(MODES)}")


# ----------------------------------------------------------------------------- recordings
@dataclass(frozen=True)
class Recording:
    """One night: flat signals per derivation and 30-s labels.

    Attributes
    ----------
    name : str
        Night identifier, e.g. ``"SC4001"`` or ``"excerpt3"``.
    signals : dict of str to ndarray, shape (n_epochs * 3000,), float32, µV at 100 Hz
        One entry per derivation; the first is the primary (evaluation) channel.
    labels : ndarray, shape (n_epochs,), int64
        Stage codes 0..4, ``-1`` for unscored epochs.
    dataset : str
        ``"sc4001"``, ``"dreams"``, ...
    """

    name: str
    signals: dict[str, np.ndarray]
    labels: np.ndarray
    dataset: str = ""

    @property
    def n_epochs(self) -> int:
        return int(self.labels.shape[0])

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(self.signals)

    @property
    def primary(self) -> np.ndarray:
        return next(iter(self.signals.values()))


def recording_from_nights(name: str, nights: Sequence, dataset: str = "") -> Recording:
    """Merge same-grid :class:`~sleepstream.io.night.Night` objects (one per derivation).

    Raises
    ------
    UsageError
        If the nights are not 100 Hz or their hypnograms differ.
    """
    if not nights:
        raise UsageError(f"{name}: no derivations given")
    labels = np.asarray(nights[0].stages, dtype=np.int64)
    signals: dict[str, np.ndarray] = {}
    for night in nights:
        if abs(float(night.fs) - 100.0) > 1e-6:
            raise UsageError(f"{name} {night.channel}: fs {night.fs} Hz, expected 100 Hz")
        if not np.array_equal(np.asarray(night.stages, dtype=np.int64), labels):
            raise UsageError(f"{name} {night.channel}: hypnogram differs from the first channel")
        signals[night.channel] = np.ascontiguousarray(night.epochs().reshape(-1), np.float32)
    return Recording(name=name, signals=signals, labels=labels, dataset=dataset)


def recording_from_arrays(
    name: str, x: np.ndarray | dict[str, np.ndarray], y: np.ndarray, dataset: str = ""
) -> Recording:
    """Build a :class:`Recording` from epoch arrays ``(n, 3000)`` (or a dict of them) and labels."""
    xs = x if isinstance(x, dict) else {"EEG": x}
    signals = {}
    for ch, arr in xs.items():
        arr = np.asarray(arr, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[1] != EPOCH_SAMPLES or arr.shape[0] != len(y):
            raise UsageError(f"{name} {ch}: epochs shape {arr.shape}, expected ({len(y)}, 3000)")
        signals[ch] = np.ascontiguousarray(arr.reshape(-1))
    return Recording(name, signals, np.asarray(y, dtype=np.int64), dataset)


def load_sc4001_recording(data_dir, channels: Sequence[str] = SC4001_CHANNELS) -> Recording:
    """SC4001 (trimmed, 841 epochs) with the given derivations, via ``sleepstream.io``."""
    from sleepstream.io.datasets import load_sc4001

    nights = [load_sc4001(data_dir, channel=ch) for ch in channels]
    return recording_from_nights("SC4001", nights, dataset="sc4001")


def load_dreams_recordings(data_dir) -> list[Recording]:
    """The 8 DREAMS excerpts (100 Hz, 60 epochs each) as single-derivation recordings."""
    from sleepstream.io.datasets import load_dreams

    out = []
    for i, night in enumerate(load_dreams(data_dir), start=1):
        name = str(night.meta.get("subject") or night.meta.get("name") or f"excerpt{i}")
        out.append(recording_from_nights(name, [night], dataset="dreams"))
    return out


# ------------------------------------------------------------------------------- windows
def gather_windows(
    signal: np.ndarray,
    labels: np.ndarray,
    starts: np.ndarray,
    seq: int,
    *,
    shifts: np.ndarray | None = None,
    keep: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cut windows of ``seq`` consecutive epochs from one flat signal.

    Parameters
    ----------
    signal : ndarray, shape (n_epochs * 3000,), float32, µV
    labels : ndarray, shape (n_epochs,), int
    starts : ndarray, shape (N,), int
        First epoch of each window; may be negative or run past the end (zero padding,
        label ``-1``).
    seq : int
        Epochs per window.
    shifts : ndarray, shape (N,), int, optional
        Time shift in samples applied to the signal only (labels stay on the grid).
    keep : ndarray, shape (n_epochs,), bool, optional
        Epochs that may appear; the others are zeroed and labelled ``-1``.

    Returns
    -------
    x : ndarray, shape (N, seq, 1, 3000), float32, µV
    y : ndarray, shape (N, seq), int64
    """
    n = labels.shape[0]
    starts = np.asarray(starts, dtype=np.int64)
    idx = starts[:, None] + np.arange(seq)[None, :]
    valid = (idx >= 0) & (idx < n)
    if keep is not None:
        valid &= np.asarray(keep, bool)[np.clip(idx, 0, n - 1)]
    y = np.where(valid, labels[np.clip(idx, 0, n - 1)], UNSCORED).astype(np.int64)
    off = starts * EPOCH_SAMPLES
    if shifts is not None:
        off = off + np.asarray(shifts, dtype=np.int64)
    samp = off[:, None] + np.arange(seq * EPOCH_SAMPLES)[None, :]
    ok = (samp >= 0) & (samp < signal.shape[0])
    x = np.where(ok, signal[np.clip(samp, 0, signal.shape[0] - 1)], 0.0).astype(np.float32)
    x = x.reshape(len(starts), seq, EPOCH_SAMPLES)
    if keep is not None:
        x *= valid[:, :, None]
    return x[:, :, None, :], y


def make_windows(
    rec: Recording,
    seq: int,
    mode: str = CAUSAL,
    targets: np.ndarray | None = None,
    channel: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One window per target epoch, with the target at :func:`score_position`.

    Returns ``x (N, seq, 1, 3000)`` float32 µV and ``y (N, seq)`` int64; history before the
    night start (causal) or context past either end (offline) is zero-padded, label ``-1``.
    """
    targets = np.arange(rec.n_epochs) if targets is None else np.asarray(targets, np.int64)
    signal = rec.signals[channel] if channel else rec.primary
    starts = targets - score_position(seq, mode)
    return gather_windows(signal, rec.labels, starts, seq)


# -------------------------------------------------------------------------------- splits
@dataclass(frozen=True)
class Fold:
    """Boolean epoch masks per recording name for train / validation / test."""

    name: str
    protocol: str
    train: dict[str, np.ndarray]
    val: dict[str, np.ndarray] = field(default_factory=dict)
    test: dict[str, np.ndarray] = field(default_factory=dict)

    def to_json(self) -> dict:
        """JSON-able form: masks as lists of ``[start, stop)`` runs."""

        def runs(m: dict[str, np.ndarray]) -> dict[str, list[list[int]]]:
            return {k: mask_to_runs(v) for k, v in m.items()}

        n = {k: int(v.shape[0]) for k, v in self.train.items()}
        return {
            "name": self.name,
            "protocol": self.protocol,
            "n_epochs": n,
            "train": runs(self.train),
            "val": runs(self.val),
            "test": runs(self.test),
        }

    @classmethod
    def from_json(cls, d: dict) -> Fold:
        n = d["n_epochs"]

        def masks(m: dict) -> dict[str, np.ndarray]:
            return {k: runs_to_mask(v, n[k]) for k, v in m.items()}

        return cls(d["name"], d["protocol"], masks(d["train"]), masks(d["val"]), masks(d["test"]))


def mask_to_runs(mask: np.ndarray) -> list[list[int]]:
    """``[[start, stop), ...]`` runs of True in a boolean mask."""
    m = np.concatenate([[False], np.asarray(mask, bool), [False]])
    edges = np.flatnonzero(m[1:] != m[:-1])
    return [[int(a), int(b)] for a, b in zip(edges[::2], edges[1::2], strict=True)]


def runs_to_mask(runs: Iterable[Sequence[int]], n: int) -> np.ndarray:
    mask = np.zeros(n, bool)
    for a, b in runs:
        mask[a:b] = True
    return mask


def block_bounds(n: int, k: int) -> list[tuple[int, int]]:
    """``k`` contiguous, near-equal blocks covering ``range(n)``."""
    if k < 2 or n < k:
        raise UsageError(f"within-night-blocks: k={k} blocks for {n} epochs")
    edges = np.linspace(0, n, k + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def _guarded(n: int, blocks: Sequence[tuple[int, int]], guard: int) -> np.ndarray:
    out = np.ones(n, bool)
    for a, b in blocks:
        out[max(0, a - guard) : min(n, b + guard)] = False
    return out


def within_night_blocks(
    rec: Recording, k: int = 5, guard: int = 20, val: str = "next"
) -> list[Fold]:
    """``k`` folds over contiguous blocks of one night.

    Fold ``j`` tests on block ``j`` and validates (early stopping) on another block:
    ``val="next"`` (default) takes block ``(j + 1) % k``; ``val="neighbour"`` takes block
    ``j + 1``, or ``j - 1`` for the last block, so the training epochs form as few runs as
    possible and the two night edges (where the wake is) are never both held out. Training
    epochs are the rest, minus ``guard`` epochs on each side of the held-out blocks, so no
    training window of ``guard`` (= seq) epochs overlaps a held-out epoch.
    Optimistic: train and test come from the same night.
    """
    n = rec.n_epochs
    if k < 3:
        raise UsageError(
            f"within-night-blocks needs k >= 3 blocks (test, validation, train), got {k}"
        )
    bounds = block_bounds(n, k)
    folds = []
    for j in range(k):
        if val == "next":
            vj = (j + 1) % k
        elif val == "neighbour":
            vj = j + 1 if j + 1 < k else j - 1
        else:
            raise UsageError(f"within-night-blocks val={val!r}: valid: neighbour, next")
        t, v = bounds[j], bounds[vj]
        train = _guarded(n, [t, v], guard)
        folds.append(
            Fold(
                f"block{j}",
                "within-night-blocks",
                {rec.name: train},
                {rec.name: runs_to_mask([v], n)},
                {rec.name: runs_to_mask([t], n)},
            )
        )
    return folds


def full_night_fold(rec: Recording, k: int = 5, guard: int = 20, val_block: int = -1) -> Fold:
    """Train on a whole night except one validation block (for early stopping) and guards."""
    n = rec.n_epochs
    v = block_bounds(n, k)[val_block]
    return Fold(
        "full", "full", {rec.name: _guarded(n, [v], guard)}, {rec.name: runs_to_mask([v], n)}
    )


def nightwise_kfold(recs: Sequence[Recording], k: int, seed: int = 0) -> list[Fold]:
    """Folds by night: each night is tested once; one other night validates.

    Raises
    ------
    UsageError
        With fewer than 3 nights (train, validation and test need one each).
    """
    if len(recs) < 3:
        raise UsageError(f"nightwise-kfold needs at least 3 nights, got {len(recs)}")
    k = min(k, len(recs))
    order = np.random.default_rng(seed).permutation(len(recs))
    groups = np.array_split(order, k)
    folds = []
    for j in range(k):
        test = set(groups[j].tolist())
        val = {int(groups[(j + 1) % k][0])}
        full = {r.name: np.ones(r.n_epochs, bool) for r in recs}
        none = {r.name: np.zeros(r.n_epochs, bool) for r in recs}
        pick = lambda ids, full=full, none=none: {  # noqa: E731
            r.name: (full if i in ids else none)[r.name] for i, r in enumerate(recs)
        }
        train_ids = set(range(len(recs))) - test - val
        folds.append(Fold(f"fold{j}", "nightwise-kfold", pick(train_ids), pick(val), pick(test)))
    return folds


# --------------------------------------------------------------------------- augmentation
@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation.

    Attributes
    ----------
    amplitude : float
        Scale factor drawn log-uniformly in ``[1/amplitude, amplitude]`` per window.
    shift : int
        Time shift in samples, uniform in ``[-shift, shift]`` (signal only).
    noise : float
        Additive Gaussian noise, std = U(0, noise) × the window's std.
    channel_swap : bool
        Draw the derivation at random per window (SC4001: Fpz-Cz or Pz-Oz).
    """

    amplitude: float = 1.2
    shift: int = 300
    noise: float = 0.1
    channel_swap: bool = True

    @classmethod
    def off(cls) -> AugmentConfig:
        return cls(amplitude=1.0, shift=0, noise=0.0, channel_swap=False)


def augment_signal(x: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Amplitude scale and additive noise on ``x (N, seq, 1, 3000)`` µV (new array)."""
    n = x.shape[0]
    out = x
    if cfg.amplitude > 1.0:
        la = np.log(cfg.amplitude)
        out = out * np.exp(rng.uniform(-la, la, n)).astype(np.float32)[:, None, None, None]
    if cfg.noise > 0:
        std = out.reshape(n, -1).std(axis=1) * rng.uniform(0, cfg.noise, n)
        out = out + (rng.standard_normal(out.shape) * std[:, None, None, None]).astype(np.float32)
    return out.astype(np.float32, copy=False)


# ------------------------------------------------------------------------ class imbalance
def class_weights(labels: np.ndarray, power: float = 0.5) -> np.ndarray:
    """Inverse-frequency class weights ``(5,)`` (``freq ** -power``), mean 1 over present stages."""
    y = np.asarray(labels).ravel()
    counts = np.bincount(y[y != UNSCORED], minlength=N_STAGES).astype(np.float64)
    w = np.where(counts > 0, np.maximum(counts, 1) ** -power, 0.0)
    return (w / w[counts > 0].mean()).astype(np.float32)


def sample_weights(y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per-window sampling weight ``(N,)``: mean class weight of the scored positions."""
    y = np.atleast_2d(y)
    w = np.where(y >= 0, weights[np.clip(y, 0, None)], 0.0)
    cnt = (y >= 0).sum(axis=1)
    return np.where(cnt > 0, w.sum(axis=1) / np.maximum(cnt, 1), 0.0)


# ------------------------------------------------------------------ assembled nights
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
    pools : dict of str to ndarray, shape (n_pool, 3000), float32, µV
        Training epochs per derivation (same rows in every derivation).
    pool_labels : ndarray, shape (n_pool,), int
        Stage of each pool epoch.
    """

    stage_sequences: list
    pools: dict[str, np.ndarray]
    pool_labels: np.ndarray

    @classmethod
    def from_recordings(
        cls, stage_sequences: list, recs: Sequence[Recording], masks: Sequence[np.ndarray]
    ) -> AssembledNights:
        """Pools of scored training epochs from ``recs`` (channels common to all of them)."""
        chans = [c for c in recs[0].channels if all(c in r.signals for r in recs)]
        if not chans:
            raise UsageError("assembled nights: the recordings share no derivation")
        keeps = [np.asarray(m, bool) & (r.labels >= 0) for r, m in zip(recs, masks, strict=True)]
        pools = {
            ch: np.concatenate(
                [
                    r.signals[ch].reshape(-1, EPOCH_SAMPLES)[k]
                    for r, k in zip(recs, keeps, strict=True)
                ]
            )
            for ch in chans
        }
        labels = np.concatenate([r.labels[k] for r, k in zip(recs, keeps, strict=True)])
        return cls(list(stage_sequences), pools, labels)

    def sample(
        self, n: int, seq: int, rng: np.random.Generator, channel_swap: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """``n`` windows: ``x (n, seq, 1, 3000)`` float32 µV, ``y (n, seq)`` int64.

        Positions whose stage is unscored or missing from the pool are zeros with label -1.
        """
        by_stage = [np.flatnonzero(self.pool_labels == s) for s in range(N_STAGES)]
        seqs = [s for s in self.stage_sequences if len(s) >= seq]
        if not seqs:
            raise UsageError(f"no hypnogram has {seq} epochs")
        chans = list(self.pools)
        x = np.zeros((n, seq, 1, EPOCH_SAMPLES), np.float32)
        y = np.full((n, seq), UNSCORED, np.int64)
        for i in range(n):
            stages = seqs[int(rng.integers(len(seqs)))]
            a = int(rng.integers(len(stages) - seq + 1))
            pool = self.pools[chans[int(rng.integers(len(chans)))] if channel_swap else chans[0]]
            for p, s in enumerate(stages[a : a + seq]):
                if s < 0 or by_stage[s].size == 0:
                    continue
                x[i, p, 0] = pool[by_stage[s][int(rng.integers(by_stage[s].size))]]
                y[i, p] = s
        return x, y


# ------------------------------------------------------------------------ training sets
@dataclass(frozen=True)
class TrainSet:
    """Training windows for one pass: real windows inside the train masks plus assembled ones.

    Parameters
    ----------
    recs : list of Recording
    masks : list of ndarray (n_epochs,), bool
        Training epochs per recording; windows never show other epochs.
    seq : int
        Epochs per window (1 for epoch-encoder pre-training).
    stride : int
        Epochs between consecutive window starts inside a contiguous training run (a
        random offset is drawn every pass).
    assembled : AssembledNights, optional
    assembled_ratio : float
        Assembled windows per real window.
    """

    recs: list
    masks: list
    seq: int
    stride: int = 0
    assembled: AssembledNights | None = None
    assembled_ratio: float = 0.0

    def plan(self, rng: np.random.Generator, weights: np.ndarray | None = None) -> np.ndarray:
        """Items for one pass, shape (M, 2) ``(recording index or -1 = assembled, start)``.

        With ``weights`` (per-class, see :func:`class_weights`) the real windows are drawn
        with replacement in proportion to :func:`sample_weights` (weighted sampler).
        """
        stride = self.stride or self.seq
        items = []
        for r, (rec, mask) in enumerate(zip(self.recs, self.masks, strict=True)):
            for a, b in mask_to_runs(np.asarray(mask, bool) & (rec.labels >= 0)):
                span = b - a - self.seq + 1
                if span <= 0:
                    items.append((r, a))
                    continue
                off = int(rng.integers(min(stride, span)))
                items += [(r, s) for s in range(a + off, b - self.seq + 1, stride)]
        real = np.asarray(items, dtype=np.int64).reshape(-1, 2)
        if weights is not None and len(real):
            ys = np.stack([self._labels(int(r), int(s)) for r, s in real])
            p = sample_weights(ys, weights)
            real = real[rng.choice(len(real), size=len(real), replace=True, p=p / p.sum())]
        n_asm = int(round(self.assembled_ratio * len(real))) if self.assembled else 0
        asm = np.stack([np.full(n_asm, -1), np.zeros(n_asm, np.int64)], axis=1)
        allitems = np.concatenate([real, asm.astype(np.int64)])
        return allitems[rng.permutation(len(allitems))]

    def _labels(self, r: int, s: int) -> np.ndarray:
        rec = self.recs[r]
        idx = s + np.arange(self.seq)
        ok = (idx >= 0) & (idx < rec.n_epochs)
        idx = np.clip(idx, 0, rec.n_epochs - 1)
        return np.where(ok & self.masks[r][idx], rec.labels[idx], UNSCORED)

    def batch(
        self, items: np.ndarray, rng: np.random.Generator, augment: AugmentConfig
    ) -> tuple[np.ndarray, np.ndarray]:
        """Windows for ``items``: ``x (B, seq, 1, 3000)`` float32 µV, ``y (B, seq)`` int64."""
        xs, ys = [], []
        n_asm = int((items[:, 0] < 0).sum())
        for r, s in items[items[:, 0] >= 0]:
            rec = self.recs[int(r)]
            chans = rec.channels
            ch = chans[int(rng.integers(len(chans)))] if augment.channel_swap else chans[0]
            shift = rng.integers(-augment.shift, augment.shift + 1, 1) if augment.shift else None
            x, y = gather_windows(
                rec.signals[ch],
                rec.labels,
                np.array([s]),
                self.seq,
                shifts=shift,
                keep=self.masks[int(r)],
            )
            xs.append(x)
            ys.append(y)
        if n_asm:
            x, y = self.assembled.sample(n_asm, self.seq, rng, augment.channel_swap)
            xs.append(x)
            ys.append(y)
        x, y = np.concatenate(xs), np.concatenate(ys)
        return augment_signal(x, augment, rng), y

    def labels(self) -> np.ndarray:
        """All scored training labels (for class weights)."""
        return np.concatenate(
            [
                rec.labels[np.asarray(m, bool) & (rec.labels >= 0)]
                for rec, m in zip(self.recs, self.masks, strict=True)
            ]
        )
