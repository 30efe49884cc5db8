"""Training throughput (windows/s) of the DataLoader path vs the in-memory path, same run.

For the DeepSleepNet student and teacher, ``--passes`` training passes of
``distill.loop.fit`` (sequence stage, 20-epoch windows, batch 16, default augmentation, no
validation) over SC4001 are timed with ``--loader memory`` (the original path: windows
cut in the training process) and ``--loader dataloader`` (torch DataLoader, ``--workers``
worker processes that live for the whole stage, one random stream per item).

Fair under load: the two paths alternate in ABBA order (rep ``r`` even: memory then
DataLoader; odd: DataLoader then memory), each rep's ratio is taken from its own adjacent
pair, and the row is the median of the per-rep ratios (goal >= 1.0x). The load average
is recorded around every measurement, and so is the CPU time per window, of the training
process alone and with its workers: it depends much less than wall time on how much of
the machine the other jobs leave us, and shows what the workers take off the training
process (with a free core per worker, windows/s follow the training process's CPU).
CPU, 1 intra-op thread in the training process (the project default).

    python bench/distill_throughput.py [--reps 6] [--passes 3] [--stride 5] [--workers 1]

Writes bench/results/distill/throughput-workers<W>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._harness import SC4001  # noqa: E402


def _cpu_s() -> tuple[float, float]:
    """CPU seconds of this process (the training process) and of it plus its finished
    children (the DataLoader workers, joined when a fit ends)."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    own = s.ru_utime + s.ru_stime
    return own, own + c.ru_utime + c.ru_stime


def timed_fit(model_name: str, loader: str, workers: int, stride: int, passes: int,
              seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """One ``fit`` of ``passes`` passes over SC4001 (20-epoch windows every ``stride``
    epochs): windows/s, windows, CPU seconds per window, load average before/after."""
    from distill import models
    from distill.augment import AUGMENT_PRESETS, AugmentConfig
    from distill.config import OptimConfig, StageConfig
    from distill.data import load_sc4001_recording
    from distill.loader import pass_items
    from distill.loop import cross_entropy, fit
    from distill.runtime import Runtime, set_determinism
    from distill.trainset import Augmentation, TrainSet

    set_determinism(seed)
    rec = load_sc4001_recording(SC4001)
    ts = TrainSet([rec], [np.ones(rec.n_epochs, bool)], seq=20, stride=stride)
    windows = sum(len(pass_items(ts, (seed, 2, p), None, 16)[0]) for p in range(passes))
    aug = Augmentation(AugmentConfig.from_dict(AUGMENT_PRESETS["mild"]), 300, True)
    net = models.build(model_name)
    stage = StageConfig(epochs=passes, batch_size=16, patience=passes, optim=OptimConfig(lr=1e-4))
    rt = Runtime(loader=loader, workers=workers)
    load0, cpu0, t0 = os.getloadavg()[0], _cpu_s(), time.perf_counter()
    fit(net, ts, cross_entropy(), stage, augment=aug, seed=seed, progress=False, runtime=rt)
    wall = time.perf_counter() - t0
    cpu1 = _cpu_s()
    return {"wps": windows / wall, "windows": windows, "wall_s": wall,
            "train_cpu_ms_per_window": 1e3 * (cpu1[0] - cpu0[0]) / windows,
            "cpu_ms_per_window": 1e3 * (cpu1[1] - cpu0[1]) / windows,
            "load": [load0, os.getloadavg()[0]]}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=6, help="ABBA repetitions (pairs)")
    ap.add_argument("--passes", type=int, default=3, help="training passes per timed fit")
    ap.add_argument("--stride", type=int, default=5, help="epochs between window starts")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--models", default="deepsleepnet-student,deepsleepnet-teacher")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/distill")
    args = ap.parse_args()
    from distill.evaluate import machine

    rows = []
    for name in args.models.split(","):
        runs: dict[str, list[dict[str, Any]]] = {"memory": [], "dataloader": []}
        timed_fit(name, "memory", 0, 400, 1)  # warm-up: imports, file cache
        for r in range(args.reps):
            order = ["memory", "dataloader"] if r % 2 == 0 else ["dataloader", "memory"]
            for loader in order:
                w = args.workers if loader == "dataloader" else 0
                runs[loader].append(timed_fit(name, loader, w, args.stride, args.passes))
            m, d = runs["memory"][-1], runs["dataloader"][-1]
            print(json.dumps({"model": name, "rep": r, "memory_wps": round(m["wps"], 2),
                              "dataloader_wps": round(d["wps"], 2),
                              "ratio": round(d["wps"] / m["wps"], 3),
                              "load": round(m["load"][1], 2)}), flush=True)  # fmt: skip
        ratios = [
            d["wps"] / m["wps"] for m, d in zip(runs["memory"], runs["dataloader"], strict=True)
        ]
        loads = [x for v in runs.values() for run in v for x in run["load"]]
        rows.append({
            "model": name,
            "memory_windows_per_s": statistics.median(x["wps"] for x in runs["memory"]),
            "dataloader_windows_per_s": statistics.median(x["wps"] for x in runs["dataloader"]),
            "ratio_median": statistics.median(ratios),
            "ratios": ratios,
            "wins": sum(r >= 1.0 for r in ratios),
            "memory_train_cpu_ms_per_window": statistics.median(
                x["train_cpu_ms_per_window"] for x in runs["memory"]),
            "dataloader_train_cpu_ms_per_window": statistics.median(
                x["train_cpu_ms_per_window"] for x in runs["dataloader"]),
            "memory_cpu_ms_per_window": statistics.median(
                x["cpu_ms_per_window"] for x in runs["memory"]),
            "dataloader_cpu_ms_per_window": statistics.median(
                x["cpu_ms_per_window"] for x in runs["dataloader"]),
            "load_min_max": [min(loads), max(loads)],
            "runs": runs,
        })  # fmt: skip
    res = {
        "command": "python bench/distill_throughput.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "windows_per_fit": rows[-1]["runs"]["memory"][-1]["windows"],
        "passes": args.passes,
        "stride": args.stride,
        "seq_len": 20,
        "batch_size": 16,
        "workers": args.workers,
        "reps": args.reps,
        "order": "ABBA (memory, dataloader, dataloader, memory, ...)",
        "goal": "dataloader / memory >= 1.0",
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"throughput-workers{args.workers}"
    (args.out / f"{stem}.json").write_text(json.dumps(res, indent=1) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(res, args) + "\n")
    print(markdown(res, args))
    return 0


def markdown(res: dict[str, Any], args: argparse.Namespace) -> str:
    m = res["machine"]
    lines = [
        "## distill training throughput: DataLoader vs in-memory path (CPU)",
        "",
        f"- command: `{res['command']}` ({res['date']})",
        f"- machine: {m['processor']}, {m['cpu_count']} cores shared with other jobs (load "
        "average per row below); 1 intra-op thread; DataLoader workers: "
        f"{args.workers}, alive for the whole stage",
        f"- one timed fit = {args.passes} training passes over SC4001 "
        f"({res['windows_per_fit']} windows x 20 epochs, a window every {args.stride} "
        f"epochs), batch 16, default augmentation, no validation; {args.reps} repetitions "
        "in ABBA order, ratio per repetition from its adjacent pair, median of the ratios",
        "",
        "| model | in-memory windows/s | DataLoader windows/s | ratio (goal >= 1.0) | "
        "per-rep ratios | training-process CPU ms/window memory / DataLoader | "
        "all CPU ms/window (+ workers) memory / DataLoader | load average |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['model']} | {r['memory_windows_per_s']:.2f} | "
            f"{r['dataloader_windows_per_s']:.2f} | **{r['ratio_median']:.2f}x** | "
            + ", ".join(f"{x:.2f}" for x in r["ratios"])
            + f" ({r['wins']}/{len(r['ratios'])} >= 1) | "
            f"{r['memory_train_cpu_ms_per_window']:.0f} / "
            f"{r['dataloader_train_cpu_ms_per_window']:.0f} | "
            f"{r['memory_cpu_ms_per_window']:.0f} / "
            f"{r['dataloader_cpu_ms_per_window']:.0f} | "
            f"{r['load_min_max'][0]:.1f}-{r['load_min_max'][1]:.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
