"""``sleepstream replay``: stream a scored recording through the daemon's pipeline and
report agreement with its reference hypnogram.

How the epoch grid is aligned with the hypnogram
-------------------------------------------------
The hypnogram is read, fitted to the recording (epochs past its end that are all
unscored are cut) and, unless ``--no-trim``, trimmed to 30 min before the first and
after the last sleep epoch (the Sleep-EDF / SleepKD convention; 841 epochs for SC4001).
The EDF source then starts at the onset of the first kept epoch (``--start`` = its onset,
a multiple of 30 s from the recording start) and the pipeline stops at the end of the
last kept epoch. The DSP chain puts epoch 0 at the first streamed sample, so epoch
``k`` of the replay is exactly epoch ``k`` of the kept hypnogram: same samples, same
zero-padded causal context before the first epoch, as ``distill evaluate --mode causal``
builds it. Events are matched to the reference by stream time
(``round((epoch.start_time - onset_0) / 30)``); an epoch outside the reference's range, or
unscored on either side, is not counted in the agreement.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from sleepstream.commands._daemon_args import (
    add_daemon_arguments,
    add_mqtt_arguments,
    daemon_settings,
    setup_logging,
)
from sleepstream.config import DeviceConfig, RunConfig, check_device_name
from sleepstream.errors import DataFileError, HypnogramError
from sleepstream.types import EPOCH_SECONDS, UNSCORED, Epoch, StagePrediction

HELP = "replay a recording through the pipeline and print agreement with its hypnogram"
log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path, help="EDF recording")
    parser.add_argument("--hypnogram", type=Path, required=True, help="reference hypnogram")
    parser.add_argument("--channel", default="EEG Fpz-Cz", help="channel label (%(default)s)")
    parser.add_argument("--speed", default="max", help="max or a factor (1 = real time)")
    parser.add_argument("--device", default="replay", help="device name (%(default)s)")
    parser.add_argument("--profile", default="edf-replay", help="profile (%(default)s)")
    parser.add_argument(
        "--no-trim", action="store_true", help="score the whole hypnogram, not the sleep window"
    )
    parser.add_argument("--json-summary", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--no-record",
        action="store_true",
        help="with --state-dir: do not keep the replayed night under STATE_DIR/nights/",
    )
    parser.add_argument(
        "--print-events", action="store_true", help="also print each stage as it comes"
    )
    add_mqtt_arguments(parser)
    add_daemon_arguments(parser, metrics_default=None, flush_default=60.0)


class CollectSink:
    """Keeps (stream time, predicted stage) of every causal event, for the agreement."""

    def __init__(self) -> None:
        self.items: list[tuple[float, int, int]] = []

    async def publish(self, epoch: Epoch, prediction: StagePrediction) -> None:
        self.items.append((epoch.start_time, epoch.index, prediction.stage))


def edf_start_utc(path: Path) -> dt.datetime | None:
    """Start date/time from the EDF header (``dd.mm.yy`` ``hh.mm.ss``), taken as UTC."""
    try:
        with open(path, "rb") as f:
            head = f.read(184)
        d, t = head[168:176].decode("ascii"), head[176:184].decode("ascii")
        day, month, yy = (int(v) for v in d.split("."))
        hh, mm, ss = (int(v) for v in t.split("."))
        year = 1900 + yy if yy >= 85 else 2000 + yy
        return dt.datetime(year, month, day, hh, mm, ss, tzinfo=dt.UTC)
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def reference_window(path: Path, hypnogram: Path, trim: bool) -> Any:
    """The reference hypnogram on the recording's grid (onsets from the recording start)."""
    from sleepstream.io.edf import read_header
    from sleepstream.io.processing import fit_to_recording, trim_hypnogram
    from sleepstream.io.readers import read_hypnogram

    header = read_header(path)
    duration = header.n_records * header.record_s
    hyp = fit_to_recording(read_hypnogram(hypnogram), duration, str(path))
    if trim:
        hyp = trim_hypnogram(hyp)
    if len(hyp) == 0:
        raise HypnogramError(f"{hypnogram}: no epoch to score")
    if np.any(np.diff(hyp.onsets) != EPOCH_SECONDS):
        raise HypnogramError(f"{hypnogram}: epochs are not contiguous 30-s epochs")
    return hyp


def agreement_summary(
    collected: list[tuple[float, int, int]], onsets0: float, reference: np.ndarray
) -> dict[str, Any]:
    """Match events to reference epochs by stream time and compute the agreement."""
    from sleepstream.scoring import agreement

    pred = np.full(reference.shape[0], UNSCORED, dtype=np.int64)
    outside = 0
    for start_time, _index, stage in collected:
        k = int(round((start_time - onsets0) / EPOCH_SECONDS))
        if 0 <= k < reference.shape[0]:
            pred[k] = stage
        else:
            outside += 1
    m = agreement(reference.astype(np.int64), pred)
    m["n_epochs_outside_reference"] = outside
    m["n_epochs_unscored_by_model"] = int(np.sum((pred == UNSCORED) & (reference != UNSCORED)))
    return m


def run(args: argparse.Namespace) -> int:
    setup_logging("warning" if args.json_summary and args.log_level == "info" else args.log_level)
    from sleepstream.daemon import Daemon, default_dsp
    from sleepstream.sources.edf_replay import EDFReplaySource, parse_speed

    parse_speed(args.speed)  # UsageError before any work
    if not args.path.is_file():
        raise DataFileError(f"{args.path}: file not found")
    hyp = reference_window(args.path, args.hypnogram, trim=not args.no_trim)
    t0 = float(hyp.onsets[0])
    t_end = float(hyp.onsets[-1]) + EPOCH_SECONDS
    device = DeviceConfig(
        check_device_name(args.device), f"edf:{args.path}", args.profile, {"start": t0}
    )
    config = RunConfig(
        devices=(device,),
        **daemon_settings(args),
        print_mode="line" if args.print_events else "none",
        # an explicit --state-dir also keeps the replayed night (sinks.recorder)
        record=args.state_dir is not None and not args.no_record,
    )
    collector = CollectSink()
    start_utc = edf_start_utc(args.path)

    def build_source(dev: DeviceConfig) -> tuple[Any, float | None]:
        return EDFReplaySource(args.path, args.channel, speed=args.speed, start=t0), t_end

    def make_dsp(dev: DeviceConfig, source: Any, seq_len: int) -> Any:
        return default_dsp(dev, source, seq_len, utc_origin=start_utc)

    daemon = Daemon(
        config,
        build_source=build_source,
        make_dsp=make_dsp,
        extra_sinks=lambda name: [collector],
    )
    result = asyncio.run(daemon.run())
    dev = result.devices[device.name]
    m = agreement_summary(collector.items, t0, hyp.stages)
    lat_ms = np.asarray(dev.latencies_s, dtype=np.float64) * 1e3
    summary = {
        "recording": str(args.path),
        "hypnogram": str(args.hypnogram),
        "channel": args.channel,
        "device": device.name,
        "model": daemon.stager.model_id,
        "mqtt": result.mqtt_url,
        "reference_epochs": int(len(hyp)),
        "reference_offset_s": t0,
        "n_epochs_streamed": dev.epochs,
        "n_epochs_published": len(lat_ms),
        "n_events_undelivered": dev.undelivered,
        "n_epochs_scored": m["n_epochs"],
        "accuracy": m["accuracy"],
        "macro_f1": m["macro_f1"],
        "kappa": m["kappa"],
        "per_stage_f1": m["per_stage_f1"],
        "confusion": m["confusion"],
        "n_epochs_outside_reference": m["n_epochs_outside_reference"],
        "n_epochs_unscored_by_model": m["n_epochs_unscored_by_model"],
        "latency_ms_p50": float(np.percentile(lat_ms, 50)) if lat_ms.size else None,
        "latency_ms_p99": float(np.percentile(lat_ms, 99)) if lat_ms.size else None,
        "latency_ms_max": float(lat_ms.max()) if lat_ms.size else None,
    }
    if args.json_summary:
        print(json.dumps(summary))
    else:
        from sleepstream.scoring import agreement_markdown

        print(agreement_markdown(m, title=f"{args.path.name} vs {args.hypnogram.name}"))
        print(
            f"\npublished {summary['n_epochs_published']} of {dev.epochs} epochs to "
            f"{result.mqtt_url}; latency p50 {summary['latency_ms_p50'] or 0:.2f} ms, "
            f"p99 {summary['latency_ms_p99'] or 0:.2f} ms"
        )
    return 0
