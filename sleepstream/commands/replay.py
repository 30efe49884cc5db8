"""``sleepstream replay``: stream a recording through the daemon's pipeline and report
agreement with its reference hypnogram.

Any recording the readers take is replayed (EDF/EDF+D/BDF, FIF, BrainVision, EEGLAB,
GDF and every other ``mne.io.read_raw`` format, OpenBCI GUI and BrainFlow files; see
:mod:`sleepstream.io.recording`). The reference is ``--hypnogram``, else a Sleep-EDF /
DREAMS / BIDS hypnogram next to the file, else the sleep-stage annotations inside it;
without any, the night is scored and the stage counts are printed without agreement.

How the epoch grid is aligned with the hypnogram
-------------------------------------------------
The hypnogram is read, fitted to the recording (epochs past its end that are all
unscored are cut) and, unless ``--no-trim``, trimmed to 30 min before the first and
after the last sleep epoch (the Sleep-EDF / SleepKD convention; 841 epochs for SC4001).
The source then starts at the onset of the first kept epoch (``start`` = its onset, a
multiple of 30 s from the recording start) and the pipeline stops at the end of the
last kept epoch. The DSP chain puts epoch 0 at the first streamed sample, so epoch ``k``
of the replay is exactly epoch ``k`` of the kept hypnogram: same samples, same
zero-padded causal context before the first epoch, as ``distill evaluate --mode causal``
builds it. Events are matched to the reference by stream time
(``round((epoch.start_time - onset_0) / 30)``); an epoch outside the reference's range,
or unscored on either side (a gap epoch of an EDF+D file, for one), is not counted in the
agreement.

A replay stopped by Ctrl-C (or SIGTERM) still prints its summary, marked partial. A
recording the shipped model was trained on is named in a one-line warning and the JSON
summary says ``"training_recording": true``: its agreement is no generalisation result.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
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
from sleepstream.errors import HypnogramError
from sleepstream.profiles import Profile
from sleepstream.sinks.base import BaseSink
from sleepstream.types import EPOCH_SECONDS, STAGE_NAMES, UNSCORED, Epoch, StagePrediction

HELP = "replay a recording through the pipeline and print agreement with its hypnogram"
log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path",
        type=Path,
        help="recording: EDF/BDF (EDF+D too), FIF, BrainVision .vhdr, EEGLAB .set, GDF or "
        "any format MNE reads, an OpenBCI GUI .txt or a BrainFlow CSV",
    )
    parser.add_argument(
        "--hypnogram",
        type=Path,
        default=None,
        help="reference hypnogram (default: one next to the file, else the stage "
        "annotations in it; none: score without agreement)",
    )
    parser.add_argument(
        "--channel", default=None, help="channel to stage (default: the profile's channel)"
    )
    parser.add_argument("--speed", default="max", help="max or a factor (1 = real time)")
    parser.add_argument("--device", default="replay", help="device name (%(default)s)")
    parser.add_argument(
        "--profile",
        default="edf-replay",
        help="profile (%(default)s); for an OpenBCI/BrainFlow file its board's (e.g. cyton)",
    )
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


class CollectSink(BaseSink):
    """Keeps (stream time, epoch index, predicted stage, reasons) of every causal event."""

    def __init__(self) -> None:
        self.items: list[tuple[float, int, int]] = []
        self.reasons: list[tuple[str, ...]] = []

    async def publish(self, epoch: Epoch, prediction: StagePrediction) -> None:
        self.items.append((epoch.start_time, epoch.index, prediction.stage))
        self.reasons.append(tuple(prediction.reasons))


def find_reference(path: Path, hypnogram: Path | None, recording: Any) -> Any:
    """The reference hypnogram: given, next to the file, or the file's own stages."""
    from sleepstream.commands.inspect import sibling_hypnogram
    from sleepstream.io.readers import own_hypnogram, read_hypnogram
    from sleepstream.io.recording import check_file

    if hypnogram is not None:
        check_file(hypnogram)
        return read_hypnogram(hypnogram)
    sibling = sibling_hypnogram(path)
    if sibling is not None:
        return read_hypnogram(sibling)
    return own_hypnogram(recording)


def reference_window(
    path: Path, hypnogram: Path | None, trim: bool, *, board: str | None = None
) -> Any:
    """The reference hypnogram on the recording's grid (onsets from the recording start),
    or None when the recording has none."""
    from sleepstream.io.processing import fit_to_recording, trim_hypnogram
    from sleepstream.io.recording import open_recording

    rec = open_recording(path, board=board)
    hyp = find_reference(path, hypnogram, rec)
    duration = rec.duration_s
    rec.close()
    if hyp is None:
        return None
    hyp = fit_to_recording(hyp, duration, str(path))
    if trim:
        hyp = trim_hypnogram(hyp)
    if len(hyp) == 0:
        raise HypnogramError(f"{hyp.source}: no epoch to score")
    if np.any(np.diff(hyp.onsets) != EPOCH_SECONDS):
        raise HypnogramError(f"{hyp.source}: epochs are not contiguous 30-s epochs")
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


def _profile_board(profile: Profile) -> str | None:
    """The BrainFlow layout a board file replayed with ``profile`` follows."""
    return profile.master_board if profile.board == "playback" else profile.board


def _training_match(card: Any, path: Path) -> bool:
    from sleepstream.inference.card import training_recording_match

    return bool(training_recording_match(card, path))


def run(args: argparse.Namespace) -> int:
    setup_logging("warning" if args.json_summary and args.log_level == "info" else args.log_level)
    from sleepstream.daemon import Daemon
    from sleepstream.io.recording import check_file
    from sleepstream.sources.edf_replay import FileReplaySource, parse_speed
    from sleepstream.wiring import device_profile

    parse_speed(args.speed)  # UsageError before any work
    check_file(args.path)
    options: dict[str, Any] = {} if args.channel is None else {"channel": args.channel}
    probe = DeviceConfig(check_device_name(args.device), f"edf:{args.path}", args.profile, options)
    profile = device_profile(probe)
    board = _profile_board(profile)
    hyp = reference_window(args.path, args.hypnogram, trim=not args.no_trim, board=board)
    t0 = float(hyp.onsets[0]) if hyp is not None else 0.0
    t_end = float(hyp.onsets[-1]) + EPOCH_SECONDS if hyp is not None else None
    device = DeviceConfig(probe.name, probe.source, args.profile, {**options, "start": t0})
    config = RunConfig(
        devices=(device,),
        **daemon_settings(args),
        print_mode="line" if args.print_events else "none",
        # an explicit --state-dir also keeps the replayed night (sinks.recorder)
        record=args.state_dir is not None and not args.no_record,
    )
    collector = CollectSink()

    def build_source(dev: DeviceConfig) -> tuple[Any, float | None]:
        prof = device_profile(dev)
        if args.channel is not None and args.channel != prof.channel:
            wanted: Any = args.channel  # the DSP takes --channel from the device options
        else:
            wanted = [prof.channel, *prof.reference]
        src = FileReplaySource(args.path, wanted, speed=args.speed, start=t0, board=board)
        return src, t_end

    daemon = Daemon(config, build_source=build_source, extra_sinks=lambda name: [collector])
    result = asyncio.run(daemon.run())
    channel = args.channel or profile.channel
    summary = _summary(args, device, channel, daemon, result, collector, hyp, t0)
    if summary["training_recording"]:
        print(
            f"warning: {args.path.name} is a recording model {summary['model']} was trained "
            "on: this agreement is not a generalisation result",
            file=sys.stderr,
        )
    if args.json_summary:
        print(json.dumps(summary))
    else:
        _print_text(summary, args, hyp)
    return 0


def _summary(
    args: argparse.Namespace,
    device: DeviceConfig,
    channel: str,
    daemon: Any,
    result: Any,
    collector: CollectSink,
    hyp: Any,
    t0: float,
) -> dict[str, Any]:
    dev = result.devices[device.name]
    stager = daemon.stager
    lat_ms = np.asarray(dev.latencies_s, dtype=np.float64) * 1e3
    predicted = np.array([stage for _t, _i, stage in collector.items], dtype=np.int64)
    summary: dict[str, Any] = {
        "recording": str(args.path),
        "hypnogram": None if hyp is None else hyp.source,
        "channel": channel,
        "device": device.name,
        "model": stager.model_id,
        "training_recording": _training_match(stager.card, args.path),
        "partial": bool(result.stopped_by_signal),
        "mqtt": result.mqtt_url,
        "reference_epochs": None if hyp is None else int(len(hyp)),
        "reference_offset_s": t0,
        "n_epochs_streamed": dev.epochs,
        "n_epochs_published": len(lat_ms),
        "n_events_undelivered": dev.undelivered,
        "n_events_resent": dev.resent,
        "n_epochs_gap": sum("gap" in r for r in collector.reasons),
        "predicted_counts": {n: int(np.sum(predicted == k)) for k, n in enumerate(STAGE_NAMES)},
    }
    if hyp is not None:
        m = agreement_summary(collector.items, t0, hyp.stages)
        summary.update(
            n_epochs_scored=m["n_epochs"],
            accuracy=m["accuracy"],
            macro_f1=m["macro_f1"],
            kappa=m["kappa"],
            per_stage_f1=m["per_stage_f1"],
            confusion=m["confusion"],
            n_epochs_outside_reference=m["n_epochs_outside_reference"],
            n_epochs_unscored_by_model=m["n_epochs_unscored_by_model"],
        )
    summary.update(
        latency_ms_p50=float(np.percentile(lat_ms, 50)) if lat_ms.size else None,
        latency_ms_p99=float(np.percentile(lat_ms, 99)) if lat_ms.size else None,
        latency_ms_max=float(lat_ms.max()) if lat_ms.size else None,
    )
    return summary


def _print_text(summary: dict[str, Any], args: argparse.Namespace, hyp: Any) -> None:
    if summary["partial"]:
        print(
            f"PARTIAL: stopped after {summary['n_epochs_streamed']} epochs"
            + ("" if hyp is None else f" of {len(hyp)}")
            + "; the figures below cover only those\n"
        )
    if hyp is not None:
        from sleepstream.scoring import agreement_markdown

        title = f"{args.path.name} vs {Path(hyp.source).name}"
        m = {k: summary[k] for k in ("accuracy", "macro_f1", "kappa", "per_stage_f1", "confusion")}
        m["n_epochs"] = summary["n_epochs_scored"]
        print(agreement_markdown(m, title=title))
    else:
        counts = "  ".join(f"{k} {v}" for k, v in summary["predicted_counts"].items())
        print(f"**{args.path.name}** (no reference hypnogram)\n\nscored: {counts}")
    print(
        f"\npublished {summary['n_epochs_published']} of {summary['n_epochs_streamed']} epochs "
        f"to {summary['mqtt']}; latency p50 {summary['latency_ms_p50'] or 0:.2f} ms, "
        f"p99 {summary['latency_ms_p99'] or 0:.2f} ms"
    )
