"""``distill methods``: the registered distillation methods, one name per line."""

from __future__ import annotations

import argparse

HELP = "list the registered distillation methods (one per line)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--verbose", action="store_true", help="add the default config")


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from distill import methods

    for name in methods.names():
        if args.verbose:
            cfg = dataclasses.asdict(methods.make_config(name))
            ta = "TA" if methods.get(name).uses_assistant else "-"
            print(f"{name}\t{ta}\t{cfg}")
        else:
            print(name)
    return 0
