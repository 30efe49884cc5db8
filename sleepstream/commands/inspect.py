"""``sleepstream inspect``: what a recording or hypnogram holds.

Prints the channels, rate and duration, and the epoch and stage counts after the standard
trim (30 min before the first to 30 min after the last sleep epoch).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from sleepstream.errors import ChannelNotFoundError, DataFileError, UsageError
from sleepstream.types import EPOCH_SECONDS, UNSCORED

HELP = "show channels, rate, duration and trimmed stage counts of a recording or hypnogram"

_EDF_SUFFIXES = {".edf", ".bdf", ".rec"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path",
        metavar="PSG",
        type=Path,
        help="EDF/BDF recording (Sleep-EDF, ISRUC .rec, any EDF+), a DREAMS excerpt .txt, "
        "or a hypnogram alone (EDF+, .hyp text, ISRUC or DREAMS text)",
    )
    parser.add_argument(
        "--hypnogram",
        type=Path,
        default=None,
        help="hypnogram file (default: EDF+ stages in the file, a Sleep-EDF "
        "*-Hypnogram.edf or DREAMS Hypnogram_*.txt next to it)",
    )
    parser.add_argument("--channel", default=None, help="channel name (default: first EEG)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--no-trim", dest="no_trim", action="store_true", help="count the whole recording"
    )


def _kind(path: Path) -> str:
    from sleepstream.io.edf import check_file
    from sleepstream.io.readers import is_edf_file

    check_file(path)
    if is_edf_file(path) or path.suffix.lower() in _EDF_SUFFIXES:
        from sleepstream.io.edf import read_header

        labels = read_header(path).labels  # "not an EDF/BDF file", "truncated EDF", ...
        if all(label in ("EDF Annotations", "BDF Annotations") for label in labels):
            return "hypnogram"  # annotations only, e.g. a Sleep-EDF *-Hypnogram.edf
        return "edf"
    with path.open("rb") as f:
        head = f.read(64)
    first = head.split(b"\n", 1)[0].split(b"\r", 1)[0].strip().lower()
    if first.startswith(b"[") and first.endswith(b"]") and first != b"[hypnogram]":
        return "dreams"
    return "hypnogram"


def _sibling_hypnogram(path: Path) -> Path | None:
    """Sleep-EDF ``SC4001E0-PSG.edf`` -> ``SC4001E?-Hypnogram.edf``; DREAMS
    ``excerptN.txt`` -> ``Hypnogram_excerptN.txt``."""
    if path.name.endswith("-PSG.edf"):
        hits = sorted(path.parent.glob(f"{path.name[:7]}*-Hypnogram.edf"))
        return hits[0] if hits else None
    candidate = path.with_name(f"Hypnogram_{path.stem}.txt")
    return candidate if candidate.is_file() else None


def _channels(path: Path) -> list[dict[str, Any]]:
    from sleepstream.io.edf import open_edf

    edf = open_edf(path)
    return [
        {"name": s.label, "fs": float(s.sampling_frequency), "unit": s.physical_dimension}
        for s in edf.signals
    ]


def inspect_path(
    path: Path, hypnogram: Path | None, channel: str | None, trim: bool = True
) -> dict[str, Any]:
    """The report as a dict (what ``--json`` prints)."""
    from sleepstream.io.dreams import read_dreams_excerpt
    from sleepstream.io.night import Hypnogram
    from sleepstream.io.processing import trim_hypnogram, trim_wake
    from sleepstream.io.readers import read_edf, read_hypnogram

    kind = _kind(path)
    if hypnogram is not None and not hypnogram.exists():
        raise DataFileError(f"{hypnogram}: file not found")
    report: dict[str, Any] = {"path": str(path), "format": kind}
    hyp_path = hypnogram
    if kind == "hypnogram":
        hyp: Hypnogram = read_hypnogram(path)
        report.update(channels=[], channel=None, fs=None, duration_s=len(hyp) * EPOCH_SECONDS)
        hyp_path = path
        n_total = len(hyp)
        if trim:
            hyp = trim_hypnogram(hyp)
    else:
        if hyp_path is None and kind == "dreams":
            hyp_path = _sibling_hypnogram(path)
        if kind == "edf":
            channels = _channels(path)
            if hyp_path is None:
                hyp_path = _sibling_hypnogram(path)
            night = read_edf(path, channel, hyp_path, cache=False)
        else:
            night = read_dreams_excerpt(path, hyp_path, cache=False) if hyp_path else None
            if night is None:
                from sleepstream.io.dreams import read_dreams_signal
                from sleepstream.io.night import Night
                from sleepstream.io.processing import make_hypnogram

                sig, fs, name = read_dreams_signal(path)
                n = int(sig.size / fs // EPOCH_SECONDS)
                night = Night(sig, fs, name, make_hypnogram([UNSCORED] * n, str(path)), {})
            channels = [{"name": night.channel, "fs": night.fs, "unit": "uV"}]
            if channel is not None and channel.lower() != night.channel.lower():
                raise ChannelNotFoundError(
                    f"{path}: channel {channel!r} not found; available channels: {night.channel}"
                )
        n_total = night.n_epochs
        if hyp_path is None and night.hypnogram.source == str(path):
            hyp_path = path if (night.stages != UNSCORED).any() else None
        report.update(
            channels=channels,
            channel=night.channel,
            fs=float(night.fs),
            duration_s=float(night.signal.size / night.fs),
            start=night.meta.get("start", ""),
        )
        if trim:
            night = trim_wake(night)
            report["trim_offset_s"] = float(night.meta.get("trim_offset_s", 0.0))
        hyp = night.hypnogram
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
    print(f"duration:   {r['duration_s']:.0f} s ({r['duration_s'] / 3600:.2f} h)")
    print(f"hypnogram:  {r['hypnogram'] or '(none)'}")
    what = "after the 30-min wake trim" if r["trimmed"] else "whole recording"
    print(f"epochs:     {r['n_epochs']} of {r['n_epochs_total']} ({what})")
    counts = "  ".join(f"{k} {v}" for k, v in r["stage_counts"].items())
    print(f"stages:     {counts}  unscored {r['unscored']}")


def run(args: argparse.Namespace) -> int:
    if args.path is None:
        raise UsageError("sleepstream inspect: PSG path is required")
    report = inspect_path(args.path, args.hypnogram, args.channel, trim=not args.no_trim)
    if args.json:
        print(json.dumps(report))
    else:
        _print_text(report)
    return 0
