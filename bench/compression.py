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

from common import emit, median, percentile  # noqa: E402

ROLES = ("teacher", "ta", "student")
GOAL_PARAMS_RATIO = 0.28
GOAL_SPEEDUP = 5.6


# ----------------------------------------------------------------------------- MACs
def count_macs(model, seq_len: int) -> dict[str, int]:
    """Multiply-accumulates of one forward pass on a ``(1, seq_len, 1, 3000)`` window.

    Conv1d: ``out_elems * in_ch / groups * k``; Linear: ``rows * in * out``; LSTM/GRU:
    per step and direction ``gates * H * (I + H)`` (gates 4 / 3) times steps, batch and
    layers; MultiheadAttention: Q/K/V/out projections ``4 * L * E^2`` plus ``2 * L^2 * E``
    for the scores and the weighted sum; hand-written attention blocks (modules with
    ``qkv`` and ``heads``): their Linear layers plus ``2 * L^2 * E``. Element-wise ops, pooling and norms are not
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

    def block_attention(m, inp, out):
        # hand-written attention (q @ k^T and att @ v, not nn.Linear): 2 * B * T^2 * D
        b, t, d = inp[0].shape
        totals["attention"] += 2 * b * t * t * d

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
        elif hasattr(mod, "qkv") and hasattr(mod, "heads"):
            hooks.append(mod.register_forward_hook(block_attention))
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
    t_begin = time.perf_counter()
    for i in range(args.iters):
        # bounded time per worker (slow teachers on a loaded machine): at least 5 windows
        if i >= 5 and time.perf_counter() - t_begin > args.max_seconds:
            break
        for t in (1, 2):  # alternate thread settings so both see the same load
            set_threads(t)
            t0 = time.perf_counter()
            run(t)
            times[t].append((time.perf_counter() - t0) * 1e3)
    out["seq_len"] = int(seq)
    out["latency_ms"] = {str(t): float(np.median(v)) for t, v in times.items()}
    out["n_timed"] = len(times[1])
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
        for _ in range(max(5, len(times[1]))):
            t0 = time.perf_counter()
            stagers[1].logits(x1)
            one.append((time.perf_counter() - t0) * 1e3)
        out["latency_ms_seq1_1thread"] = float(np.median(one))
    out["load_avg_1min"] = os.getloadavg()[0]
    print(json.dumps(out))


def interleaved_worker(args: argparse.Namespace) -> None:
    """One process, all roles of a family, windows alternated teacher/ta/student.

    Every iteration times one window of each model back to back, so each ratio is taken
    from adjacent calls under the same machine load; prints per-model medians and the
    median of the per-iteration teacher/student ratios.
    """
    import numpy as np

    specs = json.loads(args.interleaved_worker)
    rng = np.random.default_rng(0)
    runners = {}
    if args.engine == "ort":
        from sleepstream.inference import load_stager

        for name, onnx in specs.items():
            st = load_stager(Path(onnx), intra_op_num_threads=1)
            x = (rng.standard_normal((1, st.seq_len, 1, 3000)) * 30).astype(np.float32)
            runners[name] = lambda st=st, x=x: st.logits(x)
    else:
        import torch

        from distill.models import build

        torch.set_num_threads(1)
        for name in specs:
            torch.manual_seed(0)
            model = build(name).eval()
            x = torch.from_numpy(
                (rng.standard_normal((1, model.seq_len, 1, 3000)) * 30).astype(np.float32)
            )

            def run(model=model, x=x):
                with torch.inference_mode():
                    model(x)

            runners[name] = run
    for fn in runners.values():
        for _ in range(3):
            fn()
    times: dict[str, list[float]] = {n: [] for n in runners}
    t_begin = time.perf_counter()
    i = 0
    while i < 5 or (time.perf_counter() - t_begin < args.max_seconds and i < 200):
        order = list(runners) if i % 2 == 0 else list(reversed(runners))
        for name in order:
            t0 = time.perf_counter()
            runners[name]()
            times[name].append((time.perf_counter() - t0) * 1e3)
        i += 1
    print(json.dumps({"iters": i, "times_ms": times}))


def interleaved(models: list[dict], max_seconds: float) -> dict:
    """Per family and engine (1 thread): medians and per-iteration speed-ups."""
    out: dict = {}
    fams = sorted({m["family"] for m in models})
    for fam in fams:
        fm = {m["role"]: m for m in models if m["family"] == fam}
        if "teacher" not in fm or "student" not in fm:
            continue
        specs = {m["model"]: m["onnx_path"] for m in fm.values()}
        for engine in ("ort", "torch"):
            cmd = [sys.executable, __file__, "--interleaved-worker", json.dumps(specs)]
            cmd += ["--engine", engine, "--max-seconds", str(max_seconds)]
            res = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if res.returncode != 0:
                out[f"{fam}/{engine}"] = {"error": res.stderr[-1000:]}
                continue
            data = json.loads(res.stdout.strip().splitlines()[-1])
            t = data["times_ms"]
            tn, sn = fm["teacher"]["model"], fm["student"]["model"]
            ratios = [a / b for a, b in zip(t[tn], t[sn], strict=True)]
            out[f"{fam}/{engine}"] = {
                "iters": data["iters"],
                "median_ms": {n: median(v) for n, v in t.items()},
                "speedup_median_of_pairs": median(ratios),
                "speedup_p25_p75": [percentile(ratios, 25), percentile(ratios, 75)],
            }
            print(f"interleaved {fam}/{engine}: {out[f'{fam}/{engine}']}", file=sys.stderr)
    return out


def spawn(name: str, engine: str, onnx: Path, iters: int, max_seconds: float = 6.0) -> dict:
    cmd = [sys.executable, __file__, "--worker", name, "--engine", engine]
    cmd += ["--onnx", str(onnx), "--iters", str(iters), "--max-seconds", str(max_seconds)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"worker {name}/{engine} failed: {res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="worker rounds (default 3)")
    p.add_argument("--iters", type=int, default=15, help="timed windows per worker and setting")
    p.add_argument(
        "--max-seconds", type=float, default=6.0, help="timing budget per worker (>= 5 windows)"
    )
    p.add_argument("--families", nargs="*", help="families (default: all except tiny)")
    p.add_argument(
        "--markdown-only", action="store_true", help="rewrite the .md from the saved JSON"
    )
    p.add_argument(
        "--profile-ort",
        nargs="+",
        metavar="MODEL",
        help="ONNX Runtime per-operator profile of these models -> results/profiles/",
    )
    p.add_argument(
        "--interleaved-only",
        action="store_true",
        help="only re-measure the interleaved speed-ups into the saved JSON",
    )
    p.add_argument("--interleaved-seconds", type=float, default=20.0)
    p.add_argument("--interleaved-worker", help=argparse.SUPPRESS)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--engine", choices=("ort", "torch"), help=argparse.SUPPRESS)
    p.add_argument("--onnx", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    if args.interleaved_worker:
        interleaved_worker(args)
        return
    if args.interleaved_only:
        from common import RESULTS

        saved = json.loads((RESULTS / "compression.json").read_text())
        saved["interleaved"] = interleaved(saved["models"], args.interleaved_seconds)
        saved["interleaved_command"] = " ".join(["python", *sys.argv])
        saved["interleaved_seconds"] = args.interleaved_seconds
        (RESULTS / "compression.json").write_text(json.dumps(saved, indent=2) + "\n")
        write_markdown(saved, table_rows(saved["models"]))
        return
    if args.markdown_only:
        import torch
        from common import RESULTS

        from distill.models import build

        saved = json.loads((RESULTS / "compression.json").read_text())
        for m in saved["models"]:  # MACs are cheap: recount with the current counter
            torch.manual_seed(0)
            model = build(m["model"]).eval()
            m["macs_per_window"] = count_macs(model, m["seq_len"])
        for fam, r in saved["ratios"].items():
            fm = {m["role"]: m for m in saved["models"] if m["family"] == fam}
            r["macs_ratio"] = (
                fm["student"]["macs_per_window"]["total"]
                / fm["teacher"]["macs_per_window"]["total"]
            )
        (RESULTS / "compression.json").write_text(json.dumps(saved, indent=2) + "\n")
        write_markdown(saved, table_rows(saved["models"]))
        return
    if args.profile_ort:
        profile_ort(args.profile_ort)
        return

    import torch
    from _harness import export_model, window_graph

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
            onnx = window_graph(export_model(name))
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
                res = spawn(m["model"], engine, Path(m["onnx_path"]), args.iters, args.max_seconds)
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
    inter = interleaved(models, args.interleaved_seconds)
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
        "max_seconds": args.max_seconds,
        "latency_definition": "one causal window, batch 1, seq = model.seq_len epochs "
        "(= one scored epoch); median over rounds of per-worker medians",
        "goals": {"params_ratio_max": GOAL_PARAMS_RATIO, "speedup_min": GOAL_SPEEDUP},
        "models": models,
        "ratios": ratios,
        "interleaved": inter,
        "interleaved_seconds": args.interleaved_seconds,
    }
    rows = table_rows(models)
    path = emit("compression", result, "\n".join(rows), packages=["torch", "onnx"])
    write_markdown(json.loads(path.read_text()), rows)


def profile_ort(names: list[str], windows: int = 10) -> None:
    """Per-op-type time share of one causal window in ONNX Runtime (1 thread)."""
    import collections
    import os as _os
    import tempfile

    import numpy as np
    import onnxruntime as ort
    from _harness import export_model, window_graph
    from common import RESULTS

    out = ["# ONNX Runtime profile, 1 intra-op thread, batch 1, seq = seq_len, "
           f"{windows} windows (bench/compression.py --profile-ort)", ""]  # fmt: skip
    for name in names:
        path = window_graph(export_model(name))
        with tempfile.TemporaryDirectory() as tmp:
            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            so.inter_op_num_threads = 1
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            so.enable_profiling = True
            so.profile_file_prefix = _os.path.join(tmp, "p")
            sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            seq = json.loads(path.with_name(path.stem + ".card.json").read_text())[
                "input_contract"
            ]["seq_len"]
            x = (np.random.default_rng(0).standard_normal((1, seq, 1, 3000)) * 30).astype(
                np.float32
            )
            for _ in range(windows):
                sess.run(None, {"eeg": x})
            events = json.loads(Path(sess.end_profiling()).read_text())
        by_op: collections.Counter = collections.Counter()
        for e in events:
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                by_op[e["args"].get("op_name", "?")] += e["dur"]
        total = sum(by_op.values()) or 1
        out.append(f"## {name}: {total / windows / 1e3:.2f} ms of kernels per window")
        for op, dur in by_op.most_common(8):
            out.append(f"  {op:24s} {dur / windows / 1e3:8.2f} ms  {100 * dur / total:5.1f} %")
        out.append("")
    dest = RESULTS / "profiles" / "compression_ort_ops.txt"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text("\n".join(out) + "\n")
    print("\n".join(out))


def table_rows(models: list[dict]) -> list[str]:
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
    return rows


def write_markdown(result: dict, rows: list[str]) -> None:
    from common import RESULTS, machine

    mach = machine()
    lines = [
        "## Compression: teacher vs TA vs student",
        "",
        f"- Date: {result['date']}; machine: "
        f"{mach['cpu']}, {mach['cores']} cores, {mach['mem_gb']} GB, shared and noisy.",
        "- Command: `.venv/bin/python bench/compression.py` "
        f"(rounds {result['runs']}; per worker and thread setting up to "
        f"{result['iters_per_run']} timed windows, or as many as fit in "
        f"{result.get('max_seconds', 6):g} s, at least 5).",
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
    inter = result.get("interleaved") or {}
    if inter:
        lines += [
            "**Speed-up measured interleaved** (one process per family and engine, 1 thread, "
            "teacher / TA / student windows alternated call by call, so every ratio compares "
            "adjacent calls under the same load; up to "
            f"{result.get('interleaved_seconds', 20):g} s or 200 iterations per family and "
            "engine, `--interleaved-seconds`; re-run alone with `--interleaved-only`). "
            "This is the figure the goal is judged on:",
            "",
            "| family | engine | iterations | teacher ms | student ms | speed-up (median of "
            "pairs) | IQR | goal ≥ 5.6× |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for key, v in inter.items():
            fam, engine = key.split("/")
            if "error" in v:
                lines.append(f"| {fam} | {engine} | error | | | | | |")
                continue
            fm = {m["role"]: m["model"] for m in result["models"] if m["family"] == fam}
            sp = v["speedup_median_of_pairs"]
            lo, hi = v["speedup_p25_p75"]
            lines.append(
                f"| {fam} | {engine} | {v['iters']} | {v['median_ms'][fm['teacher']]:.2f} | "
                f"{v['median_ms'][fm['student']]:.2f} | {sp:.2f}× | {lo:.2f}-{hi:.2f} | "
                + (
                    f"met (+{(sp / GOAL_SPEEDUP - 1) * 100:.0f} %)"
                    if sp >= GOAL_SPEEDUP
                    else f"missed by {(1 - sp / GOAL_SPEEDUP) * 100:.0f} %"
                )  # fmt: skip
                + " |"
            )
        lines.append("")
    lines.append("Per-worker figures (fresh process per model, rounds as above):")
    lines.append("")
    for fam, r in result["ratios"].items():
        fm = {m["role"]: m for m in result["models"] if m["family"] == fam}
        per_round = [
            t / s_
            for t, s_ in zip(
                fm["teacher"]["ort"]["latency_ms_1thread_per_round"],
                fm["student"]["ort"]["latency_ms_1thread_per_round"],
                strict=False,
            )
        ]
        pr = r["params_ratio"]
        sp = r["speedup_ort_1thread"]
        lines += [
            f"**{fam}, student / teacher**: params {pr:.4f} (goal ≤ {GOAL_PARAMS_RATIO}: "
            + (
                f"met with {GOAL_PARAMS_RATIO - pr:.4f} to spare"
                if r["params_goal_met"]
                else f"missed by {pr - GOAL_PARAMS_RATIO:.4f}, i.e. "
                f"{(pr / GOAL_PARAMS_RATIO - 1) * 100:.1f} %"
            )
            + f"); ONNX size {r['onnx_size_ratio']:.3f}; MACs {r['macs_ratio']:.3f} "
            f"(so at most ≈ {1 / r['macs_ratio']:.1f}× from compute alone). "
            f"Speed-up ORT {sp:.2f}× at 1 thread (per round: "
            + ", ".join(f"{x:.2f}×" for x in per_round)
            + f"), {r['speedup_ort_2threads']:.2f}× at 2 threads; torch "
            f"{r['speedup_torch_1thread']:.2f}× / {r['speedup_torch_2threads']:.2f}×. "
            "(goal: see the interleaved table).",
            "",
        ]
    lines += [
        "MACs per window by layer kind (M): "
        + "; ".join(
            f"{m['model']} "
            + ", ".join(
                f"{k} {v / 1e6:.0f}" for k, v in m["macs_per_window"].items() if k != "total" and v
            )
            for m in result["models"]
        )
        + ".",
        "",
    ]
    notes = RESULTS / "compression.notes.md"
    if notes.exists():
        lines += [notes.read_text().strip(), ""]
    (RESULTS / "compression.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
