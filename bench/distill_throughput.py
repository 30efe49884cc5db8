"""Training throughput (windows/s) of the DataLoader path vs the in-memory path, same run.

For the DeepSleepNet student and teacher, one training pass of ``distill.loop.fit``
(sequence stage, 20-epoch windows, batch 16, default augmentation, no validation) over
SC4001 is timed with ``--loader memory`` (the original path: windows cut in the
training process) and ``--loader dataloader`` (torch DataLoader, ``--workers`` worker
processes, one random stream per item), interleaved ``--reps`` times. The row is the
median of the per-rep ratios dataloader / memory (goal >= 1.0x). CPU, 1 intra-op thread
in the training process (the project default).

    python bench/distill_throughput.py [--reps 3] [--stride 5] [--workers 1]

Writes bench/results/distill/throughput-workers<W>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._harness import SC4001  # noqa: E402


def one_pass(model_name: str, loader: str, workers: int, stride: int, seed: int = 0):
    """``(windows/s, windows)`` of one training pass over SC4001: 20-epoch windows
    starting every ``stride`` epochs."""

    from distill import models
    from distill.augment import AugmentConfig
    from distill.commands.train import AUGMENT_PRESETS
    from distill.config import OptimConfig, StageConfig
    from distill.data import load_sc4001_recording
    from distill.loop import cross_entropy, fit
    from distill.runtime import Runtime, set_determinism
    from distill.trainset import Augmentation, TrainSet

    set_determinism(seed)
    rec = load_sc4001_recording(SC4001)
    ts = TrainSet([rec], [np.ones(rec.n_epochs, bool)], seq=20, stride=stride)
    windows = len(ts.plan(np.random.default_rng([seed, 2, 0])))
    aug = Augmentation(AugmentConfig.from_dict(AUGMENT_PRESETS["mild"]), 300, True)
    net = models.build(model_name)
    stage = StageConfig(epochs=1, batch_size=16, optim=OptimConfig(lr=1e-4))
    rt = Runtime(loader=loader, workers=workers)
    t0 = time.perf_counter()
    fit(net, ts, cross_entropy(), stage, augment=aug, seed=seed, progress=False, runtime=rt)
    wall = time.perf_counter() - t0
    return windows / wall, windows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--stride", type=int, default=5, help="epochs between window starts")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--models", default="deepsleepnet-student,deepsleepnet-teacher")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/distill")
    args = ap.parse_args()
    from distill.evaluate import machine

    rows = []
    for name in args.models.split(","):
        mem, dl, ratios = [], [], []
        one_pass(name, "memory", 0, 400)  # warm-up: imports, file cache
        for _ in range(args.reps):
            m, n_win = one_pass(name, "memory", 0, args.stride)
            d, _ = one_pass(name, "dataloader", args.workers, args.stride)
            mem.append(m)
            dl.append(d)
            ratios.append(d / m)
            print(json.dumps({"model": name, "memory_wps": round(m, 2),
                              "dataloader_wps": round(d, 2)}), flush=True)  # fmt: skip
        rows.append({
            "model": name,
            "memory_windows_per_s": statistics.median(mem),
            "dataloader_windows_per_s": statistics.median(dl),
            "ratio_median": statistics.median(ratios),
            "ratios": ratios,
        })  # fmt: skip
    res = {
        "command": "python bench/distill_throughput.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "windows_per_pass": n_win,
        "stride": args.stride,
        "seq_len": 20,
        "batch_size": 16,
        "workers": args.workers,
        "reps": args.reps,
        "goal": "dataloader / memory >= 1.0",
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"throughput-workers{args.workers}"
    (args.out / f"{stem}.json").write_text(json.dumps(res, indent=1) + "\n")
    lines = [
        "## distill training throughput: DataLoader vs in-memory path (CPU)",
        "",
        f"- command: `{res['command']}`",
        f"- machine: {res['machine']['processor']}, {res['machine']['cpu_count']} cores "
        "(shared with other jobs); 1 intra-op thread; "
        f"DataLoader workers: {args.workers}",
        f"- one training pass over SC4001 ({n_win} windows x 20 epochs, a window every "
        f"{args.stride} epochs), batch 16, default augmentation, no validation; median of "
        f"{args.reps} interleaved reps",
        "",
        "| model | in-memory windows/s | DataLoader windows/s | ratio (goal >= 1.0) |",
        "|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['memory_windows_per_s']:.2f} | "
            f"{r['dataloader_windows_per_s']:.2f} | {r['ratio_median']:.2f}x |"
        )
    (args.out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
