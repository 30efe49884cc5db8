"""A realistic single-channel synthetic night with known stages (numpy only).

Stage-conditioned EEG on a 30-s grid, Fpz-Cz-like, in µV:

======  ====================================================================  ==========
stage   content                                                               std (µV)
======  ====================================================================  ==========
W       posterior-like alpha 8-12 Hz, some beta 15-30 Hz, 1/f background      ~23
N1      theta 4-7 Hz, faint alpha, 1/f background                             ~10
N2      sigma spindles 12-15 Hz (0.5-2 s), K-complexes, some delta, 1/f       ~17
N3      high-amplitude delta 0.5-2 Hz, 1/f background                         ~31
REM     low-voltage mixed frequencies with sawtooth-theta bursts 2-6 Hz, 1/f  ~10
======  ====================================================================  ==========

The standard deviations follow the per-epoch medians of Sleep-EDF SC4001 Fpz-Cz
(W 22.8, N1 9.8, N2 16.6, N3 31.0, REM 9.5 µV), with ±15 % (log-normal) spread per epoch.
Rhythms are band-limited noise, so they wax and wane like real ones; consecutive
epochs are cross-faded over 1 s so there are no steps at epoch borders.

The stage sequence comes from a real hypnogram (a Sleep-EDF ``*.hyp``-style text file:
one R&K symbol ``W 1 2 3 4 R ?`` per 30 s, separated by whitespace or ``\\r``) or from a
Markov chain with the transition rates :data:`TRANSITIONS` of the 39 Sleep-EDF-20
nights. Everything is deterministic from ``seed``; the ground truth is ``stages``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sleepstream.errors import DataFileError, HypnogramError, UsageError
from sleepstream.sources.edf_replay import Paced, parse_speed
from sleepstream.types import EPOCH_SECONDS, UNSCORED, Chunk, Stage

#: Epoch-to-epoch stage transition probabilities (rows: from W, N1, N2, N3, REM; columns:
#: to), estimated by :func:`estimate_transitions` from the 39 Sleep-EDF-20 hypnograms in
#: ``shared/data/sleep_edf20_hypnograms`` (trimmed to 30 min of wake around sleep, S3+S4
#: = N3, transitions touching ``?``/movement skipped; 42,269 transitions).
TRANSITIONS = np.array(
    [
        [0.9362, 0.0536, 0.0058, 0.0005, 0.0039],
        [0.0631, 0.6494, 0.2454, 0.0007, 0.0414],
        [0.0123, 0.0193, 0.9088, 0.0458, 0.0138],
        [0.0065, 0.0053, 0.1319, 0.8557, 0.0007],
        [0.0121, 0.0216, 0.0176, 0.0001, 0.9486],
    ]
)
#: Target epoch standard deviation per stage in µV (Sleep-EDF SC4001 Fpz-Cz medians).
STAGE_STD_UV = {Stage.W: 23.0, Stage.N1: 10.0, Stage.N2: 17.0, Stage.N3: 31.0, Stage.REM: 10.0}
_RK = {"W": 0, "1": 1, "2": 2, "3": 3, "4": 3, "R": 4, "N1": 1, "N2": 2, "N3": 3, "REM": 4}
_UNSCORED_SYMBOLS = {"?", "M", "MT", "U"}
CHANNEL = "EEG Fpz-Cz"


# ----------------------------------------------------------------------------- stages


def read_hypnogram_text(path: Path | str) -> np.ndarray:
    """Read a Sleep-EDF ``.hyp``-style text hypnogram.

    Returns
    -------
    ndarray, shape (n_epochs,), int8
        0..4 = W, N1, N2, N3 (S3+S4), REM; -1 = unscored (``?``, movement).

    Raises
    ------
    DataFileError
        Missing or empty file.
    HypnogramError
        An unknown stage symbol (names the file, position and symbol).
    """
    p = Path(path)
    try:
        tokens = p.read_text(encoding="latin-1").replace(",", " ").split()
    except OSError as exc:
        raise DataFileError(f"{p}: cannot read hypnogram: {exc.strerror or exc}") from None
    if not tokens:
        raise DataFileError(f"{p}: empty hypnogram")
    out = np.empty(len(tokens), dtype=np.int8)
    for i, tok in enumerate(tokens):
        t = tok.strip().upper()
        if t in _RK:
            out[i] = _RK[t]
        elif t in _UNSCORED_SYMBOLS:
            out[i] = UNSCORED
        else:
            raise HypnogramError(f"{p}: unknown stage symbol {tok!r} at epoch {i}")
    return out


def trim_wake(stages: np.ndarray, minutes: float = 30.0) -> np.ndarray:
    """Keep ``minutes`` of epochs before the first and after the last sleep epoch."""
    sleep = np.flatnonzero(stages > 0)
    if sleep.size == 0:
        return stages
    pad = int(round(minutes * 60 / EPOCH_SECONDS))
    return stages[max(0, sleep[0] - pad) : sleep[-1] + pad + 1]


def estimate_transitions(folder: Path | str, trim_minutes: float = 30.0) -> np.ndarray:
    """Estimate the 5x5 stage transition matrix from a folder of text hypnograms.

    This is how :data:`TRANSITIONS` was computed (rounded to 4 decimals).

    Returns
    -------
    ndarray, shape (5, 5), float64
        Row-stochastic; rows without any transition are uniform.
    """
    files = sorted(p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith("."))
    hyps = [f for f in files if f.suffix in (".csv", ".hyp", ".txt")]
    if not hyps:
        raise DataFileError(f"{folder}: no hypnogram files (*.csv, *.hyp, *.txt)")
    counts = np.zeros((5, 5))
    for f in hyps:
        s = trim_wake(read_hypnogram_text(f), trim_minutes).astype(np.int64)
        a, b = s[:-1], s[1:]
        ok = (a >= 0) & (b >= 0)
        np.add.at(counts, (a[ok], b[ok]), 1)
    rows = counts.sum(axis=1, keepdims=True)
    return np.where(rows > 0, counts / np.maximum(rows, 1), 0.2)


def markov_stages(
    n_epochs: int, seed: int, transitions: np.ndarray = TRANSITIONS, start: int = 0
) -> np.ndarray:
    """A stage sequence from the Markov chain ``transitions`` (starts awake by default).

    Returns
    -------
    ndarray, shape (n_epochs,), int8
    """
    p = np.asarray(transitions, dtype=np.float64)
    cum = np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)
    u = np.random.default_rng([seed, 0]).random(n_epochs)
    out = np.empty(n_epochs, dtype=np.int8)
    state = start
    for i in range(n_epochs):
        out[i] = state
        state = min(4, int(np.searchsorted(cum[state], u[i], side="right")))
    return out


# ----------------------------------------------------------------------------- signal


def _band_noise(rng: np.random.Generator, n: int, fs: float, lo: float, hi: float) -> np.ndarray:
    """Unit-std noise band-limited to [lo, hi] Hz (smooth spectral edges)."""
    f = np.fft.rfftfreq(n, 1 / fs)
    hi = min(hi, 0.45 * fs)
    width = max(0.25, 0.1 * (hi - lo))
    k = 0.25 * width  # logistic edges, written with tanh (no overflow)
    gain = 0.25 * (1 + np.tanh((f - lo) / (2 * k))) * (1 + np.tanh((hi - f) / (2 * k)))
    spec = (rng.standard_normal(f.size) + 1j * rng.standard_normal(f.size)) * gain
    x = np.fft.irfft(spec, n)
    return x / (x.std() + 1e-12)


def _pink(rng: np.random.Generator, n: int, fs: float) -> np.ndarray:
    """Unit-std 1/f noise between 0.3 and 40 Hz."""
    f = np.fft.rfftfreq(n, 1 / fs)
    hi = min(40.0, 0.45 * fs)
    gain = np.where((f >= 0.3) & (f <= hi), 1 / np.sqrt(np.maximum(f, 0.3)), 0.0)
    spec = (rng.standard_normal(f.size) + 1j * rng.standard_normal(f.size)) * gain
    x = np.fft.irfft(spec, n)
    return x / (x.std() + 1e-12)


def _spindles(rng: np.random.Generator, n: int, fs: float) -> np.ndarray:
    """Sigma spindles 12-15 Hz, 0.5-2 s, Hann envelope, ~3 per 30 s, in µV."""
    x = np.zeros(n)
    for _ in range(rng.poisson(3.0 * n / (EPOCH_SECONDS * fs))):
        dur = rng.uniform(0.5, 2.0)
        m = int(dur * fs)
        i0 = int(rng.integers(0, max(1, n - m)))
        t = np.arange(m) / fs
        amp = rng.uniform(20.0, 35.0)
        x[i0 : i0 + m] += amp * np.hanning(m) * np.sin(2 * np.pi * rng.uniform(12, 15) * t)
    return x


def _k_complexes(rng: np.random.Generator, n: int, fs: float) -> np.ndarray:
    """K-complexes: a sharp negative wave then a slower positive one (~1 s), in µV."""
    x = np.zeros(n)
    m = int(1.2 * fs)
    t = np.arange(m) / fs
    for _ in range(rng.poisson(1.2 * n / (EPOCH_SECONDS * fs))):
        i0 = int(rng.integers(0, max(1, n - m)))
        a1, a2 = rng.uniform(50, 90), rng.uniform(25, 45)
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
        x[i0 : i0 + m] += rng.uniform(15, 25) * np.hanning(m) * (2 * phase - 1)
    return x


def epoch_signal(stage: int, rng: np.random.Generator, n: int, fs: float) -> np.ndarray:
    """``n`` samples of stage-conditioned EEG in µV (std ≈ the stage's target)."""
    s = Stage.W if stage == UNSCORED else Stage(stage)
    pink = _pink(rng, n, fs)
    if s is Stage.W:
        x = pink + 1.2 * _band_noise(rng, n, fs, 8, 12) + 0.3 * _band_noise(rng, n, fs, 15, 30)
    elif s is Stage.N1:
        x = pink + 0.9 * _band_noise(rng, n, fs, 4, 7) + 0.25 * _band_noise(rng, n, fs, 8, 12)
    elif s is Stage.N2:
        x = pink + 0.3 * _band_noise(rng, n, fs, 4, 7) + 0.3 * _band_noise(rng, n, fs, 0.5, 2)
        x = x * 10.0 + _spindles(rng, n, fs) + _k_complexes(rng, n, fs)
    elif s is Stage.N3:
        x = 0.6 * pink + 1.6 * _band_noise(rng, n, fs, 0.5, 2) + 0.2 * _band_noise(rng, n, fs, 4, 7)
    else:  # REM
        x = pink + 0.5 * _band_noise(rng, n, fs, 4, 7) + 0.15 * _band_noise(rng, n, fs, 8, 12)
        x = x * 6.0 + 0.2 * 6.0 * _band_noise(rng, n, fs, 15, 30) + _sawtooth_bursts(rng, n, fs)
    target = STAGE_STD_UV[s] * math.exp(rng.normal(0.0, 0.15))
    return x * (target / (x.std() + 1e-12))


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

    dropped_samples: int = 0
    reconnects: int = 0

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
