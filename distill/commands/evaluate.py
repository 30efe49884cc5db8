"""``distill evaluate``: metrics of a model under a protocol, causal and/or offline."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from distill.commandline import command_line
from distill.commands.train import (
    add_train_arguments,
    config_from_args,
    load_recordings,
    make_folds,
    make_split,
)

HELP = "evaluate a model (train per fold, a checkpoint or an ONNX file) under a protocol"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="train this model per fold, then evaluate")
    src.add_argument(
        "--checkpoint",
        type=Path,
        nargs="+",
        help="best.safetensors file(s) or run folder(s); each is scored on the "
        "held-out epochs recorded in its sidecar",
    )
    src.add_argument("--onnx", type=Path, help="exported model, run via sleepstream.inference")
    parser.add_argument(
        "--protocol",
        required=True,
        choices=("within-night-blocks", "cross-dataset", "nightwise-kfold", "cross-derivation"),
    )
    parser.add_argument("--mode", default="both", choices=("causal", "offline", "both"))
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument(
        "--datasets",
        default="sc4001",
        help="nights for nightwise-kfold (comma list: sc4001, dreams)",
    )
    parser.add_argument(
        "--runs",
        type=Path,
        default=None,
        help="with --model: where fold checkpoints go (default runs/eval-...)",
    )
    parser.add_argument("--out", type=Path, default=None, help="folder for <stem>.json/.md")
    parser.add_argument("--stem", default=None, help="output file stem")
    add_train_arguments(parser)


def _checkpoints(paths: list[Path]) -> list[Path]:
    from sleepstream.errors import UsageError

    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted(p.glob("best.safetensors")) or sorted(p.glob("*/best.safetensors"))
            if not found:
                raise UsageError(f"--checkpoint {p}: no best.safetensors in this folder")
            out += found
        else:
            out.append(p)
    return out


def _test_of(args: argparse.Namespace, proto: str, test_recs: list, fold):
    """Recordings and test masks a fold is scored on (cross-derivation: cold-start
    excerpts of ``--proxy-excerpt`` epochs, see :func:`distill.proxy.excerpts`)."""
    if proto == "cross-dataset":
        return test_recs, None
    if proto == "cross-derivation" and args.proxy_excerpt > 0:
        from distill.proxy import excerpts

        return excerpts(test_recs, fold.test, args.proxy_excerpt), None
    return test_recs, fold.test


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from distill.checkpoint import load_model
    from distill.evaluate import (
        check_modes,
        fold_of,
        machine,
        normalisation_of,
        onnx_predictor,
        score_fold,
        summarise,
        to_markdown,
        torch_predictor,
        trained_on,
        write_outputs,
    )
    from sleepstream.errors import UsageError

    t0 = time.perf_counter()
    modes = check_modes(args.mode)
    proto = args.protocol
    if proto == "nightwise-kfold":
        train_sets = tuple(d.strip() for d in args.datasets.split(","))
    else:
        train_sets = ("sc4001",)
    test_sets = ("dreams",) if proto == "cross-dataset" else train_sets
    recs, hyps = load_recordings(args, train_sets)
    if proto == "cross-derivation":  # one recording per derivation (distill.proxy)
        from distill.proxy import split_derivations

        recs = [r for rec in recs for r in split_derivations(rec)]
    test_recs = recs if test_sets == train_sets else load_recordings(args, test_sets)[0]
    per_fold: dict = {}
    name = args.model
    source = ""
    norms: list[dict] = []  # the normalisation each scored model declares
    if args.model:
        from distill.commands.train import runtime_from_args
        from distill.train import train_run

        rt = runtime_from_args(args)
        cfg = config_from_args(args, args.model)
        split = "full" if proto == "cross-dataset" else proto
        if split == "cross-derivation":
            recs, folds = make_split(args, split, load_recordings(args)[0], args.folds,
                                     cfg.seq_len, args.seed)  # fmt: skip
            test_recs = recs
        else:
            folds = make_folds(split, recs, args.folds, cfg.seq_len, args.seed, args.val_block)
        runs = args.runs or Path("runs") / f"eval-{args.model}-{proto}"
        source = str(runs)
        for fold in folds:
            out = runs if split == "full" else runs / fold.name
            model, _ = train_run(
                cfg,
                recs,
                fold,
                stage_sequences=hyps,
                out_dir=out,
                progress=not args.no_progress,
                extra_meta={"command": command_line(args), "split": split},
                runtime=rt,
            )
            trecs, test = _test_of(args, proto, test_recs, fold)
            norms.append(cfg.normalise)
            per_fold[fold.name] = score_fold(
                torch_predictor(model), trecs, test, cfg.seq_len, modes, cfg.normalise
            )
    elif args.checkpoint:
        paths = _checkpoints(args.checkpoint)
        source = ", ".join(str(p) for p in paths)
        for path in paths:
            model, meta = load_model(path)
            name = meta["model"]
            seq = int(meta.get("seq_len") or model.seq_len)
            if proto == "cross-dataset":
                if "dreams" in trained_on(meta):
                    raise UsageError(f"{path}: trained on DREAMS; not a cross-dataset test")
                test = None
            else:
                fold = fold_of(meta, str(path))
                if fold.protocol != proto:
                    raise UsageError(f"{path}: trained for {fold.protocol!r}, not {proto!r}")
                test = fold.test
            key = path.parent.name if len(paths) > 1 else meta.get("fold", {}).get("name", "all")
            trecs, test = _test_of(args, proto, test_recs, fold) if test else (test_recs, None)
            norms.append(normalisation_of(meta))
            per_fold[key] = score_fold(torch_predictor(model), trecs, test, seq, modes, norms[-1])
    else:
        predict, seq, card = onnx_predictor(args.onnx)
        name = str(card.get("architecture") or card.get("model_id") or args.onnx.stem)
        source = str(args.onnx)
        if proto == "cross-dataset":
            if "dreams" in trained_on(card):
                raise UsageError(f"{args.onnx}: card says it was trained on DREAMS")
            test = None
        else:
            fold = fold_of(card, str(args.onnx))
            test = fold.test
        # The card's declared normalisation, applied per recording from its start.
        norms.append(normalisation_of(card))
        per_fold["all"] = score_fold(predict, test_recs, test, seq, modes, norms[-1])
    from distill.runtime import is_main

    if not is_main():  # under torchrun, rank 0 alone reports
        return 0
    if not per_fold or not any(len(f[m][0]) for f in per_fold.values() for m in modes):
        raise UsageError(f"{proto}: no scored test epochs")
    result = summarise(per_fold, proto)
    result.update(
        normalisation=norms[0] if all(n == norms[0] for n in norms) else norms,
        model=name,
        source=source,
        command=command_line(args),
        machine=machine(),
        wall_s=time.perf_counter() - t0,
        test_set=[r.name for r in test_recs],
        label_counts={
            m: np.bincount(
                np.concatenate([f[m][0] for f in per_fold.values()]), minlength=5
            ).tolist()
            for m in modes
        },
    )
    if args.out:
        stem = args.stem or f"{name}-{proto}"
        js, md = write_outputs(result, args.out, stem)
        print(f"wrote {js} and {md}")
    print(to_markdown(result))
    return 0
