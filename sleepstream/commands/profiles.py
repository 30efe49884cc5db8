"""``sleepstream profiles list|show NAME``: the device profiles and what they stage."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from sleepstream.errors import ConfigError, UsageError
from sleepstream.profiles import available_profiles, load_profile

HELP = "list the device profiles, or show one (channel, scaling, filters, quality)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("list", "show"), help="list all, or show NAME")
    parser.add_argument("name", nargs="?", help="profile name or path to a .toml file")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        if args.name:
            raise UsageError("sleepstream profiles list: takes no NAME")
        profiles, broken = [], []
        for path in available_profiles().values():
            try:
                profiles.append(load_profile(path))
            except ConfigError as exc:  # list the good ones, report the bad ones
                broken.append(str(exc))
        for message in broken:
            print(f"sleepstream profiles: invalid profile: {message}", file=sys.stderr)
        rc = ConfigError.exit_code if broken else 0
        if args.json:
            print(json.dumps([asdict(p) for p in profiles], indent=2))
            return rc
        for p in profiles:
            board = f" {p.board}" if p.board else ""
            print(
                f"{p.name:<16} {p.source + board:<22} {p.fs:>6g} Hz  {p.derivation:<12} "
                f"{p.description}"
            )
        return rc
    if not args.name:
        raise UsageError("sleepstream profiles show: NAME is required")
    profile = load_profile(args.name)
    if args.json:
        print(json.dumps(asdict(profile), indent=2))
        return 0
    notch = f"{profile.notch_hz:g} Hz" if profile.notch_hz else "off"
    band = "-".join(f"{b:g}" for b in profile.bandpass_hz) + " Hz" if profile.bandpass_hz else "off"
    print(f"# {profile.name}: {profile.description}")
    print(
        f"# derivation {profile.derivation} x {profile.scale_to_uv:g} -> µV, fs {profile.fs:g} Hz,"
        f" notch {notch}, band-pass {band}"
    )
    print(f"# file: {profile.path}")
    with open(profile.path, encoding="utf-8") as fh:
        print(fh.read().rstrip())
    return 0
