"""Export a trained stager to a single-file ONNX graph plus its model card.

The ONNX contract (read by :mod:`sleepstream.inference`): input ``eeg`` float32
``(batch, seq, 1, 3000)`` raw EEG in µV at 100 Hz, output ``logits`` ``(batch, seq, 5)``;
batch (and, where the exporter allows, seq) are dynamic. In causal streaming use the
scored epoch is the LAST position of the window.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import warnings
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distill.models import build, count_params
from sleepstream.errors import ModelError
from sleepstream.inference.card import (
    CARD_FORMAT,
    INPUT_NAME,
    OUTPUT_NAME,
    card_path_for,
    parse_card,
)
from sleepstream.types import EPOCH_SAMPLES, MODEL_FS, STAGE_NAMES

#: ONNX opset used by the exporter.
OPSET: int = 18
#: Default channel expectation written into cards.
DEFAULT_CHANNELS: str = (
    "one frontal/central EEG derivation (trained on Sleep-EDF Fpz-Cz / Pz-Oz), "
    "re-referenced bipolar, band-limited 0.3-35 Hz is fine, resampled to 100 Hz"
)


class LogitsOnly(nn.Module):
    """Wrap a stager so the graph has one input ``eeg`` and one output ``logits``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, eeg: torch.Tensor) -> torch.Tensor:
        return self.model(eeg)["logits"]


#: Exporters :func:`export_student` knows, in the order ``"auto"`` tries them.
EXPORTERS: tuple[str, ...] = ("legacy", "dynamo")


def _onnx_bytes(model: nn.Module, seq_len: int, exporter: str = "auto") -> tuple[bytes, str, bool]:
    """Export to ONNX bytes; returns ``(bytes, exporter description, seq_dynamic)``.

    ``"auto"`` tries the TorchScript ("legacy") exporter with dynamic batch and seq first,
    then the dynamo exporter (dynamic batch and seq, then dynamic batch only). Each result
    must pass the ONNX Runtime parity check before it is accepted. Why legacy first: with
    torch 2.13 the dynamo exporter takes 15-50 s per model on 2 cores (legacy ~1 s) and,
    in a process that already exported another model, it was seen to silently specialise
    the LSTM's sequence length; the parity check over several seq lengths catches that.
    """
    import tempfile

    if exporter not in ("auto", *EXPORTERS):
        raise ValueError(f"exporter {exporter!r}; valid: auto, {', '.join(EXPORTERS)}")
    wrapped = LogitsOnly(model).eval()
    errors: list[str] = []
    batch = torch.export.Dim("batch", min=1, max=4096)
    seq = torch.export.Dim("seq", min=1, max=4096)
    attempts: list[tuple[str, bool]] = []
    if exporter in ("auto", "legacy"):
        attempts.append(("legacy", True))
    if exporter in ("auto", "dynamo"):
        attempts += [("dynamo", True), ("dynamo", False)]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "m.onnx"
        for kind, seq_dyn in attempts:
            x = torch.randn(2, max(seq_len, 2) if seq_dyn else seq_len, 1, EPOCH_SAMPLES) * 20.0
            try:
                sink = io.StringIO()
                with (
                    warnings.catch_warnings(),
                    contextlib.redirect_stdout(sink),
                    contextlib.redirect_stderr(sink),
                ):
                    warnings.simplefilter("ignore")
                    if kind == "dynamo":
                        dims = {0: batch, 1: seq} if seq_dyn else {0: batch}
                        torch.onnx.export(
                            wrapped,
                            (x,),
                            str(out),
                            dynamo=True,
                            external_data=False,
                            verbose=False,
                            input_names=[INPUT_NAME],
                            output_names=[OUTPUT_NAME],
                            dynamic_shapes={"eeg": dims},
                            opset_version=OPSET,
                            optimize=True,
                        )
                    else:
                        axes = {0: "batch", 1: "seq"}
                        torch.onnx.export(
                            wrapped,
                            (x,),
                            str(out),
                            dynamo=False,
                            verbose=False,
                            input_names=[INPUT_NAME],
                            output_names=[OUTPUT_NAME],
                            dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes},
                            opset_version=OPSET,
                        )
                _fix_output_dims(out)
                _check_onnx(out, wrapped, seq_len, seq_dyn)
                return out.read_bytes(), f"torch {torch.__version__} {kind}", seq_dyn
            except Exception as exc:  # try the next exporter; report all failures at the end
                errors.append(f"{kind}(seq_dynamic={seq_dyn}): {type(exc).__name__}: {exc}"[:500])
    raise ModelError("ONNX export failed: " + " | ".join(errors))


def _fix_output_dims(path: Path) -> None:
    """Give ``logits`` the input's symbolic batch/seq dims (the exporter may fix seq)."""
    import onnx

    m = onnx.load(str(path))
    in_dims = m.graph.input[0].type.tensor_type.shape.dim
    for out in m.graph.output:
        if out.name != OUTPUT_NAME:
            continue
        dims = out.type.tensor_type.shape.dim
        for i in (0, 1):
            if in_dims[i].HasField("dim_param"):
                dims[i].dim_param = in_dims[i].dim_param
            else:
                dims[i].dim_value = in_dims[i].dim_value
    for vi in list(m.graph.value_info):  # stale intermediate shapes would only warn
        m.graph.value_info.remove(vi)
    onnx.save(m, str(path))


def _check_onnx(path: Path, wrapped: nn.Module, seq_len: int, seq_dyn: bool) -> float:
    """Run the file with ONNX Runtime against torch; return max |Δ logits|."""
    import numpy as np
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(0)
    worst = 0.0
    seqs = sorted({seq_len, 1, seq_len + 3}) if seq_dyn else [seq_len]
    for b in (1, 3):
        for s in seqs:
            x = torch.randn(b, s, 1, EPOCH_SAMPLES, generator=gen) * 30.0
            with torch.no_grad():
                ref = wrapped(x).numpy()
            got = sess.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
            worst = max(worst, float(np.abs(ref - got).max()))
    if not worst < 1e-4:
        raise ModelError(
            f"{path}: ONNX Runtime / torch parity failed, max |Δ logits| = {worst:.3g}"
        )
    return worst


def export_student(
    model: nn.Module,
    out_path: Path | str,
    *,
    seq_len: int,
    card_fields: Mapping[str, Any] | None = None,
    exporter: str = "auto",
) -> Path:
    """Write ``<stem>.onnx`` (single file) and ``<stem>.card.json``.

    Parameters
    ----------
    model : Stager
        A :func:`distill.models.build` model (any role; put in eval mode here).
    out_path : Path
        Target ``.onnx`` path; parents are created.
    seq_len : int
        Context length in epochs written into the card (the daemon's window length).
    card_fields : mapping, optional
        Extra card content, e.g. ``training`` (data, protocol, seed, wall time),
        ``metrics`` (per protocol and mode), ``rebuild_command`` (str), ``channels``
        (channel expectation text). Unknown keys are stored as given.
    exporter : {"auto", "legacy", "dynamo"}
        ONNX exporter; ``"auto"`` tries legacy (TorchScript) then dynamo, see
        :func:`_onnx_bytes`. The card records which one produced the file.

    Returns
    -------
    Path
        The ONNX file. Parity with torch (max |Δ logits| < 1e-4) is checked before writing.
    """
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    out_path = Path(out_path)
    if out_path.suffix != ".onnx":
        raise ValueError(f"out_path must end in .onnx, got {out_path}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    try:
        data, used, seq_dyn = _onnx_bytes(model, seq_len, exporter)
    finally:
        model.train(was_training)
    out_path.write_bytes(data)
    fields = dict(card_fields or {})
    sha = hashlib.sha256(data).hexdigest()
    name = getattr(model, "model_name", type(model).__name__)
    counts = count_params(model)
    card = {
        "format": CARD_FORMAT,
        "model_id": f"{name}-{sha[:12]}",
        "architecture": name,
        "family": getattr(model, "family", "unknown"),
        "role": getattr(model, "role", "unknown"),
        "n_params": counts["n_params"],
        "n_trainable": counts["n_trainable"],
        "param_count_convention": "n_params = trainable + BatchNorm moving mean/var (Keras style)",
        "epoch_dim": int(getattr(model, "epoch_dim", 0)),
        "sequence_dim": int(getattr(model, "sequence_dim", 0)),
        "onnx": {
            "file": out_path.name,
            "size_bytes": len(data),
            "sha256": sha,
            "opset": OPSET,
            "input": INPUT_NAME,
            "output": OUTPUT_NAME,
            "exporter": used,
        },
        "input_contract": {
            "fs_hz": MODEL_FS,
            "units": "uV",
            "epoch_samples": EPOCH_SAMPLES,
            "n_channels": 1,
            "shape": ["batch", "seq", 1, EPOCH_SAMPLES],
            "seq_len": int(seq_len),
            "seq_dynamic": seq_dyn,
            "causal": True,
            "scored_position": "last",
            "stages": list(STAGE_NAMES),
            "normalisation": repr(getattr(model, "norm", "none")),
            "channels": fields.pop("channels", DEFAULT_CHANNELS),
        },
        "training": fields.pop("training", {}),
        "metrics": fields.pop("metrics", {}),
        "rebuild_command": fields.pop("rebuild_command", ""),
        "created_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **fields,
    }
    card_path = card_path_for(out_path)
    parse_card(card, card_path)  # the daemon's validator must accept what we write
    card_path.write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return out_path


def export_tiny_student(tmp_dir: Path | str, seed: int = 0, *, train_steps: int = 3) -> Path:
    """Build, briefly train and export ``tiny-student``: a small real model for tests.

    Parameters
    ----------
    tmp_dir : Path
        Folder for ``tiny-student.onnx`` and its card.
    seed : int
        Seed of weights and of the random training data (deterministic output).
    train_steps : int
        SGD steps on random µV noise with random labels (moves BN statistics and weights
        off their initial values; the model is NOT a useful stager).

    Returns
    -------
    Path
        The ONNX file (a few tens of kB; export takes a few seconds on one core).
    """
    torch.manual_seed(seed)
    model = build("tiny-student")
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    model.train()
    for _ in range(train_steps):
        x = torch.randn(4, model.seq_len, 1, EPOCH_SAMPLES, generator=gen) * 30.0
        y = torch.randint(0, len(STAGE_NAMES), (4, model.seq_len), generator=gen)
        loss = nn.functional.cross_entropy(
            model(x)["logits"].reshape(-1, len(STAGE_NAMES)), y.reshape(-1)
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return export_student(
        model,
        Path(tmp_dir) / "tiny-student.onnx",
        seq_len=model.seq_len,
        card_fields={
            "training": {"data": "random noise (test fixture)", "steps": train_steps, "seed": seed},
            "rebuild_command": f"python -c 'from distill.export import export_tiny_student; "
            f'export_tiny_student("DIR", seed={seed}, train_steps={train_steps})\'',
        },
    )
