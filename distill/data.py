"""Training data: recordings, sequence windows and splits.

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

Training windows (what one pass shows, augmentation, normalisation along nights,
hypnogram-assembled windows) are in :mod:`distill.trainset`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from sleepstream.errors import UsageError
from sleepstream.types import EPOCH_SAMPLES, UNSCORED

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
    sources : tuple of (str, str)
        File name and SHA-256 of the recording file(s).
    """

    name: str
    signals: dict[str, np.ndarray]
    labels: np.ndarray
    dataset: str = ""
    #: ``((file name, sha256), ...)`` of the PSG the night came from (model cards list
    #: them so replay/report can say "this is a training recording").
    sources: tuple = ()
    #: The person (subject-wise folds keep a subject's nights together); "" = the night.
    subject: str = ""

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
    from sleepstream.io.cache import file_digest
    from sleepstream.io.datasets import SC4001_PSG, load_sc4001

    nights = [load_sc4001(data_dir, channel=ch) for ch in channels]
    rec = recording_from_nights("SC4001", nights, dataset="sc4001")
    psg = Path(data_dir) / SC4001_PSG
    return replace(rec, sources=((psg.name, file_digest(psg)),))


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


def subject_kfold(
    recs: Sequence[Recording],
    subject_of: dict[str, str],
    k: int,
    seed: int = 0,
    val_fraction: float = 0.1,
    protocol: str = "subject-kfold",
) -> list[Fold]:
    """Folds by subject: every night of a subject lands in the same fold.

    Subjects are shuffled with ``seed`` and cut into ``k`` near-equal groups; fold ``j``
    tests on group ``j`` and validates (early stopping) on ``max(1, round(val_fraction *
    n))`` of the other subjects (seeded per fold); the rest train. ``k`` equal to the
    number of subjects is leave-one-subject-out.

    Raises
    ------
    UsageError
        With fewer than 3 subjects or ``k`` outside ``[2, n_subjects]``.
    """
    subs = sorted({subject_of[r.name] for r in recs})
    if len(subs) < 3:
        raise UsageError(f"{protocol} needs at least 3 subjects, got {len(subs)}")
    if not 2 <= k <= len(subs):
        raise UsageError(f"{protocol}: --folds {k} with {len(subs)} subjects (2..{len(subs)})")
    order = [subs[i] for i in np.random.default_rng(seed).permutation(len(subs))]
    groups = np.array_split(np.arange(len(subs)), k)
    folds = []
    for j, g in enumerate(groups):
        test = {order[i] for i in g}
        rest = [s for s in order if s not in test]
        n_val = max(1, round(val_fraction * len(rest)))
        pick = np.random.default_rng([seed, j]).permutation(len(rest))[:n_val]
        val = {rest[i] for i in pick}

        def masks(which: set[str]) -> dict[str, np.ndarray]:
            return {r.name: np.full(r.n_epochs, subject_of[r.name] in which) for r in recs}

        train = set(rest) - val
        folds.append(Fold(f"fold{j}", protocol, masks(train), masks(val), masks(test)))
    return folds


def subject_holdout(recs: Sequence[Recording], val_fraction: float = 0.1, seed: int = 0) -> Fold:
    """Train on every subject but ``max(1, round(val_fraction * n))`` held out for early
    stopping (no test set: a final model, tested elsewhere, e.g. on DREAMS)."""
    subs = sorted({r.subject or r.name for r in recs})
    if len(subs) < 2:
        raise UsageError(f"a subject hold-out needs at least 2 subjects, got {len(subs)}")
    n_val = max(1, round(val_fraction * len(subs)))
    val = {subs[i] for i in np.random.default_rng(seed).permutation(len(subs))[:n_val]}
    train = {r.name: np.full(r.n_epochs, (r.subject or r.name) not in val) for r in recs}
    held = {r.name: np.full(r.n_epochs, (r.subject or r.name) in val) for r in recs}
    return Fold("full", "full", train, held)


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
