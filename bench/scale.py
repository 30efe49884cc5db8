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

    .venv/bin/python bench/scale.py [--speed 30] [--epochs 10] [--modes aligned staggered]
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

from _harness import LastSampleSink, Subscriber, bench_model, mosquitto, rss_mb  # noqa: E402
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
    task = asyncio.create_task(daemon.run())
    started = asyncio.ensure_future(daemon.started.wait())
    await asyncio.wait([task, started], return_when=asyncio.FIRST_COMPLETED)
    t0, cpu0 = time.perf_counter(), time.process_time()
    result = await task
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
            res = asyncio.run(_trial_async(cfg, args.mode, args.speed, last))
            recs = sub.wait(expected, timeout=30)
    lat = [(r["t"] - last[(r["device"], r["epoch_index"])]) * 1e3 for r in recs
           if (r["device"], r["epoch_index"]) in last]  # fmt: skip
    out = {
        "n": args.trial,
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
    p.add_argument("--epochs", type=int, default=10, help="epochs per device and trial (10)")
    p.add_argument("--modes", nargs="+", default=["aligned", "staggered"])
    p.add_argument("--max-n", type=int, default=1024)
    p.add_argument("--budget", type=float, default=540.0, help="seconds for the whole search")
    p.add_argument("--trial", type=int, help=argparse.SUPPRESS)
    p.add_argument("--mode", default="aligned", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.trial:
        trial(args)
        return
    model, model_desc = bench_model()
    t_start = time.monotonic()
    searches = []
    with mosquitto() as port:
        for i, mode in enumerate(args.modes):
            share = (args.budget - (time.monotonic() - t_start)) / (len(args.modes) - i)
            searches.append(search(mode, port, model, args, time.monotonic() + share))
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
    }
    head = {s["mode"]: s for s in searches}
    row = " ; ".join(
        f"{m}: N = {s['max_n_passing']}"
        + (f" (N = {s['first_failing_n']} fails)" if s["first_failing_n"] else "")
        for m, s in head.items()
    )
    best = max((s["max_n_passing"] for s in searches), default=0)
    emit(
        "scale",
        result,
        f"| scale | synthetic-night x N, speed {args.speed:g} | {row} | ≥ {GOAL_N} | "
        f"{'met' if best >= GOAL_N else 'missed'} ({(best / GOAL_N - 1) * 100:+.0f} %) |",
        packages=["aiomqtt", "paho-mqtt"],
    )
    write_markdown(result, args)


def write_markdown(r: dict, args) -> None:
    m = machine()
    lines = [
        "## Scale: devices per daemon",
        "",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine: {m['cpu']}, "
        f"{m['cores']} cores, shared with other jobs.",
        f"- Command: `.venv/bin/python bench/scale.py --speed {args.speed:g} --epochs "
        f"{args.epochs} --modes {' '.join(args.modes)}`",
        f"- Devices: {r['source']}, {args.epochs} epochs each per trial; model: {r['model']}; "
        f"broker: {r['broker']}. One trial (fresh daemon process) per N; N by doubling, "
        "then bisection.",
        "- Latency = last sample of the epoch in the source -> event at the subscriber. "
        "Pass = p99 ≤ 100 ms, all events arrived, no dropped samples or outbox events.",
        "",
        "| mode | N | p50 ms | p99 ms | max ms | events | missing | CPU % (100 = 1 core) "
        "| CPU % per device at real time | RSS MB | pass |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in r["searches"]:
        for t in s["trials"]:
            if "error" in t:
                lines.append(f"| {s['mode']} | {t['n']} | error: {t['error'][:80]} |||||||||")
                continue
            lines.append(
                f"| {s['mode']} | {t['n']} | {t['p50_ms']:.1f} | {t['p99_ms']:.1f} | "
                f"{t['max_ms']:.1f} | {t['received']}/{t['expected']} | {t['missing']} | "
                f"{t['cpu_pct']:.0f} | {t['cpu_pct_per_device_realtime']:.3f} | "
                f"{t['rss_mb']:.0f} | {'yes' if t['passed'] else 'no'} |"
            )
    lines.append("")
    for s in r["searches"]:
        n = s["max_n_passing"]
        lines.append(
            f"**{s['mode']}: largest passing N = {n}**"
            + (f" (N = {s['first_failing_n']} fails)" if s["first_failing_n"] else "")
            + f"; goal ≥ {GOAL_N}: {'met' if n >= GOAL_N else 'missed'} "
            f"({(n / GOAL_N - 1) * 100:+.0f} %)."
        )
    ok = [t for s in r["searches"] for t in s["trials"] if "rss_mb" in t]
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
    (RESULTS / "scale.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
