"""Scale: N concurrent devices in one daemon; the largest N with p99 <= 100 ms and 0 drops.

Each trial runs in a fresh process: a ``beds.toml`` with N ``synthetic-night`` devices
(Markov-chain nights, seed = device number, ``n_epochs`` epochs each, ``speed`` S) is
read with :func:`sleepstream.config.load_beds` -- the format ``sleepstream run --config``
reads -- and run by :class:`sleepstream.daemon.Daemon` (one event loop, one pipeline per
device, inference batched across devices, one MQTT sink and outbox per device) against a
real mosquitto on 127.0.0.1. A subscriber in another process receives every stage event.
Latency per event = subscriber arrival - the epoch's ``last_sample_at`` (both
``time.perf_counter()``, CLOCK_MONOTONIC), as in ``bench/e2e_latency.py``.

Two start modes:

- ``aligned`` (plain config): every source starts at the same instant, so all N devices
  finish an epoch at the same moment and N epochs hit inference in one burst (the worst
  case: a clinic where all beds were started together);
- ``staggered``: device i's first chunk is delayed by a random phase in [0, 30/S) s
  (seeded), like beds started at different times; the pipeline is otherwise identical.

A trial passes when p99 <= 100 ms, every published event arrived, and no samples or
outbox events were dropped. N is searched by doubling from 1, then by bisection,
within ``--budget`` seconds. CPU % = the trial process's CPU time (all threads) over the
streaming wall time (100 % = one core); per device at real time = that / N / S.

Pace and real time: with ``staggered`` starts, N devices at pace S give the daemon the
same work and the same arrival pattern as N x S devices at real time (epochs arrive at
N*S/30 per second with uniform phases, chunks at N*S per second); only the number of
connections and buffers differs (memory per device is reported). With ``aligned``
starts, a burst of N epochs is what N real-time devices also produce every 30 s.

    .venv/bin/python bench/scale.py [--speed 30] [--epochs 20] [--modes aligned staggered]
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

GOAL_N = 500
P99_MAX_MS = 100.0


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
    out = {
        "n": args.trial,
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
    out["passed"] = bool(
        out["p99_ms"] <= P99_MAX_MS
        and out["missing"] == 0
        and out["samples_dropped"] == 0
        and out["outbox_dropped"] == 0
        and out["undelivered"] == 0
    )
    print(json.dumps(out))


def run_trial(n: int, mode: str, port: int, model: Path, args, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--trial", str(n), "--mode", mode, "--port", str(port)]
    cmd += ["--model", str(model), "--speed", str(args.speed), "--epochs", str(args.epochs)]
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
    p.add_argument("--speed", type=float, default=30.0, help="pace of every device (30)")
    p.add_argument("--epochs", type=int, default=20, help="epochs per device and trial (20)")
    p.add_argument("--modes", nargs="+", default=["aligned", "staggered"])
    p.add_argument("--max-n", type=int, default=1024)
    p.add_argument(
        "--confirm-realtime",
        type=int,
        default=0,
        metavar="N",
        help="also run N staggered devices at real time (speed 1, 2 epochs each)",
    )
    p.add_argument("--budget", type=float, default=540.0, help="seconds for the whole search")
    p.add_argument("--markdown-only", action="store_true", help="rewrite the .md from the JSON")
    p.add_argument("--trial", type=int, help=argparse.SUPPRESS)
    p.add_argument("--profile-out", help=argparse.SUPPRESS)
    p.add_argument(
        "--profile-realtime",
        type=int,
        default=0,
        metavar="N",
        help="only: cProfile one trial of N staggered real-time devices -> results/profiles/",
    )
    p.add_argument("--mode", default="aligned", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.trial:
        trial(args)
        return
    if args.markdown_only:
        saved = json.loads((RESULTS / "scale.json").read_text())
        args.speed = float(saved["source"].rsplit("speed ", 1)[1])
        args.epochs = saved["epochs_per_device_per_trial"]
        args.modes = [s["mode"] for s in saved["searches"]]
        write_markdown(saved, args)
        return
    model, model_desc = bench_model()
    if args.profile_realtime:
        out = RESULTS / "profiles" / f"scale_realtime_{args.profile_realtime}.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        rt = argparse.Namespace(**{**vars(args), "speed": 1.0, "epochs": 2})
        with mosquitto() as port:
            cmd = [sys.executable, __file__, "--trial", str(args.profile_realtime)]
            cmd += ["--mode", "staggered", "--port", str(port), "--model", str(model)]
            cmd += ["--speed", "1", "--epochs", "2", "--profile-out", str(out) + ".tmp"]
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        del rt
        summary = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else res.stderr[-800:]
        body = Path(str(out) + ".tmp").read_text() if Path(str(out) + ".tmp").exists() else ""
        Path(str(out) + ".tmp").unlink(missing_ok=True)
        out.write_text(
            f"# cProfile (event-loop thread) of {args.profile_realtime} staggered devices at real "
            "time, 2 epochs each\n# .venv/bin/python bench/scale.py --profile-realtime "
            f"{args.profile_realtime}\n# trial result: {summary}\n\n{body}"
        )
        print(out.read_text()[:6000])
        return
    t_start = time.monotonic()
    searches = []
    confirm = None
    with mosquitto() as port:
        for i, mode in enumerate(args.modes):
            share = (args.budget - (time.monotonic() - t_start)) / (len(args.modes) - i)
            searches.append(search(mode, port, model, args, time.monotonic() + share))
        if args.confirm_realtime:
            # N devices at real time (speed 1), staggered, 2 epochs each: the goal itself
            rt = argparse.Namespace(**{**vars(args), "speed": 1.0, "epochs": 2})
            confirm = run_trial(args.confirm_realtime, "staggered", port, model, rt, 600)
            print(f"real-time confirmation N={args.confirm_realtime}: {confirm}", file=sys.stderr)
    result = {
        "question": "largest N devices in one daemon with p99 <= 100 ms and 0 drops",
        "source": f"synthetic-night (Markov nights, 100 Hz, 1-s chunks) at speed {args.speed:g}",
        "epochs_per_device_per_trial": args.epochs,
        "model": model_desc,
        "broker": "mosquitto 127.0.0.1 set_tcp_nodelay; one MQTT client + outbox per device",
        "runs": "one trial per N (fresh process)",
        "goal_n": GOAL_N,
        "p99_max_ms": P99_MAX_MS,
        "searches": searches,
        "realtime_confirmation": confirm,
    }
    head = {s["mode"]: s for s in searches}
    row = " ; ".join(
        f"{m}: N = {s['max_n_passing']}"
        + (f" (N = {s['first_failing_n']} fails)" if s["first_failing_n"] else "")
        for m, s in head.items()
    )
    best = max((s["max_n_passing"] for s in searches), default=0)
    path = emit(
        "scale",
        result,
        f"| scale | synthetic-night x N, speed {args.speed:g} | {row} | ≥ {GOAL_N} | "
        f"{'met' if best >= GOAL_N else 'missed'} ({(best / GOAL_N - 1) * 100:+.0f} %) |",
        packages=["aiomqtt", "paho-mqtt"],
    )
    write_markdown(json.loads(path.read_text()), args)


def write_markdown(r: dict, args) -> None:
    m = machine()
    lines = [
        "## Scale: devices per daemon",
        "",
        f"- Date: {r['date']}; machine: {m['cpu']}, {m['cores']} cores, shared with other jobs.",
        f"- Command: `.venv/bin/python bench/scale.py --speed {args.speed:g} --epochs "
        f"{args.epochs} --modes {' '.join(args.modes)}`",
        f"- Devices: {r['source']}, {args.epochs} epochs each per trial; model: {r['model']}; "
        f"broker: {r['broker']}. One trial (fresh daemon process) per N; N by doubling, "
        "then bisection.",
        "- Latency = last sample of the epoch in the source -> event at the subscriber. "
        "Pass = p99 ≤ 100 ms, all events arrived, no dropped samples or outbox events.",
        "",
        "| mode | N | p50 ms | p99 ms | p99 ms w/o epoch 0 | max ms | events | missing "
        "| CPU % (100 = 1 core) | CPU % per device at real time | RSS MB | pass |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in r["searches"]:
        for t in s["trials"]:
            if "error" in t:
                lines.append(f"| {s['mode']} | {t['n']} | error: {t['error'][:80]} |||||||||")
                continue
            lines.append(
                f"| {s['mode']} | {t['n']} | {t['p50_ms']:.1f} | {t['p99_ms']:.1f} | "
                f"{t.get('p99_ms_without_epoch0', float('nan')):.1f} | "
                f"{t['max_ms']:.1f} | {t['received']}/{t['expected']} | {t['missing']} | "
                f"{t['cpu_pct']:.0f} | {t['cpu_pct_per_device_realtime']:.3f} | "
                f"{t['rss_mb']:.0f} | {'yes' if t['passed'] else 'no'} |"
            )
    lines.append("")
    for s in r["searches"]:
        n = s["max_n_passing"]
        eq = n * args.speed if s["mode"] == "staggered" else n
        lines.append(
            f"**{s['mode']}: largest passing N = {n}**"
            + (f" (N = {s['first_failing_n']} fails)" if s["first_failing_n"] else "")
            + (f", i.e. the load of ≈ {eq:.0f} real-time devices" if eq != n else "")
            + f"; goal ≥ {GOAL_N} devices: {'met' if eq >= GOAL_N else 'missed'} "
            f"({(eq / GOAL_N - 1) * 100:+.0f} %)."
        )
    c = r.get("realtime_confirmation")
    if c:
        if "error" in c:
            lines.append(f"Real-time check, N = {c['n']} staggered devices at speed 1: "
                         f"error: {c['error'][:300]}")  # fmt: skip
        else:
            lines.append(
                f"**Real-time check: N = {c['n']} staggered devices at speed 1** (2 epochs each, "
                f"`--confirm-realtime {c['n']}`): p50 {c['p50_ms']:.1f} ms, p99 "
                f"{c['p99_ms']:.1f} ms, {c['received']}/{c['expected']} events, CPU "
                f"{c['cpu_pct']:.0f} % of one core ({c['cpu_pct_per_device']:.3f} % per device), "
                f"RSS {c['rss_mb']:.0f} MB; pass: {'yes' if c['passed'] else 'no'}."
            )
    ok = [t for s in r["searches"] for t in s["trials"] if "rss_mb" in t]
    if c and "rss_mb" in c:
        ok.append(c)
    if len(ok) >= 2:
        big, small = max(ok, key=lambda t: t["n"]), min(ok, key=lambda t: t["n"])
        if big["n"] > small["n"]:
            per = (big["rss_mb"] - small["rss_mb"]) / (big["n"] - small["n"])
            lines.append(f"Memory per device ≈ {per:.2f} MB (RSS from N = {small['n']} to "
                         f"N = {big['n']}).")  # fmt: skip
    for s in r["searches"]:
        b = s["best"]
        if s["mode"] == "staggered" and b:
            lines.append(
                f"Staggered N = {b['n']} at {args.speed:g}x is the work and arrival pattern of "
                f"≈ {b['n'] * args.speed:.0f} devices at real time; CPU "
                f"{b['cpu_pct_per_device_realtime']:.3f} % of one core per real-time device."
            )
    lines.append("")
    notes = RESULTS / "scale.notes.md"
    if notes.exists():
        lines += [notes.read_text().strip(), ""]
    (RESULTS / "scale.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
