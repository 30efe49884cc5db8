"""A streaming EDF writer: a whole night is written record by record, never held in memory.

Used to join a recorded night's raw segments into one continuous EDF (``export-bids``).
The header is written first with the record count unknown (``-1``, as EDF allows while
recording) and patched at :meth:`EdfStreamWriter.close`.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sleepstream.errors import DataFileError, UsageError

_DIG_MIN, _DIG_MAX = -32768, 32767


def _field(value: object, width: int) -> bytes:
    text = str(value)
    raw = text.encode("ascii", errors="replace")[:width]
    return raw.ljust(width, b" ")


def _number(value: float, width: int = 8) -> bytes:
    """A number in at most ``width`` characters (EDF's physical min/max fields)."""
    for digits in range(width, -1, -1):
        text = f"{value:.{digits}f}".rstrip("0").rstrip(".") if digits else f"{value:.0f}"
        if len(text) <= width:
            return _field(text, width)
    raise UsageError(f"EDF writer: {value!r} does not fit in {width} characters")


def record_layout(fs: float) -> tuple[float, int]:
    """A data record duration (s) holding a whole number of samples at ``fs`` Hz."""
    for k in range(1, 1001):
        n = fs * k
        if abs(n - round(n)) < 1e-6 and round(n) <= 61440:
            return float(k), int(round(n))
    raise UsageError(f"EDF writer: no record duration holds a whole number of samples at {fs} Hz")


class EdfStreamWriter:
    """Write an EDF file from consecutive blocks of samples.

    Parameters
    ----------
    path : Path
    labels : sequence of str
        Channel labels (at most 16 characters are kept).
    fs : float
        Sampling rate, Hz (one for all channels).
    physical_ranges : sequence of (min, max)
        Per channel, in ``unit``; samples outside are clipped.
    start : datetime
        Start date and time written in the header (its clock, no zone in EDF).
    unit : str
        Physical dimension of every channel.
    """

    def __init__(
        self,
        path: Path | str,
        labels: Sequence[str],
        fs: float,
        physical_ranges: Sequence[tuple[float, float]],
        start: dt.datetime,
        unit: str = "uV",
    ) -> None:
        if not labels or len(labels) != len(physical_ranges):
            raise UsageError("EDF writer: one physical range per channel, at least one channel")
        self.path = Path(path)
        self.record_s, self.spr = record_layout(fs)
        self.fs = float(fs)
        self._ranges = [(float(lo), float(hi) if hi > lo else float(lo) + 1.0)
                        for lo, hi in physical_ranges]  # fmt: skip
        self._n = len(labels)
        self._pending = np.zeros((self._n, 0))
        self.n_records = 0
        self._f = self.path.open("wb")
        self._f.write(self._header(list(labels), start, unit))

    def _header(self, labels: list[str], start: dt.datetime, unit: str) -> bytes:
        ns = self._n
        head = b"".join(
            [
                _field("0", 8),
                _field("X X X X", 80),
                _field(f"Startdate {start.strftime('%d-%b-%Y').upper()} X X sleepstream", 80),
                _field(start.strftime("%d.%m.%y"), 8),
                _field(start.strftime("%H.%M.%S"), 8),
                _field(256 * (ns + 1), 8),
                _field("", 44),
                _field(-1, 8),
                _number(self.record_s),
                _field(ns, 4),
            ]
        )
        cols = [
            [_field(label, 16) for label in labels],
            [_field("", 80)] * ns,
            [_field(unit, 8)] * ns,
            [_number(lo) for lo, _ in self._ranges],
            [_number(hi) for _, hi in self._ranges],
            [_field(_DIG_MIN, 8)] * ns,
            [_field(_DIG_MAX, 8)] * ns,
            [_field("", 80)] * ns,
            [_field(self.spr, 8)] * ns,
            [_field("", 32)] * ns,
        ]
        return head + b"".join(b"".join(c) for c in cols)

    def write(self, samples: np.ndarray) -> None:
        """Append samples, shape ``(n_channels, n)``, in the physical unit."""
        samples = np.asarray(samples, dtype=np.float64)
        if samples.ndim != 2 or samples.shape[0] != self._n:
            raise UsageError(f"EDF writer: expected ({self._n}, n) samples, got {samples.shape}")
        buf = np.concatenate([self._pending, samples], axis=1)
        whole = buf.shape[1] // self.spr
        if whole:
            self._write_records(buf[:, : whole * self.spr])
        self._pending = buf[:, whole * self.spr :]

    def _write_records(self, x: np.ndarray) -> None:
        digital = np.empty_like(x)
        for c, (lo, hi) in enumerate(self._ranges):
            gain = (hi - lo) / (_DIG_MAX - _DIG_MIN)
            digital[c] = np.round((np.clip(x[c], lo, hi) - lo) / gain + _DIG_MIN)
        n = x.shape[1] // self.spr
        rec = digital.reshape(self._n, n, self.spr).transpose(1, 0, 2)
        try:
            self._f.write(np.ascontiguousarray(rec, dtype="<i2").tobytes())
        except OSError as exc:
            raise DataFileError(f"{self.path}: cannot write: {exc.strerror}") from None
        self.n_records += n

    def close(self) -> None:
        """Pad the last record with zeros and write the record count."""
        if self._f.closed:
            return
        if self._pending.shape[1]:
            pad = self.spr - self._pending.shape[1]
            self._write_records(np.pad(self._pending, ((0, 0), (0, pad))))
            self._pending = np.zeros((self._n, 0))
        self._f.seek(236)
        self._f.write(_field(self.n_records, 8))
        self._f.close()

    def __enter__(self) -> EdfStreamWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def physical_range(lo: float, hi: float) -> tuple[float, float]:
    """A symmetric-enough range rounded out so that it prints in 8 characters."""
    span = max(abs(lo), abs(hi), 1e-3)
    mag = 10 ** math.floor(math.log10(span))
    return (math.floor(lo / mag) * mag, math.ceil(hi / mag) * mag)
