"""Agreement between two stage sequences: accuracy, macro-F1, Cohen's kappa, per-stage F1.

Numpy only, so the daemon's ``replay``, ``report`` and :mod:`distill` all share it.
Epochs where either side is unscored (-1) are left out.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sleepstream.types import N_STAGES, STAGE_NAMES, UNSCORED


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Counts, shape (5, 5): rows are the reference stage, columns the prediction."""
    y_true = np.asarray(y_true).astype(np.int64).ravel()
    y_pred = np.asarray(y_pred).astype(np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"length mismatch: {y_true.shape[0]} reference vs {y_pred.shape[0]}")
    keep = (y_true != UNSCORED) & (y_pred != UNSCORED)
    cm = np.zeros((N_STAGES, N_STAGES), dtype=np.int64)
    np.add.at(cm, (y_true[keep], y_pred[keep]), 1)
    return cm


def metrics_from_confusion(cm: np.ndarray) -> dict[str, Any]:
    """Accuracy, macro-F1 over stages present in reference or prediction, kappa, per-stage F1."""
    cm = np.asarray(cm, dtype=np.float64)
    n = cm.sum()
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    present = denom > 0
    accuracy = float(tp.sum() / n) if n else float("nan")
    expected = float((support * predicted).sum() / n**2) if n else float("nan")
    kappa = (accuracy - expected) / (1 - expected) if n and expected < 1 else 0.0
    return {
        "n_epochs": int(n),
        "accuracy": accuracy,
        "macro_f1": float(f1[present].mean()) if present.any() else float("nan"),
        "kappa": float(kappa),
        "per_stage_f1": {
            name: (float(f1[k]) if present[k] else None) for k, name in enumerate(STAGE_NAMES)
        },
        "support": {name: int(support[k]) for k, name in enumerate(STAGE_NAMES)},
        "confusion": cm.astype(np.int64).tolist(),
    }


def agreement(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """All agreement figures for two stage sequences of equal length."""
    return metrics_from_confusion(confusion_matrix(y_true, y_pred))


def agreement_markdown(m: dict[str, Any], title: str = "") -> str:
    """A short Markdown block: headline figures, per-stage F1 and the confusion matrix."""
    lines = [f"**{title}**", ""] if title else []
    lines.append(
        f"accuracy {100 * m['accuracy']:.2f} % · macro-F1 {100 * m['macro_f1']:.2f} % · "
        f"kappa {m['kappa']:.3f} · n = {m['n_epochs']}"
    )
    lines += ["", "| ref \\ pred | " + " | ".join(STAGE_NAMES) + " | F1 |", "|---" * 7 + "|"]
    for k, name in enumerate(STAGE_NAMES):
        f1 = m["per_stage_f1"][name]
        row = " | ".join(str(v) for v in m["confusion"][k])
        lines.append(f"| {name} | {row} | {'—' if f1 is None else f'{100 * f1:.1f}'} |")
    return "\n".join(lines)
