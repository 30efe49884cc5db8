"""Scale: many devices in one daemon at real time, with their own phases and aligned.

Each trial runs in a fresh process: a ``beds.toml`` with N ``synthetic-night`` devices
(Markov-chain nights, seed = device number, ``--epochs`` epochs each, real time) is read
with :func:`sleepstream.config.load_beds` -- the format ``sleepstream run --config``
reads -- and run by :class:`sleepstream.daemon.Daemon` (one event loop, one pipeline per
device, inference batched across devices through the split model's per-device rings,
one MQTT connection and one outbox for the daemon) against a real mosquitto on
127.0.0.1. A subscriber in another process receives every stage event. Latency per
event = subscriber arrival - the epoch's ``last_sample_at`` (both
``time.perf_counter()``, CLOCK_MONOTONIC), as in ``bench/e2e_latency.py``.

The two goal trials (issue 12):

- ``staggered`` (own phases), 1,000 devices: device i's first chunk is delayed by a
  random phase in [0, 30) s (seeded), as beds started at different times; goal p99 <= 50 ms,
  every event delivered, 0 dropped samples or outbox events;
- ``aligned`` (worst case), 500 devices: every source starts at the same instant, so all
  devices finish an epoch in the same second and hit inference in one burst (a clinic
  where all beds were started together); goal p99 <= 250 ms, nothing lost.

CPU % = the trial process's CPU time (all threads) over the streaming wall time (100 % =
one core); RSS at the end of the trial (the 1,000-device memory figure).
``--search`` instead looks for the largest N passing a p99 bound (doubling, then bisection).

    .venv/bin/python bench/scale.py [--staggered 1000] [--aligned 500] [--epochs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (  # noqa: E402
    LastSampleSink,
    Subscriber,
    bench_model,
    histogram_totals,
    mosquitto,
    rss_mb,
)
from common import RESULTS, emit, machine, percentile  # noqa: E402

#: Goal trials: mode -> (devices, p99 bound in ms).
GOALS = {"staggered": (1000, 50.0), "aligned": (500, 250.0)}
P99_MAX_MS = 100.0  # --search bound (overridden by --p99)


class Staggered:
    """Delay a source's first chunk by ``offset`` seconds (everything else passes through)."""

    def __init__(self, inner, offset: float) -> None:
        self._inner = inner
        self._offset = offset
        self._first = True

    def __getattr__(self, name):
        return getattr(self._inner, name)

    async def __aenter__(self):
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc):
        return await self._inner.__aexit__(*exc)

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self._first:
            self._first = False
            await asyncio.sleep(self._offset)
        return await self._inner.__anext__()


def write_beds(path: Path, n: int, port: int, model: Path, state: Path, speed: float, epochs: int):
    lines = [
        "[daemon]",
        f'mqtt = "mqtt://127.0.0.1:{port}"',
        f'model = "{model}"',
        f'state_dir = "{state}"',
        "",
    ]
    for i in range(n):
        lines += [
            "[[device]]",
            f'name = "bed-{i:04d}"',
            'source = "synthetic-night"',
            f"seed = {i}",
            f"n_epochs = {epochs}",
            f'speed = "{speed:g}"',
            "",
        ]
    path.write_text("\n".join(lines))


async def _trial_async(cfg, mode: str, speed: float, last: dict) -> dict:
    from sleepstream.daemon import Daemon, default_source

    rng = random.Random(0)
    sources = []

    def build_source(dev):
        src, until = default_source(dev)
        sources.append(src)
        if mode == "staggered":
            src = Staggered(src, rng.uniform(0, 30.0 / speed))
        return src, until

    daemon = Daemon(
        cfg,
        build_source=build_source,
        extra_sinks=lambda name: [LastSampleSink(name, last)],
        install_signals=False,
    )
    import gc

    gc_pauses: list[float] = []
    gc_t: list[float] = [0.0]

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            gc_t[0] = time.perf_counter()
        else:
            gc_pauses.append((time.perf_counter() - gc_t[0]) * 1e3)

    lags: list[float] = []

    async def lag_monitor() -> None:  # how late the event loop wakes a 10-ms sleep
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append((time.perf_counter() - t - 0.01) * 1e3)

    task = asyncio.create_task(daemon.run())
    started = asyncio.ensure_future(daemon.started.wait())
    await asyncio.wait([task, started], return_when=asyncio.FIRST_COMPLETED)
    t0, cpu0 = time.perf_counter(), time.process_time()
    monitor = asyncio.create_task(lag_monitor())
    gc.callbacks.append(on_gc)
    try:
        result = await task
    finally:
        gc.callbacks.remove(on_gc)
        monitor.cancel()
    t1, cpu1 = time.perf_counter(), time.process_time()
    m = daemon.metrics
    outbox_dropped = 0
    if m is not None:
        for metric in m.outbox_dropped.collect():
            outbox_dropped += sum(s.value for s in metric.samples if s.name.endswith("_total"))
    return {
        "wall_s": t1 - t0,
        "cpu_s": cpu1 - cpu0,
        "published": sum(r.published for r in result.devices.values()),
        "undelivered": sum(r.undelivered for r in result.devices.values()),
        "samples_dropped": int(sum(getattr(s, "dropped_samples", 0) or 0 for s in sources)),
        "outbox_dropped": int(outbox_dropped),
        "loop_lag_ms_p99": percentile(lags, 99),
        "loop_lag_ms_max": max(lags) if lags else float("nan"),
        "gc_pause_ms_max": max(gc_pauses) if gc_pauses else 0.0,
        "gc_pause_ms_total": sum(gc_pauses),
        **histogram_totals(m),
    }


def trial(args: argparse.Namespace) -> None:
    """Worker process: one daemon with N devices; prints one JSON line."""
    from sleepstream.config import load_beds

    model = Path(args.model)
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        beds = Path(tmp) / "beds.toml"
        write_beds(beds, args.trial, args.port, model, Path(tmp) / "state", args.speed, args.epochs)
        cfg = load_beds(beds).with_(metrics_port=None, print_mode="none")
        last: dict = {}
        expected = args.trial * args.epochs
        with Subscriber(args.port, "sleepstream/+/stage") as sub:
            if args.profile_out:
                import cProfile
                import io
                import pstats

                prof = cProfile.Profile()
                prof.enable()
            res = asyncio.run(_trial_async(cfg, args.mode, args.speed, last))
            if args.profile_out:
                prof.disable()
                buf = io.StringIO()
                pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(30)
                Path(args.profile_out).write_text(buf.getvalue())
            recs = sub.wait(expected, timeout=30)
    lat = [(r["t"] - last[(r["device"], r["epoch_index"])]) * 1e3 for r in recs
           if (r["device"], r["epoch_index"]) in last]  # fmt: skip
    lat_warm = [(r["t"] - last[(r["device"], r["epoch_index"])]) * 1e3 for r in recs
                if (r["device"], r["epoch_index"]) in last and r["epoch_index"] > 0]  # fmt: skip
    built = [float(r["latency_ms"]) for r in recs if r.get("latency_ms") is not None]
    out = {
        "n": args.trial,
        "event_latency_ms_p50": percentile(built, 50),
        "event_latency_ms_p99": percentile(built, 99),
        "p99_ms_without_epoch0": percentile(lat_warm, 99),
        "mode": args.mode,
        "expected": expected,
        "received": len(recs),
        "missing": expected - len(recs),
        "p50_ms": percentile(lat, 50),
        "p99_ms": percentile(lat, 99),
        "max_ms": max(lat) if lat else float("nan"),
        "cpu_pct": 100 * res["cpu_s"] / res["wall_s"],
        "rss_mb": rss_mb(os.getpid()),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "load_avg_1min": os.getloadavg()[0],
        **res,
    }
    out["cpu_pct_per_device"] = out["cpu_pct"] / args.trial
    out["cpu_pct_per_device_realtime"] = out["cpu_pct_per_device"] / args.speed
    out["p99_bound_ms"] = args.p99
    out["passed"] = bool(
        out["p99_ms"] <= args.p99
        and out["missing"] == 0
        and out["samples_dropped"] == 0
        and out["outbox_dropped"] == 0
        and out["undelivered"] == 0
    )
    print(json.dumps(out))


def run_trial(n: int, mode: str, port: int, model: Path, args, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--trial", str(n), "--mode", mode, "--port", str(port)]
    cmd += ["--model", str(model), "--speed", str(args.speed), "--epochs", str(args.epochs)]
    cmd += ["--p99", str(args.p99)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"n": n, "mode": mode, "passed": False, "error": f"timeout after {timeout:.0f} s"}
    if res.returncode != 0:
        return {"n": n, "mode": mode, "passed": False, "error": res.stderr.strip()[-800:]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def search(mode: str, port: int, model: Path, args, deadline: float) -> dict:
    trials: list[dict] = []
    stream_s = args.epochs * 30.0 / args.speed

    def attempt(n: int) -> bool | None:
        left = deadline - time.monotonic()
        if left < stream_s + 20:
            return None
        r = run_trial(n, mode, port, model, args, timeout=min(left, stream_s * 4 + 120))
        trials.append(r)
        print(
            f"{mode} N={n}: passed={r['passed']} p99={r.get('p99_ms', float('nan')):.1f} ms "
            f"missing={r.get('missing')} cpu={r.get('cpu_pct', float('nan')):.0f}% "
            f"{r.get('error', '')[:200]}",
            file=sys.stderr,
        )
        return r["passed"]

    lo, hi, n = 0, None, 1
    while n <= args.max_n:
        ok = attempt(n)
        if ok is None:
            break
        if ok:
            lo, n = n, n * 2
        else:
            hi = n
            break
    while hi is not None and hi - lo > max(1, lo // 8):
        mid = (lo + hi) // 2
        ok = attempt(mid)
        if ok is None:
            break
        lo, hi = (mid, hi) if ok else (lo, mid)
    best = max((t for t in trials if t.get("passed")), key=lambda t: t["n"], default=None)
    return {"mode": mode, "max_n_passing": lo, "first_failing_n": hi, "best": best,
            "trials": trials}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--staggered",
        type=int,
        default=GOALS["staggered"][0],
        help="devices with their own phases at real time (1000)",
    )
    p.add_argument(
        "--aligned",
        type=int,
        default=GOALS["aligned"][0],
        help="devices all due in the same second, real time (500)",
    )
    p.add_argument("--epochs", type=int, default=3, help="epochs per device and trial (3)")
    p.add_argument("--speed", type=float, default=1.0, help="pace of every device (1 = real time)")
    p.add_argument(
        "--search",
        action="store_true",
        help="instead: the largest N per mode with p99 <= --p99 (doubling, bisection)",
    )
    p.add_argument("--modes", nargs="+", default=["aligned", "staggered"], help="for --search")
    p.add_argument("--max-n", type=int, default=2048, help="for --search")
    p.add_argument("--budget", type=float, default=540.0, help="seconds for --search")
    p.add_argument("--p99", type=float, default=P99_MAX_MS, help="--search bound (ms)")
    p.add_argument("--markdown-only", action="store_true", help="rewrite the .md from the JSON")
    p.add_argument("--trial", type=int, help=argparse.SUPPRESS)
    p.add_argument("--profile-out", help=argparse.SUPPRESS)
    p.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="only: cProfile one trial of N staggered devices -> results/profiles/",
    )
    p.add_argument("--mode", default="aligned", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.trial:
        trial(args)
        return
    if args.markdown_only:
        write_markdown(json.loads((RESULTS / "scale.json").read_text()))
        return
    model, model_desc = bench_model()
    if args.profile:
        profile(args, model)
        return
    t_start = time.monotonic()
    goal_trials, searches = [], []
    with mosquitto() as port:
        if args.search:
            for i, mode in enumerate(args.modes):
                share = (args.budget - (time.monotonic() - t_start)) / (len(args.modes) - i)
                searches.append(search(mode, port, model, args, time.monotonic() + share))
        else:
            for mode, n in (("staggered", args.staggered), ("aligned", args.aligned)):
                if n <= 0:
                    continue
                bound = GOALS[mode][1]
                targs = argparse.Namespace(**{**vars(args), "p99": bound})
                r = run_trial(n, mode, port, model, targs, timeout=900)
                r.update(goal_n=GOALS[mode][0], goal_p99_ms=bound)
                print(f"{mode} N={n}: passed={r['passed']} p50={r.get('p50_ms', float('nan')):.1f} "
                      f"p99={r.get('p99_ms', float('nan')):.1f} ms missing={r.get('missing')} "
                      f"cpu={r.get('cpu_pct', float('nan')):.0f}% rss={r.get('rss_mb', 0):.0f} MB "
                      f"{r.get('error', '')[:300]}", file=sys.stderr)  # fmt: skip
                goal_trials.append(r)
    result = {
        "question": "devices per daemon at real time: own phases and aligned (worst case)",
        "source": f"synthetic-night (Markov nights, 100 Hz, 1-s chunks) at speed {args.speed:g}",
        "epochs_per_device_per_trial": args.epochs,
        "model": model_desc,
        "broker": "mosquitto 127.0.0.1 set_tcp_nodelay; one MQTT connection + outbox per daemon",
        "runs": "one trial per N (fresh process)",
        "goals": {m: {"devices": n, "p99_ms": b} for m, (n, b) in GOALS.items()},
        "goal_trials": goal_trials,
        "searches": searches,
    }
    row = " ; ".join(
        f"{t['mode']} {t['n']}: p99 {t.get('p99_ms', float('nan')):.0f} ms "
        f"(≤ {t['goal_p99_ms']:.0f}: {'met' if t['passed'] else 'missed'})"
        for t in goal_trials
    ) or "; ".join(f"{s['mode']}: N = {s['max_n_passing']}" for s in searches)
    path = emit("scale", result, f"| scale | synthetic-night × N, real time, 2 cores | {row} | "
                "1,000 own phases p99 ≤ 50 ms; 500 aligned p99 ≤ 250 ms; 0 drops | |",
                packages=["aiomqtt", "paho-mqtt"])  # fmt: skip
    write_markdown(json.loads(path.read_text()))


def profile(args: argparse.Namespace, model: Path) -> None:
    """cProfile (event-loop thread) of one staggered trial -> results/profiles/."""
    out = RESULTS / "profiles" / f"scale_staggered_{args.profile}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(str(out) + ".tmp")
    with mosquitto() as port:
        cmd = [sys.executable, __file__, "--trial", str(args.profile), "--mode", "staggered"]
        cmd += ["--port", str(port), "--model", str(model), "--speed", str(args.speed)]
        cmd += ["--epochs", str(args.epochs), "--p99", "50", "--profile-out", str(tmp)]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    summary = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else res.stderr[-800:]
    body = tmp.read_text() if tmp.exists() else ""
    tmp.unlink(missing_ok=True)
    out.write_text(
        f"# cProfile (event-loop thread) of {args.profile} staggered devices at speed "
        f"{args.speed:g}, {args.epochs} epochs each\n# .venv/bin/python bench/scale.py "
        f"--profile {args.profile}\n# trial result: {summary}\n\n{body}"
    )
    print(out.read_text()[:6000])


def _trial_row(t: dict) -> str:
    if "error" in t:
        return f"| {t['mode']} | {t['n']} | error: {t['error'][:80]} |||||||||||"
    return (
        f"| {t['mode']} | {t['n']} | {t['p50_ms']:.1f} | **{t['p99_ms']:.1f}** | "
        f"{t['max_ms']:.1f} | {t['received']}/{t['expected']} | {t['samples_dropped']} / "
        f"{t['outbox_dropped']} | {t['cpu_pct']:.0f} | {t['cpu_pct_per_device_realtime']:.3f} | "
        f"{t['rss_mb']:.0f} | {t['loop_lag_ms_p99']:.1f} | {t['load_avg_1min']:.1f} | "
        f"{'yes' if t['passed'] else 'no'} |"
    )


def write_markdown(r: dict) -> None:
    m = machine()
    lines = [
        "## Scale: devices per daemon, real time",
        "",
        f"- Date: {r['date']}; machine: {m['cpu']}, {m['cores']} cores, shared with other jobs "
        "(1-min load average per trial in the table).",
        f"- Command: `.venv/bin/{r['command']}`",
        f"- Devices: {r['source']}, {r['epochs_per_device_per_trial']} epochs each per trial; "
        f"model: {r['model']}; broker: {r['broker']}. {r['runs']}.",
        "- Latency = last sample of the epoch in the source -> event at the subscriber. Pass = "
        "p99 within the bound, all events arrived, no dropped samples or outbox events.",
        "",
        "| mode | N | p50 ms | p99 ms | max ms | events | dropped samples / outbox | CPU % "
        "(100 = 1 core) | CPU % per device | RSS MB | loop lag p99 ms | load | pass |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in r["goal_trials"]:
        lines.append(_trial_row(t))
    for s in r["searches"]:
        for t in s["trials"]:
            lines.append(_trial_row(t))
    lines.append("")
    for t in r["goal_trials"]:
        if "error" in t:
            continue
        lines.append(
            f"**{t['mode']}, {t['n']} devices: p99 {t['p99_ms']:.1f} ms** (goal ≤ "
            f"{t['goal_p99_ms']:.0f} ms, {t['goal_n']} devices, 0 drops): "
            f"**{'met' if t['passed'] else 'missed'}** (p99 "
            f"{(t['p99_ms'] / t['goal_p99_ms'] - 1) * 100:+.0f} %); RSS {t['rss_mb']:.0f} MB."
        )
    for s in r["searches"]:
        lines.append(
            f"Search ({s['mode']}): largest passing N = {s['max_n_passing']}"
            + (f" (N = {s['first_failing_n']} fails)." if s["first_failing_n"] else ".")
        )
    lines.append("")
    notes = RESULTS / "scale.notes.md"
    if notes.exists():
        lines += [notes.read_text().strip(), ""]
    (RESULTS / "scale.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
