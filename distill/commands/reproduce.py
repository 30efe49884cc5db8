"""``distill reproduce``: the paper's protocol on a full dataset, in one resumable command.

Prepares the dataset once (:mod:`distill.prepared`, memory-mapped; ``--dataset bids`` or
``pairs`` takes a lab's own recordings, ``--channels`` naming the derivations), cuts it
into subject-wise folds (``--folds k``, every night of a subject in the same fold;
ISRUC: leave-one-subject-out), then trains, per fold and seed, the teacher, the student
from scratch, every method's student and the TA, and scores each on its fold's test
subjects. Every (row, seed, fold) is a resumable unit (:mod:`distill.runs`); the table
pools the folds (accuracy, macro-F1, kappa, per-stage F1) and each finished unit prints
the time left. Works under ``torchrun`` like every training command.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "the paper's subject-wise k-fold on a full dataset: teacher, TA, every method (resumable)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from distill.commands.compare import QUICK
    from distill.commands.train import add_train_arguments
    from distill.datasets import DATASETS

    parser.add_argument("--dataset", required=True, choices=DATASETS)
    parser.add_argument(
        "--folds", type=int, default=20, help="subject-wise folds (ISRUC: one per subject)"
    )
    parser.add_argument("--fold", default="all", help="fold indices (comma) or 'all'")
    parser.add_argument("--methods", default="all", help="as in `distill compare`")
    parser.add_argument("--family", default="deepsleepnet", help="model family")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per fold (0..N-1)")
    parser.add_argument("--mode", default="causal", help="causal, offline or both")
    parser.add_argument("--out", type=Path, default=Path("bench/results/reproduce"))
    parser.add_argument("--runs", type=Path, default=Path("runs/reproduce"))
    parser.add_argument("--fresh", action="store_true", help="retrain every unit")
    parser.add_argument("--teacher", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help=f"few epochs: {QUICK}")
    add_train_arguments(parser)  # includes --prepared (default here: runs/prepared/<dataset>,
    parser.set_defaults(_parser=parser, assembled_ratio=0.0)  # prepared when missing)


def run(args: argparse.Namespace) -> int:
    from distill.commands.compare import Setup, parse_methods, run_rows
    from distill.commands.train import pick_folds
    from distill.datasets import DEFAULT_CHANNELS
    from distill.folds import subject_kfold
    from distill.prepared import load_prepared, prepare, read_manifest, subjects
    from sleepstream.errors import UsageError

    if args.data is None:
        raise UsageError("--data: the dataset's local folder (pairs: its pairs file) is required")
    prep = args.prepared or Path("runs/prepared") / args.dataset
    if not (prep / "manifest.json").is_file():
        chans = None  # Sleep-EDF / ISRUC: the dataset's default derivation
        if args.dataset not in DEFAULT_CHANNELS:  # bids, pairs: --channels names them
            chans = [c.strip() for c in args.channels.split(",") if c.strip()]
        prepare(args.data, args.dataset, prep, chans, progress=not args.no_progress)
    man = read_manifest(prep)
    if man["dataset"] != args.dataset:
        raise UsageError(f"{prep}: prepared for {man['dataset']!r}, not {args.dataset!r}")
    recs = load_prepared(prep)
    subj = subjects(prep)
    n_subj = len(set(subj.values()))
    if args.dataset == "isruc":
        proto, k = "loso", n_subj  # ISRUC-III has 10 subjects: one fold each
    else:
        proto, k = "subject-kfold", args.folds
    all_folds = subject_kfold(recs, subj, k, seed=0, protocol=proto)
    folds = pick_folds(all_folds, args.fold)
    args.protocol = proto
    setup = Setup(proto, recs, None, folds, [])
    specs = parse_methods(args.methods)
    rows = [("student (from scratch)", "scratch")] + [(s.label, s) for s in specs]
    fold_subjects = {
        f.name: {role: sorted({subj[n] for n, m in getattr(f, role).items() if m.any()})
                 for role in ("train", "val", "test")}
        for f in all_folds
    }  # fmt: skip
    extra = {
        "dataset": args.dataset,
        "prepared": str(prep),
        "source": man["source"],
        "n_nights": len(recs),
        "n_subjects": n_subj,
        "failed_files": man["failed"],
        "fold_subjects": fold_subjects,
    }
    stem = f"reproduce-{args.dataset}-{args.family}" + ("-quick" if args.quick else "")
    run_rows(rows, args, title=f"Reproduction on {args.dataset} ({proto}, {k} folds)",
             stem=stem, setup=setup, extra=extra)  # fmt: skip
    return 0
