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


#: Mode of every file and folder the recorder creates (raw EEG and hypnograms are private).
FILE_MODE, DIR_MODE = 0o600, 0o700


def make_private(path: Path) -> None:
    """``chmod`` a folder to :data:`DIR_MODE` (the umask never widens what we create)."""
    os.chmod(path, DIR_MODE)


def make_private_dirs(path: Path, root: Path) -> None:
    """Create ``path`` and every missing folder between it and ``root``, mode 0700.

    Folders below ``root`` that already exist are narrowed to 0700 too; an existing
    ``root`` (the state directory, the daemon's) is left as it is, a missing one is
    created 0700.
    """
    path, root = Path(path), Path(root)
    try:
        levels = path.relative_to(root).parts
    except ValueError:
        levels, root = path.parts[1:], Path(path.anchor)
    if not root.is_dir():
        root.mkdir(mode=DIR_MODE, parents=True)
        make_private(root)
    p = root
    for part in levels:
        p = p / part
        try:
            p.mkdir(mode=DIR_MODE)
        except FileExistsError:
            if not p.is_dir():
                raise NotADirectoryError(f"{p} exists and is not a directory") from None
        if p.stat().st_mode & 0o777 != DIR_MODE:
            make_private(p)


def reserve_space(path: Path, n_bytes: int) -> bool:
    """Allocate ``n_bytes`` to a private file at ``path`` (freed later to save the
    stages when the disk fills); False when the space is not there."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except OSError:
        return False
    try:
        os.posix_fallocate(fd, 0, n_bytes)
    except OSError:
        os.close(fd)
        with contextlib.suppress(OSError):
            path.unlink()
        return False
    os.close(fd)
    return True


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Run ``write(tmp)`` then fsync and rename ``tmp`` over ``path``; remove tmp on failure.

    ``tmp`` is created (and kept) mode 0600 before ``write`` fills it, whatever the umask.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        try:
            os.fchmod(fd, FILE_MODE)
        finally:
            os.close(fd)
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


def record_layout(fs: float) -> tuple[float, int]:
    """EDF data-record duration (s) and samples per record for a rate of ``fs`` Hz.

    1 s for integer rates; otherwise the shortest whole number of seconds (at most 60)
    holding a whole number of samples, e.g. 2 s for 512.5 Hz; ``1 / fs`` for rates
    below 1 Hz whose period is a whole number of seconds.

    Raises
    ------
    ValueError
        A rate no EDF data record can hold (not positive, irrational-looking, or more
        samples per record than the 8-character header field allows).
    """
    if not (fs > 0 and math.isfinite(fs)):
        raise ValueError(f"sampling rate {fs} Hz is not a positive number")
    if fs < 1:
        period = 1.0 / fs
        if abs(period - round(period)) > 1e-9 * period or round(period) > 99_999_999:
            raise ValueError(f"sampling rate {fs} Hz: its period is not a whole number of seconds")
        return float(round(period)), 1
    frac = Fraction(fs).limit_denominator(60)
    if abs(float(frac) - fs) > 1e-9 * fs:
        raise ValueError(f"sampling rate {fs} Hz fits no EDF data-record duration up to 60 s")
    per_record = int(round(fs * frac.denominator))
    if per_record > 99_999_999:
        raise ValueError(f"sampling rate {fs} Hz: too many samples per EDF data record")
    return float(frac.denominator), per_record


def record_duration(fs: float) -> float:
    """EDF data-record duration in s for ``fs`` Hz (see :func:`record_layout`)."""
    return record_layout(fs)[0]


#: The widest physical range an 8-character EDF header field holds (source units).
EDF_PHYSICAL_MIN, EDF_PHYSICAL_MAX = -9_999_999.0, 99_999_999.0


def _physical_range(x: np.ndarray) -> tuple[float, float]:
    lo, hi = float(np.min(x)), float(np.max(x))
    if hi - lo < 1e-6 * max(1.0, abs(lo), abs(hi)):
        lo, hi = lo - 1.0, hi + 1.0
    pad = 1e-4 * (hi - lo)  # EDF writes the range with 8 characters; leave room for rounding
    lo = max(EDF_PHYSICAL_MIN, lo - pad)
    hi = min(EDF_PHYSICAL_MAX, hi + pad)
    if hi - lo < 2.0 and (lo == EDF_PHYSICAL_MIN or hi == EDF_PHYSICAL_MAX):  # all off-scale
        lo, hi = (EDF_PHYSICAL_MAX - 2.0, EDF_PHYSICAL_MAX) if lo > 0 else (lo, lo + 2.0)
    return lo, hi


def _recording(start: dt.datetime) -> Any:
    """EDF+ recording field: the start date, or ``Startdate X`` outside EDF's 1985-2084."""
    import edfio

    date = start.date()
    return edfio.Recording(startdate=date if 1985 <= date.year <= 2084 else None)


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
        written as 0 and values beyond what an EDF header can state
        (:data:`EDF_PHYSICAL_MIN`, :data:`EDF_PHYSICAL_MAX`) are clipped to it (the
        manifest counts both).
    fs : float
        Sampling rate in Hz.
    channels : sequence of str
        Channel names (EDF labels keep the first 16 ASCII characters).
    units : str
        Physical dimension of ``samples`` (e.g. ``"uV"``).
    start : datetime
        Start of the first sample, naive local time (EDF stores local time; EDF+C
        keeps sub-second starts).

    Returns
    -------
    int
        Samples of padding added at the end to fill the last data record (the EDF format
        has no partial records); the manifest keeps the true sample count.
    """
    import edfio

    duration, per_record = record_layout(fs)
    n = samples.shape[1]
    pad = (-n) % per_record
    data = np.nan_to_num(np.asarray(samples, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    data = np.clip(data, EDF_PHYSICAL_MIN, EDF_PHYSICAL_MAX)
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
            recording=_recording(start),
            starttime=start.time().replace(tzinfo=None),
            data_record_duration=duration,
        )
        _write_atomic(path, lambda tmp: edf.write(tmp))
    return int(pad)


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
        Night start, naive local time (header start date and time, whole seconds).
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
            recording=_recording(start),
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
