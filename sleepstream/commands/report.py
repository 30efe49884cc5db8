"""``sleepstream report NIGHT_DIR``: sleep statistics, figures, HTML and agreement."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

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


def _clean(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def _check_args(args: argparse.Namespace) -> None:
    from sleepstream.errors import UsageError

    off = args.reference_offset
    if off is not None and not (math.isfinite(off) and abs(off) < 1e9):
        raise UsageError(f"--reference-offset {off!r}: expected seconds, a finite number")
    if off is not None and args.reference is None:
        raise UsageError("--reference-offset needs --reference")


def build_report(args: argparse.Namespace) -> dict[str, Any]:
    """All figures of the report; writes the PNG and the HTML unless told not to."""
    from sleepstream.report.night import load_night
    from sleepstream.report.stats import compare_statistics, sleep_statistics
    from sleepstream.report.times import night_times
    from sleepstream.report.training import training_check

    _check_args(args)
    night = load_night(args.night_dir)
    m = night.manifest
    times = night_times(m)
    out: dict[str, Any] = {
        "night_dir": str(night.path),
        "device": m.get("device"),
        "profile": m.get("profile"),
        "model": m.get("model"),
        "start": times.to_json()["start"],
        "end": times.to_json()["end"],
        "times": times.to_json() | {"span": times.span_text()},
        "status": m.get("status"),
        "first_epoch_index": night.first_index,
        "n_epochs": night.n_epochs,
        "recording": {
            "segments": len(m["segments"]),
            "lost_segments": len(m.get("lost_segments") or []),
            "pending_segments": len(m.get("pending_segments") or []),
            "gaps": len(m.get("gaps") or []),
            "gap_list": m.get("gaps") or [],
            "dropped_samples": m.get("dropped_samples"),
            "storage_errors": m.get("storage_errors"),
            "last_storage_error": m.get("last_storage_error"),
        },
        "statistics": sleep_statistics(night.stages),
        "warnings": [],
    }
    out |= training_check(m, args.model)
    if out["training_recording"]:
        out["warnings"].append(out["training_recording_note"])
    if m.get("status") != "closed":
        out["warnings"].append(
            f"night.json status is {m.get('status')!r}: still recording, or interrupted"
        )
    if out["recording"]["lost_segments"] or m.get("storage_errors"):
        out["warnings"].append(
            f"{out['recording']['lost_segments']} raw segment(s) could not be written "
            f"({m.get('storage_errors')} storage errors; last: {m.get('last_storage_error')})"
        )
    ref_stages = None
    if args.reference is not None:
        from sleepstream.report.reference import reference_agreement

        ref_stages, ag = reference_agreement(args.reference, night, args.reference_offset)
        out["agreement"] = ag
        out["reference_statistics"] = sleep_statistics(ref_stages)
        out["statistics_comparison"] = compare_statistics(
            out["statistics"], out["reference_statistics"]
        )
    if not (args.no_png and args.no_html):
        _figures(args, night, times, ref_stages, out)
    return out


def _figures(args: argparse.Namespace, night: Any, times: Any, ref: Any, out: dict) -> None:
    """Write the PNG and the HTML (their paths go into ``out``)."""
    from sleepstream.errors import DataFileError, StorageError
    from sleepstream.record.files import write_bytes_atomic
    from sleepstream.report.html import render_html
    from sleepstream.report.night import read_channel
    from sleepstream.report.plot import epoch_spectrogram, render_png, render_svgs

    spectrogram = None
    try:
        signal, fs, channel = read_channel(night, args.channel)
        freqs, power = epoch_spectrogram(signal, fs, night.onsets)
        spectrogram = (freqs, power, channel)
    except DataFileError as exc:
        if args.channel:
            raise
        out["spectrogram_note"] = str(exc)
    if not args.no_png:
        png = args.png or night.path / "report.png"
        try:
            data = render_png(night, times=times, spectrogram=spectrogram, reference=ref,
                              title_lines=title_lines(out))  # fmt: skip
            write_bytes_atomic(png, data)
        except OSError as exc:
            raise StorageError(f"{png}: cannot write the figure: {exc.strerror or exc}") from None
        out["png"] = str(png)
    if not args.no_html:
        page = args.html or night.path / "report.html"
        svgs = render_svgs(night, times=times, spectrogram=spectrogram, reference=ref)
        try:
            write_bytes_atomic(page, render_html(_clean(out), svgs).encode("utf-8"))
        except OSError as exc:
            raise StorageError(f"{page}: cannot write the report: {exc.strerror or exc}") from None
        out["html"] = str(page)


def title_lines(report: dict[str, Any]) -> list[str]:
    """The figure's title: who, when (with the clock), the statistics and the agreement."""
    model = report.get("model") or {}
    lines = [
        f"sleepstream · {report.get('device') or '?'} · {report['times']['span']} · "
        f"model {model.get('id') or '?'}"
    ]
    st = report["statistics"]

    def f(v: float | None) -> str:
        return "—" if v is None else f"{v:.0f}"

    lines.append(
        f"TST {f(st['total_sleep_time_min'])} min · SE {f(st['sleep_efficiency_pct'])} % · "
        f"SOL {f(st['sleep_onset_latency_min'])} min · WASO {f(st['waso_min'])} min · "
        f"REM latency {f(st['rem_latency_min'])} min · awakenings {st['n_awakenings']}"
    )
    ref = report.get("reference_statistics")
    if ref:
        lines.append(
            f"reference: TST {f(ref['total_sleep_time_min'])} min · SE "
            f"{f(ref['sleep_efficiency_pct'])} % · SOL {f(ref['sleep_onset_latency_min'])} min"
            f" · WASO {f(ref['waso_min'])} min · REM latency {f(ref['rem_latency_min'])} min"
        )
        ag = report["agreement"]
        lines.append(
            f"vs reference: accuracy {100 * ag['accuracy']:.1f} % · macro-F1 "
            f"{100 * ag['macro_f1']:.1f} % · kappa {ag['kappa']:.3f} (n = {ag['n_epochs']})"
        )
    return lines


def run(args: argparse.Namespace) -> int:
    from sleepstream.report.stats import comparison_text, statistics_text
    from sleepstream.scoring import agreement_markdown

    report = build_report(args)
    if args.json:
        print(json.dumps(_clean(report), allow_nan=False))
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
