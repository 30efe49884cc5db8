"""2-process DDP (gloo, CPU) vs 1 process with the same global batch: parameters after N steps.

:func:`distill.ddpcheck.ddp_vs_single` trains the same model on the same synthetic
night for ``--steps`` optimizer steps (global batch ``--batch`` windows of 3 epochs, Adam,
default augmentation, dropout and BatchNorm on) in 2 processes under
DistributedDataParallel and in one process with 2 micro-batches (the same slices). Goal:
every parameter equal within 1e-6. The one-process run with the whole batch at once
(BatchNorm over all windows, other dropout masks) is shown for scale.

    python bench/distill_ddp.py [--steps 10] [--models tiny-student,deepsleepnet-student]

Writes bench/results/distill/ddp.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--models", default="tiny-student,deepsleepnet-student")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/distill")
    args = ap.parse_args()
    from distill.ddpcheck import ddp_vs_single
    from distill.evaluate import machine

    rows = []
    for name in args.models.split(","):
        t0 = time.perf_counter()
        r = ddp_vs_single(steps=args.steps, world=2, batch=args.batch, model=name)
        r["wall_s"] = time.perf_counter() - t0
        whole = ddp_vs_single(steps=args.steps, world=2, batch=args.batch, model=name,
                              single_micro=1)  # fmt: skip
        r["max_abs_diff_vs_single_whole_batch"] = whole["max_abs_diff_vs_single"]
        r["pass"] = r["max_abs_diff_vs_single"] <= 1e-6 and r["max_abs_diff_across_ranks"] == 0
        rows.append(r)
        print(json.dumps(r), flush=True)
    res = {
        "command": "python bench/distill_ddp.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "goal": "max |param(2-process DDP) - param(1 process, same global batch)| <= 1e-6",
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ddp.json").write_text(json.dumps(res, indent=1) + "\n")
    md = [
        "## distill DDP: 2 gloo processes vs 1 process, same global batch (CPU)",
        "",
        f"- command: `{res['command']}`",
        f"- {args.steps} Adam steps, global batch {args.batch} windows of 3 epochs, "
        "augmentation, dropout and BatchNorm on; 1 process = 2 micro-batches (the ranks' "
        "slices); machine: "
        f"{res['machine']['processor']}, {res['machine']['cpu_count']} cores",
        "",
        "| model | max abs diff across ranks | max abs diff vs 1 process (goal <= 1e-6) | "
        "vs 1 process, whole batch at once | max abs parameter |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| {r['model']} | {r['max_abs_diff_across_ranks']:.1e} | "
            f"{r['max_abs_diff_vs_single']:.1e} | "
            f"{r['max_abs_diff_vs_single_whole_batch']:.1e} | {r['max_abs_param']:.2f} |"
        )
    (args.out / "ddp.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0 if all(r["pass"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
