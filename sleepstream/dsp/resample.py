"""Streaming polyphase resampler to the model rate (100 Hz by default).

The rate change is the rational ``up / down = Fraction(fs_out / fs_in)`` (limited
denominator).  The anti-alias / anti-image filter is a linear-phase Kaiser FIR
(:func:`scipy.signal.firwin`) designed at ``fs_in * up``: pass-band up to 90 % of the
lower Nyquist frequency (45 Hz for the 100-Hz model input), stop-band (``atten_db``,
60 dB) from that Nyquist frequency on: a transition of ``transition`` x Nyquist (10 %).
A recording resampled from 250/256 Hz then keeps the 40-45 Hz content a 100-Hz recording
has (the earlier 20 % transition cut from 40 Hz: 97.9 % epoch agreement with the 100-Hz
replay of the same night against 99.2 %, bench/formats.py), for a look-ahead of ~0.36 s
at 256 Hz instead of ~0.18 s.

Output sample ``k`` is

``y[k] = sum_j h[j] * x_up[k * down + D - j]``, with ``x_up`` the zero-stuffed input and
``D = (numtaps - 1) / 2`` the FIR's group delay, so output ``k`` is aligned with input
time ``k / fs_out`` (the delay is compensated, not added to the stream time): it is
emitted as soon as input sample ``(k * down + D) // up`` has arrived.  Before the first
input sample the signal is taken as constant at ``x[0]``.  Only the last few input
samples are kept, and output does not depend on how the input is chunked.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from scipy import signal

from sleepstream.errors import ConfigError
from sleepstream.types import MODEL_FS


class StreamingResampler:
    """Causal, stateful rational resampler.

    Parameters
    ----------
    fs_in : float
        Input rate, Hz.
    fs_out : float
        Output rate, Hz (default the model rate, 100 Hz).
    max_denominator : int
        Largest ``up`` / ``down`` factor considered by ``limit_denominator``.
    atten_db : float
        Stop-band attenuation of the FIR, dB.
    max_rate_error : float
        Largest relative error of ``fs_in * up / down`` against ``fs_out``.
    transition : float
        Width of the FIR's transition band as a fraction of the lower Nyquist frequency.
    """

    def __init__(
        self,
        fs_in: float,
        fs_out: float = MODEL_FS,
        *,
        max_denominator: int = 1000,
        atten_db: float = 60.0,
        max_rate_error: float = 1e-5,
        transition: float = 0.1,
    ) -> None:
        if not 0 < transition < 1:
            raise ConfigError(f"resample: transition={transition!r} must be in (0, 1)")
        if not (np.isfinite(fs_in) and fs_in > 0):
            raise ConfigError(f"resample: fs_in={fs_in!r} Hz must be a positive number")
        if not (np.isfinite(fs_out) and fs_out > 0):
            raise ConfigError(f"resample: fs_out={fs_out!r} Hz must be a positive number")
        ratio = Fraction(fs_out / fs_in).limit_denominator(max_denominator)
        if ratio == 0 or abs(float(ratio) * fs_in - fs_out) > max_rate_error * fs_out:
            raise ConfigError(
                f"resample: no rational factor with denominator <= {max_denominator} "
                f"takes {fs_in} Hz to {fs_out} Hz"
            )
        self.fs_in = float(fs_in)
        self.fs_out = float(fs_out)
        self.up = ratio.numerator
        self.down = ratio.denominator
        self.identity = self.up == self.down == 1
        if self.identity:
            self.numtaps = 1
            self.delay = 0
            self._H = np.ones((1, 1))
        else:
            fs_up = self.fs_in * self.up
            nyq = min(self.fs_in, self.fs_out) / 2
            width = transition * nyq
            numtaps, beta = signal.kaiserord(atten_db, width / (fs_up / 2))
            numtaps += 1 - numtaps % 2  # odd: integer group delay
            h = signal.firwin(numtaps, nyq - width / 2, window=("kaiser", beta), fs=fs_up)
            h *= self.up  # unity pass-band gain after zero-stuffing
            self.numtaps = int(numtaps)
            self.delay = (self.numtaps - 1) // 2
            n_phase = math.ceil(self.numtaps / self.up)
            H = np.zeros((self.up, n_phase))
            for p in range(self.up):
                taps = h[p :: self.up]
                H[p, : taps.size] = taps
            self._H = H
        self._L = self._H.shape[1]
        self._Hrev = np.ascontiguousarray(self._H[:, ::-1])
        self._buf = np.zeros(0)
        self._base = 0  # absolute input index of _buf[0]
        self._n_in = 0
        self._k = 0  # next output index
        self._x0: float | None = None

    @property
    def delay_s(self) -> float:
        """Look-ahead the output waits for, seconds (group delay of the FIR)."""
        return self.delay / (self.fs_in * self.up)

    @property
    def n_out(self) -> int:
        """Output samples produced so far."""
        return self._k

    def process(self, x: np.ndarray) -> np.ndarray:
        """Push input samples (shape (n,)); return the output samples now computable."""
        x = np.asarray(x, dtype=np.float64)
        if self.identity:
            self._n_in += x.size
            self._k += x.size
            return x.copy()
        if x.size == 0:
            return np.zeros(0)
        if self._x0 is None:
            # Before the first sample the input is taken as constant x[0].
            self._x0 = float(x[0])
            self._buf = np.full(self._L - 1, self._x0)
            self._base = -(self._L - 1)
        self._buf = np.concatenate([self._buf, x])
        self._n_in += x.size
        k_last = (self._n_in * self.up - 1 - self.delay) // self.down
        y = self._compute(self._k, k_last + 1)
        self._trim()
        return y

    def flush(self) -> np.ndarray:
        """Outputs up to the end of the input's time span, holding the last sample.

        Call once at the end of the stream; afterwards the resampler is exhausted.
        """
        if self.identity or self._n_in == 0:
            return np.zeros(0)
        # last k inside the time the input covers, [0, n_in / fs_in)
        k_end = (self._n_in * self.up - 1) // self.down
        need = (k_end * self.down + self.delay) // self.up + 1 - self._n_in
        if need > 0:
            self._buf = np.concatenate([self._buf, np.full(need, self._buf[-1])])
            self._n_in += need
        return self._compute(self._k, k_end + 1)

    def _compute(self, k0: int, k1: int) -> np.ndarray:
        if k1 <= k0:
            return np.zeros(0)
        out = np.empty(k1 - k0)
        # Row j of ``win`` holds x[base + j : base + j + L]; output k needs the row that
        # ends at its newest input sample, times the phase's taps oldest-first.
        buf = self._buf
        st = buf.strides[0]
        win = np.lib.stride_tricks.as_strided(
            buf, shape=(buf.size - self._L + 1, self._L), strides=(st, st), writeable=False
        )
        step = 8192
        for s in range(k0, k1, step):
            ks = np.arange(s, min(k1, s + step), dtype=np.int64)
            m0 = ks * self.down + self.delay
            rows = m0 // self.up - (self._L - 1) - self._base
            out[s - k0 : s - k0 + ks.size] = (win[rows] * self._Hrev[m0 % self.up]).sum(axis=1)
        self._k = k1
        return out

    def _trim(self) -> None:
        first_needed = (self._k * self.down + self.delay) // self.up - (self._L - 1)
        drop = first_needed - self._base
        if drop > 0:
            drop = min(drop, self._buf.size)
            self._buf = self._buf[drop:]
            self._base += drop
