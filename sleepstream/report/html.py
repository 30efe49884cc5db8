"""The morning report as one self-contained HTML file (issue 15 point 4).

Everything is inline — the CSS, the figures as SVG (the spectrogram's pixels as a
``data:`` image inside its SVG) — so the file opens offline, on a phone, with no
external asset, no script and no network request. Every value from the night's files
is HTML-escaped.
"""

from __future__ import annotations

import html
import re
from typing import Any

from sleepstream.report.stats import largest_differences
from sleepstream.types import STAGE_NAMES

CSS = """
:root { color-scheme: light; --ink: #1d2330; --muted: #5b6474; --line: #d9dde5;
        --flag: #fff1d6; --warn: #fde2e1; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--ink); margin: 0 auto; padding: 12px; max-width: 980px; }
h1, p, figcaption { overflow-wrap: anywhere; }
h1 { font-size: 1.25rem; margin: 0.2em 0; }
h2 { font-size: 1.05rem; margin: 1.4em 0 0.4em; border-bottom: 1px solid var(--line); }
p.meta { color: var(--muted); margin: 0.2em 0; }
.warn { background: var(--warn); padding: 6px 10px; border-radius: 4px; margin: 6px 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 8px; border-bottom: 1px solid var(--line); text-align: right;
         white-space: nowrap; }
th:first-child, td:first-child { text-align: left; white-space: normal; }
tr.flag td { background: var(--flag); font-weight: 600; }
figure { margin: 8px 0 14px; }
figure .plot { overflow-x: auto; }
figure svg { width: 100%; min-width: 600px; height: auto; display: block; }
figcaption { color: var(--muted); font-size: 0.85rem; }
@media (max-width: 480px) { body { font-size: 13px; padding: 8px; }
                            th, td { padding: 2px 4px; } }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(v: Any, fmt: str = ".1f", signed: bool = False) -> str:
    if v is None:
        return "—"
    return format(float(v), ("+" if signed else "") + fmt)


def _table(head: list[str], rows: list[list[str]], flags: list[bool] | None = None) -> str:
    flags = flags or [False] * len(rows)
    out = ['<div class="scroll"><table><thead><tr>']
    out += [f"<th>{_e(h)}</th>" for h in head]
    out.append("</tr></thead><tbody>")
    for row, flag in zip(rows, flags, strict=True):
        out.append('<tr class="flag">' if flag else "<tr>")
        out += [f"<td>{_e(c)}</td>" for c in row]
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _statistics(report: dict[str, Any]) -> str:
    rows = report.get("statistics_comparison")
    if rows:
        body = _table(
            ["statistic", "model", "reference", "difference"],
            [
                [f"{r['label']} ({r['unit']})" if r["unit"] else r["label"],
                 _num(r["model"], ".1f" if r["unit"] else ".0f"),
                 _num(r["reference"], ".1f" if r["unit"] else ".0f"),
                 _num(r["difference"], ".1f" if r["unit"] else ".0f", signed=True)]
                for r in rows
            ],
            [bool(r["flag"]) for r in rows],
        )  # fmt: skip
        flagged = [r["label"] for r in largest_differences(rows)]
        note = (
            f"<p>Highlighted: the model and the reference differ most in "
            f"{_e(', '.join(flagged))}.</p>"
            if flagged
            else ""
        )
        return "<h2>Sleep statistics: model and reference</h2>" + body + note
    st = report["statistics"]
    rows2 = [
        ["time in bed (min)", _num(st["time_in_bed_min"])],
        ["total sleep time, TST (min)", _num(st["total_sleep_time_min"])],
        ["sleep efficiency, SE (%)", _num(st["sleep_efficiency_pct"])],
        ["sleep onset latency, SOL (min)", _num(st["sleep_onset_latency_min"])],
        ["wake after sleep onset, WASO (min)", _num(st["waso_min"])],
        ["REM latency from sleep onset (min)", _num(st["rem_latency_min"])],
        ["awakenings", str(st["n_awakenings"])],
        *[[f"{s} minutes", _num(st["stage_min"][s])] for s in STAGE_NAMES],
    ]
    return "<h2>Sleep statistics</h2>" + _table(["statistic", "value"], rows2)


def _agreement(ag: dict[str, Any]) -> str:
    al = ag.get("alignment", {})
    head = (
        f"<p>accuracy {100 * ag['accuracy']:.1f} % · macro-F1 {100 * ag['macro_f1']:.1f} % · "
        f"Cohen's kappa {ag['kappa']:.3f} · {ag['n_epochs']} epochs compared "
        f"(aligned: {_e(al.get('rule', '?'))}, offset {_num(al.get('offset_s'), '.0f')} s)</p>"
    )
    f1 = ag.get("per_stage_f1", {})
    rows = [
        [name, *[str(v) for v in ag["confusion"][k]],
         "—" if f1.get(name) is None else f"{100 * f1[name]:.1f}"]
        for k, name in enumerate(STAGE_NAMES)
    ]  # fmt: skip
    matrix = _table(["reference \\ model", *STAGE_NAMES, "F1 %"], rows)
    return "<h2>Epoch agreement with the reference</h2>" + head + matrix


def _recording(report: dict[str, Any]) -> str:
    rec = report["recording"]
    rows = [
        ["raw segments written", str(rec.get("segments"))],
        ["raw segments lost", str(rec.get("lost_segments"))],
        ["gaps in the signal", str(rec.get("gaps"))],
        ["dropped samples", str(rec.get("dropped_samples"))],
        ["storage errors", str(rec.get("storage_errors"))],
    ]
    return "<h2>Recording</h2>" + _table(["", ""], rows)


def _clean_svg(svg: str) -> str:
    """An inline SVG without comments and metadata (matplotlib names web sites there)."""
    svg = re.sub(r"<!--.*?-->", "", svg, flags=re.S)
    return re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)


def render_html(report: dict[str, Any], figures: dict[str, str]) -> str:
    """The report as one HTML document.

    Parameters
    ----------
    report : dict
        What ``sleepstream report --json`` prints (statistics, agreement, comparison,
        warnings, times...).
    figures : dict of str
        ``hypnogram``, ``hypnodensity``, ``spectrogram`` SVGs
        (:func:`sleepstream.report.plot.render_svgs`); missing ones are left out.
    """
    times = report.get("times", {})
    model = report.get("model") or {}
    title = f"sleepstream · {report.get('device') or '?'} · {times.get('span', '')}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">device {_e(report.get("device"))} · profile '
        f"{_e(report.get('profile'))} · model {_e(model.get('id'))} · "
        f"{report.get('n_epochs')} epochs</p>",
    ]
    if times.get("note"):
        parts.append(f'<p class="meta">Times: {_e(times["note"])}.</p>')
    parts += [f'<p class="warn">{_e(w)}</p>' for w in report.get("warnings", [])]
    parts.append(_statistics(report))
    if report.get("agreement"):
        parts.append(_agreement(report["agreement"]))
    captions = {
        "hypnogram": "Hypnogram" + (" (model above, reference below)"
                                    if report.get("agreement") else "") + ".",
        "hypnodensity": "Hypnodensity: the model's probability of each stage, epoch by epoch.",
        "spectrogram": "Spectrogram of the staged channel, 30-s epochs (dB µV²/Hz).",
    }  # fmt: skip
    parts.append("<h2>The night</h2>")
    for name, caption in captions.items():
        if name in figures:
            parts.append(
                f'<figure id="{name}"><div class="plot">{_clean_svg(figures[name])}</div>'
                f"<figcaption>{_e(caption)}</figcaption></figure>"
            )
    parts.append(_recording(report))
    parts.append(
        f'<p class="meta">Made by sleepstream report from {_e(report.get("night_dir"))}.</p>'
    )
    parts.append("</body></html>\n")
    return "\n".join(parts)
