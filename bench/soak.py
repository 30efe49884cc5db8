"""Soak: a long night at high speed through the full daemon, with injected broker faults.

Runs ``sleepstream run --source edf:SC4001E0-PSG.edf --loop --speed S`` (the whole
22-h Sleep-EDF recording, looped) as a subprocess against a real mosquitto (persistence
on, so a persistent subscriber session survives the broker's SIGKILL), with a paho
subscriber (clean_session=False, QoS 1) in this process. Faults on a schedule:

- ``kill``:  SIGKILL the broker, keep it down ``--down`` s, restart it on the same port;
- ``stop``:  SIGSTOP the broker (a hung broker) for ``--down`` s, then SIGCONT.

RSS of the daemon is read from ``/proc/PID/status`` (VmRSS) every second. At the end
the daemon gets SIGTERM (flush, exit 0) and the script checks:

- zero lost events: the subscriber's event_ids (deduplicated) are exactly
  ``soak:<session>:0 .. N-1`` in order, where N is the number of epochs the daemon
  recorded (``hypnogram.csv`` of its night recorder), and the outbox is empty;
- RSS growth after warm-up < 5 %: median RSS of the last 30 s against the median of
  the 30 s after warm-up.

Usage::

    .venv/bin/python bench/soak.py --duration 420 --speed 150

Writes ``bench/results/soak.json`` (via :func:`common.emit`) and ``bench/results/soak.md``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import SC4001, free_port  # noqa: E402
from common import RESULTS, emit, machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEVICE = "soak"


def wait_port(port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


class Broker:
    """mosquitto with persistence (autosave every second) in a world-writable folder."""

    def __init__(self) -> None:
        self.exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.dir = Path(tempfile.mkdtemp(prefix="soak-mq-"))
        self.dir.chmod(0o777)
        self.port = free_port()
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n"
            f"persistence true\npersistence_location {self.dir}/\nautosave_interval 1\n"
            "max_queued_messages 0\nlog_dest none\n"
        )
        self.conf.chmod(0o644)
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL)
        if not wait_port(self.port):
            raise RuntimeError("mosquitto did not start")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(5)

    def pause(self, on: bool) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP if on else signal.SIGCONT)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


class Subscriber:
    """paho subscriber, persistent session, QoS 1; keeps every stage event's id."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as paho

        self.ids: list[str] = []
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id=f"soak-sub-{os.getpid()}",
            clean_session=False,
        )  # fmt: skip
        self.client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(
            f"sleepstream/{DEVICE}/stage", qos=1
        )
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.1, 1)
        self.client.connect_async("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        if not self.ready.wait(10):
            raise RuntimeError("subscriber could not subscribe")

    def _on_message(self, client, userdata, msg) -> None:
        event = json.loads(msg.payload)
        with self.lock:
            self.ids.append(event["event_id"])

    def count(self) -> int:
        with self.lock:
            return len(self.ids)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def rss_mb(pid: int) -> dict[str, float] | None:
    """VmRSS and its parts (RssAnon: heap; RssFile: mapped files, e.g. the memory-mapped
    EDF and libraries; RssShmem) of a process, in MB."""
    out: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key = line.split(":", 1)[0]
            if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                out[key] = round(int(line.split()[1]) / 1024, 2)
    except OSError:
        return None
    return out if "VmRSS" in out else None


def schedule(duration: float, down: float) -> list[tuple[float, str]]:
    """Faults spread over the run, after a 60-s warm-up: kill, stop, kill, stop, ..."""
    out, t, kinds = [], 75.0, ("kill", "stop")
    while t + down + 45 < duration:
        out.append((t, kinds[len(out) % 2]))
        t += down + 60.0
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=420.0, help="seconds of soak")
    ap.add_argument("--speed", type=float, default=150.0, help="replay speed factor")
    ap.add_argument("--down", type=float, default=10.0, help="seconds each fault lasts")
    ap.add_argument("--warmup", type=float, default=60.0, help="seconds before RSS baseline")
    ap.add_argument("--goal-growth", type=float, default=5.0, help="RSS growth goal, %%")
    args = ap.parse_args()

    from sleepstream.inference import default_model_path

    model = default_model_path()
    broker = Broker()
    broker.start()
    sub = Subscriber(broker.port)
    time.sleep(2.5)  # the broker autosaves the subscriber's session
    state = Path(tempfile.mkdtemp(prefix="soak-state-"))
    cmd = [
        sys.executable, "-m", "sleepstream", "run",
        "--source", f"edf:{SC4001 / 'SC4001E0-PSG.edf'}", "--channel", "EEG Fpz-Cz",
        "--loop", "--speed", f"{args.speed:g}", "--device", DEVICE,
        "--mqtt", f"mqtt://127.0.0.1:{broker.port}", "--model", str(model),
        "--state-dir", str(state), "--metrics-port", "0", "--quiet",
        "--flush-timeout", "60", "--log-level", "warning",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLEEPSTREAM_")}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    log_path = state / "daemon.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed below
    daemon = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, env=env)
    t0 = time.monotonic()
    rss: list[tuple[float, float]] = []
    parts: list[tuple[float, float, float]] = []
    faults = schedule(args.duration, args.down)
    done_faults: list[dict] = []
    pending = list(faults)
    alive_throughout = True
    try:
        while (now := time.monotonic() - t0) < args.duration:
            if daemon.poll() is not None:
                alive_throughout = False
                break
            r = rss_mb(daemon.pid)
            if r is not None:
                rss.append((round(now, 1), r["VmRSS"]))
                parts.append((round(now, 1), r.get("RssAnon", 0.0), r.get("RssFile", 0.0)))
            if pending and now >= pending[0][0]:
                at, kind = pending.pop(0)
                before = sub.count()
                if kind == "kill":
                    broker.kill()
                else:
                    broker.pause(True)
                time.sleep(args.down)
                if kind == "kill":
                    broker.start()
                else:
                    broker.pause(False)
                done_faults.append({"at_s": round(now, 1), "kind": kind, "down_s": args.down,
                                    "events_before": before,
                                    "daemon_alive": daemon.poll() is None})  # fmt: skip
                continue
            time.sleep(1.0)
        end_s = time.monotonic() - t0
        daemon.send_signal(signal.SIGTERM)
        rc = daemon.wait(120)
    finally:
        if daemon.poll() is None:
            daemon.kill()
        log.close()
    nights = sorted((state / "nights" / DEVICE).glob("*/hypnogram.csv"))
    with open(nights[-1]) as f:
        n_recorded = sum(1 for _ in csv.DictReader(f))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(set(sub.ids)) < n_recorded:
        time.sleep(0.2)
    time.sleep(1.0)
    sub.close()
    with sqlite3.connect(state / "outbox" / f"{DEVICE}.sqlite") as db:
        outbox_left = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
    broker.close()

    ids = list(dict.fromkeys(sub.ids))
    session = ids[0].split(":")[1] if ids else ""
    expected = [f"{DEVICE}:{session}:{i}" for i in range(n_recorded)]
    lost = len(set(expected) - set(ids))
    in_order = ids == expected
    duplicates = len(sub.ids) - len(ids)
    after = [r for t, r in rss if t >= args.warmup]
    base = statistics.median([r for t, r in rss if args.warmup <= t < args.warmup + 30])
    final = statistics.median([r for t, r in rss if t >= end_s - 30])
    growth = 100.0 * (final - base) / base

    def window(col: int, lo: float, hi: float) -> float:
        return statistics.median([p[col] for p in parts if lo <= p[0] < hi])

    anon_base = window(1, args.warmup, args.warmup + 30)
    anon_final = window(1, end_s - 30, end_s + 1)
    file_base = window(2, args.warmup, args.warmup + 30)
    file_final = window(2, end_s - 30, end_s + 1)
    stderr_tail = log_path.read_text()[-3000:]
    ok = (
        alive_throughout and rc == 0 and lost == 0 and in_order and outbox_left == 0
        and growth < args.goal_growth and "Traceback" not in stderr_tail
    )  # fmt: skip
    result = {
        "duration_s": round(end_s, 1),
        "speed": args.speed,
        "stream_hours": round(n_recorded * 30 / 3600, 2),
        "model": str(model.relative_to(ROOT)) if model.is_relative_to(ROOT) else str(model),
        "faults": done_faults,
        "daemon_alive_throughout": alive_throughout,
        "exit_code": rc,
        "epochs_recorded": n_recorded,
        "events_received": len(sub.ids),
        "events_unique": len(ids),
        "duplicates": duplicates,
        "lost": lost,
        "in_order": in_order,
        "outbox_left": outbox_left,
        "rss_mb_baseline": round(base, 1),
        "rss_mb_final": round(final, 1),
        "rss_mb_peak_after_warmup": round(max(after), 1),
        "rss_growth_pct": round(growth, 2),
        "rss_anon_mb_baseline_final": [anon_base, anon_final],
        "rss_file_mb_baseline_final": [file_base, file_final],
        "rss_anon_growth_pct": round(100.0 * (anon_final - anon_base) / anon_base, 2),
        "rss_goal_pct": args.goal_growth,
        "rss_samples": rss,
        "rss_parts_samples_t_anon_file": parts,
        "goal_met": ok,
        "daemon_stderr_tail": stderr_tail[-800:],
    }
    row = (
        f"| soak | {end_s:.0f} s at {args.speed:g}x ({n_recorded} epochs, "
        f"{n_recorded * 30 / 3600:.1f} h) | {len(done_faults)} faults | lost {lost} | "
        f"RSS {base:.0f} -> {final:.0f} MB ({growth:+.1f} %) | {'met' if ok else 'MISSED'} |"
    )
    emit("soak", result, row, packages=["paho-mqtt"])
    write_markdown(result, " ".join([Path(sys.executable).name, *sys.argv]))
    shutil.rmtree(state, ignore_errors=True)
    return 0 if ok else 1


def write_markdown(r: dict, command: str) -> None:
    m = machine()
    anon, mapped = r["rss_anon_mb_baseline_final"], r["rss_file_mb_baseline_final"]
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    kinds = ", ".join(f"{f['kind']} at {f['at_s']:.0f} s ({f['down_s']:g} s)" for f in r["faults"])
    growth_verdict = (
        f"met ({r['rss_growth_pct']:+.2f} % vs < {r['rss_goal_pct']:g} %)"
        if r["rss_growth_pct"] < r["rss_goal_pct"]
        else f"MISSED by {r['rss_growth_pct'] - r['rss_goal_pct']:.2f} points"
    )
    lost_verdict = "met" if r["lost"] == 0 and r["in_order"] else f"MISSED ({r['lost']} lost)"
    text = f"""## Soak: a long night with broker faults

- Date: {date}; machine: {m["cpu"]}, {m["cores"]} cores, {m["mem_gb"]} GB (shared with
  other jobs).
- Command: `{command}` (SC4001E0-PSG.edf replayed through `sleepstream run --source edf:...
  --loop --speed {r["speed"]:g}` against a real mosquitto with persistence; paho
  subscriber with a persistent session, QoS 1).
- Model: `{r["model"]}`. Runs: 1.
- Faults ({len(r["faults"])}): {kinds} (`kill` = SIGKILL + restart, `stop` = SIGSTOP/SIGCONT).
  NaN bursts were not injected here (EDF samples are integers); they are covered by
  `tests/sleepstream/test_bad_input.py` and the DSP tests.

| figure | value |
|---|---|
| wall time | {r["duration_s"]:.0f} s |
| stream time | {r["epochs_recorded"]} epochs = {r["stream_hours"]:.1f} h |
| daemon alive throughout / exit code after SIGTERM | {r["daemon_alive_throughout"]} / {r["exit_code"]} |
| events received (with duplicates) / unique | {r["events_received"]} / {r["events_unique"]} |
| lost events / in order / left in outbox | {r["lost"]} / {r["in_order"]} / {r["outbox_left"]} |
| RSS after warm-up (median of 30 s) | {r["rss_mb_baseline"]} MB |
| RSS at the end (median of the last 30 s) | {r["rss_mb_final"]} MB |
| RSS peak after warm-up | {r["rss_mb_peak_after_warmup"]} MB |
| RSS growth | {r["rss_growth_pct"]:+.2f} % |
| RssAnon (heap) after warm-up -> end | {anon[0]} -> {anon[1]} MB ({r["rss_anon_growth_pct"]:+.2f} %) |
| RssFile (mapped files) after warm-up -> end | {mapped[0]} -> {mapped[1]} MB |

Goals: zero lost events: **{lost_verdict}**; RSS growth < {r["rss_goal_pct"]:g} % after
warm-up: **{growth_verdict}**.
"""
    (RESULTS / "soak.md").write_text(text)
    print(text)


if __name__ == "__main__":
    raise SystemExit(main())
