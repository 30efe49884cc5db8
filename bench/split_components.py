"""Where the split path's per-epoch time goes: encoder and head calls, against the window.

For each model (untrained, one checkpoint exported both ways, ONNX Runtime 1 intra-op
thread), batch 1, calls alternate (window, encoder, head, encoder + head, ...) so load
changes hit all; prints and writes medians to
``bench/results/profiles/split_components.txt``:

- ``window``: the window graph on one (1, S, 1, 3000) window;
- ``encoder``: the split encoder on one (1, 3000) epoch;
- ``head``: the split head on one (1, S, D) ring of states;
- ``encoder x S (one call)``: the split encoder on S epochs in one call (what the window
  graph's encoder part does), to separate per-call cost from per-epoch cost.

Usage: ``python bench/split_components.py [--seconds 10]``
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import export_model  # noqa: E402
from common import RESULTS, machine, median  # noqa: E402

MODELS = ("deepsleepnet-student", "transformer-student")


def measure(name: str, seconds: float) -> list[str]:
    from sleepstream.inference import load_stager

    window = load_stager(export_model(name, mode="window"), intra_op_num_threads=1)
    split = load_stager(export_model(name, mode="split"), intra_op_num_threads=1)
    s, d = split.seq_len, split.state_dim
    rng = np.random.default_rng(0)
    w1 = (rng.standard_normal((1, s, 1, 3000)) * 30).astype(np.float32)
    e1 = w1[0, -1]
    r1 = rng.standard_normal((1, s, d)).astype(np.float32)
    calls = {
        "window (1 window of S epochs)": lambda: window.logits(w1),
        "encoder (1 epoch)": lambda: split.encode(e1[None]),
        "head (1 ring of S states)": lambda: split.head(r1),
        "encoder x S (one call)": lambda: split.encode(w1[0, :, 0]),
    }
    times: dict[str, list[float]] = {k: [] for k in calls}
    for f in calls.values():
        f()
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times["head (1 ring of S states)"]) < 20:
        for k, f in calls.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    med = {k: median(v) * 1e3 for k, v in times.items()}
    enc, head = med["encoder (1 epoch)"], med["head (1 ring of S states)"]
    lines = [f"{name} (S={s}, D={d}), {len(times['head (1 ring of S states)'])} calls each:"]
    lines += [f"  {k:32s} {v:8.3f} ms" for k, v in med.items()]
    lines += [
        f"  split per epoch = encoder + head  {enc + head:8.3f} ms "
        f"(ratio window / split x{med['window (1 window of S epochs)'] / (enc + head):.1f})",
        f"  encoder per epoch: alone {enc:.3f} ms, inside one S-epoch call "
        f"{med['encoder x S (one call)'] / s:.3f} ms",
    ]
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=10.0, help="per model")
    p.add_argument("--models", nargs="*", default=list(MODELS))
    args = p.parse_args()
    m = machine()
    head = [
        "# bench/split_components.py: batch-1 medians, ONNX Runtime 1 intra-op thread,",
        f"# {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, {m['cpu']}, {m['cores']} "
        f"cores, load average {os.getloadavg()[0]:.1f} at the start, nice "
        f"{os.nice(0)}",
        "",
    ]
    body = [line for name in args.models for line in measure(name, args.seconds)]
    text = "\n".join(head + body) + "\n"
    print(text)
    out = RESULTS / "profiles" / "split_components.txt"
    out.write_text(text)


if __name__ == "__main__":
    main()
