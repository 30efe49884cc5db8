"""Memory: the daemon's steady-state RSS with the student over minutes of accelerated input.

Runs the real CLI in its own process, as a user would::

    sleepstream run --source synthetic-night --speed S --mqtt mqtt://127.0.0.1:PORT \\
        --model MODEL --metrics-port 0 --quiet --state-dir TMP --device mem-1

against a real mosquitto (Prometheus exporter on, MQTT sink with its SQLite outbox,
one device), samples its RSS from ``/proc/PID/status`` once per second for
``--duration`` seconds, then stops it with SIGTERM (graceful shutdown, exit 0 expected).
Steady state = the median RSS over the second half of the run; the slope over the second
half (MB per minute) shows whether memory keeps growing. At ``--speed 30`` one epoch is
scored per second, so 4 minutes = 2 hours of night.

    .venv/bin/python bench/memory.py [--duration 240] [--speed 30]
"""

from __future__ import annotations

import argparse
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

GOAL_MB = 250.0


def slope_mb_per_min(ts: list[float], ys: list[float]) -> float:
    n = len(ts)
    if n < 2:
        return float("nan")
    mt, my = sum(ts) / n, sum(ys) / n
    var = sum((t - mt) ** 2 for t in ts)
    return 60 * sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True)) / var


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=float, default=240.0, help="seconds of streaming (240)")
    p.add_argument("--speed", type=float, default=30.0, help="synthetic-night pace (30)")
    args = p.parse_args()
    model, model_desc = bench_model()
    exe = Path(sys.executable).with_name("sleepstream")
    samples: list[tuple[float, float]] = []
    with mosquitto() as port, tempfile.TemporaryDirectory(prefix="bench-mem-") as tmp:
        cmd = [
            str(exe), "run", "--source", "synthetic-night", "--speed", f"{args.speed:g}",
            "--mqtt", f"mqtt://127.0.0.1:{port}", "--model", str(model), "--metrics-port", "0",
            "--quiet", "--state-dir", tmp, "--device", "mem-1", "--log-level", "warning",
        ]  # fmt: skip
        with Subscriber(port, "sleepstream/mem-1/stage") as sub:
            proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
            t0 = time.monotonic()
            while time.monotonic() - t0 < args.duration and proc.poll() is None:
                samples.append((time.monotonic() - t0, rss_mb(proc.pid)))
                time.sleep(1.0)
            alive = proc.poll() is None
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
            stderr = proc.stderr.read() if proc.stderr else ""
            events = sub.wait(0, timeout=2)
    half = [s for s in samples if s[0] >= args.duration / 2]
    steady = median([y for _, y in half])
    peak = max(y for _, y in samples) if samples else float("nan")
    result = {
        "question": "daemon steady-state RSS, one device, student model",
        "command_measured": "sleepstream " + " ".join(cmd[1:]).replace(tmp, "TMP"),
        "model": model_desc,
        "source": f"synthetic-night at speed {args.speed:g} (1 epoch per {30 / args.speed:g} s)",
        "duration_s": args.duration,
        "runs": 1,
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
        "goal_mb": GOAL_MB,
        "goal_met": steady <= GOAL_MB,
        "load_avg_1min": os.getloadavg()[0],
    }
    row = (
        f"| memory | `sleepstream run` synthetic-night {args.speed:g}x, {args.duration:.0f} s, "
        f"mosquitto | steady {steady:.0f} MB (peak {peak:.0f} MB) | ≤ {GOAL_MB:.0f} MB | "
        f"{'met' if steady <= GOAL_MB else 'missed'} ({(steady / GOAL_MB - 1) * 100:+.0f} %) |"
    )
    emit("memory", result, row, packages=["aiomqtt", "prometheus-client"])
    m = machine()
    lines = [
        "## Memory: daemon steady-state RSS",
        "",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine: {m['cpu']}, "
        f"{m['cores']} cores, {m['mem_gb']} GB.",
        f"- Command: `.venv/bin/python bench/memory.py --duration {args.duration:g} "
        f"--speed {args.speed:g}`, which runs `{result['command_measured']}` "
        "against a real mosquitto and samples `/proc/PID/status` VmRSS every second.",
        f"- Model: {model_desc}. Input: {result['source']}; {len(events)} events received.",
        "- Runs: 1 (RSS is deterministic enough; the slope shows growth).",
        "",
        f"**Steady state {steady:.0f} MB** (median of the second half), peak {peak:.0f} MB, "
        f"slope {result['rss_slope_mb_per_min_second_half']:+.2f} MB/min over the second half. "
        f"Goal ≤ {GOAL_MB:.0f} MB: **{'met' if steady <= GOAL_MB else 'missed'}** "
        f"({(steady / GOAL_MB - 1) * 100:+.0f} %). Exit code after SIGTERM: {rc}.",
        "",
    ]
    notes = RESULTS / "memory.notes.md"
    if notes.exists():
        lines += [notes.read_text().strip(), ""]
    (RESULTS / "memory.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
