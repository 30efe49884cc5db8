"""A realistic single-channel synthetic night with known stages (numpy only).

Stage-conditioned Fpz-Cz-like EEG in µV on a 30-s grid. Each epoch is a Gaussian
background whose spectrum mixes 1/f^k power laws and band-limited rhythms
(:data:`STAGE_MIX`, fitted to the real Sleep-EDF SC4001 Fpz-Cz spectra per stage),
plus stage events:

======  ====================================================================  ==========
stage   hallmarks                                                             std (µV)
======  ====================================================================  ==========
W       alpha 8-12 Hz, beta 15-30 Hz, steep 1/f background                    ~23
N1      theta 4-7 Hz, flatter 1/f background                                  ~10
N2      sigma spindles 12-15 Hz (0.5-2 s, ~5/min), K-complexes (~2/min)       ~17
N3      high-amplitude delta 0.5-2 Hz                                         ~31
REM     low-voltage mixed frequencies, sawtooth-theta bursts 2-6 Hz           ~10
======  ====================================================================  ==========

The standard deviations follow the per-epoch medians of Sleep-EDF SC4001 Fpz-Cz
(W 22.8, N1 9.8, N2 16.6, N3 31.0, REM 9.5 µV), with ±15 % (log-normal) spread per
epoch. Rhythms are band-limited noise, so they wax and wane like real ones; consecutive
epochs are cross-faded over 1 s so there are no steps at epoch borders. A spectral
classifier fitted on the real SC4001 night stages the synthetic SC4001 night with ~93 %
accuracy (N1 mostly as REM, as in real data), see the tests.

The stage sequence comes from a real hypnogram (a Sleep-EDF ``*.hyp``-style text file:
one R&K symbol ``W 1 2 3 4 R ?`` per 30 s, separated by whitespace or ``\\r``) or from a
Markov chain with the transition rates :data:`TRANSITIONS` of the 39 Sleep-EDF-20
nights. Everything is deterministic from ``seed``; the ground truth is ``stages``.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np

from sleepstream.errors import UsageError
from sleepstream.sources.edf_replay import Paced, parse_speed
from sleepstream.sources.stage_sequences import (
    TRANSITIONS,
    estimate_transitions,
    markov_stages,
    read_hypnogram_text,
    trim_wake,
)
from sleepstream.types import EPOCH_SECONDS, UNSCORED, Chunk, Stage

#: Target epoch standard deviation per stage in µV (Sleep-EDF SC4001 Fpz-Cz medians).
STAGE_STD_UV = {Stage.W: 23.0, Stage.N1: 10.0, Stage.N2: 17.0, Stage.N3: 31.0, Stage.REM: 10.0}
CHANNEL = "EEG Fpz-Cz"


__all__ = [
    "TRANSITIONS",
    "NightGenerator",
    "SyntheticNightSource",
    "epoch_signal",
    "estimate_transitions",
    "markov_stages",
    "read_hypnogram_text",
    "trim_wake",
]

# ----------------------------------------------------------------------------- signal


def _band_gain(f: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Amplitude gain of a band [lo, hi] Hz with smooth (logistic) edges."""
    width = max(0.25, 0.1 * (hi - lo))
    k = 0.25 * width  # logistic edges, written with tanh (no overflow)
    gain: np.ndarray = 0.25 * (1 + np.tanh((f - lo) / (2 * k))) * (1 + np.tanh((hi - f) / (2 * k)))
    return gain


def _power_law_gain(f: np.ndarray, exponent: float, fs: float) -> np.ndarray:
    """Amplitude gain of 1/f^exponent noise between 0.3 and 40 Hz."""
    hi = min(40.0, 0.45 * fs)
    return np.where((f >= 0.3) & (f <= hi), np.maximum(f, 0.3) ** (-exponent / 2), 0.0)


@functools.lru_cache(maxsize=32)
def _stage_gain(stage: Stage, n: int, fs: float) -> np.ndarray:
    """Amplitude spectrum of a stage's background: each component of :data:`STAGE_MIX`
    normalised to unit power, weighted by its share (independent Gaussian components
    sum to one Gaussian noise with the summed power spectrum)."""
    f = np.fft.rfftfreq(n, 1 / fs)
    power = np.zeros(f.size)
    for name, share in STAGE_MIX[stage].items():
        if name.startswith("1/f^"):
            g = _power_law_gain(f, float(name[4:]), fs)
        else:
            lo, hi = BANDS[name]
            g = _band_gain(f, lo, min(hi, 0.45 * fs))
        power += share * g**2 / np.sum(g**2)
    return np.sqrt(power)


def _background(rng: np.random.Generator, stage: Stage, n: int, fs: float) -> np.ndarray:
    """Unit-std stage background noise, ``n`` samples."""
    m = 1 << int(np.ceil(np.log2(n)))  # a fast FFT length; keep the first n samples
    gain = _stage_gain(stage, m, fs)
    spec = (rng.standard_normal(gain.size) + 1j * rng.standard_normal(gain.size)) * gain
    x = np.fft.irfft(spec, m)[:n]
    out: np.ndarray = x / (x.std() + 1e-12)
    return out


def _spindles(rng: np.random.Generator, n: int, fs: float) -> np.ndarray:
    """Sigma spindles 12-15 Hz, 0.5-2 s, Hann envelope, ~5 per minute, in µV."""
    x = np.zeros(n)
    for _ in range(rng.poisson(2.5 * n / (EPOCH_SECONDS * fs))):
        m = int(rng.uniform(0.5, 2.0) * fs)
        i0 = int(rng.integers(0, max(1, n - m)))
        t = np.arange(m) / fs
        amp = rng.uniform(12.0, 22.0)
        x[i0 : i0 + m] += amp * np.hanning(m) * np.sin(2 * np.pi * rng.uniform(12, 15) * t)
    return x


def _k_complexes(rng: np.random.Generator, n: int, fs: float) -> np.ndarray:
    """K-complexes: a sharp negative wave then a slower positive one (~1 s), in µV."""
    x = np.zeros(n)
    m = int(1.2 * fs)
    t = np.arange(m) / fs
    for _ in range(rng.poisson(1.0 * n / (EPOCH_SECONDS * fs))):
        i0 = int(rng.integers(0, max(1, n - m)))
        a1, a2 = rng.uniform(40, 70), rng.uniform(20, 35)
        x[i0 : i0 + m] += -a1 * np.exp(-((t - 0.25) ** 2) / (2 * 0.07**2)) + a2 * np.exp(
            -((t - 0.6) ** 2) / (2 * 0.15**2)
        )
    return x


def _sawtooth_bursts(rng: np.random.Generator, n: int, fs: float) -> np.ndarray:
    """REM sawtooth-theta bursts: 2-6 Hz sawtooth trains of 1-3 s, in µV."""
    x = np.zeros(n)
    for _ in range(rng.poisson(2.0 * n / (EPOCH_SECONDS * fs))):
        m = int(rng.uniform(1.0, 3.0) * fs)
        i0 = int(rng.integers(0, max(1, n - m)))
        phase = (rng.uniform(2, 6) * np.arange(m) / fs) % 1.0
        x[i0 : i0 + m] += rng.uniform(10, 18) * np.hanning(m) * (2 * phase - 1)
    return x


#: Frequency bands of the rhythm components, Hz.
BANDS = {
    "delta": (0.5, 2.0),
    "slow": (2.0, 4.0),
    "theta": (4.0, 7.0),
    "alpha": (8.0, 12.0),
    "sigma": (12.0, 15.0),
    "beta": (15.0, 30.0),
}
#: Power share of each background component per stage: ``"1/f^k"`` power laws and
#: band-limited rhythms (:data:`BANDS`). Fitted (non-negative least squares on 23
#: log-spaced bins, 0.3-35 Hz) to the median relative spectrum per stage of Sleep-EDF
#: SC4001 Fpz-Cz, then the hallmark rhythms were nudged up: alpha in W, theta in N1.
#: Spindles, K-complexes and sawtooth waves are added on top as events.
STAGE_MIX: dict[Stage, dict[str, float]] = {
    Stage.W: {"1/f^1": 0.05, "1/f^1.5": 0.20, "1/f^3": 0.47, "delta": 0.15, "slow": 0.10,
              "theta": 0.03, "alpha": 0.015, "beta": 0.01},
    Stage.N1: {"1/f^1.5": 0.59, "1/f^3": 0.08, "delta": 0.065, "slow": 0.15, "theta": 0.11,
               "alpha": 0.009, "beta": 0.003},
    Stage.N2: {"1/f^1.5": 0.04, "1/f^2": 0.44, "delta": 0.23, "slow": 0.21, "theta": 0.056,
               "alpha": 0.013, "sigma": 0.0065},
    Stage.N3: {"1/f^2": 0.12, "1/f^2.5": 0.27, "delta": 0.50, "slow": 0.08, "theta": 0.026,
               "alpha": 0.006, "sigma": 0.0013},
    Stage.REM: {"1/f^1": 0.018, "1/f^1.5": 0.37, "1/f^3": 0.21, "delta": 0.046, "slow": 0.20,
                "theta": 0.12, "alpha": 0.015, "sigma": 0.003, "beta": 0.002},
}  # fmt: skip


def epoch_signal(stage: int, rng: np.random.Generator, n: int, fs: float) -> np.ndarray:
    """``n`` samples of stage-conditioned EEG in µV (std ≈ the stage's target)."""
    s = Stage.W if stage == UNSCORED else Stage(stage)
    noise = _background(rng, s, n, fs)
    events = np.zeros(n)
    if s is Stage.N2:
        events = _spindles(rng, n, fs) + _k_complexes(rng, n, fs)
    elif s is Stage.REM:
        events = _sawtooth_bursts(rng, n, fs)
    target = STAGE_STD_UV[s] * math.exp(rng.normal(0.0, 0.15))
    rest = math.sqrt(max(target**2 - events.var(), 0.25 * target**2))
    out: np.ndarray = noise * (rest / (noise.std() + 1e-12)) + events
    return out


class NightGenerator:
    """Epoch-by-epoch generator of a synthetic night (cross-faded, deterministic).

    Parameters
    ----------
    stages : ndarray, shape (n_epochs,), int
        Ground-truth stage per 30-s epoch (-1 = unscored, generated as wake).
    fs : float
        Sampling rate in Hz (>= 50).
    seed : int
        Seed; epoch ``k`` depends only on ``(seed, k, stages[k-1:k+1])``.
    """

    def __init__(self, stages: np.ndarray, fs: float = 100.0, seed: int = 0) -> None:
        if not math.isfinite(fs) or fs < 50:
            raise UsageError(f"synthetic-night fs {fs!r}: expected >= 50 Hz")
        self.stages = np.asarray(stages, dtype=np.int8)
        self.fs = float(fs)
        self.seed = int(seed)
        self.n = int(round(EPOCH_SECONDS * fs))
        self.fade = int(round(fs))  # 1-s cross-fade
        self._cache: tuple[int, np.ndarray] | None = None

    def _raw(self, k: int) -> np.ndarray:
        if self._cache is not None and self._cache[0] == k:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, k + 1])
        x = epoch_signal(int(self.stages[k]), rng, self.n + self.fade, self.fs)
        self._cache = (k, x)
        return x

    def epoch(self, k: int) -> np.ndarray:
        """Epoch ``k`` in µV, shape ``(30 * fs,)``, float64."""
        if k > 0:
            tail = self._raw(k - 1)[self.n :]
            x = self._raw(k)[: self.n].copy()
            w = np.sin(0.5 * np.pi * (np.arange(self.fade) + 0.5) / self.fade)
            x[: self.fade] = x[: self.fade] * w + tail * np.sqrt(1 - w**2)
            return x
        return self._raw(k)[: self.n].copy()

    def signal(self) -> np.ndarray:
        """The whole night in µV, shape ``(n_epochs * 30 * fs,)``."""
        return np.concatenate([self.epoch(k) for k in range(self.stages.size)])


# ----------------------------------------------------------------------------- source


class SyntheticNightSource:
    """Stream a synthetic night in chunks, with its ground truth.

    Parameters
    ----------
    hypnogram : Path or sequence of int, optional
        A text hypnogram file (Sleep-EDF ``.hyp`` style) or stage codes; ``None`` draws
        the stages from the Markov chain.
    n_epochs : int
        Length of a Markov-chain night (default 960 = 8 h).
    fs : float
        Sampling rate in Hz (default 100).
    seed : int
        Makes signal and Markov stages reproducible.
    speed : "max" or float
        Speed factor: 1 = real time; the default 30 gives one epoch per second (demo).
    chunk_seconds : float
        Stream time per chunk in seconds.
    trim_wake_minutes : float or None
        Trim a hypnogram file to this much wake around sleep (Sleep-EDF-20 convention);
        ``None`` keeps it whole.
    transitions_from : Path, optional
        Folder of hypnograms to estimate the Markov chain from instead of
        :data:`TRANSITIONS`.
    """

    dropped_samples: int = 0  # paced by the consumer: nothing is ever dropped
    reconnects: int = 0
    queue_depth: int = 0
    #: A generated recording: its rate is its own; it states no wall-clock start.
    from_file: bool = True
    start_datetime: datetime | None = None

    def __init__(
        self,
        hypnogram: Path | str | Sequence[int] | np.ndarray | None = None,
        *,
        n_epochs: int = 960,
        fs: float = 100.0,
        seed: int = 0,
        speed: str | float | None = 30.0,
        chunk_seconds: float = 1.0,
        trim_wake_minutes: float | None = 30.0,
        transitions_from: Path | str | None = None,
    ) -> None:
        if isinstance(hypnogram, str | Path):
            stages = read_hypnogram_text(hypnogram)
            if trim_wake_minutes is not None:
                stages = trim_wake(stages, trim_wake_minutes)
            self.name = f"synthetic-night:{hypnogram}"
        elif hypnogram is not None:
            stages = np.asarray(hypnogram, dtype=np.int8)
            if stages.ndim != 1 or stages.size == 0 or stages.min() < UNSCORED or stages.max() > 4:
                raise UsageError("synthetic-night: stages must be a 1-D sequence of -1..4")
            self.name = "synthetic-night:stages"
        else:
            if int(n_epochs) < 1:
                raise UsageError(f"synthetic-night n_epochs {n_epochs!r}: expected >= 1")
            p = TRANSITIONS if transitions_from is None else estimate_transitions(transitions_from)
            stages = markov_stages(int(n_epochs), int(seed), p)
            self.name = f"synthetic-night:markov(seed={seed})"
        if not math.isfinite(chunk_seconds) or chunk_seconds <= 0:
            raise UsageError(f"chunk_seconds {chunk_seconds!r}: expected seconds > 0")
        self.generator = NightGenerator(stages, fs, seed)
        self.fs = self.generator.fs
        self.channels: tuple[str, ...] = (CHANNEL,)
        self.speed = parse_speed(speed)
        self.chunk = max(1, int(round(chunk_seconds * self.fs)))
        self.received_samples = 0
        self._pacer = Paced(self.speed)
        self._pos = 0
        self._buf: tuple[int, np.ndarray] | None = None

    @property
    def stages(self) -> np.ndarray:
        """Ground-truth stage per 30-s epoch, shape ``(n_epochs,)``, int8."""
        return self.generator.stages

    @property
    def n_samples(self) -> int:
        """Samples in the whole night."""
        return self.stages.size * self.generator.n

    def stage_at(self, t: float) -> int:
        """Ground-truth stage at stream time ``t`` seconds (``UNSCORED`` outside)."""
        k = int(t // EPOCH_SECONDS)
        return int(self.stages[k]) if 0 <= k < self.stages.size else UNSCORED

    async def __aenter__(self) -> SyntheticNightSource:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._buf = None

    def __aiter__(self) -> SyntheticNightSource:
        return self

    def _take(self, stop: int) -> np.ndarray:
        parts, n = [], self.generator.n
        pos = self._pos
        while pos < stop:
            k = pos // n
            if self._buf is None or self._buf[0] != k:
                self._buf = (k, self.generator.epoch(k))
            end = min(stop, (k + 1) * n)
            parts.append(self._buf[1][pos - k * n : end - k * n])
            pos = end
        return np.concatenate(parts)

    async def __anext__(self) -> Chunk:
        if self._pos >= self.n_samples:
            raise StopAsyncIteration
        stop = min(self.n_samples, self._pos + self.chunk)
        x = self._take(stop)
        first, self._pos = self._pos, stop
        await self._pacer.wait(stop / self.fs)
        self.received_samples += x.size
        return Chunk(
            samples=x[None, :],
            timestamps=(first + np.arange(x.size)) / self.fs,
            fs=self.fs,
            channels=self.channels,
            received_at=time.perf_counter(),
        )
