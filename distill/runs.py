"""Resumable experiment tables: scored (row, seed, fold) units on disk, pooled tables,
paired per-seed differences and a time-left estimate.

A *unit* is one model (a table row) trained for one seed on one fold and scored on that
fold's test epochs. :class:`ScoreStore` keeps each finished unit as a small JSON file
(reference and predicted stages per mode, the parameter count, the wall time), written
atomically; a command that is stopped and started again loads the finished units and
trains only the rest. :func:`table_rows` pools a row's folds per seed and summarises
mean ± sd over the seeds that have every fold; :func:`paired_differences` gives, per
seed, row minus reference (the from-scratch student, plain KD) on the same seed.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sleepstream.types import STAGE_NAMES

#: Headline metrics of every table.
HEAD: tuple[str, ...] = ("accuracy", "macro_f1", "kappa")


def slug(label: str) -> str:
    """A file-name-safe form of a row label."""
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", label)


@dataclass
class ScoreStore:
    """Finished units under ``root/seed<s>/<fold>/<slug(label)>.scores.json``."""

    root: Path
    units: dict[tuple[str, int, str], dict[str, Any]] = field(default_factory=dict)

    def path(self, label: str, seed: int, fold: str) -> Path:
        return Path(self.root) / f"seed{seed}" / fold / f"{slug(label)}.scores.json"

    def load(self, label: str, seed: int, fold: str, modes: Sequence[str]) -> dict | None:
        """The unit if finished with every mode in ``modes``, else None (also cached)."""
        key = (label, seed, fold)
        unit = self.units.get(key)
        if unit is None:
            p = self.path(label, seed, fold)
            if not p.is_file():
                return None
            try:
                unit = json.loads(p.read_text())
            except (OSError, json.JSONDecodeError):
                return None  # a torn or unreadable file: the unit is redone
            if unit.get("label") != label:
                return None
            self.units[key] = unit
        if not all(m in unit["modes"] for m in modes):
            return None
        return unit

    def save(
        self,
        label: str,
        seed: int,
        fold: str,
        scored: dict[str, tuple[np.ndarray, np.ndarray]],
        *,
        n_params: int | None = None,
        wall_s: float = 0.0,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Record a finished unit (atomic write); returns it."""
        unit = {
            "label": label,
            "seed": seed,
            "fold": fold,
            "n_params": n_params,
            "wall_s": wall_s,
            "modes": {
                m: {"y_true": np.asarray(yt).tolist(), "y_pred": np.asarray(yp).tolist()}
                for m, (yt, yp) in scored.items()
            },
            **(extra or {}),
        }
        p = self.path(label, seed, fold)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(".tmp")
        tmp.write_text(json.dumps(unit) + "\n")
        tmp.replace(p)
        self.units[(label, seed, fold)] = unit
        return unit


def figures(yt: np.ndarray, yp: np.ndarray) -> dict[str, Any]:
    """Accuracy, macro-F1, kappa, n and per-stage F1 of one pooled set."""
    from sleepstream.scoring import agreement

    m = agreement(np.asarray(yt), np.asarray(yp))
    return {k: m[k] for k in (*HEAD, "n_epochs", "per_stage_f1")}


def per_seed_figures(
    store: ScoreStore, label: str, seeds: Sequence[int], folds: Sequence[str], mode: str
) -> dict[int, dict[str, Any]]:
    """``{seed: figures}`` pooled over ``folds``, for the seeds whose folds are all done."""
    out = {}
    for s in seeds:
        units = [store.load(label, s, f, (mode,)) for f in folds]
        if any(u is None for u in units):
            continue
        yt = np.concatenate([u["modes"][mode]["y_true"] for u in units]).astype(np.int64)
        yp = np.concatenate([u["modes"][mode]["y_pred"] for u in units]).astype(np.int64)
        out[s] = figures(yt, yp)
    return out


def table_rows(
    store: ScoreStore,
    labels: Sequence[str],
    seeds: Sequence[int],
    folds: Sequence[str],
    modes: Sequence[str],
) -> list[dict[str, Any]]:
    """One row per label: per mode the per-seed figures and their mean ± sd (ddof 1)."""
    rows = []
    for lab in labels:
        row: dict[str, Any] = {"label": lab, "n_params": None, "modes": {}}
        for s in seeds:
            for f in folds:
                u = store.load(lab, s, f, ())
                if u is not None and u.get("n_params"):
                    row["n_params"] = u["n_params"]
        for mode in modes:
            ps = per_seed_figures(store, lab, seeds, folds, mode)
            if not ps:
                continue
            arr = {k: np.array([r[k] for r in ps.values()], float) for k in HEAD}
            row["modes"][mode] = {
                "seeds": list(ps),
                "per_seed": list(ps.values()),
                "mean": {k: float(v.mean()) for k, v in arr.items()},
                "sd": {k: float(v.std(ddof=1)) if v.size > 1 else 0.0 for k, v in arr.items()},
                "per_stage_f1": _mean_stage_f1(ps.values()),
                "n_seeds": len(ps),
            }
        rows.append(row)
    return rows


def grouped_score(
    store: ScoreStore,
    label: str,
    seeds: Sequence[int],
    groups: dict[str, Sequence[str]],
    mode: str,
    metrics: Sequence[str] = ("kappa", "macro_f1"),
) -> dict[str, Any] | None:
    """Per seed, each metric pooled within each group of folds, then averaged over the
    groups (the cross-derivation proxy's score: kappa pooled per direction, averaged over
    the two directions); mean ± sd over seeds. None until a seed has every group done."""
    per: dict[int, dict[str, float]] = {}
    for s in seeds:
        figs = [
            per_seed_figures(store, label, [s], folds, mode).get(s) for folds in groups.values()
        ]
        if any(f is None for f in figs):
            continue
        per[s] = {k: float(np.mean([f[k] for f in figs])) for k in metrics}
    if not per:
        return None
    arr = {k: np.array([v[k] for v in per.values()]) for k in metrics}
    return {
        "seeds": list(per),
        "per_seed": list(per.values()),
        "mean": {k: float(v.mean()) for k, v in arr.items()},
        "sd": {k: float(v.std(ddof=1)) if v.size > 1 else 0.0 for k, v in arr.items()},
    }


def _mean_stage_f1(figs) -> dict[str, float | None]:
    """Mean over seeds of each stage's F1 (None when the stage never occurs)."""
    out: dict[str, float | None] = {}
    for name in STAGE_NAMES:
        vals = [f["per_stage_f1"][name] for f in figs if f["per_stage_f1"].get(name) is not None]
        out[name] = float(np.mean(vals)) if vals else None
    return out


def paired_differences(
    rows: list[dict[str, Any]], reference: str, modes: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Per mode and row: per-seed ``row - reference`` on the seeds both have.

    Returns ``{mode: {label: {metric: {"per_seed": [...], "mean", "sd", "n", "wins"}}}}``
    (``wins``: seeds where the row is strictly better); rows without a common seed and
    the reference itself are left out.
    """
    by = {r["label"]: r for r in rows}
    ref = by.get(reference)
    out: dict[str, dict[str, Any]] = {}
    if ref is None:
        return out
    for mode in modes:
        rm = ref["modes"].get(mode)
        if rm is None:
            continue
        ref_seed = dict(zip(rm["seeds"], rm["per_seed"], strict=True))
        table: dict[str, Any] = {}
        for r in rows:
            m = r["modes"].get(mode)
            if r["label"] == reference or m is None:
                continue
            common = [(s, f) for s, f in zip(m["seeds"], m["per_seed"], strict=True)
                      if s in ref_seed]  # fmt: skip
            if not common:
                continue
            entry = {}
            for k in HEAD:
                d = np.array([f[k] - ref_seed[s][k] for s, f in common], float)
                entry[k] = {
                    "per_seed": d.tolist(),
                    "mean": float(d.mean()),
                    "sd": float(d.std(ddof=1)) if d.size > 1 else 0.0,
                    "n": int(d.size),
                    "wins": int((d > 0).sum()),
                }
            entry["seeds"] = [s for s, _ in common]
            table[r["label"]] = entry
        out[mode] = table
    return out


def paired_markdown(paired: dict[str, Any], reference: str, mode: str) -> list[str]:
    """Markdown lines: differences vs ``reference`` (percentage points; kappa as is)."""
    table = paired.get(mode) or {}
    if not table:
        return []
    lines = [
        f"Paired per-seed differences vs **{reference}** ({mode}; row − reference on the "
        "same seed; mean ± sd over seeds, [seeds where the row is better / seeds]):",
        "",
        "| model | Δ accuracy pp | Δ macro-F1 pp | Δ kappa |",
        "|---|---|---|---|",
    ]
    for label, e in table.items():
        a, f, k = e["accuracy"], e["macro_f1"], e["kappa"]
        lines.append(
            f"| {label} | {100 * a['mean']:+.2f} ± {100 * a['sd']:.2f} [{a['wins']}/{a['n']}]"
            f" | {100 * f['mean']:+.2f} ± {100 * f['sd']:.2f} [{f['wins']}/{f['n']}]"
            f" | {k['mean']:+.3f} ± {k['sd']:.3f} [{k['wins']}/{k['n']}] |"
        )
    lines.append("")
    return lines


@dataclass
class Eta:
    """Time-left estimate from the units run in this session (cached ones cost nothing)."""

    total: int
    done: int = 0
    spent_s: float = 0.0
    ran: int = 0
    t0: float = field(default_factory=time.perf_counter)

    def finished(self, wall_s: float | None, cached: bool) -> None:
        self.done += 1
        if not cached and wall_s is not None:
            self.spent_s += wall_s
            self.ran += 1

    def left_s(self) -> float | None:
        """Seconds left at the mean wall time of the units run so far (None before one)."""
        if not self.ran:
            return None
        return (self.total - self.done) * self.spent_s / self.ran

    def line(self) -> str:
        left = self.left_s()
        eta = "unknown" if left is None else _hms(left)
        return f"{self.done}/{self.total} units done; about {eta} left"


def _hms(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{(s % 3600) // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
