"""The result of ``distill compare`` / ``distill ablate`` as files: ``<stem>.json`` and
``<stem>.md`` (one table per mode, mean ± sd over seeds, the proxy score where there is
one, then the paired per-seed differences against each reference row)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def to_markdown(result: dict[str, Any]) -> str:
    """One table per mode: accuracy / macro-F1 (%) and kappa, mean ± sd over seeds; then
    the paired per-seed differences against each reference row."""
    from distill.runs import paired_markdown

    lines = [f"## {result['title']} — {result['family']}", "",
             f"- protocol: {result['protocol_label']}",
             *([f"- TA row: the assistant trained by `{result['ta_from']}`"]
               if "ta_from" in result else []),
             f"- seeds: {result.get('seeds_done', 0)}; folds: {', '.join(result['folds'])}"
             + ("; **quick** settings (few epochs, short sequences)" if result["quick"] else ""),
             f"- command: `{result['command']}`",
             f"- wall time: {result.get('units_wall_s', result.get('wall_s', 0)):.0f} s of "
             f"training and scoring (all sessions; this one {result.get('wall_s', 0):.0f} s) "
             f"on {result['machine']['cpu_count']} CPU cores ({result['machine']['processor']})",
             ""]  # fmt: skip
    for mode in result["modes"]:
        lines += [f"### {mode}", "", "| model | params | accuracy % | macro-F1 % | kappa | "
                  "F1 W | F1 N1 | F1 N2 | F1 N3 | F1 REM |", "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for row in result.get("rows", []):
            r = row["modes"].get(mode)
            if r is None:
                continue
            mu, sd = r["mean"], r["sd"]
            p = f"{row['n_params']:,}" if row["n_params"] else "—"
            lines.append(
                f"| {row['label']} | {p} | {100 * mu['accuracy']:.2f} ± {100 * sd['accuracy']:.2f}"
                f" | {100 * mu['macro_f1']:.2f} ± {100 * sd['macro_f1']:.2f}"
                f" | {mu['kappa']:.3f} ± {sd['kappa']:.3f} | "
                + " | ".join(
                    "—" if v is None else f"{100 * v:.1f}"
                    for v in (r.get("per_stage_f1") or {}).values()
                )  # fmt: skip
                + " |"
                + ("" if r["n_seeds"] == result.get("seeds_done") else f" ({r['n_seeds']} seeds)")
            )
        lines.append("")
        proxy = result.get("proxy_score")
        if proxy:
            lines += [f"Proxy selection score ({mode}): kappa pooled per direction, averaged "
                      "over the directions (macro-F1 beside it); mean ± sd over seeds:", "",
                      "| model | proxy kappa | proxy macro-F1 % |", "|---|---|---|"]  # fmt: skip
            for lab, by_mode in proxy.items():
                p = by_mode.get(mode)
                if p:
                    lines.append(f"| {lab} | {p['mean']['kappa']:.3f} ± {p['sd']['kappa']:.3f} | "
                                 f"{100 * p['mean']['macro_f1']:.2f} ± "
                                 f"{100 * p['sd']['macro_f1']:.2f} |")  # fmt: skip
            lines.append("")
        for ref, paired in (result.get("paired") or {}).items():
            lines += paired_markdown(paired, ref, mode)
    return "\n".join(lines)


def write(result: dict[str, Any], out: Path, stem: str) -> tuple[Path, Path]:
    """Write ``out/<stem>.json`` and ``out/<stem>.md``; returns both paths."""
    from distill.evaluate import write_outputs

    return write_outputs(result, out, stem, render=to_markdown, indent=1)
