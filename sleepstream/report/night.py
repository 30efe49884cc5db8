"""Read a recorded night directory (see :mod:`sleepstream.sinks.recorder`)."""

from __future__ import annotations

import csv
import json
import math
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
        Seconds from the night start (first recorded sample).
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


def _num(path: Path, line: int, row: dict[str, str], key: str, kind: type = float) -> Any:
    raw = row.get(key)
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        raise DataFileError(f"{path}: line {line}: bad {key} value {raw!r}") from None
    if kind is float and not math.isfinite(value):
        raise DataFileError(f"{path}: line {line}: bad {key} value {raw!r}")
    return value


def read_manifest(night_dir: Path) -> dict[str, Any]:
    """``night.json`` of a night directory; :class:`DataFileError` if missing or bad."""
    path = night_dir / "night.json"
    if not night_dir.is_dir():
        raise DataFileError(f"{night_dir}: not a directory")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataFileError(
            f"{night_dir}: no night.json (not a sleepstream night directory)"
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataFileError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or "segments" not in manifest:
        raise DataFileError(f"{path}: not a sleepstream night manifest (no 'segments' list)")
    return manifest


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
    hyp_path = root / manifest.get("files", {}).get("hypnogram", "hypnogram.csv")
    rows: dict[int, tuple[int, float, float]] = {}
    for line, row in _read_csv(hyp_path, ("epoch_index", "stage")):
        index = _num(hyp_path, line, row, "epoch_index", int)
        name = (row.get("stage") or "").strip()
        if name not in _CODES:
            raise DataFileError(f"{hyp_path}: line {line}: unknown stage {name!r}")
        conf = _num(hyp_path, line, row, "confidence") if row.get("confidence") else math.nan
        onset = (
            _num(hyp_path, line, row, "onset_s") if row.get("onset_s") else index * EPOCH_SECONDS
        )
        rows[index] = (_CODES[name], conf, onset)
    if not rows:
        raise DataFileError(f"{hyp_path}: no epochs recorded")
    first, last = min(rows), max(rows)
    n = last - first + 1
    stages = np.full(n, UNSCORED, dtype=np.int64)
    confidence = np.full(n, np.nan)
    offset = float(manifest.get("epoch_grid_offset_s") or 0.0)
    onsets = offset + EPOCH_SECONDS * np.arange(first, last + 1, dtype=np.float64)
    for index, (code, conf, onset) in rows.items():
        stages[index - first], confidence[index - first], onsets[index - first] = code, conf, onset
    probabilities = np.full((n, N_STAGES), np.nan)
    dens_path = root / manifest.get("files", {}).get("hypnodensity", "hypnodensity.csv")
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
    segments = [s for s in m.get("segments", []) if (night.path / s["file"]).exists()]
    if not segments:
        raise DataFileError(f"{night.path}: no raw EDF segment to draw a spectrogram from")
    fs = float(segments[0]["fs"])
    names = list(segments[0].get("channels") or m.get("channels") or [])
    name = channel or (m.get("staged_channel") if m.get("staged_channel") in names else None)
    name = name or (names[0] if names else "")
    if name not in names:
        raise DataFileError(f"{night.path}: channel {name!r} not recorded; have {names}")
    end_s = max(
        max(s["start_s"] + s["n_samples"] / s["fs"] for s in segments),
        float(night.onsets[-1]) + EPOCH_SECONDS,
    )
    out = np.full(int(math.ceil(end_s * fs)), np.nan)
    scale = float(m.get("scale_to_uv") or 1.0)
    for seg in segments:
        if float(seg["fs"]) != fs or name not in seg.get("channels", [name]):
            continue
        try:
            edf = edfio.read_edf(night.path / seg["file"])
            row = list(seg["channels"]).index(name)
            x = edf.signals[row].data[: int(seg["n_samples"])]
        except Exception:  # a damaged segment is skipped: the figure shows a gap
            continue
        a = int(round(seg["start_s"] * fs))
        if a < 0:
            continue
        x = x[: max(0, out.size - a)]
        out[a : a + x.size] = x * scale
    return out, fs, name
