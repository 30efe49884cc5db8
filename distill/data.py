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

Splits into train / validation / test (:class:`distill.folds.Fold`) are in
:mod:`distill.folds`.

Training windows (what one pass shows, augmentation, normalisation along nights,
hypnogram-assembled windows) are in :mod:`distill.trainset`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
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
