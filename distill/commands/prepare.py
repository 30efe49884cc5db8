"""``distill prepare``: a local dataset download -> memory-mapped nights (resumable)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "prepare a full dataset (Sleep-EDF-20/78, ISRUC) once into memory-mapped nights"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from distill.prepared import DATASETS

    parser.add_argument("data", type=Path, help="the dataset's local folder")
    parser.add_argument("--dataset", required=True, choices=DATASETS)
    parser.add_argument(
        "--out", type=Path, default=None, help="prepared folder (default runs/prepared/<dataset>)"
    )
    parser.add_argument(
        "--channels",
        default=None,
        help="comma list of derivations (default: EEG Fpz-Cz for Sleep-EDF, C3-A2 for ISRUC)",
    )
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from distill.prepared import prepare

    out = args.out or Path("runs/prepared") / args.dataset
    chans = [c.strip() for c in args.channels.split(",")] if args.channels else None
    man = prepare(args.data, args.dataset, out, chans, progress=not args.no_progress)
    n_ok, n_bad = len(man["nights"]), len(man["failed"])
    print(json.dumps({"prepared": str(out), "nights": n_ok, "failed": n_bad,
                      "subjects": len({e["subject"] for e in man["nights"]})}))  # fmt: skip
    return 0 if n_bad == 0 else 3  # DataFileError's code: some files could not be read
