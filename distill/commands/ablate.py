"""``distill ablate``: the poster's SleepKD ablation table.

Rows: the full loss (multi-level + soft + hard, with the TA: variant b), L1–L4 (drop the
sequence / epoch / soft / hard term), variant a (multi-level without the TA), plus the
teacher and the student from scratch for reference. Same protocol, seeds and outputs
as ``distill compare``; the paired per-seed differences are against the student from
scratch and against the full loss (what each dropped term costs).
"""

from __future__ import annotations

import argparse
from typing import Any

HELP = "SleepKD ablations: full, L1-L4 (drop seq/epoch/soft/hard), variant a (no TA) vs b (TA)"

#: label -> sleepkd option overrides (on top of ``--preset``).
ABLATIONS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("SleepKD full (variant b: multi-level + TA)", {}),
    ("L1: without sequence-level term", {"beta": 0.0}),
    ("L2: without epoch-level term", {"alpha": 0.0}),
    ("L3: without soft labels", {"gamma": 0.0}),
    ("L4: without hard labels", {"delta": 0.0}),
    ("variant a: multi-level, no TA", {"chain": False}),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from distill.commands.compare import add_common_arguments

    parser.add_argument("--preset", choices=("paper", "code"), default="paper")
    parser.add_argument(
        "--options", default="", help="extra sleepkd options for every row, key=value;..."
    )
    add_common_arguments(parser, out_default="bench/results/kd")


def run(args: argparse.Namespace) -> int:
    from distill.commands.compare import SCRATCH, run_rows
    from distill.distillation import MethodSpec

    extra = MethodSpec.parse("sleepkd:" + args.options.replace(";", ",")).options
    rows: list[tuple[str, Any]] = [(SCRATCH, "scratch")]
    for label, opts in ABLATIONS:
        rows.append((label, MethodSpec("sleepkd", {"preset": args.preset, **extra, **opts})))
    for _, spec in rows[1:]:
        MethodSpec.parse(spec.label)  # validate every row before training anything
    stem = f"ablate-{args.family}-{args.protocol}-{args.preset}" + ("-quick" if args.quick else "")
    run_rows(rows, args, title=f"SleepKD ablations ({args.preset} preset)", stem=stem,
             extra_rows=("teacher",), references=(SCRATCH, ABLATIONS[0][0]))  # fmt: skip
    return 0
