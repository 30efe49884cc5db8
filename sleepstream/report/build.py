"""The morning report of a recorded night: figures, statistics, comparison, files.

:func:`build_report` computes everything ``sleepstream report`` prints and writes the PNG
and the self-contained HTML; :func:`write_morning_report` is the one call for a night
that just ended (the live view's report link).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def clean(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [clean(v) for v in obj]
    return obj


def write_morning_report(night_dir: str | Path) -> Path:
    """Write ``report.html`` and ``report.png`` into a night folder; return the HTML path.

    Raises the one-line errors of :func:`build_report`.
    """
    report = build_report(Path(night_dir))
    return Path(report["html"])


def build_report(
    night_dir: Path,
    *,
    reference: Path | None = None,
    reference_offset: float | None = None,
    png: Path | None | bool = True,
    html: Path | None | bool = True,
    channel: str | None = None,
    model: Path | None = None,
) -> dict[str, Any]:
    """Everything the report says about a night (the dict ``report --json`` prints).

    Parameters
    ----------
    night_dir : Path
        The night folder (holds ``night.json``).
    reference : Path, optional
        A reference hypnogram (any format :mod:`sleepstream.report.reference` reads).
    reference_offset : float, optional
        Seconds from the reference's start to the night start.
    png, html : Path, True or False
        Where to write the figure / the HTML report: a path, True for
        ``NIGHT_DIR/report.png`` / ``report.html``, False for none.
    channel : str, optional
        Channel of the spectrogram (default: the staged channel).
    model : Path, optional
        The model that scored the night (training-recording check; default: shipped).

    Raises
    ------
    SleepstreamError
        One line naming the file, field or value (DataFileError, HypnogramError,
        UsageError, ModelError, StorageError).
    """
    from sleepstream.errors import UsageError
    from sleepstream.report.night import load_night
    from sleepstream.report.stats import compare_statistics, sleep_statistics
    from sleepstream.report.times import night_times
    from sleepstream.report.training import training_check

    if reference_offset is not None and not (
        math.isfinite(reference_offset) and abs(reference_offset) < 1e9
    ):
        raise UsageError(
            f"--reference-offset {reference_offset!r}: expected seconds, a finite number"
        )
    if reference_offset is not None and reference is None:
        raise UsageError("--reference-offset needs --reference")
    night = load_night(night_dir)
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
    out |= training_check(m, model)
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
    if reference is not None:
        from sleepstream.report.reference import reference_agreement

        ref_stages, ag = reference_agreement(reference, night, reference_offset)
        out["agreement"] = ag
        out["reference_statistics"] = sleep_statistics(ref_stages)
        out["statistics_comparison"] = compare_statistics(
            out["statistics"], out["reference_statistics"]
        )
    png_path = night.path / "report.png" if png is True else (png or None)
    html_path = night.path / "report.html" if html is True else (html or None)
    if png_path is not None or html_path is not None:
        _figures(night, times, ref_stages, out, png_path, html_path, channel)
    return out


def _figures(
    night: Any,
    times: Any,
    ref: Any,
    out: dict[str, Any],
    png: Path | None,
    page: Path | None,
    channel: str | None,
) -> None:
    """Write the PNG and the HTML (their paths go into ``out``)."""
    from sleepstream.errors import DataFileError, StorageError
    from sleepstream.record.files import write_bytes_atomic
    from sleepstream.report.html import render_html
    from sleepstream.report.night import read_channel
    from sleepstream.report.plot import epoch_spectrogram, render_png, render_svgs

    spectrogram = None
    try:
        signal, fs, name = read_channel(night, channel)
        freqs, power = epoch_spectrogram(signal, fs, night.onsets)
        spectrogram = (freqs, power, name)
    except DataFileError as exc:
        if channel:
            raise
        out["spectrogram_note"] = str(exc)
    if png is not None:
        try:
            data = render_png(night, times=times, spectrogram=spectrogram, reference=ref,
                              title_lines=title_lines(out))  # fmt: skip
            write_bytes_atomic(png, data)
        except OSError as exc:
            raise StorageError(f"{png}: cannot write the figure: {exc.strerror or exc}") from None
        out["png"] = str(png)
    if page is not None:
        svgs = render_svgs(night, times=times, spectrogram=spectrogram, reference=ref)
        try:
            write_bytes_atomic(page, render_html(clean(out), svgs).encode("utf-8"))
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
