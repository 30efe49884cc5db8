"""Helpers shared by the daemon benchmarks: a real mosquitto, a subscriber process, a model.

- :func:`mosquitto` starts ``mosquitto`` on 127.0.0.1 (free port, temp config with
  ``set_tcp_nodelay true``, no persistence) and stops it by PID.
- :class:`Subscriber` runs ``python bench/_harness.py subscribe ...`` in its own process
  (paho-mqtt network thread, TCP_NODELAY): it records ``time.perf_counter()`` at each
  message's arrival (CLOCK_MONOTONIC, comparable across processes on Linux) with the
  event's device, epoch index and ``latency_ms`` as JSON lines.
- :func:`bench_model` returns the model the daemon benchmarks run: the shipped default
  student when it exists, else an exported, untrained ``deepsleepnet-student`` (seed 0)
  cached under ``.cache/bench-models/`` (speed and memory do not depend on the weights).
- :func:`proc_cpu_seconds` / :func:`rss_mb` read ``/proc`` for a PID.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from sleepstream.sinks.base import BaseSink

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "bench-models"
SHARED_DATA = Path(os.environ.get("SLEEPSTREAM_SHARED_DATA", ROOT.parent / "shared" / "data"))
SC4001 = SHARED_DATA / "sleep_edf_sc4001"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mosquitto(max_queued: int = 1_000_000) -> Iterator[int]:
    """Run a real mosquitto on 127.0.0.1; yields its port."""
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        raise RuntimeError("mosquitto not installed (apt-get install mosquitto)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-mosq-") as tmp:
        conf = Path(tmp) / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            f"set_tcp_nodelay true\nmax_queued_messages {max_queued}\n"
            "max_inflight_messages 0\nlog_dest none\n"
        )
        os.chmod(tmp, 0o755)
        os.chmod(conf, 0o644)
        proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while True:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                    break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto did not start on port {port}")
                time.sleep(0.05)
            yield port
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()


class Subscriber:
    """A subscriber in its own process; ``records()`` reads what it received."""

    def __init__(self, port: int, topic: str = "sleepstream/+/stage", count: int = 0):
        self.out = Path(tempfile.mkstemp(prefix="bench-sub-", suffix=".jsonl")[1])
        self.ready = self.out.with_suffix(".ready")
        cmd = [sys.executable, str(Path(__file__)), "subscribe", "--port", str(port)]
        cmd += ["--topic", topic, "--out", str(self.out), "--count", str(count)]
        self.proc = subprocess.Popen(cmd)
        deadline = time.monotonic() + 20
        while not self.ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("subscriber did not start")
            time.sleep(0.02)

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.out.unlink(missing_ok=True)
        self.ready.unlink(missing_ok=True)

    def wait(self, n: int, timeout: float) -> list[dict]:
        """Wait until ``n`` events arrived (or ``timeout`` s), then stop and read."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._lines() < n:
            time.sleep(0.1)
        return self.stop()

    def _lines(self) -> int:
        with contextlib.suppress(OSError):
            return self.out.read_bytes().count(b"\n")
        return 0

    def stop(self) -> list[dict]:
        if self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
        if not self.out.exists():
            return []
        recs = [json.loads(line) for line in self.out.read_text().splitlines() if line]
        self.out.unlink(missing_ok=True)
        self.ready.unlink(missing_ok=True)
        return recs


def _subscribe(args: argparse.Namespace) -> None:
    import signal

    import paho.mqtt.client as mqtt

    out = open(args.out, "a", buffering=1)  # noqa: SIM115 - closed at exit
    n = 0

    def on_connect(client, userdata, flags, reason, props=None):
        client.subscribe(args.topic, qos=1)

    def on_subscribe(client, userdata, mid, reason, props=None):
        Path(args.out).with_suffix(".ready").write_text("ok")

    def on_message(client, userdata, msg):
        nonlocal n
        t = time.perf_counter()
        try:
            ev = json.loads(msg.payload)
        except ValueError:
            return
        out.write(
            json.dumps(
                {
                    "t": t,
                    "device": ev.get("device"),
                    "epoch_index": ev.get("epoch_index"),
                    "latency_ms": ev.get("latency_ms"),
                    "stage": ev.get("stage"),
                }
            )
            + "\n"
        )
        n += 1
        if args.count and n >= args.count:
            client.disconnect()

    def on_socket_open(client, userdata, sock):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{os.getpid()}")
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.on_socket_open = on_socket_open
    client.max_queued_messages_set(0)
    signal.signal(signal.SIGTERM, lambda *a: client.disconnect())
    client.connect("127.0.0.1", args.port, keepalive=60)
    client.loop_forever()
    out.close()


def bench_model() -> tuple[Path, str]:
    """(model card path, description) of the student the daemon benchmarks run.

    The shipped default student when it is a split model; otherwise (a window-mode
    default, or none) the same architecture untrained and exported in split mode: speed
    and memory do not depend on the weight values, and the daemon's speed goals are for
    the split path (``$SLEEPSTREAM_BENCH_MODEL`` overrides, e.g. to time a window model).
    """
    from sleepstream.inference import card_path_for, load_card
    from sleepstream.inference.stager import default_model_path

    override = os.environ.get("SLEEPSTREAM_BENCH_MODEL")
    if override:
        card = load_card(card_path_for(Path(override)))
        return Path(override), f"{card.architecture} ({card.mode} mode, $SLEEPSTREAM_BENCH_MODEL)"
    default = default_model_path()
    if default.exists() and load_card(default).mode == "split":
        return default, "shipped default student (sleepstream/models/default.*, split mode)"
    path = export_model("deepsleepnet-student", mode="split")
    return path, (
        "deepsleepnet-student (the shipped default's architecture), untrained (seed 0), "
        "exported in split mode with distill.export"
    )


def export_model(name: str, seed: int = 0, mode: str = "window", **model_kwargs: int) -> Path:
    """Export ``distill.models.build(name, **model_kwargs)`` with seed ``seed`` in ``mode``
    (cached).

    Returns the model's card path. The same name, kwargs and seed give the same weights in
    both modes (one checkpoint exported both ways).
    """
    size = "".join(f"-{k}{v}" for k, v in sorted(model_kwargs.items()))
    stem = f"{name}{size}-seed{seed}" + ("" if mode == "window" else f"-{mode}")
    card = CACHE / f"{stem}.card.json"
    if card.exists():
        return card
    import torch

    from distill.export import export_student
    from distill.models import build

    torch.manual_seed(seed)
    model = build(name, **model_kwargs).eval()
    export_student(
        model,
        CACHE / f"{stem}.onnx",
        seq_len=model.seq_len,
        mode=mode,
        card_fields={"training": {"data": "none: untrained weights for benchmarks", "seed": seed}},
    )
    return card


def window_graph(card: Path) -> Path:
    """The window-mode ONNX file a card names."""
    from sleepstream.inference import load_card

    return load_card(card).graph_path("window")


class LastSampleSink(BaseSink):
    """Extra daemon sink: ``epoch.last_sample_at`` (perf_counter) per (device, epoch index)."""

    def __init__(self, device: str, store: dict) -> None:
        super().__init__()
        self.device = device
        self.store = store

    async def publish(self, epoch, prediction) -> None:
        self.store[(self.device, int(prediction.epoch_index))] = float(epoch.last_sample_at)


def sc4001_window() -> tuple[Path, float, float]:
    """(EDF path, first kept onset s, end s) of SC4001 as ``replay`` trims it."""
    from sleepstream.commands.replay import reference_window
    from sleepstream.types import EPOCH_SECONDS

    psg = SC4001 / "SC4001E0-PSG.edf"
    hyp = reference_window(psg, SC4001 / "SC4001EC-Hypnogram.edf", trim=True)
    t0 = float(hyp.onsets[0])
    return psg, t0, float(hyp.onsets[-1]) + EPOCH_SECONDS


async def run_edf_daemon(
    *,
    port: int,
    stager,
    model: Path,
    device: str,
    state_dir: Path,
    speed: str | float,
    start: float,
    until: float,
    last_samples: dict | None = None,
) -> dict:
    """One device replaying SC4001 through :class:`sleepstream.daemon.Daemon` to mosquitto.

    Returns timing (perf_counter) of the daemon's start (source open) and end (outbox
    flushed, ``offline`` published) and the sink's acknowledged latencies.
    """
    import asyncio

    from sleepstream.config import DeviceConfig, MqttOptions, RunConfig
    from sleepstream.daemon import Daemon
    from sleepstream.sources.edf_replay import EDFReplaySource

    psg = SC4001 / "SC4001E0-PSG.edf"
    dev = DeviceConfig(device, f"edf:{psg}", "edf-replay")
    cfg = RunConfig(
        devices=(dev,),
        mqtt=MqttOptions(url=f"mqtt://127.0.0.1:{port}"),
        metrics_port=None,
        model=model,
        state_dir=state_dir,
        print_mode="none",
    )

    def build_source(d):
        return EDFReplaySource(psg, "EEG Fpz-Cz", speed=speed, start=start), until

    extra = (
        (lambda name: [LastSampleSink(name, last_samples)]) if last_samples is not None else None
    )
    daemon = Daemon(
        cfg, stager=stager, build_source=build_source,
        extra_sinks=extra, install_signals=False,
    )  # fmt: skip
    task = asyncio.create_task(daemon.run())
    await asyncio.wait([task, asyncio.ensure_future(daemon.started.wait())],
                       return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
    t_started, cpu_started = time.perf_counter(), time.process_time()
    result = await task
    t_end, cpu_end = time.perf_counter(), time.process_time()
    r = result.devices[device]
    return {
        **histogram_totals(daemon.metrics),
        "t_started": t_started,
        "t_end": t_end,
        "cpu_s": cpu_end - cpu_started,
        "epochs": r.epochs,
        "published": r.published,
        "delivered": r.delivered,
        "undelivered": r.undelivered,
        "ack_latencies_s": list(r.latencies_s),
    }


def histogram_totals(metrics) -> dict:
    """Sum and count of the daemon's inference-seconds and batch-size histograms."""
    out: dict = {}
    for attr in ("inference", "inference_batch"):
        hist = getattr(metrics, attr, None)
        if hist is None:
            continue
        for metric in hist.collect():
            for sample in metric.samples:
                if sample.name.endswith("_sum"):
                    out[f"{attr}_sum"] = out.get(f"{attr}_sum", 0.0) + sample.value
                elif sample.name.endswith("_count"):
                    out[f"{attr}_count"] = out.get(f"{attr}_count", 0.0) + sample.value
    return out


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (and its reaped children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("subscribe")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--topic", default="sleepstream/+/stage")
    s.add_argument("--out", required=True)
    s.add_argument("--count", type=int, default=0)
    e = sub.add_parser("export")
    e.add_argument("name")
    e.add_argument("--mode", default="window", choices=("window", "split"))
    a = p.parse_args()
    if a.cmd == "subscribe":
        _subscribe(a)
    else:
        print(export_model(a.name, mode=a.mode))
