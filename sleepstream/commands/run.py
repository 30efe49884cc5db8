"""``sleepstream run``: the real-time daemon (one device from flags, or beds.toml)."""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

from sleepstream import names
from sleepstream import settings as st
from sleepstream.commands._daemon_args import (
    add_daemon_arguments,
    add_mqtt_arguments,
    command_base,
    daemon_values,
    setup_logging,
)
from sleepstream.config import DeviceConfig, RunConfig, check_device_name, load_beds, run_config
from sleepstream.errors import UsageError
from sleepstream.settings import Setting
from sleepstream.wiring import SOURCE_SETTINGS

HELP = "stage EEG in real time and publish stages over MQTT (the daemon)"
#: Device name when ``--device`` is not given (one device from flags).
DEFAULT_DEVICE = "bed1"
#: ``--device``: checked where it is read, so an error names the flag or the variable.
DEVICE = Setting("device", "device", "device name", st.named(names.check_device))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("source (one of)")
    src.add_argument("--board", metavar="NAME", help="BrainFlow board: openbci, synthetic, ...")
    src.add_argument("--lsl", metavar="NAME", help="LSL stream name to resolve")
    src.add_argument(
        "--source",
        metavar="SPEC",
        help="file:PATH (any recording: EDF/BDF, FIF, BrainVision, EEGLAB, OpenBCI, BrainFlow CSV; "
        "edf:PATH is the same) | synthetic-night[:HYPNOGRAM] | board:NAME | lsl:NAME "
        "(default: synthetic-night)",
    )
    src.add_argument("--config", metavar="BEDS_TOML", help="several devices from a beds.toml")
    opt = parser.add_argument_group("source options (one device; beds.toml: per [[device]])")
    opt.add_argument("--profile", help="profile name or path (default: the source's own)")
    opt.add_argument(
        "--device",
        type=st.argtype(DEVICE),
        help=f"device name / topic level (default: {DEFAULT_DEVICE}) [env SLEEPSTREAM_DEVICE]",
    )
    from sleepstream.commands._daemon_args import _add

    _add(opt, list(SOURCE_SETTINGS), "run", none_defaults=True, shown={})
    add_mqtt_arguments(parser)
    add_daemon_arguments(parser, metrics_default=9108, command="run")


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


def source_options(args: argparse.Namespace) -> dict[str, Any]:
    """The device's source and montage options given (flag or environment)."""
    ns = vars(args)
    return {
        s.key: ns[s.key]
        for s in SOURCE_SETTINGS
        if ns.get(s.key) is not None and ns.get(s.key) is not False
    }


def build_config(args: argparse.Namespace) -> RunConfig:
    """RunConfig from the flags, the environment and ``--config`` (flags win over the file)."""
    values = daemon_values(args)
    base = command_base(args)
    options = source_options(args)
    if args.config:
        if args.board or args.lsl or args.source:
            raise UsageError("--config describes the devices: do not combine with a source flag")
        per_device = [*options, *(k for k in ("profile", "device") if getattr(args, k))]
        if per_device:
            flag = "--" + per_device[0].replace("_", "-")
            raise UsageError(
                f"{flag} applies to one device: with --config, set it in the [[device]] "
                "tables of the beds file"
            )
        return load_beds(args.config, base=base, **values)
    name = check_device_name(args.device or DEFAULT_DEVICE)
    device = DeviceConfig(name, source_spec(args), args.profile, options)
    return run_config((device,), values, base=base)


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    config = build_config(args)
    from sleepstream.daemon import Daemon

    result = asyncio.run(Daemon(config).run())
    undelivered = sum(r.undelivered for r in result.devices.values())
    if undelivered:
        logging.getLogger("sleepstream").warning(
            "%d event(s) not yet delivered; they stay in the outbox for the next start",
            undelivered,
        )
    return 0
