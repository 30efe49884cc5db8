"""``distill compare``: the paper-style KD table (accuracy, macro-F1, kappa; mean ± sd).

Rows: the student trained from scratch, each method's student, the teacher and the TA
(the one ``sleepkd`` trains). Every row is trained per seed (and per fold under
``within-night-blocks``), evaluated in causal and offline mode, and summarised as mean ±
sd over seeds. Writes ``<out>/<stem>.json`` and ``<stem>.md`` (default ``bench/results/kd``).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

HELP = "paper-style KD comparison table over seeds (JSON + Markdown in bench/results/kd)"

PROTOCOLS = ("cross-dataset", "within-night-blocks")
#: ``--quick``: defaults that make the whole table feasible on a 2-core CPU.
QUICK = {"pretrain_epochs": 3, "epochs": 3, "seq_len": 5, "patience": 1, "assembled_ratio": 0.5}


def add_common_arguments(parser: argparse.ArgumentParser, *, out_default: str) -> None:
    """Options shared by ``compare`` and ``ablate`` (plus the training options)."""
    from distill.commands.train import add_train_arguments

    parser.add_argument("--family", default="deepsleepnet", help="model family")
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (0..N-1)")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="cross-dataset")
    parser.add_argument("--folds", type=int, default=5, help="blocks for within-night-blocks")
    parser.add_argument("--fold", default="all", help="fold indices (comma) or 'all'")
    parser.add_argument("--mode", default="both", help="causal, offline or both")
    parser.add_argument("--out", type=Path, default=Path(out_default), help="results folder")
    parser.add_argument("--runs", type=Path, default=Path("runs/kd"), help="checkpoint folder")
    parser.add_argument("--fresh", action="store_true", help="retrain even if checkpoints exist")
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

    def test_of(self, fold) -> tuple[list, dict | None]:
        if self.protocol == "cross-dataset":
            return self.test_recs, None
        return self.recs, fold.test


def make_setup(args: argparse.Namespace, seq_len: int) -> Setup:
    """Load the data and build the folds of ``args.protocol`` (train on SC4001)."""
    from distill.commands.train import default_data_dir, load_recordings, make_folds, pick_folds
    from distill.data import load_dreams_recordings

    recs, hyps = load_recordings(args, ("sc4001",))
    if args.protocol == "cross-dataset":
        folds = make_folds("full", recs, args.folds, seq_len, 0)
        root = args.data or default_data_dir()
        test = load_dreams_recordings(root / "dreams_spindles")
    else:
        folds = pick_folds(
            make_folds("within-night-blocks", recs, args.folds, seq_len, 0), args.fold
        )
        test = []
    return Setup(args.protocol, recs, hyps, folds, test)


def score(model, setup: Setup, fold, seq: int, modes) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Reference and predicted stages per mode on the fold's test epochs."""
    from distill.evaluate import score_fold, torch_predictor

    recs, test = setup.test_of(fold)
    return score_fold(torch_predictor(model), recs, test, seq, modes)


# ---------------------------------------------------------------------------- experiment
HEAD = ("accuracy", "macro_f1", "kappa")


def config_tag(cfg, teacher: Path | None = None) -> str:
    """Short hash of the training settings (seed excluded) and of a given teacher file."""
    import hashlib

    d = cfg.to_json()
    d.pop("seed", None)
    d.pop("model", None)
    if teacher is not None:
        d["teacher_sha1"] = hashlib.sha1(Path(teacher).read_bytes()).hexdigest()
    return "cfg-" + hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:8]


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", label)


def run_rows(
    rows: list[tuple[str, Any]],
    args: argparse.Namespace,
    *,
    title: str,
    stem: str,
    extra_rows: tuple[str, ...] = ("teacher", "ta"),
) -> dict[str, Any]:
    """Train and score every row for every seed and fold; write JSON + Markdown.

    ``rows`` are ``(label, MethodSpec | "scratch")``; the teacher row (and the TA of the
    first chain that trains one) is added per ``extra_rows``.
    """
    from distill.commands.train import command_line, config_from_args
    from distill.distillation import (
        family_models,
        load_teacher,
        n_params,
        run_chain,
        train_plain,
    )
    from distill.evaluate import PROTOCOL_LABELS, check_modes, machine

    t0 = time.perf_counter()
    args = apply_quick(args)
    modes = check_modes(args.mode)
    names = family_models(args.family)
    base_cfg = config_from_args(args, names["student"])
    setup = make_setup(args, base_cfg.seq_len)
    labels = ["teacher"] * ("teacher" in extra_rows) + [lab for lab, _ in rows]
    labels += ["TA"] * ("ta" in extra_rows)
    per_seed: dict[str, dict[str, list]] = {lab: {m: [] for m in modes} for lab in labels}
    params: dict[str, int] = {}
    result: dict[str, Any] = {
        "title": title,
        "family": args.family,
        "protocol": args.protocol,
        "protocol_label": PROTOCOL_LABELS[args.protocol],
        "folds": [f.name for f in setup.folds],
        "modes": list(modes),
        "quick": bool(args.quick),
        "teacher_checkpoint": str(args.teacher) if args.teacher else None,
        "config": base_cfg.to_json(),
        "command": command_line(args),
        "machine": machine(),
    }
    tag = config_tag(base_cfg, args.teacher)  # checkpoints of other settings are never reused
    result["runs"] = str(args.runs / args.family / args.protocol / tag)
    for seed in range(args.seeds):
        cfg = replace(base_cfg, seed=seed)
        pooled: dict[str, dict[str, list]] = {lab: {m: [] for m in modes} for lab in labels}
        for fold in setup.folds:
            base = args.runs / args.family / args.protocol / tag / f"seed{seed}" / fold.name
            kw = dict(stage_sequences=setup.hyps, progress=not args.no_progress,
                      extra_meta={"command": result["command"]})  # fmt: skip
            if args.teacher is not None:
                teacher = load_teacher(args.teacher)
            else:
                teacher, _ = train_plain(replace(cfg, model=names["teacher"]), setup.recs, fold,
                                         out_dir=base / "teacher", reuse=not args.fresh, **kw)  # fmt: skip
            found: dict[str, Any] = {"teacher": teacher}
            tas: list[tuple[str, Any]] = []
            for label, what in rows:
                if what == "scratch":
                    model, _ = train_plain(cfg, setup.recs, fold, out_dir=base / "scratch",
                                           reuse=not args.fresh, **kw)  # fmt: skip
                else:
                    chain = run_chain(what, args.family, cfg, setup.recs, fold,
                                      out_dir=base / _slug(what.label), teacher=teacher,
                                      reuse=not args.fresh, **kw)  # fmt: skip
                    model = chain.student
                    if chain.ta is not None:
                        tas.append((what.label, chain.ta))
                found[label] = model
            if tas and "ta" in extra_rows:  # the TA row: sleepkd's TA when there is one
                src, found["TA"] = min(tas, key=lambda t: not t[0].startswith("sleepkd"))
                result["ta_from"] = src
            for lab in labels:
                if lab not in found:
                    continue
                params[lab] = n_params(found[lab])
                for mode, (yt, yp) in score(found[lab], setup, fold, cfg.seq_len, modes).items():
                    pooled[lab][mode].append((yt, yp))
        for lab in labels:
            for mode in modes:
                if pooled[lab][mode]:
                    yt = np.concatenate([a for a, _ in pooled[lab][mode]])
                    yp = np.concatenate([b for _, b in pooled[lab][mode]])
                    per_seed[lab][mode].append(_figures(yt, yp))
        result["rows"] = _rows(labels, per_seed, params, modes)
        result["seeds_done"] = seed + 1
        result["wall_s"] = time.perf_counter() - t0
        write(result, args.out, stem)
        print(json.dumps({"seed": seed, "wall_s": round(result["wall_s"], 1)}), flush=True)
    print(to_markdown(result))
    return result


def _figures(yt: np.ndarray, yp: np.ndarray) -> dict[str, Any]:
    from sleepstream.scoring import agreement

    m = agreement(yt, yp)
    return {k: m[k] for k in (*HEAD, "n_epochs", "per_stage_f1")}


def _rows(labels, per_seed, params, modes) -> list[dict[str, Any]]:
    out = []
    for lab in labels:
        row: dict[str, Any] = {"label": lab, "n_params": params.get(lab), "modes": {}}
        for mode in modes:
            runs = per_seed[lab][mode]
            if not runs:
                continue
            arr = {k: np.array([r[k] for r in runs], float) for k in HEAD}
            row["modes"][mode] = {
                "per_seed": runs,
                "mean": {k: float(v.mean()) for k, v in arr.items()},
                "sd": {k: float(v.std(ddof=1)) if v.size > 1 else 0.0 for k, v in arr.items()},
                "n_seeds": len(runs),
            }
        out.append(row)
    return out


def to_markdown(result: dict[str, Any]) -> str:
    """One table per mode: accuracy / macro-F1 (%) and kappa, mean ± sd over seeds."""
    lines = [f"## {result['title']} — {result['family']}", "",
             f"- protocol: {result['protocol_label']}",
             *([f"- TA row: the assistant trained by `{result['ta_from']}`"]
               if "ta_from" in result else []),
             f"- seeds: {result.get('seeds_done', 0)}; folds: {', '.join(result['folds'])}"
             + ("; **quick** settings (few epochs, short sequences)" if result["quick"] else ""),
             f"- command: `{result['command']}`",
             f"- wall time: {result.get('wall_s', 0):.0f} s on {result['machine']['cpu_count']}"
             f" CPU cores ({result['machine']['processor']})", ""]  # fmt: skip
    for mode in result["modes"]:
        lines += [f"### {mode}", "", "| model | params | accuracy % | macro-F1 % | kappa |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for row in result.get("rows", []):
            r = row["modes"].get(mode)
            if r is None:
                continue
            mu, sd = r["mean"], r["sd"]
            p = f"{row['n_params']:,}" if row["n_params"] else "—"
            lines.append(
                f"| {row['label']} | {p} | {100 * mu['accuracy']:.2f} ± {100 * sd['accuracy']:.2f}"
                f" | {100 * mu['macro_f1']:.2f} ± {100 * sd['macro_f1']:.2f}"
                f" | {mu['kappa']:.3f} ± {sd['kappa']:.3f} |"
            )
        lines.append("")
    return "\n".join(lines)


def write(result: dict[str, Any], out: Path, stem: str) -> tuple[Path, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    js, md = out / f"{stem}.json", out / f"{stem}.md"
    js.write_text(json.dumps(result, indent=1) + "\n")
    md.write_text(to_markdown(result) + "\n")
    return js, md


def run(args: argparse.Namespace) -> int:
    specs = parse_methods(args.methods)
    rows: list[tuple[str, Any]] = [("student (from scratch)", "scratch")]
    rows += [(s.label, s) for s in specs]
    stem = f"compare-{args.family}-{args.protocol}" + ("-quick" if args.quick else "")
    run_rows(rows, args, title="KD comparison", stem=stem)
    return 0
