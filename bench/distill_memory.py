"""Peak RSS of training on a 40-night memory-mapped dataset assembled from the real night.

Only one night of EEG is here, so 40 distinct nights are made from SC4001 (both
derivations): night ``i`` is the night rotated by ``37 i`` epochs (labels with it) and
scaled by ``1 + 0.02 i``, written in ``distill prepare``'s format (memory-mapped float32
arrays + index files) in a temporary folder, never committed. A child process then runs
the product path on it: ``load_prepared`` (memory maps), subject-wise folds (36 training
nights, 4 validation), per-recording normalisation along every night, the DataLoader
path with ``--workers`` processes, the DeepSleepNet student, one sequence pass with
windows drawn across every training night, and validation on the 4 nights. The process
tree's RSS and PSS (training process + DataLoader workers) are sampled every 0.25 s;
goal <= 2 GB.

    python bench/distill_memory.py [--nights 40] [--workers 1] [--stride 100]

Writes bench/results/distill/memory.{json,md}.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._harness import SC4001  # noqa: E402

EPOCH = 3000


def assemble(out: Path, n_nights: int) -> dict:
    """``n_nights`` distinct prepared nights from SC4001 (2 per subject)."""
    from distill.data import load_sc4001_recording
    from distill.prepared import NightEntry, write_manifest, write_night

    rec = load_sc4001_recording(SC4001)
    chans = list(rec.channels)
    base = np.stack([rec.signals[c].reshape(-1, EPOCH) for c in chans])  # (ch, n, 3000)
    folder = out / "nights"
    folder.mkdir(parents=True)
    entries = []
    for i in range(n_nights):
        shift = 37 * i
        x = (np.roll(base, -shift, axis=1) * (1 + 0.02 * i)).reshape(len(chans), -1)
        y = np.roll(rec.labels, -shift)
        key = f"assembled{i:03d}"
        write_night(folder, key, x.astype(np.float32), y, chans, {}, key)
        subj = f"S{i // 2:03d}"
        entries.append(NightEntry(f"N{i:03d}", subj, i % 2 + 1, key, rec.n_epochs, key, key))
    return write_manifest(out, "assembled-sc4001", str(SC4001), chans, entries)


def child(prep: Path, workers: int, stride: int) -> None:
    """The measured training run (in its own process)."""
    from dataclasses import replace

    from distill.folds import Fold
    from distill.loop import cross_entropy, fit
    from distill.prepared import load_prepared
    from distill.runtime import Runtime, set_determinism
    from distill.train import OptimConfig, StageConfig, TrainConfig, stage_data
    from distill.trainset import Augmentation

    set_determinism(0)
    recs = load_prepared(prep)
    n_val = max(1, len(recs) // 10)
    val = {r.name for r in recs[-n_val:]}
    fold = Fold("bench", "bench",
                {r.name: np.full(r.n_epochs, r.name not in val) for r in recs},
                {r.name: np.full(r.n_epochs, r.name in val) for r in recs})  # fmt: skip
    cfg = TrainConfig(
        model="deepsleepnet-student",
        seq_len=20,
        sequence=StageConfig(epochs=1, batch_size=16, optim=OptimConfig(lr=1e-4)),
        augment=Augmentation(shift=300, channel_swap=True),
        assembled_ratio=0.0,
        normalise={"kind": "running-robust-scale"},
    )
    from distill import models

    data = stage_data(cfg, recs, fold)
    ts = data.sequence_set(None)
    ts = replace(ts, stride=stride)
    net = models.build(cfg.model)
    n_train = sum(int(m.sum()) for m in data.train_m)
    t0 = time.perf_counter()
    res = fit(net, ts, cross_entropy(), cfg.sequence, validate=data.validator(20, "causal",
              "logits", stride=5), augment=cfg.augment, progress=False,
              runtime=Runtime(loader="dataloader", workers=workers))  # fmt: skip
    print(json.dumps({"train_nights": sum(int(m.any()) for m in data.train_m),
                      "val_nights": sum(int(m.any()) for m in data.val_m),
                      "train_epochs": n_train, "wall_s": time.perf_counter() - t0,
                      "val_macro_f1": res.best_metric}), flush=True)  # fmt: skip


def tree_memory_mb(pid: int) -> dict[str, float]:
    """RSS summed over the process tree (counts shared pages once per process), its PSS
    (shared pages split between the processes sharing them), and the main process's RSS
    split into anonymous and file-backed pages."""
    import psutil

    out = {"rss_sum": 0.0, "pss_sum": 0.0, "main_rss": 0.0, "main_anon": 0.0, "main_file": 0.0}
    try:
        p = psutil.Process(pid)
        procs = [p, *p.children(recursive=True)]
    except psutil.Error:
        return out
    for q in procs:
        with contextlib.suppress(psutil.Error):
            full = q.memory_full_info()
            out["rss_sum"] += full.rss / 2**20
            out["pss_sum"] += full.pss / 2**20
    with contextlib.suppress(OSError, ValueError):
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
        kv = {}
        for ln in status:
            key, _, rest = ln.partition(":")
            if rest.split():
                kv[key] = rest.split()[0]
        out["main_rss"] = int(kv.get("VmRSS", 0)) / 1024
        out["main_anon"] = int(kv.get("RssAnon", 0)) / 1024
        out["main_file"] = int(kv.get("RssFile", 0)) / 1024
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nights", type=int, default=40)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--stride", type=int, default=100, help="epochs between window starts")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/distill")
    ap.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        child(args.child, args.workers, args.stride)
        return 0
    from distill.evaluate import machine

    with tempfile.TemporaryDirectory() as tmp:
        prep = Path(tmp) / "prep"
        man = assemble(prep, args.nights)
        disk = sum(f.stat().st_size for f in (prep / "nights").glob("*.npy")) / 2**20
        cmd = [sys.executable, __file__, "--child", str(prep), "--workers", str(args.workers),
               "--stride", str(args.stride)]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        peaks: dict[str, float] = {}
        samples = 0
        while proc.poll() is None:
            for k, v in tree_memory_mb(proc.pid).items():
                peaks[k] = max(peaks.get(k, 0.0), v)
            samples += 1
            time.sleep(0.25)
        peak = peaks.get("rss_sum", 0.0)
        out = proc.stdout.read()
        if proc.returncode != 0:
            print(out)
            return proc.returncode
    run = json.loads(out.strip().splitlines()[-1])
    res = {
        "command": "python bench/distill_memory.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "nights": args.nights,
        "channels": man["channels"],
        "dataset_on_disk_mb": disk,
        "peak_rss_mb": peak,
        "peak_mb": peaks,
        "samples": samples,
        "workers": args.workers,
        "goal_mb": 2048,
        **run,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "memory.json").write_text(json.dumps(res, indent=1) + "\n")
    md = [
        "## distill training memory: 40-night memory-mapped dataset (CPU)",
        "",
        f"- command: `{res['command']}`",
        f"- data: {args.nights} nights assembled from SC4001 (rotated, rescaled; both "
        f"derivations), {disk:.0f} MB of float32 on disk, memory-mapped",
        f"- run: DeepSleepNet student, normalisation along nights, DataLoader with "
        f"{args.workers} worker(s), {run['train_nights']} training / {run['val_nights']} "
        f"validation nights, one pass ({run['wall_s']:.0f} s), windows every "
        f"{args.stride} epochs",
        f"- machine: {res['machine']['processor']}, {res['machine']['cpu_count']} cores",
        "",
        "| peak RSS, training process + workers (sum) | peak PSS (sum) | main process "
        "RSS: anonymous / file-backed | goal |",
        "|---|---|---|---|",
        f"| {peak:.0f} MB | {peaks.get('pss_sum', 0):.0f} MB | "
        f"{peaks.get('main_anon', 0):.0f} / {peaks.get('main_file', 0):.0f} MB | <= 2048 MB |",
        "",
        "The RSS sum counts pages shared by the training process and its DataLoader worker "
        "(libraries, the model, inherited arrays) once per process, so it overstates; PSS "
        "splits them. File-backed pages are memory-mapped data or libraries, reclaimable.",
    ]
    (args.out / "memory.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
