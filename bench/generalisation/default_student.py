"""Score the frozen shipped student on DREAMS (test set; run once the model is frozen).

Usage (from the repository root; ``scripts/score_default_student.sh`` runs both)::

    python -m bench.generalisation.default_student card-metrics CARD EVALUATE_JSON
    python -m bench.generalisation.default_student replay CARD OUT_DIR

``card-metrics`` copies the metrics of ``distill evaluate --onnx CARD --protocol
cross-dataset`` (its JSON) into the card's ``metrics`` (the ONNX graphs and their sha256
are untouched; the card is re-validated with the daemon's parser).

``replay`` scores the model the way a user would: each of the 8 DREAMS excerpts is written
at its own sampling rate, with its channel name, to a temporary EDF (``tempfile``, deleted
afterwards; never under the repository: the DREAMS licence forbids derivatives) and run
through ``sleepstream replay --model CARD --hypnogram <its DREAMS hypnogram> --no-trim
--json-summary`` (the daemon's causal DSP, normaliser and split stager, cold start per
excerpt). The confusion matrices are pooled over the 480 epochs and written to
``OUT_DIR/replay-dreams.json`` + ``.md`` (metrics only).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("SLEEPSTREAM_SHARED_DATA", REPO.parent / "shared" / "data"))
STAGES = ("W", "N1", "N2", "N3", "REM")


def metrics_of_confusion(confusion: np.ndarray) -> dict[str, Any]:
    """Accuracy, macro-F1, Cohen's kappa and per-stage F1 of a (5, 5) confusion matrix
    (rows: reference, columns: prediction)."""
    c = np.asarray(confusion, dtype=np.float64)
    n = c.sum()
    po = np.trace(c) / n
    pe = float((c.sum(0) * c.sum(1)).sum()) / n**2
    f1 = {}
    for k, s in enumerate(STAGES):
        tp, fp, fn = c[k, k], c[:, k].sum() - c[k, k], c[k, :].sum() - c[k, k]
        f1[s] = float(2 * tp / (2 * tp + fp + fn)) if (2 * tp + fp + fn) > 0 else None
    present = [v for k, v in enumerate(f1.values()) if c[k, :].sum() > 0]
    return {
        "n_epochs": int(n),
        "accuracy": float(po),
        "macro_f1": float(np.mean([v or 0.0 for v in present])),
        "kappa": float((po - pe) / (1 - pe)),
        "per_stage_f1": f1,
        "confusion": c.astype(int).tolist(),
    }


def card_metrics(card_path: Path, evaluate_json: Path) -> None:
    from sleepstream.inference.card import parse_card

    card = json.loads(card_path.read_text(encoding="utf-8"))
    ev = json.loads(evaluate_json.read_text(encoding="utf-8"))
    if ev.get("protocol") != "cross-dataset":
        sys.exit(f"{evaluate_json}: protocol {ev.get('protocol')!r}, not cross-dataset")
    card["metrics"] = ev
    parse_card(card, card_path)
    card_path.write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    pooled = ev["modes"]["causal"]["pooled"]
    print(f"{card_path}: metrics <- {evaluate_json} (causal kappa {pooled['kappa']:.3f})")


def replay(card_path: Path, out_dir: Path) -> dict[str, Any]:
    from sleepstream.io.dreams import read_dreams_excerpt
    from sleepstream.io.writers import write_edf

    src = DATA / "dreams_spindles"
    t0 = time.perf_counter()
    pooled = np.zeros((5, 5), np.int64)
    per: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="sleepstream-dreams-replay-") as tmp:
        for i in range(1, 9):
            txt, hyp = src / f"excerpt{i}.txt", src / f"Hypnogram_excerpt{i}.txt"
            night = read_dreams_excerpt(txt, hyp)  # native rate, read in place
            edf = Path(tmp) / f"excerpt{i}.edf"
            write_edf(edf, night.signal[None, :].astype(np.float64), night.fs, [night.channel])
            cmd = [
                sys.executable, "-m", "sleepstream", "replay", str(edf),
                "--model", str(card_path), "--hypnogram", str(hyp), "--channel", night.channel,
                "--no-trim", "--json-summary", "--speed", "max", "--no-metrics",
                "--device", f"dreams{i}", "--state-dir", str(Path(tmp) / "state"),
                "--no-record",
            ]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            if proc.returncode != 0:
                sys.exit(f"replay of excerpt {i} failed ({proc.returncode}):\n{proc.stderr}")
            s = json.loads(proc.stdout.strip().splitlines()[-1])
            pooled += np.asarray(s["confusion"], np.int64)
            per.append(
                {
                    "excerpt": i,
                    "fs_hz": night.fs,
                    "channel": night.channel,
                    "reference_epochs": s["reference_epochs"],
                    "n_epochs_scored": s["n_epochs_scored"],
                    "n_epochs_unscored_by_model": s["n_epochs_unscored_by_model"],
                    "kappa": s["kappa"],
                    "accuracy": s["accuracy"],
                    "model": s["model"],
                    "training_recording": s["training_recording"],
                }
            )
            print(f"excerpt {i}: kappa {s['kappa']:.3f} ({s['n_epochs_scored']} epochs)")
    result = {
        "what": "shipped student, sleepstream replay of each DREAMS excerpt (temporary EDF at "
        "its own rate), causal, cold start per excerpt, pooled confusion",
        "card": str(card_path),
        "model": per[0]["model"],
        "pooled": metrics_of_confusion(pooled),
        "excerpts": per,
        "command": f"python -m bench.generalisation.default_student replay {card_path} {out_dir}",
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "replay-dreams.json").write_text(json.dumps(result, indent=1) + "\n")
    p = result["pooled"]
    f1 = " / ".join(f"{100 * (p['per_stage_f1'][s] or 0):.0f}" for s in STAGES)
    md = [
        "## Shipped student on DREAMS through `sleepstream replay`",
        "",
        f"{result['what']}. Model {result['model']}. Command: `{result['command']}` "
        f"({result['wall_s']:.0f} s).",
        "",
        "| epochs | accuracy % | macro-F1 % | kappa | F1 W / N1 / N2 / N3 / REM % |",
        "|---|---|---|---|---|",
        f"| {p['n_epochs']} | {100 * p['accuracy']:.1f} | {100 * p['macro_f1']:.1f} | "
        f"{p['kappa']:.3f} | {f1} |",
        "",
        "Per excerpt (kappa): "
        + ", ".join(f"{e['excerpt']}: {e['kappa']:.2f}" for e in per)
        + ". Epochs the model did not score: "
        + str(sum(e["n_epochs_unscored_by_model"] for e in per))
        + ".",
    ]
    (out_dir / "replay-dreams.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.generalisation.default_student")
    sub = ap.add_subparsers(dest="what", required=True)
    c = sub.add_parser("card-metrics")
    c.add_argument("card", type=Path)
    c.add_argument("evaluate_json", type=Path)
    r = sub.add_parser("replay")
    r.add_argument("card", type=Path)
    r.add_argument("out_dir", type=Path)
    a = ap.parse_args(argv)
    if a.what == "card-metrics":
        card_metrics(a.card, a.evaluate_json)
    else:
        replay(a.card, a.out_dir)


if __name__ == "__main__":
    main()
