"""``distill export``: trained checkpoint -> ONNX graph(s) + model card (format 2).

Example::

    distill export --checkpoint runs/student/best.safetensors --out models/student.onnx \\
        --metrics runs/student/eval.json

Splittable families (DeepSleepNet, transformer) are written as an epoch encoder
(``student.encoder.onnx``) and a sequence head (``student.head.onnx``) by default
(``--mode auto``); SalientSleepNet, or ``--mode window``, as one window graph
(``student.onnx``). The card is ``student.card.json`` either way and is what
``sleepstream run --model`` takes (``student.onnx`` also names it).

The checkpoint is a safetensors state dict; its JSON sidecar (written by
``distill train``) names the model and its build arguments, and (when present) the
input normalisation (``normalisation``: ``NormalisationSpec.to_card()``), the training
recordings (``recordings``: name, sha256, channels) and how missing past epochs were
presented in training (``history_pad``: ``zero_epoch`` or ``truncate``); all three go
into the card. A bare safetensors file without sidecar needs ``--model``.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

HELP = "export a trained checkpoint to ONNX (+ model card) for the daemon"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, type=Path, help="weights (.safetensors)")
    parser.add_argument("--out", required=True, type=Path, help="output .onnx path")
    parser.add_argument("--model", default=None, help="model name (default: from the sidecar)")
    parser.add_argument(
        "--seq-len", type=int, default=None, help="context epochs (default: sidecar, else model)"
    )
    parser.add_argument(
        "--metrics", type=Path, default=None, help="JSON file of evaluation metrics for the card"
    )
    parser.add_argument(
        "--channels", default=None, help="channel expectation text written into the card"
    )
    parser.add_argument(
        "--exporter",
        choices=("auto", "legacy", "dynamo"),
        default="auto",
        help="ONNX exporter (auto: TorchScript, then dynamo; parity is checked either way)",
    )
    parser.add_argument(
        "--mode",
        choices=("auto", "window", "split"),
        default="auto",
        help="auto: split (encoder + head graphs) when the family is splittable, else window",
    )
    parser.add_argument(
        "--train-command", default=None, help="the command that trained the checkpoint (card)"
    )
    parser.add_argument(
        "--description", default=None, help="plain-text account of the training (card)"
    )


def _load(args: argparse.Namespace):
    import torch  # noqa: F401  (heavy; only this command needs it)

    from distill.checkpoint import load_weights, read_sidecar, sidecar_path
    from distill.models import build
    from sleepstream.errors import ModelError, UsageError

    meta: dict = {}
    if sidecar_path(args.checkpoint).is_file():
        meta = read_sidecar(args.checkpoint)
    name = args.model or meta.get("model")
    if not name:
        raise UsageError(f"{args.checkpoint}: no sidecar names the model; pass --model")
    if args.model and meta.get("model") and args.model != meta["model"]:
        raise UsageError(f"--model {args.model!r} but the checkpoint holds {meta['model']!r}")
    try:
        model = build(name, **meta.get("model_kwargs", {}))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not args.checkpoint.is_file():
        raise ModelError(f"{args.checkpoint}: checkpoint not found")
    load_weights(args.checkpoint, model)
    return model.eval(), meta


def run(args: argparse.Namespace) -> int:
    from distill.export import export_student
    from sleepstream.errors import DataFileError, UsageError
    from sleepstream.inference.card import card_path_for

    if args.out.suffix != ".onnx":
        raise UsageError(f"--out must end in .onnx, got {args.out}")
    model, meta = _load(args)
    seq_len = args.seq_len or meta.get("seq_len") or model.seq_len
    if seq_len < 1:
        raise UsageError(f"--seq-len must be >= 1, got {seq_len}")
    metrics: dict = {}
    if args.metrics is not None:
        try:
            metrics = json.loads(args.metrics.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DataFileError(f"{args.metrics}: cannot read metrics JSON ({exc})") from None
    cmd = ["distill", "export", "--checkpoint", str(args.checkpoint), "--out", str(args.out)]
    if args.model:
        cmd += ["--model", args.model]
    if args.seq_len:
        cmd += ["--seq-len", str(args.seq_len)]
    if args.metrics:
        cmd += ["--metrics", str(args.metrics)]
    if args.exporter != "auto":
        cmd += ["--exporter", args.exporter]
    if args.mode != "auto":
        cmd += ["--mode", args.mode]
    training = {
        k: meta[k]
        for k in (
            "datasets",
            "channels",
            "split",
            "config",
            "fold",
            "stage",
            "best_epoch",
            "best",
            "summary",
            "class_weights",
            "machine",
            "started_at",
        )  # fmt: skip
        if k in meta
    }
    if "recordings" in meta:
        training["recordings"] = meta["recordings"]
    training["checkpoint"] = str(args.checkpoint)
    if args.description:
        training["description"] = args.description
    train_cmd = args.train_command or meta.get("command")
    if train_cmd:
        training["command"] = train_cmd
    fields = {
        "training": training,
        "metrics": metrics,
        "rebuild_command": (f"{train_cmd} && " if train_cmd else "") + shlex.join(cmd),
    }
    if args.channels:
        fields["channels"] = args.channels
    elif meta.get("channels"):
        fields["channels"] = (
            "one bipolar EEG derivation like the training channels "
            f"({', '.join(map(str, meta['channels']))}), in µV, resampled to 100 Hz"
        )
    pad = meta.get("history_pad", "zero_epoch")
    try:
        export_student(
            model, args.out, seq_len=int(seq_len), card_fields=fields, exporter=args.exporter,
            mode=args.mode, normalisation=meta.get("normalisation"),
            pad=None if pad == "zero_epoch" else {"kind": pad},
        )  # fmt: skip
    except ValueError as exc:
        raise UsageError(f"{args.checkpoint}: {exc}") from None
    card_path = card_path_for(args.out)
    card = json.loads(card_path.read_text())
    graphs = (
        [card["onnx"]]
        if card["mode"] == "window"
        else [card["split"][k] for k in ("encoder", "head")]
    )
    files = ", ".join(
        f"{g['file']} ({g['size_bytes']:,} bytes, sha256 {g['sha256'][:12]})" for g in graphs
    )
    print(
        f"wrote {files} and {card_path.name}: {card['mode']} mode, {card['n_params']:,} params, "
        f"seq_len {seq_len}, normalisation {card['input_contract']['normalisation']['kind']}"
    )
    return 0
