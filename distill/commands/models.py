"""``distill models``: list the registered stagers and their parameter counts."""

from __future__ import annotations

import argparse
import json

HELP = "list the model zoo (name, family, role, parameter count)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON list of objects")
    parser.add_argument("--family", default=None, help="only this family (e.g. deepsleepnet)")


def rows(family: str | None = None) -> list[dict]:
    """One dict per model: name, family, role, n_params, n_trainable, paper_params, dims."""
    import torch

    from distill.models import MODEL_SPECS, build, count_params

    out = []
    with torch.device("meta"):  # shapes only: no memory, no init cost
        for name, spec in MODEL_SPECS.items():
            if family and spec.family != family:
                continue
            model = build(name)
            counts = count_params(model)
            out.append(
                {
                    "name": name,
                    "family": spec.family,
                    "role": spec.role,
                    "n_params": counts["n_params"],
                    "n_trainable": counts["n_trainable"],
                    "paper_params": spec.paper_params,
                    "epoch_dim": model.epoch_dim,
                    "sequence_dim": model.sequence_dim,
                    "seq_len": model.seq_len,
                }
            )
    return out


def run(args: argparse.Namespace) -> int:
    from sleepstream.errors import UsageError

    table = rows(args.family)
    if args.family and not table:
        raise UsageError(f"distill models: no model in family {args.family!r}")
    if args.json:
        print(json.dumps(table, indent=2))
        return 0
    print("n_params = trainable + BatchNorm moving statistics (Keras style, as the papers count)")
    print(f"{'name':<24}{'family':<14}{'role':<9}{'n_params':>11}{'trainable':>11}{'paper':>11}")
    for r in table:
        paper = f"{r['paper_params']:,}" if r["paper_params"] else "-"
        print(
            f"{r['name']:<24}{r['family']:<14}{r['role']:<9}"
            f"{r['n_params']:>11,}{r['n_trainable']:>11,}{paper:>11}"
        )
    return 0
