"""Per-epoch inference, split vs window, measured side by side in one process.

The daemon scores each new epoch in steady state. Before the split, every scored epoch
ran its whole ``seq_len``-epoch window through the window graph (the epoch encoder on
all 20 epochs, ~95 % repeated work); with the split graphs it runs the encoder on the
one new epoch and the sequence head over the device's ring of states. One checkpoint
(untrained weights, seed 0; speed does not depend on the weight values) is exported both
ways (``bench/_harness.py export_model``) and timed, 1 ONNX Runtime intra-op thread:

- ``graph, batch 1``: window graph on ``(1, S, 1, 3000)`` vs encoder on ``(1, 1, 3000)``
  + head on ``(1, S, D)``: one device, one epoch;
- ``graph, batch 64``: the same for 64 devices' new epochs in one call each;
- ``stager, batch 64``: the daemon's API with its numpy work: ``ContextStager.score`` of
  64 epochs of 64 devices, on the window-mode export (its ring holds epochs and every
  epoch runs its whole window: the old cost) vs on the split export;
- ``stager, batch 1, 0.5 s idle``: one device's next epoch after the thread slept 0.5 s,
  as in the daemon between epochs (cold caches; on a shared machine, waiting for a core);
  15 calls each, median and p90.

Repetitions alternate window and split (A B A B ...) so load changes hit both; the result
is the median time per scored epoch of each and their ratio.

    .venv/bin/python bench/split_inference.py [--seconds 20] [--models deepsleepnet-student ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import export_model  # noqa: E402
from common import RESULTS, emit, machine, median, percentile  # noqa: E402

GOAL = 8.0
#: ``name[:key=value,...]`` (model kwargs); the first is the shipped default's size.
MODELS = (
    "deepsleepnet-student:epoch_dim=256,first_filters=32",
    "deepsleepnet-student",
    "transformer-student",
)


def _spec(spec: str) -> tuple[str, dict[str, int]]:
    name, _, kw = spec.partition(":")
    return name, {k: int(v) for k, v in (x.split("=") for x in kw.split(",") if x)}


@dataclass(frozen=True)
class _Ep:
    index: int
    samples: np.ndarray
    input_scale: float = 1.0
    quality: tuple[str, ...] = ()
    unscored_reasons: tuple[str, ...] = ()


def _cases(window, split, rng: np.random.Generator) -> dict[str, tuple]:
    """name -> (n epochs per call, window callable, split callable)."""
    from sleepstream.inference import ContextStager

    s, d = split.seq_len, split.state_dim
    w1 = (rng.standard_normal((1, s, 1, 3000)) * 30).astype(np.float32)
    w64 = (rng.standard_normal((64, s, 1, 3000)) * 30).astype(np.float32)
    e1, e64 = w1[:, -1], w64[:, -1]
    r1 = (rng.standard_normal((1, s, d))).astype(np.float32)
    r64 = (rng.standard_normal((64, s, d))).astype(np.float32)

    def ctx64(model, n_dev: int = 64):
        ctx, nxt = ContextStager(model), [0]

        def run() -> None:
            i = nxt[0]
            ctx.score([(dev, _Ep(i, e64[dev, 0])) for dev in range(n_dev)])
            nxt[0] += 1

        return run

    return {
        "graph, batch 1": (1, lambda: window.head(w1[:, :, 0]), lambda: split.head(
            np.concatenate([r1[:, 1:], split.encode(e1)[:, None]], axis=1))),
        "graph, batch 64": (64, lambda: window.head(w64[:, :, 0]), lambda: split.head(
            np.concatenate([r64[:, 1:], split.encode(e64)[:, None]], axis=1))),
        "stager, batch 64": (64, ctx64(window), ctx64(split)),
        "stager, batch 1, 0.5 s idle": (1, ctx64(window, 1), ctx64(split, 1)),
    }  # fmt: skip


def measure(name: str, seconds: float) -> dict:
    from sleepstream.inference import load_stager

    arch, kwargs = _spec(name)
    window = load_stager(export_model(arch, mode="window", **kwargs), intra_op_num_threads=1)
    split = load_stager(export_model(arch, mode="split", **kwargs), intra_op_num_threads=1)
    rng = np.random.default_rng(0)
    out: dict = {
        "model": name.replace(":", " (shipped size: ", 1) + ")" if ":" in name else name,
        "seq_len": split.seq_len,
        "state_dim": split.state_dim,
        "window_id": window.model_id,
        "split_id": split.model_id,
    }
    for case, (n, fw, fs) in _cases(window, split, rng).items():
        for f in (fw, fs, fw, fs):  # warm-up
            f()
        idle = 0.5 if "idle" in case else 0.0
        tw: list[float] = []
        ts: list[float] = []
        deadline = time.perf_counter() + seconds
        while (time.perf_counter() < deadline and not idle) or len(tw) < (15 if idle else 5):
            for f, acc in ((fw, tw), (fs, ts)):
                time.sleep(idle)
                t0 = time.perf_counter()
                f()
                acc.append((time.perf_counter() - t0) / n)
        w_ms, s_ms = median(tw) * 1e3, median(ts) * 1e3
        out[case] = {
            "epochs_per_call": n,
            "reps": len(tw),
            "window_ms_per_epoch": w_ms,
            "split_ms_per_epoch": s_ms,
            "window_ms_p90": percentile(tw, 90) * 1e3,
            "split_ms_p90": percentile(ts, 90) * 1e3,
            "speedup": w_ms / s_ms,
        }
        print(f"{name:22s} {case:17s} window {w_ms:.3f} ms  split {s_ms:.3f} ms  "
              f"x{w_ms / s_ms:.1f}", file=sys.stderr)  # fmt: skip
    split.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=20.0, help="per case and model")
    p.add_argument("--models", nargs="*", default=list(MODELS))
    p.add_argument("--markdown-only", action="store_true", help="rewrite the .md from the JSON")
    args = p.parse_args()
    if args.markdown_only:
        write_markdown(json.loads((RESULTS / "split_inference.json").read_text()))
        return
    load0 = os.getloadavg()[0]
    res = [measure(m, args.seconds) for m in args.models]
    head = res[0]["graph, batch 1"]["speedup"]
    result = {
        "question": "per-epoch inference cost, split graphs vs window graph, same run",
        "weights": "untrained (seed 0), one checkpoint exported both ways",
        "ort_threads": 1,
        "seconds_per_case": args.seconds,
        "load_avg_1min_at_start": load0,
        "load_avg_1min_at_end": os.getloadavg()[0],
        "goal_speedup": GOAL,
        "models": res,
        "goal_met": all(r[c]["speedup"] >= GOAL for r in res for c in ("graph, batch 1",)),
    }
    row = (
        f"| per-epoch inference, split vs window | {res[0]['model']}, ORT 1 thread, batch 1 | "
        f"×{head:.1f} | ≥ ×{GOAL:.0f} | {'met' if head >= GOAL else 'missed'} |"
    )
    path = emit("split_inference", result, row, packages=["onnx"])
    write_markdown(json.loads(path.read_text()))


def write_markdown(r: dict) -> None:
    m = machine()
    lines = [
        "## Per-epoch inference: split graphs vs window graph",
        "",
        f"- Date: {r['date']}; machine: {m['cpu']}, {m['cores']} cores, shared (1-min load "
        f"average {r['load_avg_1min_at_start']:.1f} at the start, "
        f"{r['load_avg_1min_at_end']:.1f} at the end).",
        f"- Command: `.venv/bin/{r['command']}`",
        f"- Models: {r['weights']}; ONNX Runtime {r['versions'].get('onnxruntime')}, "
        f"{r['ort_threads']} intra-op thread. Window and split calls alternate for "
        f"{r['seconds_per_case']:.0f} s per case; figures are medians per scored epoch.",
        "",
        "| model | case | window ms/epoch | split ms/epoch | speed-up | split p90 ms | reps |",
        "|---|---|---|---|---|---|---|",
    ]
    for x in r["models"]:
        for case in ("graph, batch 1", "graph, batch 64", "stager, batch 64",
                     "stager, batch 1, 0.5 s idle"):  # fmt: skip
            if case not in x:
                continue
            c = x[case]
            lines.append(
                f"| {x['model']} (S={x['seq_len']}, D={x['state_dim']}) | {case} | "
                f"{c['window_ms_per_epoch']:.3f} | {c['split_ms_per_epoch']:.3f} | "
                f"**×{c['speedup']:.1f}** | {c.get('split_ms_p90', float('nan')):.3f} | "
                f"{c['reps']} |"
            )
    lines += [
        "",
        f"Goal ≥ ×{r['goal_speedup']:.0f} (batch 1, every model): "
        f"**{'met' if r['goal_met'] else 'missed'}**.",
        "",
    ]
    notes = RESULTS / "split_inference.notes.md"
    if notes.exists():
        lines += [notes.read_text().strip(), ""]
    (RESULTS / "split_inference.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
