"""Atomic file writers for a night directory: EDF segments, stages EDF+, CSVs, JSON.

Every writer builds the complete file under a temporary name in the same directory,
fsyncs it and renames it over the target, so a reader (or a crash) only ever sees the
previous complete version or the new complete version, never half a file. These
functions block; the recorder runs them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import json
import math
import os
import warnings
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from sleepstream.types import EPOCH_SECONDS, STAGE_NAMES, UNSCORED

#: Sleep-EDF annotation text per stage code (R&K spelling, read by MNE and EDFbrowser).
STAGE_ANNOTATION = {
    0: "Sleep stage W",
    1: "Sleep stage 1",
    2: "Sleep stage 2",
    3: "Sleep stage 3",
    4: "Sleep stage R",
    UNSCORED: "Sleep stage ?",
}

HYPNOGRAM_COLUMNS = ("epoch_index", "epoch_start", "onset_s", "stage", "confidence", "reasons")
HYPNODENSITY_COLUMNS = ("epoch_index", "epoch_start", *(f"p_{s}" for s in STAGE_NAMES))


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Run ``write(tmp)`` then fsync and rename ``tmp`` over ``path``; remove tmp on failure."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (tmp + fsync + rename)."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)

    _write_atomic(path, write)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically."""
    write_bytes_atomic(path, (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode())


def _edf_labels(names: Sequence[str]) -> list[str]:
    """EDF labels (ASCII, at most 16 characters), made unique."""
    out: list[str] = []
    for name in names:
        label = name.encode("ascii", "replace").decode()[:16] or "EEG"
        base, k = label, 1
        while label in out:
            suffix = f"-{k}"
            label, k = base[: 16 - len(suffix)] + suffix, k + 1
        out.append(label)
    return out


def edf_unit(units: str) -> str:
    """EDF physical dimension (ASCII, 8 characters): ``µV`` is written ``uV``."""
    return units.replace("µ", "u").replace("μ", "u").encode("ascii", "replace").decode()[:8]


def record_duration(fs: float) -> float:
    """EDF data-record duration (s) holding a whole number of samples at ``fs`` Hz.

    1 s for integer rates; otherwise the shortest whole number of seconds (at most 60)
    that fits, e.g. 2 s for 512.5 Hz, or a fraction of a second for rates below 1 Hz.
    """
    if not (fs > 0 and math.isfinite(fs)):
        raise ValueError(f"sampling rate {fs} Hz is not a positive number")
    if fs < 1:
        return 1.0 / fs if abs(1.0 / fs - round(1.0 / fs)) < 1e-9 else 60.0
    frac = Fraction(fs).limit_denominator(60)
    if abs(float(frac) - fs) > 1e-9 * fs:
        raise ValueError(f"sampling rate {fs} Hz fits no EDF data-record duration up to 60 s")
    return float(frac.denominator)


def _physical_range(x: np.ndarray) -> tuple[float, float]:
    lo, hi = float(np.min(x)), float(np.max(x))
    if hi - lo < 1e-6 * max(1.0, abs(lo), abs(hi)):
        lo, hi = lo - 1.0, hi + 1.0
    pad = 1e-4 * (hi - lo)  # EDF writes the range with 8 characters; leave room for rounding
    return lo - pad, hi + pad


def write_raw_segment(
    path: Path,
    samples: np.ndarray,
    fs: float,
    channels: Sequence[str],
    units: str,
    start: dt.datetime,
) -> int:
    """Write one raw segment as EDF, atomically.

    Parameters
    ----------
    path : Path
        Target ``raw_NNNN.edf``.
    samples : ndarray, shape (n_channels, n_samples)
        Values in the source's ``units`` exactly as received; non-finite values are
        written as 0 (the manifest counts them).
    fs : float
        Sampling rate in Hz.
    channels : sequence of str
        Channel names (EDF labels keep the first 16 ASCII characters).
    units : str
        Physical dimension of ``samples`` (e.g. ``"uV"``).
    start : datetime
        UTC start of the first sample (EDF+C keeps sub-second starts).

    Returns
    -------
    int
        Samples of padding added at the end to fill the last data record (the EDF format
        has no partial records); the manifest keeps the true sample count.
    """
    import edfio

    duration = record_duration(fs)
    per_record = int(round(fs * duration))
    n = samples.shape[1]
    pad = (-n) % per_record
    data = np.nan_to_num(np.asarray(samples, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if pad:
        data = np.concatenate([data, np.repeat(data[:, -1:], pad, axis=1)], axis=1)
    unit = edf_unit(units)
    signals = [
        edfio.EdfSignal(
            row, fs, label=label, physical_dimension=unit, physical_range=_physical_range(row)
        )
        for row, label in zip(data, _edf_labels(channels), strict=True)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Creating EDF+C to store microsecond starttime"
        edf = edfio.Edf(
            signals,
            recording=edfio.Recording(startdate=start.date()),
            starttime=start.time().replace(tzinfo=None),
            data_record_duration=duration,
        )
        _write_atomic(path, lambda tmp: edf.write(tmp))
    return pad


def write_stages_edf(
    path: Path, onsets: Sequence[float], stages: Sequence[int], start: dt.datetime
) -> None:
    """Write the stages as an annotation-only EDF+ file in Sleep-EDF style, atomically.

    Parameters
    ----------
    onsets : sequence of float
        Epoch onsets in seconds from the night start.
    stages : sequence of int
        Stage codes (``-1`` = unscored, written ``Sleep stage ?``); 30-s durations.
    start : datetime
        UTC night start (header start date and time, whole seconds).
    """
    import edfio

    annotations = [
        edfio.EdfAnnotation(round(float(t), 3), EPOCH_SECONDS, STAGE_ANNOTATION[int(s)])
        for t, s in zip(onsets, stages, strict=True)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        edf = edfio.Edf(
            [],
            recording=edfio.Recording(startdate=start.date()),
            starttime=start.time().replace(microsecond=0, tzinfo=None),
            annotations=annotations,
        )
        _write_atomic(path, lambda tmp: edf.write(tmp))


def write_csv_atomic(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Write a CSV (header + rows) atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_bytes_atomic(path, buf.getvalue().encode())
