"""Accuracy against the peer: YASA vs the sleepstream student, same epochs, one run.

YASA (Vallat & Walker 2021) stages a whole recording offline (it sees the future and
smooths over minutes). The student runs *causally*, exactly as the daemon does: each
epoch is scored as the last position of a window of past epochs (zeros before the
recording starts), each recording normalised from its own start as the card declares
(``input_contract.normalisation``, the daemon's
:func:`sleepstream.dsp.normalise.normalise_night`; kind ``none`` for v1 cards). Both score:

* the eight DREAMS excerpts (30-min, C3-A1/Cz-A1; 30-s labels by the majority rule of
  ``sleepstream.io.dreams``; excerpt 3 is upsampled from 50 Hz to 100 Hz for both), and
* SC4001 Fpz-Cz (trimmed night, 841 epochs). SC4001 is the student's training night, so
  its student figure is NOT a generalisation result; it is reported for YASA's sake.

Usage::

    .venv/bin/python bench/peer_yasa.py [--model PATH.onnx] [--data ../shared/data]

Prints JSON and Markdown rows and writes ``bench/results/peer_yasa.json``.
Needs the optional ``yasa`` package (``pip install -e .[bench]``).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit  # noqa: E402

from sleepstream.dsp.normalise import normalise_night, usable_epochs  # noqa: E402
from sleepstream.inference import load_stager  # noqa: E402
from sleepstream.io.datasets import load_dreams, load_sc4001  # noqa: E402
from sleepstream.scoring import agreement  # noqa: E402
from sleepstream.types import UNSCORED  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def causal_windows(epochs: np.ndarray, seq: int) -> np.ndarray:
    """(n, 3000) -> (n, seq, 1, 3000): row i ends at epoch i, zero history before 0."""
    n = epochs.shape[0]
    padded = np.concatenate([np.zeros((seq - 1, epochs.shape[1]), epochs.dtype), epochs])
    idx = np.arange(n)[:, None] + np.arange(seq)[None, :]
    return padded[idx][:, :, None, :]


def student_stages(stager, night) -> np.ndarray:
    x = night.epochs()
    x = normalise_night(x, usable_epochs(x), stager.normalisation)
    windows = causal_windows(x, stager.seq_len)
    logits = np.concatenate(
        [stager.logits(windows[i : i + 64]) for i in range(0, len(windows), 64)]
    )
    return logits[:, -1, :].argmax(axis=1)


def yasa_stages(night) -> np.ndarray:
    import mne
    import yasa

    mne.set_log_level("ERROR")
    info = mne.create_info([night.channel], night.fs, "eeg")
    raw = mne.io.RawArray(night.signal[None].astype(np.float64) * 1e-6, info)  # µV -> V
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hyp = yasa.SleepStaging(raw, eeg_name=night.channel).predict()
    codes = np.asarray(hyp.as_int(), dtype=np.int64)  # W0 N1 1 N2 2 N3 3 REM 4
    n = night.n_epochs
    if codes.size < n:  # YASA drops a trailing partial epoch; never the case here
        codes = np.concatenate([codes, np.full(n - codes.size, UNSCORED)])
    return codes[:n]


def summary(m: dict) -> dict:
    keys = ("n_epochs", "accuracy", "macro_f1", "kappa", "per_stage_f1")
    return {k: m[k] for k in keys}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=None, help="ONNX student (default: shipped)")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = ap.parse_args()

    stager = load_stager(args.model)
    dreams = load_dreams(args.data / "dreams_spindles")
    sc4001 = load_sc4001(args.data / "sleep_edf_sc4001")

    ref_d, stu_d, yasa_d, per_excerpt = [], [], [], []
    for i, night in enumerate(dreams, start=1):
        y = night.stages.astype(np.int64)
        s, ya = student_stages(stager, night), yasa_stages(night)
        ref_d.append(y), stu_d.append(s), yasa_d.append(ya)
        per_excerpt.append(
            {
                "excerpt": i,
                "student_accuracy": agreement(y, s)["accuracy"],
                "yasa_accuracy": agreement(y, ya)["accuracy"],
            }
        )
    ref_d, stu_d, yasa_d = map(np.concatenate, (ref_d, stu_d, yasa_d))
    y_sc = sc4001.stages.astype(np.int64)
    result = {
        "model": stager.model_id,
        "model_sha256": stager.card.sha256,
        "runs": 1,
        "normalisation": stager.normalisation.to_card(),
        "note": "both deterministic; student causal (past only, normalised from each "
        "recording's start as its card declares), YASA offline (whole recording)",
        "dreams": {
            "epochs": int(ref_d.size),
            "student_causal": summary(agreement(ref_d, stu_d)),
            "yasa": summary(agreement(ref_d, yasa_d)),
            "per_excerpt": per_excerpt,
        },
        "sc4001": {
            "epochs": int(y_sc.size),
            "student_causal_training_night": summary(
                agreement(y_sc, student_stages(stager, sc4001))
            ),
            "yasa": summary(agreement(y_sc, yasa_stages(sc4001))),
        },
    }
    d, sc = result["dreams"], result["sc4001"]

    def cells(m: dict) -> str:
        return f"{100 * m['accuracy']:.1f} | {100 * m['macro_f1']:.1f} | {m['kappa']:.3f}"

    rows = "\n".join(
        [
            "| data | stager | accuracy % | macro-F1 % | kappa |",
            "|---|---|---|---|---|",
            f"| DREAMS 8 excerpts ({d['epochs']} epochs) | sleepstream student, causal | "
            f"{cells(d['student_causal'])} |",
            f"| DREAMS 8 excerpts | YASA, offline | {cells(d['yasa'])} |",
            f"| SC4001 ({sc['epochs']} epochs; student's training night) | sleepstream student, "
            f"causal | {cells(sc['student_causal_training_night'])} |",
            f"| SC4001 | YASA, offline | {cells(sc['yasa'])} |",
        ]
    )
    emit("peer_yasa", result, rows, packages=["yasa", "mne"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
