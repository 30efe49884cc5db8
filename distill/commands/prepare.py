"""``distill prepare``: a dataset's recordings -> memory-mapped nights (resumable)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = (
    "prepare a dataset once into memory-mapped nights: Sleep-EDF-20/78, ISRUC, a BIDS tree, "
    "or a lab's own recordings + hypnograms in any format (pairs.tsv)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from distill.datasets import DATASETS

    parser.add_argument(
        "data",
        type=Path,
        help="the dataset's folder (pairs: a tab-separated file with columns recording, "
        "hypnogram, subject[, name, channels, board], or a folder holding pairs.tsv)",
    )
    parser.add_argument(
        "--dataset",
        required=True,
        choices=DATASETS,
        help="sleep-edf-20/78, isruc: the public downloads; bids: sub-*/[ses-*/]eeg/*_eeg.* "
        "with *_events.tsv stages; pairs: a lab's list (any format sleepstream reads; an "
        "empty hypnogram = the recording's own stage annotations)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="prepared folder (default runs/prepared/<dataset>)"
    )
    parser.add_argument(
        "--channels",
        default=None,
        help="comma list of derivations (default: EEG Fpz-Cz for Sleep-EDF, C3-A2 for ISRUC; "
        "required for bids and pairs)",
    )
    parser.add_argument(
        "--board",
        default=None,
        help="BrainFlow board layout of BrainFlow files (cyton, synthetic...; pairs: a "
        "'board' column overrides it per file)",
    )
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from distill.prepared import prepare

    out = args.out or Path("runs/prepared") / args.dataset
    chans = [c.strip() for c in args.channels.split(",")] if args.channels else None
    man = prepare(
        args.data, args.dataset, out, chans, progress=not args.no_progress, board=args.board
    )
    n_ok, n_bad = len(man["nights"]), len(man["failed"])
    print(json.dumps({"prepared": str(out), "nights": n_ok, "failed": n_bad,
                      "subjects": len({e["subject"] for e in man["nights"]})}))  # fmt: skip
    return 0 if n_bad == 0 else 3  # DataFileError's code: some files could not be read
