"""Replay throughput: the whole SC4001 night at ``--speed max`` through the full pipeline.

The night (841 epochs after the Sleep-EDF 30-min wake trim, exactly what
``sleepstream replay`` streams) goes EDF replay source -> causal DSP -> epochs ->
ONNX student -> MQTT sink (durable outbox, QoS 1, PUBACK awaited) -> a real mosquitto on
127.0.0.1 -> a subscriber in another process. Each run uses the daemon's public API
(:class:`sleepstream.daemon.Daemon`) in this process, with the stager loaded once.

Epochs per second = epochs received by the subscriber / (last arrival - the moment
the source was open, i.e. ``Daemon.started``): model load and EDF read are excluded,
the broker hop and delivery are included. The median over ``--runs`` runs is reported.
One extra run of the plain CLI (``sleepstream replay ... --speed max --json-summary``)
gives the wall time a user sees, start-up included. ``--profile`` adds a cProfile run
(top functions written to ``bench/results/profiles/throughput.txt``).

    .venv/bin/python bench/throughput.py [--runs 3] [--no-cli] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Subscriber, bench_model, mosquitto, run_edf_daemon, sc4001_window  # noqa: E402
from common import RESULTS, emit, machine, median, percentile  # noqa: E402

GOAL = 500.0


def one_run(port: int, stager, model: Path, device: str, window) -> dict:
    psg, t0, t_end = window
    n_expected = int(round((t_end - t0) / 30))
    with (
        Subscriber(port, f"sleepstream/{device}/stage") as sub,
        tempfile.TemporaryDirectory(prefix="bench-tp-") as tmp,
    ):
        res = asyncio.run(
            run_edf_daemon(
                port=port,
                stager=stager,
                model=model,
                device=device,
                state_dir=Path(tmp),
                speed="max",
                start=t0,
                until=t_end,
            )  # fmt: skip
        )
        recs = sub.wait(n_expected, timeout=60)
    last = max(r["t"] for r in recs) if recs else float("nan")
    elapsed = last - res["t_started"]
    order_ok = [r["epoch_index"] for r in recs] == sorted(r["epoch_index"] for r in recs)
    return {
        "epochs_expected": n_expected,
        "epochs_received": len(recs),
        "in_order": order_ok,
        "elapsed_s": elapsed,
        "epochs_per_s": len(recs) / elapsed,
        "daemon_s_incl_shutdown": res["t_end"] - res["t_started"],
        "cpu_s": res["cpu_s"],
        "cpu_ms_per_epoch": 1e3 * res["cpu_s"] / max(1, len(recs)),
        "ack_latency_ms_p50": percentile([x * 1e3 for x in res["ack_latencies_s"]], 50),
        "ack_latency_ms_p99": percentile([x * 1e3 for x in res["ack_latencies_s"]], 99),
        "undelivered": res["undelivered"],
        "inference_calls": res.get("inference_count"),
        "inference_s_total": res.get("inference_sum"),
        "mean_batch": (res.get("inference_batch_sum") or 0)
        / max(1, res.get("inference_count") or 1),
        "inference_share_of_elapsed": (res.get("inference_sum") or 0) / elapsed,
    }


@contextlib.contextmanager
def inference_thread_times(stager):
    """Accumulate the inference thread's CPU time (``time.thread_time``) in
    ``ContextStager.score`` and in the model's encoder and head calls (profiling only)."""
    from sleepstream.inference.context import ContextStager

    acc = {"score": 0.0, "encode": 0.0, "head": 0.0}
    score = ContextStager.score

    def timed(fn, key):
        def wrapper(*a, **kw):
            c = time.thread_time()
            try:
                return fn(*a, **kw)
            finally:
                acc[key] += time.thread_time() - c

        return wrapper

    ContextStager.score = timed(score, "score")  # type: ignore[method-assign]
    stager.encode, stager.head = timed(stager.encode, "encode"), timed(stager.head, "head")
    try:
        yield acc
    finally:
        ContextStager.score = score  # type: ignore[method-assign]
        del stager.encode, stager.head


def cli_run(port: int, model: Path) -> dict:
    from _harness import SC4001

    with tempfile.TemporaryDirectory(prefix="bench-tp-cli-") as tmp:
        cmd = [
            str(Path(sys.executable).with_name("sleepstream")),
            "replay", str(SC4001 / "SC4001E0-PSG.edf"),
            "--hypnogram", str(SC4001 / "SC4001EC-Hypnogram.edf"),
            "--channel", "EEG Fpz-Cz", "--speed", "max", "--mqtt", f"mqtt://127.0.0.1:{port}",
            "--device", "tp-cli", "--model", str(model), "--state-dir", tmp,
            "--no-metrics", "--json-summary",
        ]  # fmt: skip
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
    if out.returncode != 0:
        return {"error": out.stderr.strip()[-500:], "command": " ".join(cmd)}
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "command": "sleepstream "
        + " ".join(cmd[1:]).replace(tmp, "TMP").replace(f":{port}", ":PORT"),
        "wall_s": wall,
        "epochs_per_s_incl_startup": summary["n_epochs_published"] / wall,
        "n_epochs_published": summary["n_epochs_published"],
        "latency_ms_p50": summary["latency_ms_p50"],
        "latency_ms_p99": summary["latency_ms_p99"],
        "accuracy": summary["accuracy"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--no-cli", action="store_true", help="skip the CLI wall-time run")
    p.add_argument("--profile", action="store_true", help="one extra run under cProfile")
    p.add_argument("--markdown-only", action="store_true", help="rewrite the .md from the JSON")
    args = p.parse_args()
    if args.markdown_only:
        write_markdown(json.loads((RESULTS / "throughput.json").read_text()))
        return

    from sleepstream.inference import load_stager

    model, model_desc = bench_model()
    stager = load_stager(model)
    window = sc4001_window()
    runs = []
    with mosquitto() as port:
        for i in range(args.runs):
            r = one_run(port, stager, model, f"tp-{i}", window)
            print(f"run {i + 1}: {r['epochs_received']} epochs, {r['epochs_per_s']:.1f}/s",
                  file=sys.stderr)  # fmt: skip
            runs.append(r)
        cli = None if args.no_cli else cli_run(port, model)
        profile_top = None
        if args.profile:
            prof = cProfile.Profile()
            with inference_thread_times(stager) as times:
                loop_cpu = time.thread_time()
                prof.enable()
                prof_run = one_run(port, stager, model, "tp-prof", window)
                prof.disable()
                loop_cpu = time.thread_time() - loop_cpu
            n = max(1, prof_run["epochs_received"])
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(25)
            buf2 = io.StringIO()
            pstats.Stats(prof, stream=buf2).sort_stats("cumulative").print_stats(40)
            out = RESULTS / "profiles" / "throughput.txt"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(
                "# cProfile of one SC4001 --speed max run (bench/throughput.py --profile)\n"
                "# (the inference thread's ONNX Runtime time shows as "
                "threading wait / run_in_executor in the loop thread)\n"
                f"# inference thread CPU per epoch (time.thread_time around the calls): "
                f"score {1e3 * times['score'] / n:.3f} ms = encoder {1e3 * times['encode'] / n:.3f}"
                f" + head {1e3 * times['head'] / n:.3f} + the rest (Python); event-loop thread "
                f"CPU per epoch {1e3 * loop_cpu / n:.3f} ms; process CPU per epoch "
                f"{prof_run['cpu_ms_per_epoch']:.3f} ms (all threads; all under the profiler)\n"
                f"# {prof_run['epochs_per_s']:.0f} epochs/s under the profiler; 1-min load average "
                f"{os.getloadavg()[0]:.1f}, this process at nice {os.nice(0)}\n\n"
                "## by own time\n" + buf.getvalue() + "\n## cumulative\n" + buf2.getvalue()
            )
            profile_top = str(out.relative_to(RESULTS.parent.parent))
    eps = median([r["epochs_per_s"] for r in runs])
    result = {
        "question": "whole-night replay throughput at --speed max, full pipeline incl. MQTT",
        "data": "Sleep-EDF SC4001E0 EEG Fpz-Cz, 100 Hz, trimmed to 841 epochs",
        "model": model_desc,
        "model_id": stager.model_id,
        "seq_len": stager.seq_len,
        "broker": "mosquitto 127.0.0.1 (set_tcp_nodelay true), QoS 1",
        "runs": args.runs,
        "load_avg_1min_at_end": os.getloadavg()[0],
        "epochs_per_s_median": eps,
        "goal_epochs_per_s": GOAL,
        "goal_met": eps >= GOAL,
        "per_run": runs,
        "cli_run": cli,
        "profile": profile_top,
    }
    row = (
        f"| throughput | SC4001 841 epochs, --speed max, mosquitto | "
        f"{eps:.0f} epochs/s (median of {args.runs}) | ≥ {GOAL:.0f} | "
        f"{'met' if eps >= GOAL else 'missed'} ({(eps / GOAL - 1) * 100:+.0f} %) |"
    )
    path = emit("throughput", result, row, packages=["aiomqtt", "paho-mqtt"])
    write_markdown(json.loads(path.read_text()))


def write_markdown(r: dict) -> None:
    m = machine()
    per = ", ".join(f"{x['epochs_per_s']:.0f}" for x in r["per_run"])
    all_ok = all(
        x["epochs_received"] == x["epochs_expected"] and x["in_order"] for x in r["per_run"]
    )
    lines = [
        "## Replay throughput (whole night, `--speed max`)",
        "",
        f"- Date: {r['date']}; machine: {m['cpu']}, "
        f"{m['cores']} cores, shared (1-min load average {r['load_avg_1min_at_end']:.1f} "
        "at the end).",
        f"- Command: `.venv/bin/{r['command']}`",
        f"- Data: {r['data']}. Model: {r['model']} (`{r['model_id']}`). Broker: {r['broker']}, "
        "subscriber in a separate process.",
        f"- Runs: {r['runs']} (each the whole night), through `sleepstream.daemon.Daemon`; "
        "time from the source being open to the last event at the subscriber.",
        "",
        f"**{r['epochs_per_s_median']:.0f} epochs/s** (median; runs: {per}). Goal ≥ "
        f"{r['goal_epochs_per_s']:.0f}: **{'met' if r['goal_met'] else 'missed'}** "
        f"({(r['epochs_per_s_median'] / r['goal_epochs_per_s'] - 1) * 100:+.0f} %). "
        f"All {r['per_run'][0]['epochs_expected']} events arrived in order in every run: "
        f"{all_ok}. The inference calls (the batcher's thread; ONNX Runtime 1 intra-op thread "
        "per call, on the stager's pool of 2) were in progress "
        f"{median([x['inference_share_of_elapsed'] for x in r['per_run']]) * 100:.0f} % of "
        f"the elapsed time, waiting for the GIL and a core included (mean batch "
        f"{median([x['mean_batch'] for x in r['per_run']]):.1f} epochs; each epoch is encoded "
        f"once, then the head runs over the device's ring of {r['seq_len']} states). The "
        "daemon process used "
        f"{median([x.get('cpu_ms_per_epoch', float('nan')) for x in r['per_run']]):.2f} ms of "
        "CPU per epoch (all threads).",
    ]
    if r["cli_run"] and "wall_s" in r["cli_run"]:
        c = r["cli_run"]
        lines += [
            "",
            f"Plain CLI (`{c['command']}`), start-up and model load included: "
            f"{c['wall_s']:.1f} s wall for {c['n_epochs_published']} epochs "
            f"({c['epochs_per_s_incl_startup']:.0f} epochs/s); its summary: accuracy "
            f"{c['accuracy']:.3f} against the SC4001 hypnogram, acknowledged latency p50 "
            f"{c['latency_ms_p50']:.1f} ms / p99 {c['latency_ms_p99']:.1f} ms (at max speed "
            "these include queueing behind earlier epochs, so they are not real-time latencies).",
        ]
    lines.append("")
    notes = RESULTS / "throughput.notes.md"
    if notes.exists():
        lines += [notes.read_text().strip(), ""]
    (RESULTS / "throughput.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
