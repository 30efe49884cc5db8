"""``sleepstream inspect``: what a recording or hypnogram holds.

Prints the format, channels (rate, unit), start, duration and gaps of any supported
recording (see :mod:`sleepstream.io.recording`), and the epoch and stage counts of its
hypnogram after the standard trim (30 min before the first to 30 min after the last
sleep epoch). Only headers and annotations are read, never the samples, so a 24-hour
file is inspected in a moment.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from sleepstream.errors import UsageError
from sleepstream.types import EPOCH_SECONDS, UNSCORED

HELP = "show channels, rate, duration and trimmed stage counts of a recording or hypnogram"

#: Suffixes of files that are hypnograms, never recordings.
_HYPNOGRAM_SUFFIXES = {"", ".txt", ".hyp", ".csv", ".tsv"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path",
        metavar="PSG",
        type=Path,
        help="a recording (EDF/BDF, EDF+D, FIF, BrainVision .vhdr, EEGLAB .set, GDF, any "
        "format MNE reads, an OpenBCI GUI or BrainFlow file, a DREAMS excerpt .txt) or a "
        "hypnogram alone (EDF+, .hyp text, ISRUC, DREAMS text, BIDS events.tsv)",
    )
    parser.add_argument(
        "--hypnogram",
        type=Path,
        default=None,
        help="hypnogram file (default: stage annotations in the file, a Sleep-EDF "
        "*-Hypnogram.edf, a DREAMS Hypnogram_*.txt or a BIDS *_events.tsv next to it)",
    )
    parser.add_argument("--channel", default=None, help="channel name (default: first EEG)")
    parser.add_argument(
        "--board", default=None, help="board layout of a BrainFlow file (cyton, synthetic, ...)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--no-trim", dest="no_trim", action="store_true", help="count the whole recording"
    )


def _kind(path: Path) -> str:
    """``recording`` or ``hypnogram``."""
    from sleepstream.io.recording import sniff_format

    fmt = sniff_format(path)
    if fmt == "edf":
        from sleepstream.io.edf import EdfRecording

        if not EdfRecording(path).channels:
            return "hypnogram"  # annotations only, e.g. a Sleep-EDF *-Hypnogram.edf
        return "recording"
    suffix = path.suffix.lower()
    if fmt == "mne" and (suffix in _HYPNOGRAM_SUFFIXES or suffix[1:].isdigit()):
        return "hypnogram"
    return "recording"


def sibling_hypnogram(path: Path) -> Path | None:
    """Sleep-EDF ``SC4001E0-PSG.edf`` -> ``SC4001E?-Hypnogram.edf``; DREAMS
    ``excerptN.txt`` -> ``Hypnogram_excerptN.txt``; BIDS ``*_eeg.<ext>`` ->
    ``*_events.tsv``; None when there is none (or the folder cannot be read)."""
    try:
        return _sibling(path)
    except OSError:
        return None


def _sibling(path: Path) -> Path | None:
    if path.name.endswith("-PSG.edf"):
        hits = sorted(path.parent.glob(f"{path.name[:7]}*-Hypnogram.edf"))
        return hits[0] if hits else None
    if "_eeg." in path.name:
        events = path.with_name(path.name.split("_eeg.")[0] + "_events.tsv")
        return events if events.is_file() else None
    candidate = path.with_name(f"Hypnogram_{path.stem}.txt")
    return candidate if candidate.is_file() else None


def _recording_report(
    path: Path, hypnogram: Path | None, channel: str | None, board: str | None
) -> tuple[dict[str, Any], Any, Path | None]:
    from sleepstream.io.edf import EdfRecording
    from sleepstream.io.processing import fit_to_recording, make_hypnogram
    from sleepstream.io.readers import own_hypnogram, read_hypnogram
    from sleepstream.io.recording import open_recording, pick_channel

    rec = open_recording(path, board=board)
    info = rec.channels[pick_channel(rec, channel)]
    duration = rec.duration_s
    hyp_path = hypnogram or sibling_hypnogram(path)
    hyp = read_hypnogram(hyp_path) if hyp_path is not None else own_hypnogram(rec)
    if hyp is not None and hyp_path is None:
        hyp_path = path
    if hyp is None:
        hyp = make_hypnogram(np.full(int(duration // EPOCH_SECONDS), UNSCORED), str(path))
    hyp = fit_to_recording(hyp, duration, str(path))
    start = rec.start_datetime
    report = {
        "format": rec.format,
        "channels": [{"name": c.name, "fs": c.fs, "unit": c.unit} for c in rec.channels],
        "channel": info.name,
        "fs": float(info.fs),
        "duration_s": float(duration),
        "start": "" if start is None else start.isoformat(),
        "gaps": [
            {"onset_s": onset, "duration_s": length}
            for onset, length in (rec.gaps if isinstance(rec, EdfRecording) else [])
        ],
    }
    rec.close()
    return report, hyp, hyp_path


def inspect_path(
    path: Path,
    hypnogram: Path | None,
    channel: str | None,
    trim: bool = True,
    board: str | None = None,
) -> dict[str, Any]:
    """The report as a dict (what ``--json`` prints)."""
    from sleepstream.io.processing import trim_hypnogram
    from sleepstream.io.readers import read_hypnogram
    from sleepstream.io.recording import check_file

    if hypnogram is not None:
        check_file(hypnogram)
    kind = _kind(path)
    report: dict[str, Any] = {"path": str(path), "format": kind}
    if kind == "hypnogram":
        hyp = read_hypnogram(path)
        hyp_path: Path | None = path
        report.update(channels=[], channel=None, fs=None, duration_s=len(hyp) * EPOCH_SECONDS)
    else:
        rec_report, hyp, hyp_path = _recording_report(path, hypnogram, channel, board)
        report.update(rec_report)
        if hyp_path is not None and (hyp.stages == UNSCORED).all():
            hyp_path = None
    n_total = len(hyp)
    if trim:
        hyp = trim_hypnogram(hyp)
        if kind == "recording":
            report["trim_offset_s"] = float(hyp.onsets[0]) if len(hyp) else 0.0
    report.update(
        hypnogram=None if hyp_path is None else str(hyp_path),
        trimmed=bool(trim),
        n_epochs_total=int(n_total),
        n_epochs=len(hyp),
        stage_counts=hyp.stage_counts(),
        unscored=int((hyp.stages == UNSCORED).sum()),
    )
    return report


def _print_text(r: dict[str, Any]) -> None:
    print(f"file:       {r['path']} ({r['format']})")
    if r["channels"]:
        print("channels:")
        for c in r["channels"]:
            mark = "*" if c["name"] == r["channel"] else " "
            print(f"  {mark} {c['name']:<20} {c['fs']:>8g} Hz  {c['unit']}")
        print(f"channel:    {r['channel']} at {r['fs']:g} Hz")
        if r.get("start"):
            zone = "UTC" if r["start"].endswith("+00:00") else "the file's clock, zone unknown"
            print(f"start:      {r['start']} ({zone})")
    print(f"duration:   {r['duration_s']:.0f} s ({r['duration_s'] / 3600:.2f} h)")
    for g in r.get("gaps", []):
        print(f"gap:        {g['duration_s']:g} s at {g['onset_s']:g} s")
    print(f"hypnogram:  {r['hypnogram'] or '(none)'}")
    what = "after the 30-min wake trim" if r["trimmed"] else "whole recording"
    print(f"epochs:     {r['n_epochs']} of {r['n_epochs_total']} ({what})")
    counts = "  ".join(f"{k} {v}" for k, v in r["stage_counts"].items())
    print(f"stages:     {counts}  unscored {r['unscored']}")


def run(args: argparse.Namespace) -> int:
    if args.path is None:
        raise UsageError("sleepstream inspect: PSG path is required")
    report = inspect_path(
        args.path, args.hypnogram, args.channel, trim=not args.no_trim, board=args.board
    )
    if args.json:
        print(json.dumps(report))
    else:
        _print_text(report)
    return 0
