"""``sleepstream run``: the real-time daemon (one device from flags, or beds.toml)."""

from __future__ import annotations

import argparse
import asyncio

from sleepstream.commands._daemon_args import (
    add_daemon_arguments,
    add_mqtt_arguments,
    daemon_settings,
    setup_logging,
)
from sleepstream.config import DeviceConfig, RunConfig, check_device_name, default_state_dir
from sleepstream.errors import UsageError

HELP = "stage EEG in real time and publish stages over MQTT (the daemon)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("source (one of)")
    src.add_argument("--board", metavar="NAME", help="BrainFlow board: openbci, synthetic, ...")
    src.add_argument("--lsl", metavar="NAME", help="LSL stream name to resolve")
    src.add_argument(
        "--source",
        metavar="SPEC",
        help="edf:PATH | synthetic-night[:HYPNOGRAM] | board:NAME | lsl:NAME "
        "(default: synthetic-night)",
    )
    src.add_argument("--config", metavar="BEDS_TOML", help="several devices from a beds.toml")
    opt = parser.add_argument_group("source options")
    opt.add_argument("--profile", help="profile name or path (default: the source's own)")
    opt.add_argument("--device", default="bed1", help="device name / topic level (%(default)s)")
    opt.add_argument("--serial-port", help="board serial port (OpenBCI dongle)")
    opt.add_argument("--mac-address", help="board MAC address (Muse)")
    opt.add_argument("--ip-address", help="board IP address")
    opt.add_argument("--speed", help="replay speed for edf/synthetic-night: 1 = real time, max")
    opt.add_argument("--start", type=float, help="edf: start offset in seconds")
    opt.add_argument("--loop", action="store_true", help="edf: start over at the end")
    opt.add_argument("--channel", help="edf: channel label")
    opt.add_argument("--timeout", type=float, help="lsl: seconds to resolve the stream")
    out = parser.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print JSON lines instead of text")
    out.add_argument("--quiet", action="store_true", help="print nothing per epoch")
    out.add_argument(
        "--no-record",
        action="store_true",
        help="do not keep the night (raw EDF, stages) under STATE_DIR/nights/",
    )
    out.add_argument(
        "--stay",
        action="store_true",
        help="keep running (broker, metrics) after a file source ends, until SIGTERM",
    )
    add_mqtt_arguments(parser)
    add_daemon_arguments(parser, metrics_default=9108)


_OPTION_NAMES = ("serial_port", "mac_address", "ip_address", "speed", "start", "channel", "timeout")


def source_spec(args: argparse.Namespace) -> str:
    given = [
        f"board:{args.board}" if args.board else None,
        f"lsl:{args.lsl}" if args.lsl else None,
        args.source,
    ]
    given = [g for g in given if g]
    if len(given) > 1:
        raise UsageError(f"give one source, not {len(given)}: {', '.join(given)}")
    return given[0] if given else "synthetic-night"


def build_config(args: argparse.Namespace) -> RunConfig:
    """RunConfig from flags (and ``--config`` for the devices)."""
    common = dict(
        **daemon_settings(args),
        print_mode="none" if args.quiet else ("json" if args.json else "line"),
        record=not args.no_record,
    )
    if args.config:
        if args.board or args.lsl or args.source:
            raise UsageError("--config describes the devices: do not combine with a source flag")
        from sleepstream.config import load_beds

        beds = load_beds(args.config)
        # flags given explicitly win over the file; defaults leave the file's values
        keep = {
            k: getattr(beds, k)
            for k in ("metrics_port", "model", "lookahead", "state_dir", "outbox_max_events")
        }
        if args.mqtt is None and beds.mqtt.url is not None:
            common["mqtt"] = beds.mqtt
        for key, value in keep.items():
            parser_default = {
                "metrics_port": 9108, "model": None, "lookahead": 0,
                "state_dir": default_state_dir(), "outbox_max_events": 100_000,
            }[key]  # fmt: skip
            if common[key] == parser_default:
                common[key] = value
        return RunConfig(devices=beds.devices, **common)
    options = {k: getattr(args, k) for k in _OPTION_NAMES if getattr(args, k) is not None}
    if args.loop:
        options["loop"] = True
    device = DeviceConfig(check_device_name(args.device), source_spec(args), args.profile, options)
    return RunConfig(devices=(device,), **common)


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    config = build_config(args)
    from sleepstream.daemon import Daemon

    result = asyncio.run(Daemon(config, stay=args.stay).run())
    undelivered = sum(r.undelivered for r in result.devices.values())
    if undelivered:
        import logging

        logging.getLogger("sleepstream").warning(
            "%d event(s) not yet delivered; they stay in the outbox for the next start",
            undelivered,
        )
    return 0
