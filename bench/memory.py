"""Memory: the daemon's steady-state RSS with the student, 1 device and 1,000 devices.

Runs the real CLI in its own process, as a user would. One device::

    sleepstream run --source synthetic-night --speed S --mqtt mqtt://127.0.0.1:PORT \\
        --model MODEL --metrics-port 0 --quiet --state-dir TMP --device mem-1

N devices: the same with ``--config beds.toml`` listing N ``synthetic-night`` devices
(seed = device number, real time), the format a clinic's beds file has. Against a real
mosquitto (Prometheus exporter on, the daemon's one MQTT connection with its SQLite
outbox), RSS is sampled from ``/proc/PID/status`` once per second for ``--duration``
seconds, then the daemon is stopped with SIGTERM (graceful shutdown, exit 0 expected).
Steady state = the median RSS over the second half of the run; the slope over the second
half (MB per minute) shows whether memory keeps growing. At ``--speed 30`` one device
scores one epoch per second, so 4 minutes = 2 hours of night.

    .venv/bin/python bench/memory.py [--devices 1 1000] [--duration 240] [--speed 30]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Subscriber, bench_model, mosquitto, rss_mb  # noqa: E402
from common import RESULTS, emit, machine, median  # noqa: E402

#: RSS goals (MB) by number of devices (issue 12).
GOALS_MB = {1: 200.0, 1000: 1000.0}


def goal_mb(n: int) -> float:
    """The goal for ``n`` devices: 200 MB for one, 1 GB for 1,000 (linear in between)."""
    return GOALS_MB.get(n, 200.0 + (1000.0 - 200.0) * (n - 1) / 999)


def slope_mb_per_min(ts: list[float], ys: list[float]) -> float:
    n = len(ts)
    if n < 2:
        return float("nan")
    mt, my = sum(ts) / n, sum(ys) / n
    var = sum((t - mt) ** 2 for t in ts)
    return 60 * sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True)) / var


def write_beds(path: Path, n: int, port: int, model: Path, state: Path, speed: float) -> None:
    """A beds file with ``n`` synthetic-night devices (seed = device number)."""
    lines = ["[daemon]", f'mqtt = "mqtt://127.0.0.1:{port}"', f'model = "{model}"',
             f'state_dir = "{state}"', ""]  # fmt: skip
    for i in range(n):
        lines += ["[[device]]", f'name = "mem-{i:04d}"', 'source = "synthetic-night"',
                  f"seed = {i}", f'speed = "{speed:g}"', ""]  # fmt: skip
    path.write_text("\n".join(lines))


def measure(n: int, duration: float, speed: float, model: Path) -> dict:
    """One daemon with ``n`` devices for ``duration`` s; RSS samples and the exit."""
    exe = Path(sys.executable).with_name("sleepstream")
    samples: list[tuple[float, float]] = []
    with mosquitto() as port, tempfile.TemporaryDirectory(prefix="bench-mem-") as tmp:
        common = ["--metrics-port", "0", "--quiet", "--log-level", "warning"]
        if n == 1:
            cmd = [
                str(exe), "run", "--source", "synthetic-night", "--speed", f"{speed:g}",
                "--mqtt", f"mqtt://127.0.0.1:{port}", "--model", str(model),
                "--state-dir", tmp, "--device", "mem-1", *common,
            ]  # fmt: skip
        else:
            beds = Path(tmp) / "beds.toml"
            write_beds(beds, n, port, model, Path(tmp) / "state", speed)
            cmd = [str(exe), "run", "--config", str(beds), *common]
        with Subscriber(port, "sleepstream/+/stage") as sub:
            proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
            t0 = time.monotonic()
            while time.monotonic() - t0 < duration and proc.poll() is None:
                samples.append((time.monotonic() - t0, rss_mb(proc.pid)))
                time.sleep(1.0)
            alive = proc.poll() is None
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
            stderr = proc.stderr.read() if proc.stderr else ""
            events = sub.wait(0, timeout=2)
    half = [s for s in samples if s[0] >= duration / 2]
    steady = median([y for _, y in half])
    peak = max(y for _, y in samples) if samples else float("nan")
    return {
        "devices": n,
        "command_measured": "sleepstream "
        + " ".join(cmd[1:]).replace(tmp, "TMP").replace(f":{port}", ":PORT"),
        "source": f"synthetic-night at speed {speed:g} (1 epoch per {30 / speed:g} s per device)",
        "duration_s": duration,
        "alive_until_sigterm": alive,
        "exit_code_after_sigterm": rc,
        "stderr_tail": stderr.strip()[-500:],
        "events_received": len(events),
        "rss_mb_steady_median_second_half": steady,
        "rss_mb_peak_sampled": peak,
        "rss_slope_mb_per_min_second_half": slope_mb_per_min(
            [t for t, _ in half], [y for _, y in half]
        ),
        "rss_samples": [[round(t, 1), round(y, 1)] for t, y in samples],
        "goal_mb": goal_mb(n),
        "goal_met": steady <= goal_mb(n),
        "load_avg_1min": os.getloadavg()[0],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--devices", type=int, nargs="+", default=[1, 1000])
    p.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds per run (default: 240 for one device; 600 for more, two "
        "of the night recorder's 300-s raw segments, its memory cycle)",
    )
    p.add_argument(
        "--speed",
        type=float,
        default=None,
        help="synthetic-night pace (default: 30 for one device, 1 for more)",
    )
    p.add_argument("--markdown-only", action="store_true", help="rewrite the .md from the JSON")
    args = p.parse_args()
    if args.markdown_only:
        write_markdown(json.loads((RESULTS / "memory.json").read_text()))
        return
    model, model_desc = bench_model()
    runs = []
    for n in args.devices:
        speed = args.speed if args.speed is not None else (30.0 if n == 1 else 1.0)
        duration = args.duration if args.duration is not None else (240.0 if n == 1 else 600.0)
        r = measure(n, duration, speed, model)
        print(f"{n} devices: steady {r['rss_mb_steady_median_second_half']:.0f} MB, "
              f"peak {r['rss_mb_peak_sampled']:.0f} MB, exit {r['exit_code_after_sigterm']}",
              file=sys.stderr)  # fmt: skip
        runs.append(r)
    result = {
        "question": "daemon steady-state RSS with the student, by number of devices",
        "model": model_desc,
        "runs": "1 per device count (RSS is deterministic enough; the slope shows growth)",
        "per_devices": runs,
        "goal_met": all(r["goal_met"] for r in runs),
    }
    row = " ; ".join(
        f"{r['devices']} device(s): steady {r['rss_mb_steady_median_second_half']:.0f} MB "
        f"(≤ {r['goal_mb']:.0f}: {'met' if r['goal_met'] else 'missed'})"
        for r in runs
    )
    path = emit("memory", result, f"| memory | `sleepstream run`, synthetic-night, mosquitto | "
                f"{row} | ≤ 200 MB (1), ≤ 1 GB (1,000) | |",
                packages=["aiomqtt", "prometheus-client"])  # fmt: skip
    write_markdown(json.loads(path.read_text()))


def write_markdown(r: dict) -> None:
    m = machine()
    lines = [
        "## Memory: daemon steady-state RSS",
        "",
        f"- Date: {r['date']}; machine: {m['cpu']}, {m['cores']} cores, {m['mem_gb']} GB, "
        "shared with other jobs.",
        f"- Command: `.venv/bin/{r['command']}`; each run starts the daemon as shown "
        "below against a real mosquitto and samples `/proc/PID/status` VmRSS every second.",
        f"- Model: {r['model']}. Runs: {r['runs']}.",
        "",
        "| devices | command | events | steady MB | peak MB | slope MB/min | goal MB | met | "
        "exit | load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for x in r["per_devices"]:
        lines.append(
            f"| {x['devices']} | `{x['command_measured']}` ({x['source']}, "
            f"{x['duration_s']:.0f} s) | {x['events_received']} | "
            f"**{x['rss_mb_steady_median_second_half']:.0f}** | {x['rss_mb_peak_sampled']:.0f} | "
            f"{x['rss_slope_mb_per_min_second_half']:+.2f} | {x['goal_mb']:.0f} | "
            f"{'met' if x['goal_met'] else 'missed'} "
            f"({(x['rss_mb_steady_median_second_half'] / x['goal_mb'] - 1) * 100:+.0f} %) | "
            f"{x['exit_code_after_sigterm']} | {x['load_avg_1min']:.1f} |"
        )
    lines.append("")
    notes = RESULTS / "memory.notes.md"
    if notes.exists():
        lines += [notes.read_text().strip(), ""]
    (RESULTS / "memory.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
