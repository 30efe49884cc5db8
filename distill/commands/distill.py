"""``distill distill``: one method end to end (teacher → [TA] → student), then evaluate.

The teacher is loaded (``--teacher``) or trained (reused from ``<out>/teacher`` if there),
the TA is trained where the method uses one, then the student. Training uses SC4001
(minus a validation block); the student is evaluated on the 8 DREAMS excerpts
(cross-dataset), causal and offline. Prints one JSON line per model and a summary.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

HELP = "distil one method end to end: train/load teacher, train TA (if used), train student"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from distill.commands.compare import QUICK
    from distill.commands.train import add_train_arguments

    parser.add_argument(
        "--method", required=True, help="NAME[:key=value;...], e.g. sleepkd:preset=code"
    )
    parser.add_argument("--family", default="deepsleepnet", help="model family")
    parser.add_argument("--teacher", type=Path, default=None, help="trained teacher checkpoint")
    parser.add_argument("--out", type=Path, default=None, help="run folder (default runs/kd/...)")
    parser.add_argument("--fresh", action="store_true", help="retrain even if checkpoints exist")
    parser.add_argument("--no-eval", action="store_true", help="skip the DREAMS evaluation")
    parser.add_argument("--mode", default="both", help="causal, offline or both")
    parser.add_argument(
        "--quick", action="store_true", help=f"few epochs, short sequences: {QUICK} unless given"
    )
    add_train_arguments(parser)
    parser.set_defaults(_parser=parser)  # lets command_line() spell out every option


def run(args: argparse.Namespace) -> int:
    from distill.commandline import command_line
    from distill.commands.compare import apply_quick
    from distill.commands.train import (
        config_from_args,
        default_data_dir,
        load_recordings,
        make_folds,
        runtime_from_args,
    )
    from distill.distillation import (
        MethodSpec,
        family_models,
        load_teacher,
        n_params,
        run_chain,
    )
    from distill.evaluate import check_modes, score_fold, torch_predictor
    from sleepstream.scoring import agreement

    t0 = time.perf_counter()
    args = apply_quick(args)
    rt = runtime_from_args(args)
    spec = MethodSpec.parse(args.method.replace(";", ","))
    names = family_models(args.family)
    modes = check_modes(args.mode)
    cfg = config_from_args(args, names["student"])
    out = args.out or Path("runs/kd") / args.family / spec.name / f"seed{cfg.seed}"
    teacher = load_teacher(args.teacher) if args.teacher else None
    recs, hyps = load_recordings(args, ("sc4001",))
    fold = make_folds("full", recs, 5, cfg.seq_len, 0)[0]
    cmd = command_line(args)
    chain = run_chain(spec, args.family, cfg, recs, fold, out_dir=out, teacher=teacher,
                      stage_sequences=hyps, reuse=not args.fresh, progress=not args.no_progress,
                      extra_meta={"command": cmd}, runtime=rt,
                      resume=not args.fresh)  # fmt: skip
    models = {"teacher": chain.teacher, "ta": chain.ta, "student": chain.student}
    from distill.runtime import is_main

    if not is_main():  # under torchrun, rank 0 alone evaluates and reports
        return 0
    test = [] if args.no_eval else _dreams(args, default_data_dir)
    report: dict = {"method": spec.label, "family": args.family, "command": cmd, "models": {}}
    for role, model in models.items():
        if model is None:
            continue
        entry = {"n_params": n_params(model), "checkpoint": str(out / role)}
        if role == "teacher" and args.teacher:
            entry["checkpoint"] = str(args.teacher)
        if test:
            res = score_fold(torch_predictor(model), test, None, cfg.seq_len, modes, cfg.normalise)
            for mode, (yt, yp) in res.items():
                m = agreement(yt, yp)
                entry[f"dreams_{mode}"] = {
                    k: round(m[k], 4) for k in ("accuracy", "macro_f1", "kappa")
                }
        report["models"][role] = entry
        print(json.dumps({"role": role, **entry}), flush=True)
    report["notes"] = chain.summaries.get("note")
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps({"summary": report}), flush=True)
    return 0


def _dreams(args, default_data_dir):
    from distill.data import load_dreams_recordings

    return load_dreams_recordings((args.data or default_data_dir()) / "dreams_spindles")
