"""Causal IIR filters (notch, band-pass) whose state survives across chunks.

Each filter is a cascade of second-order sections run with :func:`scipy.signal.sosfilt`
and its ``zi`` state, so processing a signal in chunks of any size gives the same
output as one call on the whole signal.  The state is initialised at the first valid
sample to the steady state for a constant input equal to that sample
(``sosfilt_zi(sos) * x0``), which removes the start-up transient of a DC offset.

Invalid samples (gap fill, NaN/inf replaced by the NaN guard) are filtered as the
held value they were replaced with, so a short dropout does not step the filter.
After a run of invalid samples of at least ``reset_after_s`` the state is re-initialised
at the next valid sample (the signal may come back at a different DC level, e.g. an
electrode re-attached), and before the first valid sample the output is 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

from sleepstream.errors import ConfigError


@dataclass(frozen=True)
class FilterConfig:
    """Notch and band-pass settings (all frequencies in Hz).

    Attributes
    ----------
    notch_hz : float or None
        Mains frequency to remove (50 or 60), None for no notch.  A notch at or
        above the Nyquist frequency of the source is skipped
        (:attr:`FilterBank.notch_skipped`).
    notch_q : float
        Quality factor of the notch (bandwidth = ``notch_hz / notch_q``).
    bandpass_hz : tuple of (float or None, float or None), or None
        ``(low, high)`` edges of a Butterworth band-pass; ``(low, None)`` is a
        high-pass, ``(None, high)`` a low-pass, None no band-pass.
    order : int
        Butterworth order per edge.
    reset_after_s : float
        A run of invalid samples at least this long (s) re-initialises the filter
        state at the next valid sample.
    """

    notch_hz: float | None = None
    notch_q: float = 30.0
    bandpass_hz: tuple[float | None, float | None] | None = None
    order: int = 4
    reset_after_s: float = 1.0


class StreamingSOS:
    """A stateful SOS cascade: :meth:`process` chunks, same output as one-shot ``sosfilt``.

    Parameters
    ----------
    sos : ndarray, shape (n_sections, 6)
    """

    def __init__(self, sos: np.ndarray) -> None:
        self.sos = np.asarray(sos, dtype=np.float64)
        self._zi_unit = steady_state(self.sos)
        self.zi: np.ndarray | None = None

    def reset(self, x0: float) -> None:
        """Set the state to the steady state for a constant input ``x0``."""
        self.zi = self._zi_unit * float(x0)

    def process(self, x: np.ndarray) -> np.ndarray:
        """Filter ``x`` (shape (n,)); the state is initialised from ``x[0]`` if unset."""
        x = np.asarray(x, dtype=np.float64)
        if x.size == 0:
            return x.copy()
        if self.zi is None:
            self.reset(x[0])
        y, self.zi = signal.sosfilt(self.sos, x, zi=self.zi)
        out: np.ndarray = np.asarray(y, dtype=np.float64)
        return out


def steady_state(sos: np.ndarray) -> np.ndarray:
    """The SOS cascade's state for a unit step (``sosfilt_zi``), shape (n_sections, 2).

    Raises
    ------
    ConfigError
        The design is numerically unusable (e.g. a band edge so close to 0 Hz that the
        filter's poles sit on the unit circle): no state exists or it is not finite.
    """
    try:
        zi = np.asarray(signal.sosfilt_zi(sos), dtype=np.float64)
    except (np.linalg.LinAlgError, ValueError, ZeroDivisionError) as exc:
        raise ConfigError(f"filter design is numerically unusable ({exc})") from None
    if not np.all(np.isfinite(zi)) or not np.all(np.isfinite(sos)):
        raise ConfigError("filter design is numerically unusable (non-finite state)")
    return zi


def design_notch(fs: float, freq: float, q: float = 30.0) -> np.ndarray:
    """Second-order IIR notch at ``freq`` Hz as SOS, shape (1, 6)."""
    if not 0 < freq < fs / 2:
        raise ConfigError(f"notch: frequency {freq} Hz must lie in (0, {fs / 2}) for fs={fs} Hz")
    if q <= 0:
        raise ConfigError(f"notch: q={q} must be > 0")
    b, a = signal.iirnotch(freq, q, fs=fs)
    sos: np.ndarray = np.asarray(signal.tf2sos(b, a), dtype=np.float64)
    return sos


def design_bandpass(
    fs: float, low: float | None, high: float | None, order: int = 4
) -> np.ndarray | None:
    """Butterworth band-, high- or low-pass as SOS; None when both edges are None."""
    nyq = fs / 2
    if order < 1:
        raise ConfigError(f"bandpass: order={order} must be >= 1")
    if low is not None and not 0 < low < nyq:
        raise ConfigError(f"bandpass: low edge {low} Hz must lie in (0, {nyq}) for fs={fs} Hz")
    if high is not None and not 0 < high < nyq:
        raise ConfigError(f"bandpass: high edge {high} Hz must lie in (0, {nyq}) for fs={fs} Hz")
    if low is not None and high is not None:
        if low >= high:
            raise ConfigError(f"bandpass: low edge {low} Hz must be below high edge {high} Hz")
        sos = signal.butter(order, [low, high], btype="bandpass", fs=fs, output="sos")
    elif low is not None:
        sos = signal.butter(order, low, btype="highpass", fs=fs, output="sos")
    elif high is not None:
        sos = signal.butter(order, high, btype="lowpass", fs=fs, output="sos")
    else:
        return None
    out: np.ndarray = np.asarray(sos, dtype=np.float64)
    try:
        steady_state(out)
    except ConfigError as exc:
        raise ConfigError(
            f"bandpass: edges ({low}, {high}) Hz at fs={fs} Hz: {exc}; use a low edge of "
            "at least 0.01 Hz"
        ) from None
    return out


class FilterBank:
    """Notch then band-pass, streaming, with the invalid-sample policy of this module.

    Parameters
    ----------
    fs : float
        Sampling rate of the input, Hz.
    config : FilterConfig
    """

    def __init__(self, fs: float, config: FilterConfig | None = None) -> None:
        self.fs = float(fs)
        self.config = config = config or FilterConfig()
        stages: list[np.ndarray] = []
        #: True when the notch was skipped because it is not below Nyquist (e.g. 50 Hz
        #: at fs = 100 Hz): such a rate cannot carry line noise apart from the
        #: Nyquist bin, which the band-pass / resampler attenuate.
        self.notch_skipped = config.notch_hz is not None and config.notch_hz >= fs / 2
        if config.notch_hz is not None and not self.notch_skipped:
            stages.append(design_notch(fs, config.notch_hz, config.notch_q))
        if config.bandpass_hz is not None:
            low, high = config.bandpass_hz
            bp = design_bandpass(fs, low, high, config.order)
            if bp is not None:
                stages.append(bp)
        # One cascade: zi init at a constant x0 is exact for the whole chain.
        self._sos = StreamingSOS(np.vstack(stages)) if stages else None
        self._reset_after = max(1, int(round(config.reset_after_s * fs)))
        self._started = False
        self._invalid_run = 0

    @property
    def active(self) -> bool:
        """False when no filter is configured (the bank is the identity)."""
        return self._sos is not None

    def process(self, x: np.ndarray, invalid: np.ndarray | None = None) -> np.ndarray:
        """Filter one chunk.

        Parameters
        ----------
        x : ndarray, shape (n,), µV
            Finite values (invalid samples already replaced by the NaN guard).
        invalid : ndarray of bool, shape (n,), optional
            Samples that are gap fill or replaced NaN/inf.

        Returns
        -------
        ndarray, shape (n,), float64, µV
        """
        x = np.asarray(x, dtype=np.float64)
        n = x.size
        if n == 0:
            return x.copy()
        if invalid is None:
            invalid = np.zeros(n, dtype=bool)
        if self._started and self._invalid_run < self._reset_after and not invalid.any():
            self._invalid_run = 0
            return self._run(x)  # fast path: clean continuation

        # Points where the filter (re)starts: the first valid sample of the stream and
        # the first valid sample after an invalid run of at least reset_after samples.
        starts: list[int] = []
        run = self._invalid_run
        started = self._started
        prev = -1
        for i in np.flatnonzero(~invalid):
            run += int(i) - prev - 1
            if not started or run >= self._reset_after:
                starts.append(int(i))
                started = True
            run = 0
            prev = int(i)
        run += n - 1 - prev

        out = np.zeros(n)
        pos = 0 if self._started else (starts[0] if starts else n)
        bounds = sorted({pos, *starts, n})
        bounds = [b for b in bounds if b >= pos]
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            if a in starts and self._sos is not None:
                self._sos.reset(x[a])
            out[a:b] = self._run(x[a:b])
        self._started = started
        self._invalid_run = run
        return out

    def _run(self, x: np.ndarray) -> np.ndarray:
        return x.copy() if self._sos is None else self._sos.process(x)
