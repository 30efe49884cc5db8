"""Per-epoch signal-quality flags, the unscorable verdict and a confidence factor.

Flags (evidence) and reasons (verdict) are separate.  A profile's
``QualityThresholds`` maps with :meth:`QualityConfig.from_thresholds`.

========================  ==================================================  ===========
flag                      raised when (defaults of :class:`QualityConfig`)    unscorable
========================  ==================================================  ===========
``gap``                   any sample of the epoch was missing and filled      > 10 %
``nonfinite``             any NaN/inf sample (replaced before filtering)      > 10 %
``electrode_off``         the board reported lead-off on any sample           > 10 %
``flat``                  std of the model input < 0.5 µV                     always
``clipping``              >= 1 % of samples at/over ``clip_uv`` (if set) or   no
                          in runs (>= 3) of the epoch's repeated max/min
``amplitude``             max |model input| > 500 µV                          no
``line_noise``            50/60-Hz power > 0.5 x the 0.3-35 Hz power, raw     no
                          signal before the notch (needs fs > 2 x (f + 2))
``time_backwards``        samples dropped because timestamps went backwards   no
``clock_reset``           the stream clock jumped and the grid re-anchored    no
========================  ==================================================  ===========

A scorable epoch with flags gets its confidence multiplied by
:func:`confidence_factor`.  ``flat`` is judged only when at least half of the epoch
is real (otherwise the epoch is already unscored for ``gap`` or ``nonfinite``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sleepstream.profiles import QualityThresholds

#: Canonical order of the flags in ``Epoch.quality``.
FLAG_ORDER: tuple[str, ...] = (
    "gap",
    "nonfinite",
    "electrode_off",
    "flat",
    "clipping",
    "amplitude",
    "line_noise",
    "time_backwards",
    "clock_reset",
)

DEFAULT_CONFIDENCE_FACTORS: tuple[tuple[str, float], ...] = (
    ("gap", 0.9),
    ("nonfinite", 0.8),
    ("electrode_off", 0.7),
    ("clipping", 0.7),
    ("amplitude", 0.7),
    ("line_noise", 0.85),
    ("time_backwards", 0.95),
    ("clock_reset", 0.95),
)


@dataclass(frozen=True)
class QualityConfig:
    """Quality thresholds (µV, fractions of the epoch's samples, Hz).

    Attributes
    ----------
    gap_max_fraction, nonfinite_max_fraction, electrode_off_max_fraction : float
        Above these fractions the epoch is unscored for ``gap`` / ``nonfinite`` /
        ``electrode_off``; any non-zero fraction still raises the flag.
    flat_std_uv : float
        ``flat`` when the std of the epoch's model input is below this.
    clip_uv : float or None
        Saturation bound of the raw signal in µV (absolute); None = unknown.
    clip_run : int
        Minimum run of identical extreme samples counted as clipping.
    clip_fraction : float
        Fraction of clipped samples that raises ``clipping``.
    amplitude_uv : float
        Physiological bound of |model input|.
    line_hz : float or None
        Mains frequency checked for ``line_noise``; None checks 50 and 60 Hz.
    line_ratio : float
        Line-band (±1 Hz) to 0.3-35 Hz power ratio that raises ``line_noise``.
    confidence_factors : tuple of (str, float)
        Multiplier of the model confidence per flag of a scorable epoch.
    """

    gap_max_fraction: float = 0.1
    nonfinite_max_fraction: float = 0.1
    electrode_off_max_fraction: float = 0.1
    flat_std_uv: float = 0.5
    clip_uv: float | None = None
    clip_run: int = 3
    clip_fraction: float = 0.01
    amplitude_uv: float = 500.0
    line_hz: float | None = None
    line_ratio: float = 0.5
    confidence_factors: tuple[tuple[str, float], ...] = DEFAULT_CONFIDENCE_FACTORS

    @classmethod
    def from_thresholds(
        cls, thresholds: QualityThresholds, *, line_hz: float | None = None
    ) -> QualityConfig:
        """The config of a profile's ``[quality]`` table (every key maps; none is dropped).

        ``line_hz`` is the profile's mains frequency (``notch_hz``; None checks 50 and 60).
        """
        t = thresholds
        return cls(
            gap_max_fraction=t.max_gap_fraction,
            nonfinite_max_fraction=t.max_nonfinite_fraction,
            electrode_off_max_fraction=t.max_electrode_off_fraction,
            flat_std_uv=t.flat_std_uv,
            clip_uv=t.clip_uv,
            clip_fraction=t.clip_fraction,
            amplitude_uv=t.amplitude_uv,
            line_hz=line_hz,
            line_ratio=t.line_noise_ratio,
        )


def confidence_factor(
    flags: tuple[str, ...] | list[str], config: QualityConfig | None = None
) -> float:
    """Multiplier in (0, 1] for the confidence of a scorable epoch carrying ``flags``."""
    table = dict((config or QualityConfig()).confidence_factors)
    out = 1.0
    for f in set(flags):
        out *= table.get(f, 1.0)
    return out


@dataclass(frozen=True)
class RawStats:
    """Counts gathered on one epoch of the input-rate signal (before filtering)."""

    n: int
    n_filled: int
    n_nonfinite: int
    n_electrode_off: int
    clipped_fraction: float
    line_ratio: float
    n_dropped: int
    clock_reset: bool
    received_at: float


class RawEpochTracker:
    """Accumulates the raw (montaged, µV, NaN-guarded) input per epoch and closes stats.

    Parameters
    ----------
    fs : float
        Input rate, Hz.  Epoch ``r`` covers placed samples
        ``[floor(r * epoch_s * fs), floor((r + 1) * epoch_s * fs))``.
    config : QualityConfig
    epoch_s : float
    """

    def __init__(self, fs: float, config: QualityConfig, epoch_s: float = 30.0) -> None:
        self.fs = float(fs)
        self.config = config
        self.epoch_s = float(epoch_s)
        self.r = 0
        self.n = 0
        self._reset_acc()

    def bound(self, r: int) -> int:
        """First placed-sample index of relative epoch ``r``."""
        return math.floor(r * self.epoch_s * self.fs + 1e-6)

    def _reset_acc(self) -> None:
        self._vals: list[np.ndarray] = []
        self._bad: list[np.ndarray] = []
        self._filled = self._nonfinite = self._eoff = self._clip = self._dropped = 0
        self._clock = False

    def note_drop(self, k: int) -> None:
        """``k`` input samples were dropped (backward timestamps) in the current epoch."""
        self._dropped += int(k)

    def note_clock_reset(self) -> None:
        """The stream clock was re-anchored in the current epoch."""
        self._clock = True

    def add(
        self,
        values: np.ndarray,
        filled: np.ndarray,
        nonfinite: np.ndarray,
        eoff: np.ndarray | None,
        clipped: np.ndarray | None,
        received_at: float,
    ) -> list[tuple[int, RawStats]]:
        """Add placed samples; return ``(relative epoch, stats)`` of epochs completed."""
        out: list[tuple[int, RawStats]] = []
        i, m = 0, values.size
        while i < m:
            end = self.bound(self.r + 1)
            j = min(m, i + end - self.n)
            sl = slice(i, j)
            self._vals.append(values[sl])
            bad = filled[sl] | nonfinite[sl]
            self._bad.append(bad)
            self._filled += int(np.count_nonzero(filled[sl]))
            self._nonfinite += int(np.count_nonzero(nonfinite[sl]))
            if eoff is not None:
                self._eoff += int(np.count_nonzero(eoff[sl]))
            if clipped is not None:
                self._clip += int(np.count_nonzero(clipped[sl]))
            self.n += j - i
            i = j
            if self.n == end:
                out.append((self.r, self._close(received_at)))
                self.r += 1
        return out

    def _close(self, received_at: float) -> RawStats:
        v = np.concatenate(self._vals) if self._vals else np.zeros(0)
        bad = np.concatenate(self._bad) if self._bad else np.zeros(0, dtype=bool)
        n = max(1, v.size)
        # Mostly-invalid epochs are unscored anyway: skip the spectral and run checks
        # (keeps a long gap cheap to fill).
        mostly_bad = np.count_nonzero(bad) * 2 >= v.size
        clip_runs = (
            0
            if mostly_bad
            else _extreme_runs(v, ~bad, self.config.clip_run, self.config.flat_std_uv)
        )
        stats = RawStats(
            n=v.size,
            n_filled=self._filled,
            n_nonfinite=self._nonfinite,
            n_electrode_off=self._eoff,
            clipped_fraction=max(self._clip, clip_runs) / n,
            line_ratio=0.0 if mostly_bad else _line_ratio(v, self.fs, self.config.line_hz),
            n_dropped=self._dropped,
            clock_reset=self._clock,
            received_at=received_at,
        )
        self._reset_acc()
        return stats


def _extreme_runs(v: np.ndarray, valid: np.ndarray, min_run: int, flat_uv: float) -> int:
    """Samples in runs of >= ``min_run`` identical values at the epoch's max or min."""
    if v.size == 0 or not valid.any():
        return 0
    vv = v[valid]
    lo, hi = float(vv.min()), float(vv.max())
    if hi - lo <= flat_uv:
        return 0  # a flat line is ``flat``, not clipping
    total = 0
    for ext in (lo, hi):
        hit = valid & (v == ext)
        if hit.sum() < min_run:
            continue
        edges = np.diff(np.concatenate([[0], hit.astype(np.int8), [0]]))
        starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        lengths = stops - starts
        total += int(lengths[lengths >= min_run].sum())
    return total


def _line_ratio(v: np.ndarray, fs: float, line_hz: float | None) -> float:
    """Max over the checked mains frequencies of line-band / 0.3-35 Hz power; 0 if unmeasurable."""
    candidates = (50.0, 60.0) if line_hz is None else (float(line_hz),)
    freqs = tuple(f for f in candidates if fs > 2 * (f + 2))
    seg = int(2 * fs)  # 2-s Hann segments, no overlap: 0.5-Hz bins
    n_seg = v.size // seg
    if not freqs or n_seg == 0:
        return 0.0
    x = v[: n_seg * seg].reshape(n_seg, seg)
    x = (x - x.mean(axis=1, keepdims=True)) * np.hanning(seg)
    p = np.mean(np.abs(np.fft.rfft(x, axis=1)) ** 2, axis=0)
    f = np.fft.rfftfreq(seg, 1.0 / fs)
    eeg = float(p[(f >= 0.3) & (f <= 35.0)].sum())
    ratios = [float(p[np.abs(f - f0) <= 1.0].sum()) / eeg if eeg > 0 else 0.0 for f0 in freqs]
    return max(ratios)


def assess(
    stats: RawStats, data: np.ndarray, config: QualityConfig
) -> tuple[tuple[str, ...], tuple[str, ...], float]:
    """Flags, unscored reasons and gap fraction of one epoch.

    Parameters
    ----------
    stats : RawStats
        The epoch's input-rate counts.
    data : ndarray, shape (3000,)
        The epoch's model input, µV at 100 Hz.
    config : QualityConfig

    Returns
    -------
    flags, reasons : tuple of str
        In :data:`FLAG_ORDER`.
    gap_fraction : float
    """
    n = max(1, stats.n)
    gap = stats.n_filled / n
    nonfinite = stats.n_nonfinite / n
    eoff = stats.n_electrode_off / n
    flags: set[str] = set()
    reasons: set[str] = set()
    for name, frac, limit in (
        ("gap", gap, config.gap_max_fraction),
        ("nonfinite", nonfinite, config.nonfinite_max_fraction),
        ("electrode_off", eoff, config.electrode_off_max_fraction),
    ):
        if frac > 0:
            flags.add(name)
            if frac > limit:
                reasons.add(name)
    if gap + nonfinite < 0.5 and float(np.std(data)) < config.flat_std_uv:
        flags.add("flat")
        reasons.add("flat")
    if stats.clipped_fraction >= config.clip_fraction:
        flags.add("clipping")
    if data.size and float(np.max(np.abs(data))) > config.amplitude_uv:
        flags.add("amplitude")
    if stats.line_ratio > config.line_ratio:
        flags.add("line_noise")
    if stats.n_dropped:
        flags.add("time_backwards")
    if stats.clock_reset:
        flags.add("clock_reset")
    order = {f: i for i, f in enumerate(FLAG_ORDER)}
    return (
        tuple(sorted(flags, key=order.__getitem__)),
        tuple(sorted(reasons, key=order.__getitem__)),
        float(gap),
    )
