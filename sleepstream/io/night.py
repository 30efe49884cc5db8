"""Value objects for a scored recording.

A :class:`Hypnogram` is a sequence of 30-s AASM stage codes; a :class:`Night` is one
EEG channel in µV plus its hypnogram, aligned on the same 30-s grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sleepstream.types import EPOCH_SECONDS, STAGE_NAMES, UNSCORED


@dataclass(frozen=True)
class Hypnogram:
    """30-s stage codes (0..4 = W, N1, N2, N3, REM; -1 = unscored).

    Attributes
    ----------
    stages : ndarray, shape (n_epochs,), int8
    onsets : ndarray, shape (n_epochs,), float64
        Epoch onsets in seconds from the recording start.
    source : str
        File the hypnogram came from.
    """

    stages: np.ndarray
    onsets: np.ndarray
    source: str = ""

    def __len__(self) -> int:
        return int(self.stages.shape[0])

    def stage_counts(self) -> dict[str, int]:
        """Scored epochs per stage name (unscored epochs are not counted)."""
        return {name: int(np.sum(self.stages == k)) for k, name in enumerate(STAGE_NAMES)}


@dataclass(frozen=True)
class Night:
    """One EEG channel of one recording with its 30-s hypnogram.

    Attributes
    ----------
    signal : ndarray, shape (n_samples,), float32
        The channel in µV.
    fs : float
        Sampling rate in Hz.
    channel : str
        Channel or derivation name, e.g. ``"EEG Fpz-Cz"``.
    hypnogram : Hypnogram
        Stages on a 30-s grid; ``hypnogram.onsets`` are seconds from ``signal[0]``.
    meta : dict
        Source metadata: ``path``, ``start`` (ISO-8601), ``dataset``, ``subject``, ...
    """

    signal: np.ndarray
    fs: float
    channel: str
    hypnogram: Hypnogram
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_epochs(self) -> int:
        return len(self.hypnogram)

    @property
    def stages(self) -> np.ndarray:
        return self.hypnogram.stages

    def epochs(self) -> np.ndarray:
        """The signal cut on the hypnogram grid.

        Returns
        -------
        ndarray, shape (n_epochs, round(30 * fs)), float32, µV
        """
        n = int(round(EPOCH_SECONDS * self.fs))
        starts = np.round(self.hypnogram.onsets * self.fs).astype(np.int64)
        if starts.size and starts[-1] + n > self.signal.shape[0]:
            raise ValueError(
                f"{self.meta.get('path', self.channel)}: hypnogram runs past the signal"
            )
        idx = starts[:, None] + np.arange(n)[None, :]
        out: np.ndarray = self.signal[idx].astype(np.float32, copy=False)
        return out

    def scored(self) -> tuple[np.ndarray, np.ndarray]:
        """Epochs and labels with unscored epochs dropped.

        Returns
        -------
        x : ndarray, shape (n_scored, 30 * fs), float32, µV
        y : ndarray, shape (n_scored,), int64
        """
        keep = self.stages != UNSCORED
        return self.epochs()[keep], self.stages[keep].astype(np.int64)
