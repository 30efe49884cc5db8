"""``distill train``: two-stage training of one model on SC4001 (both derivations)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

HELP = "train a model in two stages (epoch encoder, then sequence) with checkpoints"

SPLITS = ("full", "within-night-blocks", "nightwise-kfold", "cross-derivation", "subject-kfold")
DATASETS = ("sc4001", "dreams")


def default_data_dir() -> Path:
    """``$SLEEPSTREAM_SHARED_DATA`` or ``../shared/data`` next to the repository."""
    env = os.environ.get("SLEEPSTREAM_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"


def augmentation_from_args(args: argparse.Namespace, n_channels: int):
    """The :class:`~distill.trainset.Augmentation` of ``--augment``, ``--augment-param``,
    ``--augment-where``, ``--shift`` and ``--no-augment`` (channel swap when the recording
    has more than one derivation)."""
    from distill.augment import AUGMENT_PRESETS, AugmentConfig
    from distill.options import parse_value
    from distill.trainset import Augmentation
    from sleepstream.errors import UsageError

    names = "none" if args.no_augment else args.augment
    params: dict = {}
    for item in args.augment_param:
        key, eq, raw = item.partition("=")
        if not eq:
            raise UsageError(f"--augment-param {item!r}: expected key=value")
        vals = [parse_value(v.strip()) for v in raw.split(",")]
        params[key.strip()] = tuple(vals) if len(vals) > 1 else vals[0]
    if names in AUGMENT_PRESETS:
        kw = {**AUGMENT_PRESETS[names], **params}
        sig = AugmentConfig.from_dict(kw) if kw else AugmentConfig()
    else:
        try:
            sig = AugmentConfig.from_names(names, **params)
        except TypeError as exc:
            raise UsageError(f"--augment-param: {exc}") from None
    shift = 0 if args.no_augment else args.shift
    return Augmentation(sig, shift, channel_swap=n_channels > 1, where=args.augment_where)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Options that define a :class:`~distill.train.TrainConfig` (shared with ``evaluate``)."""
    from distill.augment import AUGMENT_PRESET_HELP

    g = parser.add_argument_group("training")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--seq-len", type=int, default=20, help="epochs per window (default 20)")
    g.add_argument("--pretrain-epochs", type=int, default=30, help="stage 1 epochs (0 = skip)")
    g.add_argument("--pretrain-batch-size", type=int, default=64)
    g.add_argument("--pretrain-lr", type=float, default=1e-3)
    g.add_argument("--epochs", type=int, default=20, help="stage 2 (sequence) epochs")
    g.add_argument("--batch-size", type=int, default=16, help="stage 2 windows per batch")
    g.add_argument("--lr", type=float, default=3e-4, help="stage 2 learning rate")
    g.add_argument("--optimizer", choices=("adam", "adamw", "sgd"), default="adam")
    g.add_argument("--schedule", choices=("none", "cosine", "step"), default="cosine")
    g.add_argument("--weight-decay", type=float, default=1e-4)
    g.add_argument("--patience", type=int, default=6, help="early stopping, epochs")
    g.add_argument(
        "--stride", type=int, default=0, help="epochs between training window starts (0 = seq-len)"
    )
    g.add_argument("--balance", choices=("weights", "sampler", "none"), default="weights")
    g.add_argument(
        "--assembled-ratio",
        type=float,
        default=1.0,
        help="hypnogram-assembled windows per real window in stage 2 (0 = off)",
    )
    a = parser.add_argument_group("augmentation (distill.augment)")
    a.add_argument(
        "--augment",
        default="mild",
        metavar="NAMES",
        help="comma list of gain, filter, noise, sign_flip, time_scale, mix (parameters: "
        "distill.augment defaults, or --augment-param); or a preset: "
        + "; ".join(f"{k} = {v}" for k, v in AUGMENT_PRESET_HELP.items()),
    )
    a.add_argument(
        "--augment-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an AugmentConfig parameter (repeatable), e.g. gain_max=4 or noise_beta=0.5,2",
    )
    a.add_argument(
        "--augment-where",
        choices=("window", "night"),
        default="window",
        help="window: one draw per training window, after normalisation; night: one draw "
        "per training night and pass, before the normaliser (as a new amplifier)",
    )
    a.add_argument("--shift", type=int, default=300, help="time shift, samples (default 300)")
    a.add_argument("--no-augment", action="store_true", help="--augment none --shift 0")
    n = parser.add_argument_group("normalisation and night-start windows")
    n.add_argument(
        "--normalise",
        default="none",
        metavar="KIND",
        help="per-recording input normalisation (sleepstream.dsp.normalise kinds; "
        "'none' = raw µV), applied causally along each night",
    )
    n.add_argument(
        "--normalise-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a NormalisationSpec parameter (repeatable), e.g. --normalise-param window=120",
    )
    n.add_argument(
        "--session-len",
        type=int,
        default=0,
        metavar="EPOCHS",
        help="with --normalise or --augment-where night: each pass cuts every training "
        "night into sessions of EPOCHS epochs (random phase), each normalised (and "
        "augmented) from its own cold start, no history across a session start; "
        "0 = one random cut per night and pass",
    )
    n.add_argument(
        "--start-windows",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="fraction of stage-2 training windows shown with a short, zero-padded "
        "history, as the daemon sees the first epochs of a night (0 = off)",
    )
    g.add_argument(
        "--channels",
        default="EEG Fpz-Cz,EEG Pz-Oz",
        help="SC4001 derivations (first = evaluation channel; >1 = channel swap)",
    )
    g.add_argument("--data", type=Path, default=None, help="shared data folder")
    g.add_argument(
        "--prepared",
        type=Path,
        default=None,
        help="a `distill prepare` folder: train on its nights instead of SC4001 "
        "(--split full holds 10%% of the subjects out for early stopping; subject-kfold "
        "folds by subject); hypnogram-assembled windows are off",
    )
    g.add_argument(
        "--val-block",
        choices=("next", "neighbour"),
        default="next",
        help="within-night-blocks validation block: the next one (cyclic) or a "
        "neighbour of the test block (the last block takes the previous one)",
    )
    g.add_argument(
        "--proxy-direction",
        default="both",
        help="cross-derivation proxy: fpz-pz (train Fpz-Cz, score Pz-Oz), pz-fpz, or both",
    )
    g.add_argument(
        "--proxy-excerpt",
        type=int,
        default=60,
        metavar="EPOCHS",
        help="cross-derivation proxy: score the held-out epochs as excerpts of EPOCHS "
        "epochs, each from a cold start like a DREAMS excerpt (0 = in place, with history)",
    )
    g.add_argument("--no-progress", action="store_true")
    r = parser.add_argument_group("where it runs (distill.runtime; not part of the run's identity)")
    r.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:<i> (default cpu)")
    r.add_argument(
        "--amp",
        choices=("auto", "off", "bf16", "fp16"),
        default="auto",
        help="autocast on CUDA: auto = bf16 where supported, else fp16; off on CPU",
    )
    r.add_argument(
        "--loader",
        choices=("memory", "dataloader"),
        default="memory",
        help="memory: windows cut in the training process (original path); dataloader: "
        "torch DataLoader over (night, window) items, one rng per item (always under torchrun)",
    )
    r.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    r.add_argument(
        "--micro-batches",
        type=int,
        default=1,
        help="split each batch into N slices (gradient accumulation; = N torchrun processes)",
    )
    r.add_argument(
        "--no-deterministic",
        action="store_true",
        help="allow non-deterministic kernels (faster on GPU)",
    )
    parser.set_defaults(_parser=parser)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model name (see `distill models`)")
    parser.add_argument(
        "--split",
        choices=SPLITS,
        default="full",
        help="full: SC4001 minus a validation block; or one run per fold",
    )
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--fold", default="all", help="fold index or 'all'")
    parser.add_argument("--datasets", default="sc4001", help="comma list for nightwise-kfold")
    parser.add_argument("--out", type=Path, required=True, help="run folder (under runs/)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    add_train_arguments(parser)
    parser.set_defaults(_parser=parser)


def config_from_args(args: argparse.Namespace, model: str):
    from distill.normalise import spec_from_cli
    from distill.train import OptimConfig, StageConfig, TrainConfig

    def optim(lr: float) -> OptimConfig:
        return OptimConfig(
            name=args.optimizer, lr=lr, weight_decay=args.weight_decay, schedule=args.schedule
        )

    chans = [c.strip() for c in args.channels.split(",") if c.strip()]
    aug = augmentation_from_args(args, len(chans))
    return TrainConfig(
        model=model,
        seq_len=args.seq_len,
        seed=args.seed,
        pretrain=StageConfig(
            args.pretrain_epochs, args.pretrain_batch_size, args.patience, optim(args.pretrain_lr)
        ),
        sequence=StageConfig(
            args.epochs, args.batch_size, args.patience, optim(args.lr), stride=args.stride
        ),
        augment=aug,
        balance=args.balance,
        assembled_ratio=args.assembled_ratio,
        normalise=spec_from_cli(args.normalise, args.normalise_param),
        session_len=args.session_len,
        start_windows=args.start_windows,
    )


def runtime_from_args(args: argparse.Namespace):
    """The :class:`~distill.runtime.Runtime` of the command line; joins the torchrun group
    when launched by torchrun (``WORLD_SIZE > 1``)."""
    from distill.runtime import Runtime, init_distributed

    rt = Runtime(
        device=args.device,
        amp=args.amp,
        loader=args.loader,
        workers=args.workers,
        micro_batches=args.micro_batches,
        deterministic=not args.no_deterministic,
    )
    init_distributed(rt.torch_device)
    return rt


def load_recordings(args: argparse.Namespace, datasets=("sc4001",)):
    """Recordings for ``datasets`` and the real hypnograms (SC4001's own excluded)."""
    from distill.assembled import trimmed_stage_sequences
    from distill.data import load_dreams_recordings, load_sc4001_recording
    from sleepstream.io.datasets import load_sleep_edf20_hypnograms

    root = args.data or default_data_dir()
    chans = [c.strip() for c in args.channels.split(",") if c.strip()]
    recs = []
    if getattr(args, "prepared", None) is not None and "sc4001" in datasets:
        from distill.prepared import load_prepared

        recs = load_prepared(args.prepared)  # memory-mapped nights of a full dataset
        datasets = tuple(d for d in datasets if d != "sc4001")
        if not datasets:
            return recs, []
    for ds in datasets:
        if ds == "sc4001":
            recs.append(load_sc4001_recording(root / "sleep_edf_sc4001", chans))
        elif ds == "dreams":
            recs += load_dreams_recordings(root / "dreams_spindles")
        else:
            from sleepstream.errors import UsageError

            raise UsageError(f"--datasets {ds!r}: valid: {', '.join(DATASETS)}")
    hyps = load_sleep_edf20_hypnograms(root / "sleep_edf20_hypnograms")
    return recs, trimmed_stage_sequences(hyps, exclude=("SC4001",))


def make_folds(split: str, recs, k: int, guard: int, seed: int, val: str = "next"):
    from distill.folds import (
        full_night_fold,
        nightwise_kfold,
        subject_holdout,
        subject_kfold,
        within_night_blocks,
    )
    from sleepstream.errors import UsageError

    if split == "nightwise-kfold":
        return nightwise_kfold(recs, k, seed)
    if split == "subject-kfold":
        return subject_kfold(recs, {r.name: r.subject or r.name for r in recs}, k, seed)
    if split == "full" and len(recs) > 1:  # a prepared dataset: hold subjects out
        return [subject_holdout(recs, seed=seed)]
    if len(recs) != 1:
        raise UsageError(f"--split {split} needs exactly one night, got {len(recs)}")
    if split == "within-night-blocks":
        return within_night_blocks(recs[0], k, guard, val=val)
    return [full_night_fold(recs[0], k=max(k, 2), guard=guard)]


def make_split(args: argparse.Namespace, split: str, recs, k: int, guard: int, seed: int = 0):
    """``(recordings, folds)`` of ``split``: :func:`make_folds`, or for ``cross-derivation``
    the per-derivation recordings and folds of :mod:`distill.proxy` (``k`` blocks, 0 =
    whole night)."""
    if split == "cross-derivation":
        from distill.proxy import cross_derivation_folds, parse_directions
        from sleepstream.errors import UsageError

        if len(recs) != 1:
            raise UsageError(f"--split {split} needs exactly one night, got {len(recs)}")
        dirs = parse_directions(args.proxy_direction)
        return cross_derivation_folds(recs[0], k, guard, dirs)
    return recs, make_folds(split, recs, k, guard, seed, getattr(args, "val_block", "next"))


def pick_folds(folds, which: str):
    from sleepstream.errors import UsageError

    if which == "all":
        return folds
    try:
        idx = [int(i) for i in which.split(",")]
        return [folds[i] for i in idx]
    except (ValueError, IndexError):
        raise UsageError(f"--fold {which!r}: 'all' or indices < {len(folds)}") from None


def run(args: argparse.Namespace) -> int:
    import time

    from distill.commandline import command_line
    from distill.runtime import is_main
    from distill.train import train_run

    t0 = time.perf_counter()
    rt = runtime_from_args(args)
    cfg = config_from_args(args, args.model)
    datasets = (
        tuple(d.strip() for d in args.datasets.split(","))
        if args.split == ("nightwise-kfold")
        else ("sc4001",)
    )
    recs, hyps = load_recordings(args, datasets)
    recs, folds = make_split(args, args.split, recs, args.folds, cfg.seq_len, args.seed)
    folds = pick_folds(folds, args.fold)
    cmd = command_line(args)
    done = []
    for fold in folds:
        out = args.out if args.split == "full" else args.out / fold.name
        _, summary = train_run(
            cfg,
            recs,
            fold,
            stage_sequences=hyps,
            out_dir=out,
            resume=args.resume,
            progress=not args.no_progress,
            extra_meta={"command": cmd, "split": args.split},
            runtime=rt,
        )
        done.append(
            {
                "fold": fold.name,
                "checkpoint": str(out / "best.safetensors"),
                "wall_s": summary["wall_s"],
                "val_macro_f1": summary.get("sequence", summary.get("pretrain", {})).get(
                    "best_val_macro_f1"
                ),
            }
        )
        if is_main():
            print(json.dumps(done[-1]), flush=True)
    if is_main():
        print(json.dumps({"command": cmd, "wall_s": time.perf_counter() - t0, "runs": done}))
    return 0
