"""Evaluation: predictions per scored epoch, protocols, metrics as JSON and Markdown.

Modes
-----
- ``causal``: the scored epoch is the last of its window (zero-padded history at the night
  start); the only mode the daemon can use.
- ``offline``: the window is centred on the scored epoch.

Protocols
---------
- ``within-night-blocks``: contiguous blocks of one night (SC4001), each held out once, with
  guard gaps. Optimistic (same night): every output carries :data:`PROTOCOL_LABELS`.
- ``cross-dataset``: trained on SC4001 only, tested on the 8 DREAMS excerpts (30 min each;
  windows do not cross excerpts, so the first causal windows of each excerpt are padded).
- ``nightwise-kfold``: folds by night.

Metrics come from :func:`sleepstream.scoring.agreement` (accuracy, macro-F1, kappa, per-stage
F1, confusion). An exported ONNX model is evaluated through :mod:`sleepstream.inference`, the
same code the daemon runs.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from distill.data import MODES, Recording, gather_windows, score_position
from distill.folds import Fold
from sleepstream.errors import UsageError
from sleepstream.scoring import agreement, agreement_markdown
from sleepstream.types import N_STAGES

Predictor = Callable[[np.ndarray], np.ndarray]

PROTOCOLS = (
    "within-night-blocks",
    "cross-dataset",
    "nightwise-kfold",
    "cross-derivation",
    "subject-kfold",
    "loso",
)
PROTOCOL_LABELS = {
    "within-night-blocks": "within-night-blocks (optimistic: same night)",
    "cross-dataset": "cross-dataset (trained on SC4001, tested on the 8 DREAMS excerpts)",
    "nightwise-kfold": "nightwise-kfold (folds by night)",
    "subject-kfold": "subject-wise k-fold (every night of a subject in the same fold)",
    "loso": "leave-one-subject-out",
    "cross-derivation": "cross-derivation proxy (SC4001 only: trained on one derivation, "
    "scored on the other; same night and subject: a model-selection proxy, not a "
    "generalisation result)",
}


def torch_predictor(model, key: str = "logits") -> Predictor:
    """``windows (B, seq, 1, 3000)`` µV → ``outputs[key]`` ``(B, seq, 5)`` in eval mode
    (float32, on the model's device)."""
    import torch

    def predict(x: np.ndarray) -> np.ndarray:
        model.eval()
        dev = next(model.parameters()).device
        with torch.no_grad():
            out = model(torch.from_numpy(np.ascontiguousarray(x)).to(dev))[key]
            return out.float().cpu().numpy()

    return predict


def onnx_predictor(path: Path | str) -> tuple[Predictor, int, dict[str, Any]]:
    """The daemon's own loader: ``(Stager.logits, Stager.seq_len, card JSON as a dict)``."""
    from sleepstream.inference import load_stager

    stager = load_stager(Path(path))
    card = dict(stager.card.raw)
    card.setdefault("model_id", stager.model_id)
    return stager.logits, int(stager.seq_len), card


def predict_targets(
    predict: Predictor,
    rec: Recording,
    targets: np.ndarray,
    seq: int,
    mode: str,
    *,
    batch_size: int = 64,
    channel: str | None = None,
) -> np.ndarray:
    """Logits ``(len(targets), 5)`` of each target epoch at its :func:`score_position`."""
    targets = np.asarray(targets, dtype=np.int64)
    pos = score_position(seq, mode)
    signal = rec.signals[channel] if channel else rec.primary
    out = np.zeros((len(targets), N_STAGES), np.float32)
    for a in range(0, len(targets), batch_size):
        t = targets[a : a + batch_size]
        x, _ = gather_windows(signal, rec.labels, t - pos, seq)
        out[a : a + len(t)] = predict(x)[:, pos, :]
    return out


def predict_causal_strided(
    predict: Predictor, rec: Recording, targets: np.ndarray, seq: int, stride: int
) -> np.ndarray:
    """Fast, approximately causal logits ``(len(targets), 5)``: one window per ``stride`` targets.

    Each window ends on every ``stride``-th target and scores the targets since the previous
    window end: each keeps at least ``seq - stride`` past epochs, but may see up to
    ``stride - 1`` later epochs (not strictly causal). Used for early stopping only; reported
    metrics always use :func:`predict_targets` (one exact window per epoch).
    """
    targets = np.sort(np.asarray(targets, dtype=np.int64))
    if stride <= 1 or seq <= stride:
        return predict_targets(predict, rec, targets, seq, "causal")
    ends = np.unique(np.concatenate([targets[stride - 1 :: stride], targets[-1:]]))
    x, _ = gather_windows(rec.primary, rec.labels, ends - seq + 1, seq)
    logits = np.concatenate([predict(x[a : a + 64]) for a in range(0, len(ends), 64)])
    w = np.searchsorted(ends, targets)  # window whose end is the first >= target
    pos = seq - 1 - (ends[w] - targets)
    ok = pos >= 0
    out = np.zeros((len(targets), N_STAGES), np.float32)
    out[ok] = logits[w[ok], pos[ok]]
    if (~ok).any():
        out[~ok] = predict_targets(predict, rec, targets[~ok], seq, "causal")
    return out


def make_validator(
    recs: Sequence[Recording],
    masks: Sequence[np.ndarray],
    seq: int,
    mode: str,
    key: str,
    stride: int = 1,
) -> Callable:
    """``validate(model) -> agreement`` on the masked epochs (for early stopping).

    ``stride > 1`` in causal mode uses :func:`predict_causal_strided` (``stride`` times fewer
    windows).
    """

    def validate(model) -> dict[str, Any]:
        pred = torch_predictor(model, key)
        yt, yp = [], []
        for rec, m in zip(recs, masks, strict=True):
            tg = np.flatnonzero(np.asarray(m, bool) & (rec.labels >= 0))
            if not tg.size:
                continue
            yt.append(rec.labels[tg])
            if mode == "causal" and stride > 1:
                logits = predict_causal_strided(pred, rec, tg, seq, stride)
            else:
                logits = predict_targets(pred, rec, tg, seq, mode)
            yp.append(logits.argmax(-1))
        return agreement(np.concatenate(yt), np.concatenate(yp))

    return validate


def score_fold(
    predict: Predictor,
    recs: Sequence[Recording],
    test: dict[str, np.ndarray] | None,
    seq: int,
    modes: Sequence[str],
    normalisation: dict[str, Any] | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Reference and predicted stages of the test epochs per mode (all epochs if no mask).

    ``normalisation`` (a ``NormalisationSpec.to_card()`` dict, e.g. a sidecar's or a card's)
    is applied to each recording causally from its own start, as the daemon does
    (:func:`distill.normalise.normalise_recording`); None or kind ``"none"``: raw µV.
    """
    from distill.normalise import normalise_recording

    res: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    used = [r for r in recs if test is None or r.name in test]  # normalise only what is scored
    used = [normalise_recording(r, normalisation, primary_only=True) for r in used]
    for mode in modes:
        yt, yp = [], []
        for rec in used:
            m = np.ones(rec.n_epochs, bool) if test is None else test.get(rec.name)
            if m is None:
                continue
            tg = np.flatnonzero(np.asarray(m, bool) & (rec.labels >= 0))
            yt.append(rec.labels[tg])
            yp.append(predict_targets(predict, rec, tg, seq, mode).argmax(-1))
        res[mode] = (np.concatenate(yt), np.concatenate(yp))
    return res


def summarise(
    per_fold: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]], protocol: str
) -> dict[str, Any]:
    """Pooled and per-fold agreement per mode, labelled with the protocol."""
    modes: dict[str, Any] = {}
    for mode in next(iter(per_fold.values())):
        yt = np.concatenate([f[mode][0] for f in per_fold.values()])
        yp = np.concatenate([f[mode][1] for f in per_fold.values()])
        modes[mode] = {
            "pooled": agreement(yt, yp),
            "folds": {name: agreement(*f[mode]) for name, f in per_fold.items()},
        }
    return {"protocol": protocol, "protocol_label": PROTOCOL_LABELS[protocol], "modes": modes}


def machine() -> dict[str, Any]:
    import os

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "processor": cpu,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }


def to_markdown(result: dict[str, Any]) -> str:
    """Markdown report: protocol label first, then per mode the pooled and per-fold figures."""
    lines = [f"## {result['protocol_label']}", ""]
    for key in ("model", "source", "command", "wall_s"):
        if key in result:
            val = f"{result[key]:.0f} s" if key == "wall_s" else f"`{result[key]}`"
            lines.append(f"- {key}: {val}")
    if "machine" in result:
        m = result["machine"]
        lines.append(f"- machine: {m['processor']}, {m['cpu_count']} CPU cores, {m['platform']}")
    lines.append("")
    for mode, r in result["modes"].items():
        lines.append(agreement_markdown(r["pooled"], f"{result['protocol_label']} — {mode}"))
        lines += ["", "| fold | n | accuracy | macro-F1 | kappa |", "|---|---|---|---|---|"]
        for name, f in r["folds"].items():
            lines.append(
                f"| {name} | {f['n_epochs']} | {100 * f['accuracy']:.2f} | "
                f"{100 * f['macro_f1']:.2f} | {f['kappa']:.3f} |"
            )
        lines.append("")
    return "\n".join(lines)


def write_outputs(
    result: dict[str, Any],
    out: Path | str,
    stem: str,
    *,
    render: Callable[[dict[str, Any]], str] | None = None,
    indent: int = 2,
) -> tuple[Path, Path]:
    """Write ``<stem>.json`` and ``<stem>.md`` (``render(result)``, default this module's
    :func:`to_markdown`) under ``out``; returns both paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    js, md = out / f"{stem}.json", out / f"{stem}.md"
    js.write_text(json.dumps(result, indent=indent) + "\n")
    md.write_text((render or to_markdown)(result) + "\n")
    return js, md


def check_modes(mode: str) -> tuple[str, ...]:
    if mode == "both":
        return MODES
    if mode not in MODES:
        raise UsageError(f"--mode {mode!r}: valid: causal, offline, both")
    return (mode,)


def fold_of(meta: dict[str, Any], source: str) -> Fold:
    """The training split stored in a checkpoint sidecar or model card."""
    d = meta.get("fold") or meta.get("training", {}).get("fold")
    if not d:
        raise UsageError(f"{source}: no training split recorded; cannot pick its held-out epochs")
    return Fold.from_json(d)


def normalisation_of(meta: dict[str, Any]) -> dict[str, Any]:
    """The input normalisation a checkpoint sidecar or a model card declares.

    Sidecar: ``normalisation``; card: ``input_contract.normalisation``. Absent, or a
    string (v1 cards: the graph normalises itself), means ``{"kind": "none"}``. The dict is
    checked with ``NormalisationSpec.from_card`` (:class:`ModelError` for an unknown kind).
    """
    from distill.normalise import NONE, is_none, parse_spec

    d = meta.get("normalisation")
    if d is None:
        d = (meta.get("input_contract") or {}).get("normalisation")
    if d is None or isinstance(d, str) or is_none(d):
        return dict(NONE)
    return dict(parse_spec(d).to_card())


def trained_on(meta: dict[str, Any]) -> list[str]:
    return list(meta.get("datasets") or meta.get("training", {}).get("datasets") or [])
