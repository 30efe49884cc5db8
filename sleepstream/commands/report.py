"""``sleepstream report NIGHT_DIR``: sleep statistics, a PNG and agreement with a reference."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

HELP = "sleep statistics, figure and agreement of a recorded night"
DESCRIPTION = """Sleep statistics (AASM definitions in sleepstream.report.stats), a PNG
(hypnogram, hypnodensity, spectrogram) and, with --reference, accuracy, macro-F1, kappa,
per-stage F1 and the confusion matrix (alignment rules in sleepstream.report.reference)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.add_argument("night_dir", type=Path, help="night directory (holds night.json)")
    parser.add_argument(
        "--reference",
        type=Path,
        default=None,
        help="reference hypnogram (Sleep-EDF EDF+, .hyp text, ISRUC, DREAMS, or another night)",
    )
    parser.add_argument(
        "--reference-offset",
        type=float,
        default=None,
        help="seconds from the reference's start to the night start (default: night.json "
        "source_offset_s, else automatic, see sleepstream.report.reference)",
    )
    parser.add_argument("--json", action="store_true", help="print all figures as one JSON object")
    parser.add_argument(
        "--png", type=Path, default=None, help="figure path (default NIGHT_DIR/report.png)"
    )
    parser.add_argument("--no-png", action="store_true", help="do not draw the figure")
    parser.add_argument("--channel", default=None, help="channel of the spectrogram")


def _clean(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def build_report(args: argparse.Namespace) -> dict[str, Any]:
    """All figures of the report (and the PNG, unless ``--no-png``)."""
    from sleepstream.errors import DataFileError, StorageError
    from sleepstream.report.night import load_night, read_channel
    from sleepstream.report.stats import sleep_statistics

    night = load_night(args.night_dir)
    m = night.manifest
    out: dict[str, Any] = {
        "night_dir": str(night.path),
        "device": m.get("device"),
        "profile": m.get("profile"),
        "model": m.get("model"),
        "start_utc": m.get("start_utc"),
        "end_utc": m.get("end_utc"),
        "status": m.get("status"),
        "first_epoch_index": night.first_index,
        "n_epochs": night.n_epochs,
        "recording": {
            k: m.get(k)
            for k in ("segments", "lost_segments", "gaps", "dropped_samples", "storage_errors")
        },
        "statistics": sleep_statistics(night.stages),
    }
    out["recording"]["segments"] = len(m.get("segments", []))
    out["recording"]["lost_segments"] = len(m.get("lost_segments", []))
    out["recording"]["gaps"] = len(m.get("gaps", []))
    ref_stages = None
    if args.reference is not None:
        from sleepstream.report.reference import reference_agreement

        ref_stages, ag = reference_agreement(args.reference, night, args.reference_offset)
        out["agreement"] = ag
        out["reference_statistics"] = sleep_statistics(ref_stages)
    if not args.no_png:
        from sleepstream.report.plot import epoch_spectrogram, render_png

        png = args.png or night.path / "report.png"
        spectrogram = None
        try:
            signal, fs, channel = read_channel(night, args.channel)
            freqs, power = epoch_spectrogram(signal, fs, night.onsets)
            spectrogram = (freqs, power, channel)
        except DataFileError as exc:
            if args.channel:
                raise
            out["spectrogram_note"] = str(exc)
        try:
            render_png(night, png, spectrogram=spectrogram, reference=ref_stages, summary=out)
        except OSError as exc:
            raise StorageError(f"{png}: cannot write the figure: {exc}") from None
        out["png"] = str(png)
    return out


def run(args: argparse.Namespace) -> int:
    from sleepstream.report.stats import statistics_text
    from sleepstream.scoring import agreement_markdown

    report = build_report(args)
    if args.json:
        print(json.dumps(_clean(report), allow_nan=False))
        return 0
    model = report.get("model") or {}
    rec = report["recording"]
    print(
        f"night {report['night_dir']}\n"
        f"device {report['device']} · profile {report['profile']} · model {model.get('id')} · "
        f"{report['start_utc']} → {report['end_utc']} · {report['n_epochs']} epochs\n"
        f"raw segments {rec['segments']} (lost {rec['lost_segments']}) · gaps {rec['gaps']} · "
        f"dropped samples {rec['dropped_samples']} · storage errors {rec['storage_errors']}\n"
    )
    if report["status"] != "closed":
        print(
            f"note: night.json status is {report['status']!r} (still recording, or interrupted)\n"
        )
    print(statistics_text(report["statistics"]))
    if "agreement" in report:
        ag = report["agreement"]
        al = ag["alignment"]
        print(f"\nreference {ag['path']} (aligned: {al['rule']}, offset {al['offset_s']:.0f} s)")
        print(agreement_markdown(ag))
    if "png" in report:
        print(f"\nfigure: {report['png']}")
    return 0
