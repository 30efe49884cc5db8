"""``sleepstream report NIGHT_DIR``: sleep statistics, figures, HTML and agreement."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "sleep statistics, figure, HTML report and agreement of a recorded night"
DESCRIPTION = """Sleep statistics (AASM definitions in sleepstream.report.stats), a PNG and a
self-contained HTML report (hypnogram, hypnodensity, spectrogram) and, with --reference,
the reference's statistics beside the model's with their differences, accuracy, macro-F1,
kappa, per-stage F1 and the confusion matrix (alignment rules in
sleepstream.report.reference)."""


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
    parser.add_argument("--no-png", action="store_true", help="do not draw the PNG")
    parser.add_argument(
        "--html", type=Path, default=None, help="HTML report path (default NIGHT_DIR/report.html)"
    )
    parser.add_argument("--no-html", action="store_true", help="do not write the HTML report")
    parser.add_argument("--channel", default=None, help="channel of the spectrogram")
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="the model that scored the night, to tell whether the night is one of its "
        "training recordings (default: the shipped model)",
    )


def run(args: argparse.Namespace) -> int:
    from sleepstream.report.build import build_report, clean
    from sleepstream.report.stats import comparison_text, statistics_text
    from sleepstream.scoring import agreement_markdown

    report = build_report(
        args.night_dir,
        reference=args.reference,
        reference_offset=args.reference_offset,
        png=False if args.no_png else (args.png or True),
        html=False if args.no_html else (args.html or True),
        channel=args.channel,
        model=args.model,
    )
    if args.json:
        print(json.dumps(clean(report), allow_nan=False))
        return 0
    model = report.get("model") or {}
    rec = report["recording"]
    for warning in report["warnings"]:
        print(f"warning: {warning}")
    print(
        f"night {report['night_dir']}\n"
        f"device {report['device']} · profile {report['profile']} · model {model.get('id')} · "
        f"{report['times']['span']} · {report['n_epochs']} epochs"
    )
    if report["times"]["note"]:
        print(f"times: {report['times']['note']}")
    print(
        f"raw segments {rec['segments']} (lost {rec['lost_segments']}) · gaps {rec['gaps']} · "
        f"dropped samples {rec['dropped_samples']} · storage errors {rec['storage_errors']}\n"
    )
    print(statistics_text(report["statistics"]))
    if "agreement" in report:
        ag = report["agreement"]
        al = ag["alignment"]
        print(f"\nreference {ag['path']} (aligned: {al['rule']}, offset {al['offset_s']:.0f} s)")
        print("\nstatistics, model beside reference:")
        print(comparison_text(report["statistics_comparison"]))
        print()
        print(agreement_markdown(ag))
    for key, name in (("png", "figure"), ("html", "report")):
        if key in report:
            print(f"\n{name}: {report[key]}")
    return 0
