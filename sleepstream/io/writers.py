"""Write channels in µV to each supported format with that format's own writer.

Used to build real test files and to check that every reader gives back what was
written (``bench/formats.py``, the reader tests): FIF (``mne`` ``raw.save``),
BrainVision (``pybv``), EEGLAB (``eeglabio``), EDF (``mne.export`` via ``edfio``),
BrainFlow (``DataFilter.write_file``) and the OpenBCI GUI text format (its documented
header, written here). ``pybv`` and ``eeglabio`` are development dependencies.

Every writer takes ``data`` of shape ``(n_channels, n_samples)`` in µV, the rate in Hz
and the channel names; stage annotations, where the format has annotations, are
``(onset_s, duration_s, text)``.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

Annotations = Sequence[tuple[float, float, str]]


def _raw(data: np.ndarray, fs: float, names: Sequence[str], start: dt.datetime | None,
         annotations: Annotations) -> Any:  # fmt: skip
    import mne

    info = mne.create_info(list(names), fs, ch_types="eeg")
    raw = mne.io.RawArray(np.asarray(data, dtype=np.float64) * 1e-6, info, verbose="error")
    if start is not None:
        raw.set_meas_date(start.replace(tzinfo=dt.UTC) if start.tzinfo is None else start)
    if annotations:
        o, d, t = zip(*annotations, strict=True)
        raw.set_annotations(mne.Annotations(o, d, t, orig_time=raw.info["meas_date"]))
    return raw


def write_fif(path: Path, data: np.ndarray, fs: float, names: Sequence[str], *,
              start: dt.datetime | None = None, annotations: Annotations = ()) -> Path:  # fmt: skip
    """FIF with MNE's ``raw.save`` (``path`` must end in ``_raw.fif`` or ``.fif``)."""
    _raw(data, fs, names, start, annotations).save(path, overwrite=True, verbose="error")
    return Path(path)


def write_edf(path: Path, data: np.ndarray, fs: float, names: Sequence[str], *,
              start: dt.datetime | None = None, annotations: Annotations = ()) -> Path:  # fmt: skip
    """EDF+ with ``mne.export.export_raw`` (edfio underneath)."""
    import mne

    raw = _raw(data, fs, names, start, annotations)
    mne.export.export_raw(path, raw, fmt="edf", physical_range="auto", overwrite=True,
                          verbose="error")  # fmt: skip
    return Path(path)


def write_brainvision(path: Path, data: np.ndarray, fs: float, names: Sequence[str], *,
                      start: dt.datetime | None = None,
                      annotations: Annotations = ()) -> Path:  # fmt: skip
    """BrainVision (``.vhdr`` + ``.vmrk`` + ``.eeg``) with ``pybv`` (which takes volts),
    float32 in µV.

    Stage annotations become ``Comment`` markers with their duration in samples.
    """
    import pybv

    path = Path(path)
    events = [
        {"onset": int(round(o * fs)), "duration": max(1, int(round(d * fs))),
         "description": t, "type": "Comment"}
        for o, d, t in annotations
    ]  # fmt: skip
    meas = None
    if start is not None:
        meas = (start.replace(tzinfo=dt.UTC) if start.tzinfo is None else start).strftime(
            "%Y%m%d%H%M%S%f"
        )
    pybv.write_brainvision(
        data=np.asarray(data, dtype=np.float64) * 1e-6, sfreq=fs, ch_names=list(names),
        fname_base=path.stem, folder_out=path.parent, overwrite=True,
        events=events or None, unit="µV", fmt="binary_float32", meas_date=meas,
    )  # fmt: skip
    return path.with_suffix(".vhdr")


def write_eeglab(path: Path, data: np.ndarray, fs: float, names: Sequence[str], *,
                 annotations: Annotations = ()) -> Path:  # fmt: skip
    """EEGLAB ``.set`` (data inside) with ``eeglabio`` (which takes volts)."""
    from eeglabio.raw import export_set

    ann = None
    if annotations:
        o, d, t = zip(*annotations, strict=True)
        ann = [np.asarray(t), np.asarray(o, dtype=float), np.asarray(d, dtype=float)]
    export_set(str(path), np.asarray(data, dtype=np.float64) * 1e-6, fs, list(names),
               annotations=ann)  # fmt: skip
    return Path(path)


def board_array(
    board: str,
    data: np.ndarray,
    rows: Mapping[str, int] | None = None,
    *,
    t0: float = 1.7e9,
    timestamps: np.ndarray | None = None,
) -> np.ndarray:
    """A BrainFlow data array of ``board`` holding ``data`` (µV) in its EEG rows.

    Parameters
    ----------
    board : str
        Board name (``cyton``, ``synthetic``...).
    data : ndarray, shape (n_channels, n)
        µV; row ``i`` goes to the board's EEG row ``i`` unless ``rows`` maps electrode
        names to row indices of ``data``.
    t0 : float
        Unix time of the first sample (``timestamps`` overrides: Unix seconds per sample).
    """
    from sleepstream.io.board_files import board_layout

    layout = board_layout(board)
    n = data.shape[1]
    out = np.zeros((layout.n_rows, n))
    out[0] = np.arange(n) % 256  # package number
    names = list(layout.names)
    for k, row in enumerate(layout.eeg_rows):
        if rows is None:
            if k < data.shape[0]:
                out[row] = data[k]
        elif names[k] in rows:
            out[row] = data[rows[names[k]]]
    out[layout.timestamp_row] = (
        np.asarray(timestamps, dtype=np.float64)
        if timestamps is not None
        else t0 + np.arange(n) / layout.fs
    )
    return out


def write_brainflow(path: Path, array: np.ndarray) -> Path:
    """A BrainFlow data array written with BrainFlow's own ``DataFilter.write_file``."""
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    from brainflow.data_filter import DataFilter

    DataFilter.write_file(np.ascontiguousarray(array, dtype=np.float64), str(path), "w")
    return Path(path)


#: OpenBCI GUI ``%Board`` class of each board name.
_GUI_CLASS = {
    "cyton": "OpenBCI_GUI$BoardCytonSerial",
    "cyton-daisy": "OpenBCI_GUI$BoardCytonSerialDaisy",
    "ganglion": "OpenBCI_GUI$BoardGanglionBLE",
    "synthetic": "OpenBCI_GUI$BoardBrainFlowSynthetic",
}


def write_openbci(path: Path, board: str, array: np.ndarray) -> Path:
    """A BrainFlow data array as the OpenBCI GUI writes it (``DataWriterODF``).

    Header: ``%OpenBCI Raw EXG Data``, ``%Number of channels``, ``%Sample Rate``,
    ``%Board``; then the column names (``Sample Index``, ``EXG Channel i``,
    ``Timestamp``, ``Other``...) and ``Timestamp (Formatted)``; then one comma-separated
    row per sample ending with the local time ``yyyy-MM-dd HH:mm:ss.SSS``.
    """
    from sleepstream.io.board_files import board_layout

    layout = board_layout(board)
    cols = ["Other"] * layout.n_rows
    cols[0] = "Sample Index"
    for i, row in enumerate(layout.eeg_rows):
        cols[row] = f"EXG Channel {i}"
    cols[layout.timestamp_row] = "Timestamp"
    with Path(path).open("w", encoding="utf-8") as f:
        f.write("%OpenBCI Raw EXG Data\n")
        f.write(f"%Number of channels = {len(layout.eeg_rows)}\n")
        f.write(f"%Sample Rate = {layout.fs:g} Hz\n")
        f.write(f"%Board = {_GUI_CLASS.get(board, board)}\n")
        f.write(", ".join(cols) + ", Timestamp (Formatted)\n")
        for j in range(array.shape[1]):
            stamp = dt.datetime.fromtimestamp(array[layout.timestamp_row, j])
            when = stamp.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
            f.write(", ".join(repr(float(v)) for v in array[:, j]) + f", {when}\n")
    return Path(path)


def write_edf_d(
    path: Path,
    signal: np.ndarray,
    fs: float,
    onsets: Sequence[float],
    *,
    record_s: float = 1.0,
    label: str = "EEG Fpz-Cz",
    unit: str = "uV",
    annotations: Annotations = (),
    start: dt.datetime = dt.datetime(1989, 4, 24, 16, 13),
    physical_max: float = 500.0,
) -> Path:
    """One channel as EDF+D (discontinuous), byte by byte: edfio writes only EDF+C.

    ``signal`` holds ``len(onsets)`` records of ``fs * record_s`` samples (µV, clipped to
    ±``physical_max``); record ``k`` starts at ``onsets[k]`` seconds, each record's
    time-keeping annotation says so. ``annotations`` follow in the records' annotation
    signal, a few per record.
    """
    spr = int(round(fs * record_s))
    n = len(onsets)
    ann_bytes = 120
    scale = 32767 / physical_max
    x = np.clip(np.asarray(signal, dtype=np.float64), -physical_max, physical_max)
    digital = np.round(x * scale).astype("<i2").reshape(n, spr)

    def f(v: object, width: int) -> bytes:
        return str(v).encode("latin-1")[:width].ljust(width)

    pm = f"{physical_max:g}"
    head = (
        f("0", 8) + f("X X X X", 80)
        + f(f"Startdate {start.strftime('%d-%b-%Y').upper()} X X X", 80)
        + f(start.strftime("%d.%m.%y"), 8) + f(start.strftime("%H.%M.%S"), 8)
        + f(256 * 3, 8) + f("EDF+D", 44) + f(n, 8) + f(f"{record_s:g}", 8) + f(2, 4)
    )  # fmt: skip
    sig = (
        f(label, 16) + f("EDF Annotations", 16) + f("", 80) * 2 + f(unit, 8) + f("", 8)
        + f(f"-{pm}", 8) + f(-1, 8) + f(pm, 8) + f(1, 8) + f(-32767, 8) + f(-32768, 8)
        + f(32767, 8) + f(32767, 8) + f("", 80) * 2 + f(spr, 8) + f(ann_bytes // 2, 8)
        + f("", 32) * 2
    )  # fmt: skip
    pending = [f"+{o:g}\x15{d:g}\x14{t}\x14\x00".encode() for o, d, t in annotations]
    with Path(path).open("wb") as out:
        out.write(head + sig)
        for k, onset in enumerate(onsets):
            tal = f"+{onset:g}\x14\x14\x00".encode()
            while pending and len(tal) + len(pending[0]) <= ann_bytes:
                tal += pending.pop(0)
            out.write(digital[k].tobytes() + tal.ljust(ann_bytes, b"\x00"))
    if pending:
        raise ValueError(f"{path}: {len(pending)} annotations did not fit in {n} records")
    return Path(path)
