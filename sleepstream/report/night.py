"""Read a recorded night directory (see :mod:`sleepstream.sinks.recorder`)."""

from __future__ import annotations

import csv
import json
import math
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sleepstream.errors import DataFileError
from sleepstream.types import EPOCH_SECONDS, N_STAGES, STAGE_NAMES, UNSCORED

_CODES = {name: k for k, name in enumerate(STAGE_NAMES)} | {"unscored": UNSCORED}


@dataclass(frozen=True)
class RecordedNight:
    """The stages of one recorded night on a contiguous 30-s grid.

    Attributes
    ----------
    path : Path
        The night directory.
    manifest : dict
        ``night.json``.
    first_index : int
        Epoch index of ``stages[0]``.
    stages : ndarray, shape (n_epochs,), int64
        Stage codes; epochs never published are ``-1``.
    confidence : ndarray, shape (n_epochs,), float64
    probabilities : ndarray, shape (n_epochs, 5), float64
        Hypnodensity (NaN where not available).
    onsets : ndarray, shape (n_epochs,), float64
        Seconds from the night start (first recorded sample): the 30-s grid
        ``epoch_grid_offset_s + 30 x epoch_index``.
    """

    path: Path
    manifest: dict[str, Any]
    first_index: int
    stages: np.ndarray
    confidence: np.ndarray
    probabilities: np.ndarray
    onsets: np.ndarray

    @property
    def n_epochs(self) -> int:
        return int(self.stages.shape[0])


def _read_csv(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in required if c not in (reader.fieldnames or [])]
            if missing:
                raise DataFileError(f"{path}: missing column(s) {', '.join(missing)}")
            return [(i + 2, row) for i, row in enumerate(reader)]
    except FileNotFoundError:
        raise DataFileError(f"{path}: file not found") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataFileError(f"{path}: not a readable CSV ({exc})") from None
    except OSError as exc:
        raise DataFileError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _num(path: Path, line: int, row: dict[str, str], key: str, kind: type = float) -> Any:
    raw = row.get(key)
    try:
        value = kind(raw)
    except (TypeError, ValueError, OverflowError):
        raise DataFileError(f"{path}: line {line}: bad {key} value {_short(raw)}") from None
    if kind is float and not math.isfinite(value):
        raise DataFileError(f"{path}: line {line}: bad {key} value {_short(raw)}")
    return value


#: The most epochs a night may span (a year of 30-s epochs): a bound on memory.
MAX_EPOCHS = 1_051_200
#: The most samples of one channel drawn in a spectrogram (24 h at 1 kHz).
MAX_SIGNAL_SAMPLES = 86_400_000


def _short(value: Any) -> str:
    """A value for a one-line message: repr, at most 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _bad(path: Path, key: str, value: Any, want: str) -> DataFileError:
    return DataFileError(f"{path}: {key} = {_short(value)}: expected {want}")


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _file_name(x: Any) -> bool:
    return (
        isinstance(x, str) and 0 < len(x.encode("utf-8", "replace")) <= 255
        and not any(c in x for c in "/\\\0") and x not in (".", "..")
    )  # fmt: skip


def night_folder(path: Path) -> Path:
    """``path`` if it is a readable folder, else a one-line :class:`DataFileError`."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise DataFileError(f"{path}: no such night directory") from None
    except (OSError, ValueError) as exc:  # name too long, a loop, a NUL byte...
        why = getattr(exc, "strerror", None) or exc
        raise DataFileError(f"{path}: cannot open: {why}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise DataFileError(f"{path}: not a directory")
    return path


def _check_segment(path: Path, i: int, seg: Any) -> None:
    key = f"segments[{i}]"
    if not isinstance(seg, dict):
        raise _bad(path, key, seg, "an object")
    checks = (
        ("file", _file_name, "a file name in the night folder"),
        ("start_s", _number, "a number of seconds"),
        ("n_samples", lambda x: isinstance(x, int) and not isinstance(x, bool) and x >= 0,
         "a count of samples"),
        ("fs", lambda x: _number(x) and x > 0, "a sampling rate in Hz"),
        ("channels", lambda x: isinstance(x, list) and all(isinstance(c, str) for c in x),
         "a list of channel names"),
    )  # fmt: skip
    for field, ok, want in checks:
        if not ok(seg.get(field)):
            raise _bad(path, f"{key}.{field}", seg.get(field), want)


def check_manifest(manifest: Any, path: Path) -> dict[str, Any]:
    """Validate the ``night.json`` fields the report reads; return the manifest.

    Missing optional fields are fine (older recorders); a field of the wrong type or
    value is a :class:`DataFileError` naming the file, the field and the value.
    """
    if not isinstance(manifest, dict) or not isinstance(manifest.get("segments"), list):
        raise DataFileError(f"{path}: not a sleepstream night manifest (no 'segments' list)")
    m = manifest
    optional = (
        ("epoch_grid_offset_s", _number, "a number of seconds or null"),
        ("source_offset_s", _number, "a number of seconds or null"),
        ("scale_to_uv", lambda x: _number(x) and x > 0, "a positive factor"),
        ("staged_channel", lambda x: isinstance(x, str), "a channel name or null"),
        ("device", lambda x: isinstance(x, str), "a device name"),
        ("profile", lambda x: isinstance(x, str), "a profile name"),
        ("status", lambda x: isinstance(x, str), "a status word"),
        ("model", lambda x: isinstance(x, dict), "an object"),
        ("recording", lambda x: isinstance(x, dict), "an object"),
        ("channels", lambda x: isinstance(x, list) and all(isinstance(c, str) for c in x),
         "a list of channel names"),
        ("files", lambda x: isinstance(x, dict) and all(_file_name(v) for v in x.values()),
         "file names in the night folder"),
        ("duration_s", _number, "a number of seconds"),
    ) + tuple(
        (k, lambda x: isinstance(x, list), "a list")
        for k in ("gaps", "lost_segments", "pending_segments")
    ) + tuple(
        (k, lambda x: isinstance(x, int) and not isinstance(x, bool) and x >= 0, "a count")
        for k in ("dropped_samples", "storage_errors", "nonfinite_samples", "n_revised")
    ) + tuple(
        (k, lambda x: isinstance(x, str), "an ISO-8601 date-time or null")
        for k in ("start", "end", "start_utc", "end_utc", "time_zone", "time_note")
    )  # fmt: skip
    for key, ok, want in optional:
        if m.get(key) is not None and not ok(m[key]):
            raise _bad(path, key, m[key], want)
    for i, seg in enumerate(m["segments"]):
        _check_segment(path, i, seg)
    for i, gap in enumerate(m.get("gaps") or []):
        if not (isinstance(gap, dict) and _number(gap.get("onset_s"))
                and _number(gap.get("duration_s"))):  # fmt: skip
            raise _bad(path, f"gaps[{i}]", gap, "an object with onset_s and duration_s")
    return m


def read_manifest(night_dir: Path) -> dict[str, Any]:
    """``night.json`` of a night directory; :class:`DataFileError` if missing or bad."""
    path = night_folder(night_dir) / "night.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataFileError(
            f"{night_dir}: no night.json (not a sleepstream night directory)"
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataFileError(f"{path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise DataFileError(f"{path}: not valid JSON (nested too deeply)") from None
    except OSError as exc:
        raise DataFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return check_manifest(manifest, path)


def load_night(night_dir: str | Path) -> RecordedNight:
    """Read the manifest, ``hypnogram.csv`` and ``hypnodensity.csv`` of a night.

    A later row for the same ``epoch_index`` (a revised stage) replaces the earlier one.

    Raises
    ------
    DataFileError
        Missing ``night.json`` or ``hypnogram.csv``, a corrupt CSV row (the message names
        the file, line and column), or no epochs at all.
    """
    root = Path(night_dir)
    manifest = read_manifest(root)
    names = manifest.get("files") or {}
    hyp_path = root / names.get("hypnogram", "hypnogram.csv")
    rows: dict[int, tuple[int, float]] = {}
    for line, row in _read_csv(hyp_path, ("epoch_index", "stage")):
        index = _num(hyp_path, line, row, "epoch_index", int)
        name = (row.get("stage") or "").strip()
        if name not in _CODES:
            raise DataFileError(f"{hyp_path}: line {line}: unknown stage {_short(name)}")
        conf = _num(hyp_path, line, row, "confidence") if row.get("confidence") else math.nan
        rows[index] = (_CODES[name], conf)
    if not rows:
        raise DataFileError(f"{hyp_path}: no epochs recorded")
    first, last = min(rows), max(rows)
    n = last - first + 1
    if first < 0 or n > MAX_EPOCHS:
        raise DataFileError(
            f"{hyp_path}: epoch_index runs from {first} to {last}: expected indices from 0 "
            f"spanning at most {MAX_EPOCHS} epochs (a year)"
        )
    stages = np.full(n, UNSCORED, dtype=np.int64)
    confidence = np.full(n, np.nan)
    offset = float(manifest.get("epoch_grid_offset_s") or 0.0)
    onsets = offset + EPOCH_SECONDS * np.arange(first, last + 1, dtype=np.float64)
    for index, (code, conf) in rows.items():
        stages[index - first], confidence[index - first] = code, conf
    probabilities = np.full((n, N_STAGES), np.nan)
    dens_path = root / names.get("hypnodensity", "hypnodensity.csv")
    if dens_path.exists():
        cols = tuple(f"p_{s}" for s in STAGE_NAMES)
        for line, row in _read_csv(dens_path, ("epoch_index", *cols)):
            index = _num(dens_path, line, row, "epoch_index", int)
            if first <= index <= last:
                probabilities[index - first] = [_num(dens_path, line, row, c) for c in cols]
    return RecordedNight(root, manifest, first, stages, confidence, probabilities, onsets)


def read_channel(night: RecordedNight, channel: str | None = None) -> tuple[np.ndarray, float, str]:
    """One channel of the raw segments on the night's timeline, in µV.

    Parameters
    ----------
    channel : str, optional
        Channel name; default: the manifest's ``staged_channel`` when recorded, else the
        first channel.

    Returns
    -------
    signal : ndarray, shape (n_samples,), float64
        µV (source values x ``scale_to_uv``); NaN where nothing was recorded (gaps, lost
        or unreadable segments). Sample 0 is the night start.
    fs : float
        Hz.
    name : str
        The channel used.

    Raises
    ------
    DataFileError
        No readable raw segment.
    """
    import edfio

    m = night.manifest
    segments = [s for s in m["segments"] if (night.path / s["file"]).is_file()]
    if not segments:
        raise DataFileError(f"{night.path}: no raw EDF segment to draw a spectrogram from")
    fs = float(segments[0]["fs"])
    names = list(segments[0]["channels"] or m.get("channels") or [])
    name = channel or (m.get("staged_channel") if m.get("staged_channel") in names else None)
    name = name or (names[0] if names else "")
    if name not in names:
        raise DataFileError(f"{night.path}: channel {name!r} not recorded; have {names}")
    end_s = float(night.onsets[-1]) + EPOCH_SECONDS  # the figure shows the scored epochs
    n_out = int(math.ceil(end_s * fs))
    if not (0 < n_out <= MAX_SIGNAL_SAMPLES):
        raise DataFileError(f"{night.path}: {end_s:.0f} s at {fs:g} Hz is too long to draw")
    out = np.full(n_out, np.nan)
    scale = float(m.get("scale_to_uv") or 1.0)
    for seg in segments:
        if float(seg["fs"]) != fs or name not in seg["channels"]:
            continue
        a = int(round(seg["start_s"] * fs))
        if a < 0 or a >= out.size:
            continue
        try:
            with warnings.catch_warnings():  # a truncated segment: draw what it holds
                warnings.simplefilter("ignore")
                edf = edfio.read_edf(night.path / seg["file"])
            row = list(seg["channels"]).index(name)
            x = edf.signals[row].data[: int(seg["n_samples"])]
        except Exception:  # noqa: BLE001 - a damaged segment is skipped: the figure shows a gap
            continue
        x = x[: max(0, out.size - a)]
        out[a : a + x.size] = x * scale
    return out, fs, name
