"""``sleepstream export-bids``: a recorded night as a BIDS EEG recording (with mne-bids).

Writes, under ``--bids-root``, ``sub-S/ses-N/eeg/sub-S_ses-N_task-sleep_``:

- ``eeg.edf``: the night's raw channels joined into one continuous EDF, in µV (the
  recorder's segments times the profile's ``scale_to_uv``), starting at the night start
  (``night.json`` ``start``: UTC clock time for a live night, the recording's own
  zone-less local time for a replayed file; ``events.json`` says which). A gap in the
  recording is zeros there and a ``BAD_ACQ_SKIP`` event in the events file;
- ``events.tsv``: one row per scored 30-s epoch: ``onset``, ``duration`` (30),
  ``trial_type`` (``Sleep stage W/N1/N2/N3/R``, unscored ``Sleep stage ?``) and the
  columns ``stage``, ``confidence``, ``quality`` (the epoch's flags, ``ok`` when none),
  ``model_id`` and ``epoch_index``;
- ``events.json``: the columns' descriptions and ``StageScoring``: the model card's id
  and sha256 and the software that scored the night;
- ``channels.tsv``, ``eeg.json``, ``participants.tsv``, ``dataset_description.json`` and
  the other files mne-bids writes.

``mne_bids.read_raw_bids`` reads it back with the stages as annotations;
:func:`sleepstream.io.read_hypnogram` reads the events file as a hypnogram.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import math
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from sleepstream.errors import DataFileError, UsageError
from sleepstream.types import EPOCH_SECONDS, UNSCORED

HELP = "write a recorded night as BIDS (EEG as EDF, events with stages, model sidecar)"

#: Stage code -> BIDS trial_type (Sleep-EDF/MNE vocabulary, read back by the readers).
TRIAL_TYPES = {
    0: "Sleep stage W",
    1: "Sleep stage N1",
    2: "Sleep stage N2",
    3: "Sleep stage N3",
    4: "Sleep stage R",
    UNSCORED: "Sleep stage ?",
}
_STAGE_NAMES = {0: "W", 1: "N1", 2: "N2", 3: "N3", 4: "REM", UNSCORED: "unscored"}
_EXTRA = {
    "stage": "AASM stage scored by the model (W, N1, N2, N3, REM; unscored)",
    "confidence": "probability of the scored stage (0-1); n/a when unscored",
    "quality": "signal-quality flags of the epoch, ';'-separated; ok when none",
    "model_id": "id of the model card that scored the epoch",
    "epoch_index": "index of the epoch on the night's 30-s grid",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("night_dir", metavar="NIGHT_DIR", type=Path,
                        help="a recorded night: STATE_DIR/nights/<device>/<start>/")  # fmt: skip
    parser.add_argument("--bids-root", type=Path, required=True, help="BIDS dataset folder")
    parser.add_argument("--subject", required=True, help="BIDS subject label (letters, digits)")
    parser.add_argument("--session", required=True, help="BIDS session label (letters, digits)")
    parser.add_argument("--task", default="sleep", help="BIDS task label (%(default)s)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace this subject/session/task if present"
    )


def _label(name: str, value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9]+", value or ""):
        raise UsageError(f"--{name} {value!r}: a BIDS label is letters and digits only")
    return value


def _csv_rows(path: Path) -> dict[int, dict[str, str]]:
    """``hypnogram.csv`` rows by epoch index (a revised row replaces the causal one)."""
    rows: dict[int, dict[str, str]] = {}
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                try:
                    rows[int(row["epoch_index"])] = row
                except (KeyError, TypeError, ValueError):
                    continue
    except (OSError, UnicodeDecodeError, csv.Error):
        return {}
    return rows


def _night_start(manifest: dict[str, Any], night_dir: Path) -> dt.datetime:
    """The night's start for the EDF header: a UTC start as UTC clock time, a recording's
    zone-less local start as it is (EDF has no zone either)."""
    raw = manifest.get("start") or manifest.get("start_utc")
    try:
        t = dt.datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        raise DataFileError(f"{night_dir}/night.json: bad start time {raw!r}") from None
    return t.astimezone(dt.UTC).replace(tzinfo=None) if t.tzinfo else t


def _segments(
    night_dir: Path, manifest: dict[str, Any]
) -> tuple[list[dict[str, Any]], float, list[str]]:
    segs = [s for s in manifest.get("segments", []) if (night_dir / str(s.get("file"))).is_file()]
    if not segs:
        raise DataFileError(f"{night_dir}: no raw EDF segment to export")
    fs = float(segs[0]["fs"])
    channels = list(segs[0].get("channels") or manifest.get("channels") or [])
    for s in segs:
        if float(s["fs"]) != fs or list(s.get("channels") or channels) != channels:
            raise DataFileError(
                f"{night_dir}: {s['file']} has {s.get('channels')} at {s['fs']} Hz, the night "
                f"started with {channels} at {fs:g} Hz; one BIDS recording needs one layout"
            )
    return sorted(segs, key=lambda s: float(s["start_s"])), fs, channels


def write_night_edf(night_dir: Path, manifest: dict[str, Any], out: Path, end_s: float) -> float:
    """Join the raw segments into one EDF at ``out`` (µV); returns its duration in s."""
    from sleepstream.io.edf import EdfRecording
    from sleepstream.io.edf_writer import EdfStreamWriter, physical_range

    segs, fs, channels = _segments(night_dir, manifest)
    scale = float(manifest.get("scale_to_uv") or 1.0)
    recs = [EdfRecording(night_dir / s["file"]) for s in segs]
    ranges = [r.physical_range(i) for r in recs for i in range(len(r.channels))]
    lo, hi = sorted((min(a for a, _ in ranges) * scale, max(b for _, b in ranges) * scale))
    rng = physical_range(lo, hi)
    n_total = max(
        int(math.ceil(end_s * fs)),
        max(int(round(float(s["start_s"]) * fs)) + int(s["n_samples"]) for s in segs),
    )
    pos = 0  # samples written so far
    start = _night_start(manifest, night_dir)
    with EdfStreamWriter(out, channels, fs, [rng] * len(channels), start) as w:
        for seg, rec in zip(segs, recs, strict=True):
            a = int(round(float(seg["start_s"]) * fs))
            if a > pos:  # a gap: zeros, marked BAD_ACQ_SKIP in the events
                w.write(np.zeros((len(channels), a - pos)))
                pos = a
            skip = pos - a  # samples of this segment already written (an overlap)
            remaining = int(seg["n_samples"])  # the rest is the segment's padding
            for block in rec.blocks(list(range(len(rec.channels))), block_s=60.0):
                x = block.samples[:, :remaining]
                remaining -= x.shape[1]
                if skip:
                    drop = min(skip, x.shape[1])
                    x, skip = x[:, drop:], skip - drop
                if x.shape[1]:
                    w.write(x * scale)
                    pos += x.shape[1]
                if remaining <= 0:
                    break
        if n_total > pos:
            w.write(np.zeros((len(channels), n_total - pos)))
    return n_total / fs


def export_night(
    night_dir: Path,
    bids_root: Path,
    subject: str,
    session: str,
    task: str = "sleep",
    *,
    overwrite: bool = False,
) -> Path:
    """Write the night as BIDS; returns the path of the EEG file written."""
    import mne
    from mne_bids import BIDSPath, write_raw_bids

    from sleepstream.report.night import load_night

    night = load_night(night_dir)
    manifest = night.manifest
    rows = _csv_rows(night_dir / manifest.get("files", {}).get("hypnogram", "hypnogram.csv"))
    model = manifest.get("model") or {}
    model_id, card_sha = str(model.get("id", "")), str(model.get("card_sha256", ""))
    end_s = float(night.onsets[-1]) + EPOCH_SECONDS
    bids_path = BIDSPath(
        subject=_label("subject", subject), session=_label("session", session),
        task=_label("task", task), datatype="eeg", suffix="eeg", extension=".edf",
        root=bids_root,
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="sleepstream-bids-") as tmp:
        edf = Path(tmp) / "night.edf"
        write_night_edf(night_dir, manifest, edf, end_s)
        raw = mne.io.read_raw_edf(edf, preload=False, verbose="error")
        onsets, durations, texts = [], [], []
        for onset, stage in zip(night.onsets, night.stages, strict=True):
            onsets.append(float(onset))
            durations.append(EPOCH_SECONDS)
            texts.append(TRIAL_TYPES[int(stage)])
        for gap in manifest.get("gaps", []):
            onsets.append(float(gap["onset_s"]))
            durations.append(float(gap["duration_s"]))
            texts.append("BAD_ACQ_SKIP")
        raw.set_annotations(
            mne.Annotations(onsets, durations, texts, orig_time=raw.info["meas_date"])
        )
        try:
            write_raw_bids(raw, bids_path, format="EDF", overwrite=overwrite, verbose=False)
        except FileExistsError:
            raise UsageError(
                f"{bids_path.fpath}: already exists; give --overwrite to replace it"
            ) from None
    events = bids_path.copy().update(suffix="events", extension=".tsv")
    _add_columns(events.fpath, night, rows, model_id)
    sidecar = events.copy().update(extension=".json").fpath
    doc = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
    for col, text in _EXTRA.items():
        doc[col] = {"Description": text}
    doc["StageScoring"] = {
        "Description": "30-s sleep stages scored in real time by sleepstream",
        "ModelID": model_id,
        "ModelCardSHA256": card_sha,
        "Profile": manifest.get("profile"),
        "StagedChannel": manifest.get("staged_channel"),
        "NightStart": manifest.get("start") or manifest.get("start_utc"),
        "TimeNote": manifest.get("time_note")
        or "times are UTC (the recorder's clock at the first sample)",
    }
    sidecar.write_text(json.dumps(doc, indent=2) + "\n")
    return Path(bids_path.fpath)


def _add_columns(path: Path, night: Any, rows: dict[int, dict[str, str]], model_id: str) -> None:
    """Append the stage, confidence, quality, model id and epoch index to events.tsv."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        fields = list(reader.fieldnames or [])
        table = list(reader)
    by_onset = {round(float(o), 3): k for k, o in enumerate(night.onsets)}
    for row in table:
        k = by_onset.get(round(float(row["onset"]), 3))
        if k is None or not row["trial_type"].startswith("Sleep stage"):
            row.update({c: "n/a" for c in _EXTRA})
            continue
        index = night.first_index + k
        csv_row = rows.get(index, {})
        conf = float(night.confidence[k])
        flags = (csv_row.get("quality") or csv_row.get("reasons") or "").strip()
        row.update(
            stage=_STAGE_NAMES[int(night.stages[k])],
            confidence="n/a" if not math.isfinite(conf) else f"{conf:.4f}",
            quality=flags.replace(",", ";") or "ok",
            model_id=model_id or "n/a",
            epoch_index=str(index),
        )
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, [*fields, *_EXTRA], delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(table)


def run(args: argparse.Namespace) -> int:
    path = export_night(
        args.night_dir, args.bids_root, args.subject, args.session, args.task,
        overwrite=args.overwrite,
    )  # fmt: skip
    print(path)
    return 0
