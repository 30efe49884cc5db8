"""Fault injection at daemon level with real processes: an LSL outlet that vanishes.

Issue 6, fault test 4: a real LSL outlet on loopback streams SC4001 faster than real
time, disappears for 60 s of stream time (its timestamps jump by 60 s; the outlet is
destroyed and recreated after a short wall-clock pause) and comes back. The daemon,
publishing to a real mosquitto, keeps running, re-resolves the stream, publishes the
epochs inside the gap as ``unscored`` (reason ``gap``) and continues the epoch grid.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import threading
import time

import numpy as np
import pytest

# every test here runs a whole daemon (most in a subprocess): the slow tier
pytestmark = [pytest.mark.network, pytest.mark.slow]

FS = 100.0
EPOCH = 3000  # samples per 30-s epoch at 100 Hz
BLOCK = 50  # samples per push (0.5 s of signal)


class GappyOutlet:
    """A real LSL outlet streaming ``before`` then ``after`` at ~``speed`` x real time with
    explicit timestamps; between them the outlet is destroyed for ``pause_s`` of wall
    time and the stream time jumps by ``gap_s``."""

    def __init__(self, pylsl, name, before, after, gap_s, *, speed=30.0, pause_s=2.0):
        self.pylsl, self.name = pylsl, name
        self.before, self.after = before, after
        self.gap_s, self.speed, self.pause_s = gap_s, speed, pause_s
        self.stop = threading.Event()
        self.outlet_down = threading.Event()
        self.resumed = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _outlet(self):
        info = self.pylsl.StreamInfo(self.name, "EEG", 1, FS, "float32", f"{self.name}-id")
        info.desc().append_child("channels").append_child("channel").append_child_value(
            "label", "Fpz-Cz"
        )
        outlet = self.pylsl.StreamOutlet(info, chunk_size=BLOCK)
        # an LSL inlet only gets samples pushed after it connected: wait for it, so the
        # stream time lost is exactly the injected gap
        outlet.wait_for_consumers(60)
        return outlet

    def _push(self, outlet, x, t_first):
        for i in range(0, x.size, BLOCK):
            if self.stop.is_set():
                return
            block = x[i : i + BLOCK].astype(np.float32)[:, None]
            # explicit stamp of the block's last sample; earlier ones are back-filled
            outlet.push_chunk(block.tolist(), t_first + (i + block.shape[0] - 1) / FS)
            time.sleep(BLOCK / FS / self.speed)

    def _run(self):
        t0 = self.pylsl.local_clock() + 1.0
        outlet = self._outlet()
        self._push(outlet, self.before, t0)
        self.stop.wait(1.5)  # let the inlet drain what was pushed
        del outlet  # the stream vanishes
        self.outlet_down.set()
        self.stop.wait(self.pause_s)
        outlet = self._outlet()
        self.resumed.set()
        self._push(outlet, self.after, t0 + self.before.size / FS + self.gap_s)
        self.done.set()
        self.stop.wait(30)
        del outlet


def _gap_scenario(sc4001_dir, mosquitto, subscribe, tmp_path, model, *, give_up=False):
    """Run the daemon on a :class:`GappyOutlet` (8 epochs, 60 s gap, 8 epochs) and check
    what every variant must show; returns the pipeline (for its counters)."""
    pylsl = pytest.importorskip("pylsl")
    from sleepstream.config import DeviceConfig, MqttOptions, RunConfig
    from sleepstream.daemon import Daemon
    from sleepstream.sources.base import Backoff
    from sleepstream.sources.lsl import LSLSource, load_lsl_config

    load_lsl_config()
    x = np.load(sc4001_dir / "SC4001E0_FpzCz_30s_trimmed.npz")["x"]
    n_before, n_gap, n_after = 8, 2, 8  # epochs
    before = x[100 : 100 + n_before].reshape(-1)
    after = x[100 + n_before + n_gap : 100 + n_before + n_gap + n_after].reshape(-1)
    name = f"sleepstream-gap-{os.getpid()}-{int(give_up)}"
    outlet = GappyOutlet(
        pylsl, name, before, after, gap_s=n_gap * EPOCH / FS, pause_s=4.0 if give_up else 2.0
    )
    sub = subscribe(mosquitto.port, "sleepstream/+/stage")
    cfg = RunConfig(
        devices=(DeviceConfig("lsl-gap", f"lsl:{name}", "lsl-generic", {"timeout": 20.0}),),
        mqtt=MqttOptions(url=mosquitto.url),
        metrics_port=None,
        model=model,
        state_dir=tmp_path / "state",
        print_mode="none",
    )
    build_source = None
    if give_up:
        # a real LSL inlet that gives up after two quick re-resolve attempts: its reader
        # raises SourceError mid-stream, as a source that cannot recover by itself does
        def build_source(dev):
            backoff = Backoff(initial_s=0.1, max_s=0.1, max_attempts=2)
            src = LSLSource(name, timeout=1.0, resolve_timeout_s=0.2, backoff=backoff)
            return src, None

    last_wanted = n_before + n_gap + n_after - 2  # the last epoch may still be filling

    async def scenario():
        daemon = Daemon(cfg, install_signals=False, build_source=build_source)
        task = asyncio.create_task(daemon.run())
        outlet.thread.start()
        await asyncio.to_thread(outlet.outlet_down.wait, 120)
        await asyncio.sleep(outlet.pause_s / 2)
        alive_during_outage = not task.done()
        await asyncio.to_thread(outlet.done.wait, 120)
        ok = await asyncio.to_thread(
            sub.wait_for,
            lambda s: any(e["epoch_index"] >= last_wanted for e in s.stage_events()),
            60,
        )
        alive_after = not task.done()
        daemon.request_stop()
        await task
        return alive_during_outage, alive_after, ok, daemon.pipelines[0]

    try:
        alive_during, alive_after, ok, pipeline = asyncio.run(scenario())
    finally:
        outlet.stop.set()
        outlet.thread.join(10)
    events = sub.stage_events()
    assert alive_during and alive_after, "the daemon ended while the source was gone"
    assert ok, f"events: {[(e['epoch_index'], e['stage']) for e in events]}"
    idx = [e["epoch_index"] for e in events]
    assert idx == list(range(len(idx))), idx  # contiguous grid, each epoch once
    by_index = {e["epoch_index"]: e for e in events}
    table = [(e["epoch_index"], e["stage"], e.get("reasons"), e["quality"]) for e in events]
    for k in range(n_before):
        assert by_index[k]["stage"] != "unscored", table
    for k in range(n_before, n_before + n_gap):
        assert by_index[k]["stage"] == "unscored", table
        assert "gap" in by_index[k]["reasons"]
        assert by_index[k]["confidence"] == 0.0
    after_gap = [by_index[k] for k in range(n_before + n_gap, last_wanted + 1)]
    assert after_gap and all(e["stage"] != "unscored" for e in after_gap), table
    # epoch start times stay on the 30-s grid across the gap
    starts = [dt.datetime.fromisoformat(e["epoch_start"]) for e in events]
    steps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:], strict=False)]
    assert np.allclose(steps, 30.0), steps
    return pipeline


def test_daemon_lsl_outlet_gone_for_60s_of_stream_time_publishes_gap_and_resumes(
    sc4001_dir, mosquitto, subscribe, tmp_path, tiny_model
):
    """Outlet gone for 60 s of stream time: the inlet re-resolves it, gap epochs are
    unscored (``gap``), the grid is contiguous, later epochs scored, the daemon stays up."""
    pipeline = _gap_scenario(sc4001_dir, mosquitto, subscribe, tmp_path, tiny_model)
    assert pipeline.source.reconnects >= 1


def test_daemon_survives_a_source_that_gives_up_mid_stream(
    sc4001_dir, mosquitto, subscribe, tmp_path, tiny_model
):
    """An LSL inlet whose own re-resolving gives up raises SourceError mid-stream: the
    pipeline re-enters the source with back-off instead of ending the daemon, and the
    lost stream time still comes out as ``gap`` epochs on the same grid."""
    pipeline = _gap_scenario(sc4001_dir, mosquitto, subscribe, tmp_path, tiny_model, give_up=True)
    assert pipeline.source_reopens >= 1
    assert pipeline.last_source_error  # why it last failed is kept for the operator
