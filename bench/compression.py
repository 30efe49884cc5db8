"""Compression: teacher vs TA vs student of every model family, measured in one run.

For each family in :data:`distill.models.MODEL_SPECS` (``tiny`` excluded) and each role
(teacher, ta, student): parameters (Keras-style count and trainable), ONNX size (exported
with :func:`distill.export.export_student`), MACs per causal window (own forward-hook
counter over Conv1d / Linear / LSTM / GRU / MultiheadAttention), peak RSS while
inferring, and the latency of one causal window (batch 1, ``seq = model.seq_len``
epochs, i.e. one scored epoch) in ONNX Runtime (the daemon's loader,
:func:`sleepstream.inference.load_stager`) and in torch, with 1 and 2 threads.

Each latency/RSS figure comes from a fresh worker process per (model, engine); workers
run round-robin over the models (``--rounds`` rounds), so teacher and student are
measured side by side under the same machine load, and the reported latency is the
median over rounds of each round's median. Weights are untrained (seed 0): size, MACs
and speed do not depend on their values.

    .venv/bin/python bench/compression.py [--rounds 3] [--iters 15] [--families deepsleepnet]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit, median  # noqa: E402

ROLES = ("teacher", "ta", "student")
GOAL_PARAMS_RATIO = 0.28
GOAL_SPEEDUP = 5.6


# ----------------------------------------------------------------------------- MACs
def count_macs(model, seq_len: int) -> dict[str, int]:
    """Multiply-accumulates of one forward pass on a ``(1, seq_len, 1, 3000)`` window.

    Conv1d: ``out_elems * in_ch / groups * k``; Linear: ``rows * in * out``; LSTM/GRU:
    per step and direction ``gates * H * (I + H)`` (gates 4 / 3) times steps, batch and
    layers; MultiheadAttention: Q/K/V/out projections ``4 * L * E^2`` plus ``2 * L^2 * E``
    for the scores and the weighted sum. Element-wise ops, pooling and norms are not
    counted (they are a few % of a conv net's work).
    """
    import torch
    from torch import nn

    totals: dict[str, int] = {"conv": 0, "linear": 0, "rnn": 0, "attention": 0}

    def conv(m, inp, out):
        totals["conv"] += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0]

    def linear(m, inp, out):
        totals["linear"] += (inp[0].numel() // m.in_features) * m.in_features * m.out_features

    def rnn(m, inp, out):
        x = inp[0]
        steps = x.shape[1] if m.batch_first else x.shape[0]
        batch = x.shape[0] if m.batch_first else x.shape[1]
        gates = 4 if isinstance(m, nn.LSTM) else 3 if isinstance(m, nn.GRU) else 1
        dirs = 2 if m.bidirectional else 1
        total, i = 0, m.input_size
        for _ in range(m.num_layers):
            total += gates * m.hidden_size * (i + m.hidden_size) * steps * batch * dirs
            i = m.hidden_size * dirs
        totals["rnn"] += total

    def mha(m, inp, out):
        q = inp[0]
        length = q.shape[1] if m.batch_first else q.shape[0]
        rows = q.numel() // m.embed_dim
        totals["attention"] += 4 * rows * m.embed_dim**2 + 2 * rows * length * m.embed_dim

    hooks = []
    for mod in model.modules():
        if isinstance(mod, nn.Conv1d):
            hooks.append(mod.register_forward_hook(conv))
        elif isinstance(mod, nn.Linear) and not isinstance(
            mod, nn.modules.linear.NonDynamicallyQuantizableLinear
        ):
            hooks.append(mod.register_forward_hook(linear))
        elif isinstance(mod, nn.RNNBase):
            hooks.append(mod.register_forward_hook(rnn))
        elif isinstance(mod, nn.MultiheadAttention):
            hooks.append(mod.register_forward_hook(mha))
    try:
        with torch.no_grad():
            model(torch.zeros(1, seq_len, 1, 3000))
    finally:
        for h in hooks:
            h.remove()
    totals["total"] = sum(totals.values())
    return totals


# ----------------------------------------------------------------------------- worker
def worker(args: argparse.Namespace) -> None:
    """Fresh process: load one model in one engine, time batch-1 causal windows."""
    import numpy as np

    def rss_now() -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    out: dict = {"model": args.worker, "engine": args.engine}
    rng = np.random.default_rng(0)
    if args.engine == "ort":
        import onnxruntime  # noqa: F401

        from sleepstream.inference import load_stager

        out["rss_before_load_mb"] = rss_now()
        stagers = {t: load_stager(Path(args.onnx), intra_op_num_threads=t) for t in (1, 2)}
        seq = stagers[1].seq_len
        x = (rng.standard_normal((1, seq, 1, 3000)) * 30).astype(np.float32)

        def run(t: int) -> None:
            stagers[t].logits(x)

        def set_threads(t: int) -> None:
            pass
    else:
        import torch

        from distill.models import build

        out["rss_before_load_mb"] = rss_now()
        torch.manual_seed(0)
        model = build(args.worker).eval()
        seq = model.seq_len
        x = torch.from_numpy((rng.standard_normal((1, seq, 1, 3000)) * 30).astype(np.float32))

        def run(t: int) -> None:
            with torch.inference_mode():
                model(x)

        def set_threads(t: int) -> None:
            torch.set_num_threads(t)

    times: dict[int, list[float]] = {1: [], 2: []}
    for t in (1, 2):
        set_threads(t)
        for _ in range(3):
            run(t)  # warm-up
    for _ in range(args.iters):
        for t in (1, 2):  # alternate thread settings so both see the same load
            set_threads(t)
            t0 = time.perf_counter()
            run(t)
            times[t].append((time.perf_counter() - t0) * 1e3)
    out["seq_len"] = int(seq)
    out["latency_ms"] = {str(t): float(np.median(v)) for t, v in times.items()}
    # VmHWM, not ru_maxrss: ru_maxrss survives exec and would report the parent's peak.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            out["peak_rss_mb"] = int(line.split()[1]) / 1024
    if args.engine == "ort" and stagers[1].card.raw["input_contract"].get("seq_dynamic"):
        # one-epoch window: what a step would cost if past epochs' encodings were cached
        x1 = np.ascontiguousarray(x[:, -1:])
        for _ in range(3):
            stagers[1].logits(x1)
        one = []
        for _ in range(args.iters):
            t0 = time.perf_counter()
            stagers[1].logits(x1)
            one.append((time.perf_counter() - t0) * 1e3)
        out["latency_ms_seq1_1thread"] = float(np.median(one))
    out["load_avg_1min"] = os.getloadavg()[0]
    print(json.dumps(out))


def spawn(name: str, engine: str, onnx: Path, iters: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", name, "--engine", engine]
    cmd += ["--onnx", str(onnx), "--iters", str(iters)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"worker {name}/{engine} failed: {res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="worker rounds (default 3)")
    p.add_argument("--iters", type=int, default=15, help="timed windows per worker and setting")
    p.add_argument("--families", nargs="*", help="families (default: all except tiny)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--engine", choices=("ort", "torch"), help=argparse.SUPPRESS)
    p.add_argument("--onnx", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return

    import torch
    from _harness import export_model

    from distill.models import MODEL_SPECS, build, count_params

    torch.set_num_threads(1)
    families = args.families or sorted({s.family for s in MODEL_SPECS.values()} - {"tiny"})
    models: list[dict] = []
    for fam in families:
        for role in ROLES:
            specs = [s for s in MODEL_SPECS.values() if s.family == fam and s.role == role]
            if not specs:
                continue
            name = specs[0].name
            torch.manual_seed(0)
            model = build(name).eval()
            t0 = time.perf_counter()
            onnx = export_model(name)
            print(f"{name}: onnx ready in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            models.append(
                {
                    "family": fam,
                    "role": role,
                    "model": name,
                    "seq_len": int(model.seq_len),
                    **count_params(model),
                    "onnx_path": str(onnx),
                    "onnx_bytes": onnx.stat().st_size,
                    "onnx_exporter": json.loads(
                        onnx.with_name(onnx.stem + ".card.json").read_text()
                    )["onnx"]["exporter"],
                    "macs_per_window": count_macs(model, model.seq_len),
                }
            )
            del model
    samples: dict[tuple[str, str], list[dict]] = {}
    for r in range(args.rounds):
        for m in models:
            for engine in ("ort", "torch"):
                res = spawn(m["model"], engine, Path(m["onnx_path"]), args.iters)
                samples.setdefault((m["model"], engine), []).append(res)
                print(
                    f"round {r + 1}: {m['model']:22s} {engine:5s} "
                    f"1t {res['latency_ms']['1']:.2f} ms  2t {res['latency_ms']['2']:.2f} ms  "
                    f"rss {res['peak_rss_mb']:.0f} MB",
                    file=sys.stderr,
                )
    for m in models:
        for engine in ("ort", "torch"):
            runs = samples[(m["model"], engine)]
            m[engine] = {
                "latency_ms_1thread": median([x["latency_ms"]["1"] for x in runs]),
                "latency_ms_2threads": median([x["latency_ms"]["2"] for x in runs]),
                "latency_ms_1thread_per_round": [x["latency_ms"]["1"] for x in runs],
                "peak_rss_mb": median([x["peak_rss_mb"] for x in runs]),
                "rss_before_load_mb": median([x["rss_before_load_mb"] for x in runs]),
            }
            if engine == "ort" and all("latency_ms_seq1_1thread" in x for x in runs):
                m[engine]["latency_ms_seq1_1thread"] = median(
                    [x["latency_ms_seq1_1thread"] for x in runs]
                )
            m[engine]["model_rss_mb"] = m[engine]["peak_rss_mb"] - m[engine]["rss_before_load_mb"]
    ratios: dict[str, dict] = {}
    for fam in families:
        by_role = {m["role"]: m for m in models if m["family"] == fam}
        if "teacher" not in by_role or "student" not in by_role:
            continue
        t, s = by_role["teacher"], by_role["student"]
        ratio = {
            "params_ratio": s["n_params"] / t["n_params"],
            "onnx_size_ratio": s["onnx_bytes"] / t["onnx_bytes"],
            "macs_ratio": s["macs_per_window"]["total"] / t["macs_per_window"]["total"],
        }
        for engine in ("ort", "torch"):
            for th in ("1thread", "2threads"):
                key = f"latency_ms_{th}"
                ratio[f"speedup_{engine}_{th}"] = t[engine][key] / s[engine][key]
        ratio["params_goal_met"] = ratio["params_ratio"] <= GOAL_PARAMS_RATIO
        ratio["speedup_goal_met_ort_1thread"] = ratio["speedup_ort_1thread"] >= GOAL_SPEEDUP
        ratios[fam] = ratio
    result = {
        "question": "student vs teacher size and speed per family",
        "weights": "untrained (seed 0): size, MACs and speed do not depend on weight values",
        "runs": args.rounds,
        "iters_per_run": args.iters,
        "latency_definition": "one causal window, batch 1, seq = model.seq_len epochs "
        "(= one scored epoch); median over rounds of per-worker medians",
        "goals": {"params_ratio_max": GOAL_PARAMS_RATIO, "speedup_min": GOAL_SPEEDUP},
        "models": models,
        "ratios": ratios,
    }
    rows = []
    for m in models:
        rows.append(
            f"| {m['model']} | {m['n_params']:,} | {m['onnx_bytes'] / 1e6:.2f} MB | "
            f"{m['macs_per_window']['total'] / 1e6:.1f} M | "
            f"{m['ort']['latency_ms_1thread']:.2f} / {m['ort']['latency_ms_2threads']:.2f} | "
            f"{m['torch']['latency_ms_1thread']:.2f} / {m['torch']['latency_ms_2threads']:.2f} | "
            f"{m['ort'].get('latency_ms_seq1_1thread', float('nan')):.2f} | "
            f"{m['ort']['peak_rss_mb']:.0f} ({m['ort']['model_rss_mb']:.0f}) | "
            f"{m['torch']['peak_rss_mb']:.0f} ({m['torch']['model_rss_mb']:.0f}) |"
        )
    emit("compression", result, "\n".join(rows), packages=["torch", "onnx"])
    write_markdown(result, rows)


def write_markdown(result: dict, rows: list[str]) -> None:
    from common import RESULTS, machine

    mach = machine()
    lines = [
        "## Compression: teacher vs TA vs student",
        "",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine: "
        f"{mach['cpu']}, {mach['cores']} cores, {mach['mem_gb']} GB, shared and noisy.",
        "- Command: `.venv/bin/python bench/compression.py` "
        f"(rounds {result['runs']}, {result['iters_per_run']} timed windows per worker "
        "and thread setting).",
        "- Weights: untrained (seed 0); size, MACs and speed do not depend on them. "
        "Accuracy loss is measured by `distill compare`, not here.",
        "- Latency: one causal window at batch 1 (seq = the model's seq_len epochs, "
        "i.e. one scored epoch in streaming), median over rounds of each fresh worker's "
        "median; ORT through `sleepstream.inference.load_stager` (intra-op threads 1 / 2), "
        "torch `inference_mode` with `torch.set_num_threads(1 / 2)`. Peak RSS = the worker's "
        "VmHWM (in brackets: above the RSS after imports, before the model was loaded). "
        "'1-epoch window' = the same ONNX graph on seq = 1: about what one scored epoch "
        "would cost if the encodings of the past epochs were cached instead of recomputed.",
        "- ONNX exporters: "
        + ", ".join(f"{m['model']} {m['onnx_exporter']}" for m in result["models"])
        + ".",
        "",
        "| model | params | ONNX | MACs / window | ORT ms 1t / 2t | torch ms 1t / 2t "
        "| ORT ms, 1-epoch window, 1t | ORT peak RSS MB | torch peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    for fam, r in result["ratios"].items():
        lines += [
            f"**{fam}, student / teacher**: params {r['params_ratio']:.3f} "
            f"(goal ≤ {GOAL_PARAMS_RATIO}: {'met' if r['params_goal_met'] else 'missed'}, "
            f"{(GOAL_PARAMS_RATIO - r['params_ratio']) / GOAL_PARAMS_RATIO * 100:+.0f} % margin); "
            f"ONNX size {r['onnx_size_ratio']:.3f}; MACs {r['macs_ratio']:.3f}. "
            f"Speed-up ORT {r['speedup_ort_1thread']:.2f}× (1 thread) / "
            f"{r['speedup_ort_2threads']:.2f}× (2 threads), torch "
            f"{r['speedup_torch_1thread']:.2f}× / {r['speedup_torch_2threads']:.2f}× "
            f"(goal ≥ {GOAL_SPEEDUP}×: ORT 1 thread "
            f"{'met' if r['speedup_goal_met_ort_1thread'] else 'missed'} by "
            f"{(r['speedup_ort_1thread'] / GOAL_SPEEDUP - 1) * 100:+.0f} %).",
            "",
        ]
    (RESULTS / "compression.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
