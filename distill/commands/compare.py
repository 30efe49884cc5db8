"""``distill compare``: the paper-style KD table (accuracy, macro-F1, kappa; mean ± sd).

Rows: the student trained from scratch, each method's student, the teacher and the TA
(the one ``sleepkd`` trains). Every row is trained per seed (and per fold under
``within-night-blocks`` / ``cross-derivation``), evaluated in causal and offline mode, and
summarised as mean ± sd over seeds, with paired per-seed differences against the
from-scratch student and plain KD. Resumable: finished (row, seed, fold) units are
skipped (:mod:`distill.runs`). Writes ``<out>/<stem>.json`` and ``<stem>.md`` (default
``bench/results/kd``).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

HELP = "paper-style KD comparison table over seeds (JSON + Markdown in bench/results/kd)"

PROTOCOLS = ("cross-dataset", "within-night-blocks", "cross-derivation")
#: ``--quick``: defaults that make the whole table feasible on a 2-core CPU.
QUICK = {"pretrain_epochs": 3, "epochs": 3, "seq_len": 5, "patience": 1, "assembled_ratio": 0.5}


def add_common_arguments(parser: argparse.ArgumentParser, *, out_default: str) -> None:
    """Options shared by ``compare`` and ``ablate`` (plus the training options)."""
    from distill.commands.train import add_train_arguments

    parser.add_argument("--family", default="deepsleepnet", help="model family")
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (0..N-1)")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="cross-dataset")
    parser.add_argument(
        "--folds",
        type=int,
        default=5,
        help="blocks for within-night-blocks and cross-derivation (0 there = whole night)",
    )
    parser.add_argument("--fold", default="all", help="fold indices (comma) or 'all'")
    parser.add_argument("--mode", default="both", help="causal, offline or both")
    parser.add_argument("--out", type=Path, default=Path(out_default), help="results folder")
    parser.add_argument("--runs", type=Path, default=Path("runs/kd"), help="checkpoint folder")
    parser.add_argument("--fresh", action="store_true", help="retrain even if checkpoints exist")
    parser.add_argument(
        "--shard",
        type=parse_shard,
        default=None,
        metavar="I/N",
        help="train only the seeds s with s %% N == I (0 <= I < N): N processes sharing --runs "
        "and --out split the work; the tables count every shard's finished units; rerun "
        "without --shard at the end for the final table (everything is then cached)",
    )
    parser.add_argument(
        "--teacher", type=Path, default=None, help="use this trained teacher for every seed/fold"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="few epochs and short sequences (2+2 epochs, seq 5) unless given explicitly",
    )
    add_train_arguments(parser)
    parser.set_defaults(_parser=parser)  # lets command_line() spell out every option


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with ``0 <= I < N``; anything else is an argparse error."""
    i, slash, n = text.partition("/")
    try:
        shard = (int(i), int(n))
    except ValueError:
        shard = (-1, 0)
    if not slash or not 0 <= shard[0] < shard[1]:
        raise argparse.ArgumentTypeError(f"{text!r}: expected I/N with 0 <= I < N, e.g. 0/2")
    return shard


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--methods",
        default="all",
        help="comma list of NAME[:key=value;...] or 'all' (the 7 methods + sleepkd code preset)",
    )
    add_common_arguments(parser, out_default="bench/results/kd")


def apply_quick(args: argparse.Namespace) -> argparse.Namespace:
    """With ``--quick``, replace every training option still at its default by :data:`QUICK`."""
    if not getattr(args, "quick", False):
        return args
    from distill.commands.train import add_train_arguments

    ref = argparse.ArgumentParser()
    add_train_arguments(ref)
    defaults = vars(ref.parse_args([]))
    for key, value in QUICK.items():
        if getattr(args, key) == defaults[key]:
            setattr(args, key, value)
    return args


def parse_methods(text: str) -> list:
    """``all`` or a comma list; options use ``;`` between them (``sleepkd:preset=code;phi=linear``)."""
    from distill import methods
    from distill.distillation import MethodSpec

    if text.strip() == "all":
        return [MethodSpec.parse(n) for n in methods.names()] + [
            MethodSpec.parse("sleepkd:preset=code")
        ]
    return [MethodSpec.parse(t.replace(";", ",")) for t in text.split(",") if t.strip()]


# ----------------------------------------------------------------------------- protocol
@dataclass
class Setup:
    """Training recordings, folds and the test set of each fold for one protocol."""

    protocol: str
    recs: list
    hyps: list
    folds: list
    test_recs: list
    excerpt: int = 0  # cross-derivation: score held-out epochs as cold-start excerpts

    def test_of(self, fold) -> tuple[list, dict | None]:
        if self.protocol == "cross-dataset":
            return self.test_recs, None
        if self.protocol == "cross-derivation" and self.excerpt > 0:
            from distill.proxy import excerpts

            return excerpts(self.recs, fold.test, self.excerpt), None
        return self.recs, fold.test


def make_setup(args: argparse.Namespace, seq_len: int) -> Setup:
    """Load the data and build the folds of ``args.protocol`` (train on SC4001)."""
    from distill.commands.train import (
        default_data_dir,
        load_recordings,
        make_folds,
        make_split,
        pick_folds,
    )
    from distill.data import load_dreams_recordings

    recs, hyps = load_recordings(args, ("sc4001",))
    if args.protocol == "cross-dataset":
        folds = make_folds("full", recs, args.folds, seq_len, 0)
        root = args.data or default_data_dir()
        test = load_dreams_recordings(root / "dreams_spindles")
    elif args.protocol == "cross-derivation":  # SC4001 alone: never DREAMS
        recs, folds = make_split(args, "cross-derivation", recs, args.folds, seq_len)
        folds, test = pick_folds(folds, args.fold), []
    else:
        folds = pick_folds(
            make_folds("within-night-blocks", recs, args.folds, seq_len, 0), args.fold
        )
        test = []
    return Setup(args.protocol, recs, hyps, folds, test, getattr(args, "proxy_excerpt", 0))


def score(
    model, setup: Setup, fold, seq: int, modes, normalisation: dict | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Reference and predicted stages per mode on the fold's test epochs (each test
    recording normalised from its own start when ``normalisation`` says so)."""
    from distill.evaluate import score_fold, torch_predictor

    recs, test = setup.test_of(fold)
    return score_fold(torch_predictor(model), recs, test, seq, modes, normalisation)


# ---------------------------------------------------------------------------- experiment
HEAD = ("accuracy", "macro_f1", "kappa")
SCRATCH = "student (from scratch)"
#: References of the paired per-seed differences (when the table has them).
REFERENCES = (SCRATCH, "kd")


def config_tag(cfg, teacher: Path | None = None) -> str:
    """Short hash of the training settings (seed excluded) and of a given teacher file.

    Settings added later (:attr:`TrainConfig.NEW_DEFAULTS`) count only when changed, so
    runs made before they existed keep their tag.
    """
    import hashlib

    d = cfg.to_json()
    d.pop("seed", None)
    d.pop("model", None)
    for key, default in type(cfg).NEW_DEFAULTS.items():
        if d.get(key) == default:
            d.pop(key, None)
    if teacher is not None:
        d["teacher_sha1"] = hashlib.sha1(Path(teacher).read_bytes()).hexdigest()
    return "cfg-" + hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:8]


def _slug(label: str) -> str:
    from distill.runs import slug

    return slug(label)


def ta_source(rows: list[tuple[str, Any]], family: str) -> str | None:
    """Label of the row whose chain provides the TA row (``sleepkd`` first), or None."""
    from distill.distillation import family_models, uses_assistant

    if family_models(family)["ta"] is None:
        return None
    chains = [lab for lab, what in rows if what != "scratch" and uses_assistant(what)]
    return min(chains, key=lambda lab: not lab.startswith("sleepkd"), default=None)


def run_rows(
    rows: list[tuple[str, Any]],
    args: argparse.Namespace,
    *,
    title: str,
    stem: str,
    extra_rows: tuple[str, ...] = ("teacher", "ta"),
    setup: Setup | None = None,
    extra: dict[str, Any] | None = None,
    references: tuple[str, ...] = REFERENCES,
) -> dict[str, Any]:
    """Train and score every row for every seed and fold; write JSON + Markdown.

    ``setup`` (default: :func:`make_setup` of ``args.protocol``) gives the recordings,
    folds and test sets; ``extra`` is merged into the result JSON. ``references`` are the
    rows the paired per-seed differences are taken against (those the table has).

    ``rows`` are ``(label, MethodSpec | "scratch")``; the teacher row (and the TA of the
    first chain that trains one, ``sleepkd`` preferred) is added per ``extra_rows``.
    Resumable: each finished (row, seed, fold) is kept under the run folder
    (:class:`distill.runs.ScoreStore`) and skipped when the command runs again with the
    same settings; ``--fresh`` retrains and rescores everything. With ``--shard I/N`` this
    process trains only the seeds ``s % N == I``; the tables it writes count every finished
    unit in the run folder, whichever process trained it. A chain's checkpoints live
    under its method's :attr:`~distill.distillation.MethodSpec.key`, not the row label, so
    ``distill ablate``'s full row reuses ``compare``'s ``sleepkd``. The table and the paired
    per-seed differences (vs the from-scratch student and vs plain KD) are rewritten
    after every unit.
    """
    from distill.commandline import command_line
    from distill.commands.train import config_from_args, runtime_from_args
    from distill.distillation import family_models, load_teacher, n_params, run_chain, train_plain
    from distill.evaluate import PROTOCOL_LABELS, check_modes, machine
    from distill.kdtable import to_markdown, write
    from distill.runs import Eta, ScoreStore
    from distill.runtime import barrier, is_main

    t0 = time.perf_counter()
    args = apply_quick(args)
    rt = runtime_from_args(args)
    modes = check_modes(args.mode)
    names = family_models(args.family)
    base_cfg = config_from_args(args, names["student"])
    setup = setup or make_setup(args, base_cfg.seq_len)
    ta_from = ta_source(rows, args.family) if "ta" in extra_rows else None
    labels = ["teacher"] * ("teacher" in extra_rows) + [lab for lab, _ in rows]
    labels += ["TA"] * (ta_from is not None)
    specs = dict(rows)
    tag = config_tag(base_cfg, args.teacher)  # checkpoints of other settings are never reused
    root = args.runs / args.family / args.protocol / tag
    store = ScoreStore(root)
    seeds = list(range(args.seeds))
    shard = getattr(args, "shard", None)
    mine = [s for s in seeds if shard is None or s % shard[1] == shard[0]]
    fold_names = [f.name for f in setup.folds]
    result: dict[str, Any] = {
        "title": title,
        "family": args.family,
        "protocol": args.protocol,
        "protocol_label": PROTOCOL_LABELS[args.protocol],
        "folds": fold_names,
        "modes": list(modes),
        "quick": bool(args.quick),
        "teacher_checkpoint": str(args.teacher) if args.teacher else None,
        "config": base_cfg.to_json(),
        "command": command_line(args),
        "machine": machine(),
        "runs": str(root),
        "references": [ref for ref in references if ref in labels],
        **({"ta_from": ta_from} if ta_from else {}),
        **(extra or {}),
    }
    eta = Eta(total=len(mine) * len(fold_names) * len(labels))
    for seed in mine:
        cfg = replace(base_cfg, seed=seed)
        for fold in setup.folds:
            base = root / f"seed{seed}" / fold.name
            kw = dict(stage_sequences=setup.hyps, progress=not args.no_progress,
                      extra_meta={"command": result["command"]}, runtime=rt)  # fmt: skip
            memo: dict[str, Any] = {}

            def teacher(cfg=cfg, fold=fold, base=base, kw=kw, memo=memo):
                if "teacher" not in memo:
                    if args.teacher is not None:
                        memo["teacher"] = load_teacher(args.teacher)
                    else:
                        memo["teacher"], _ = train_plain(
                            replace(cfg, model=names["teacher"]), setup.recs, fold,
                            out_dir=base / "teacher", reuse=not args.fresh,
                            resume=not args.fresh, **kw,
                        )  # fmt: skip
                return memo["teacher"]

            def chain(label, cfg=cfg, fold=fold, base=base, kw=kw, memo=memo):
                if ("chain", label) not in memo:
                    memo[("chain", label)] = run_chain(
                        specs[label], args.family, cfg, setup.recs, fold,
                        out_dir=base / _slug(specs[label].key), teacher=teacher(),
                        reuse=not args.fresh, resume=not args.fresh, **kw,
                    )  # fmt: skip
                return memo[("chain", label)]

            for lab in labels:
                if not args.fresh and store.load(lab, seed, fold.name, modes) is not None:
                    eta.finished(None, cached=True)
                    continue
                t1 = time.perf_counter()
                if lab == "teacher":
                    model = teacher()
                elif lab == "TA":
                    model = chain(ta_from).ta
                elif specs[lab] == "scratch":
                    model, _ = train_plain(cfg, setup.recs, fold, out_dir=base / "scratch",
                                           reuse=not args.fresh, resume=not args.fresh,
                                           **kw)  # fmt: skip
                else:
                    model = chain(lab).student
                wall = time.perf_counter() - t1
                if is_main():  # rank 0 scores and writes; the others wait for it
                    scored = score(model, setup, fold, cfg.seq_len, modes, cfg.normalise)
                    wall = time.perf_counter() - t1
                    store.save(lab, seed, fold.name, scored, n_params=n_params(model),
                               wall_s=wall)  # fmt: skip
                    _update(result, store, labels, seeds, fold_names, modes, t0)
                    write(result, args.out, stem)
                eta.finished(wall, cached=False)
                if is_main():
                    print(json.dumps({"row": lab, "seed": seed, "fold": fold.name,
                                      "wall_s": round(wall, 1), "progress": eta.line()}),
                          flush=True)  # fmt: skip
                barrier()
    if is_main():
        _update(result, store, labels, seeds, fold_names, modes, t0)
        write(result, args.out, stem)
        print(to_markdown(result))
    return result


def _update(result, store, labels, seeds, folds, modes, t0) -> None:
    """Rebuild the rows and paired differences from every finished unit."""
    from distill.runs import paired_differences, table_rows

    rows = table_rows(store, labels, seeds, folds, modes)
    result["rows"] = rows
    result["paired"] = {ref: paired_differences(rows, ref, modes) for ref in result["references"]}
    done = [min((r["modes"].get(m, {}).get("n_seeds", 0) for r in rows), default=0)
            for m in modes]  # fmt: skip
    result["seeds_done"] = min(done) if done else 0
    if result.get("protocol") == "cross-derivation":  # the proxy's selection score
        from distill.runs import grouped_score

        groups: dict[str, list[str]] = {}
        for f in folds:
            groups.setdefault(f.split("-block")[0], []).append(f)
        result["proxy_score"] = {
            lab: {m: grouped_score(store, lab, seeds, groups, m) for m in modes} for lab in labels
        }
    result["wall_s"] = time.perf_counter() - t0  # this invocation
    result["units_wall_s"] = sum(float(u.get("wall_s") or 0.0) for u in store.units.values())


def run(args: argparse.Namespace) -> int:
    specs = parse_methods(args.methods)
    rows: list[tuple[str, Any]] = [("student (from scratch)", "scratch")]
    rows += [(s.label, s) for s in specs]
    stem = f"compare-{args.family}-{args.protocol}" + ("-quick" if args.quick else "")
    run_rows(rows, args, title="KD comparison", stem=stem)
    return 0
