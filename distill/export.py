"""Export a trained stager to ONNX (a window graph, or split encoder + head graphs) + card.

Two modes (the card's ``mode``, see :mod:`sleepstream.inference.card`):

- ``window``: one graph, input ``eeg`` float32 ``(batch, seq, 1, 3000)`` (model input:
  µV times the epoch's ``input_scale``, 100 Hz), output ``logits`` ``(batch, seq, 5)``;
  batch (and, where the exporter allows, seq) dynamic. Written to ``<stem>.onnx``.
- ``split`` (splittable families only): an epoch encoder ``eeg_epoch (N, 1, 3000) ->
  state (N, D)`` in ``<stem>.encoder.onnx`` and a sequence head ``states (B, S, D) ->
  logits (B, S, 5)`` in ``<stem>.head.onnx``. Before anything is written, the two ONNX
  Runtime graphs are composed and checked against the torch window model at seq 1,
  ``seq_len`` and ``seq_len + 3``, including padded starts (missing past epochs as the
  card's ``pad`` says, exactly as in training); the worst |Δ logits| goes into the card.

In causal streaming use the scored epoch is the LAST position of the window.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import tempfile
import warnings
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distill.models import build, count_params
from distill.parity import (
    check_encoder,
    check_head,
    check_window,
    split_parity,
)
from sleepstream.errors import ModelError
from sleepstream.inference.card import (
    CARD_FORMAT,
    ENCODER_IO,
    HEAD_IO,
    INPUT_NAME,
    OUTPUT_NAME,
    PAD_KINDS,
    ZERO_EPOCH_PAD,
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
#: Exporters :func:`export_student` knows, in the order ``"auto"`` tries them.
EXPORTERS: tuple[str, ...] = ("legacy", "dynamo")
#: Export modes; ``"auto"`` = split when the family is splittable, else window.
EXPORT_MODES: tuple[str, ...] = ("auto", "window", "split")


class LogitsOnly(nn.Module):
    """Wrap a stager so the graph has one input ``eeg`` and one output ``logits``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, eeg: torch.Tensor) -> torch.Tensor:
        return self.model(eeg)["logits"]


class EncoderGraph(nn.Module):
    """The split form's epoch encoder: ``eeg_epoch (N, 1, 3000) -> state (N, D)``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, eeg_epoch: torch.Tensor) -> torch.Tensor:
        return self.model.epoch_state(eeg_epoch)


class HeadGraph(nn.Module):
    """The split form's sequence head: ``states (B, S, D) -> logits (B, S, 5)``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.model.sequence_logits(states)


def _export_graph(
    module: nn.Module,
    example: Callable[[bool], torch.Tensor],
    io_names: tuple[str, str],
    axes: dict[int, str],
    check: Callable[[Path, bool], float],
    exporter: str,
) -> tuple[bytes, str, bool, float]:
    """Export ``module`` to ONNX bytes; returns ``(bytes, exporter, all_dynamic, parity)``.

    ``"auto"`` tries the TorchScript ("legacy") exporter with every axis of ``axes``
    dynamic first, then the dynamo exporter (all axes, then axis 0 only). Each result must
    pass ``check(path, all_dynamic)`` (ONNX Runtime against torch) before it is accepted.
    Why legacy first: with torch 2.13 the dynamo exporter takes 15-50 s per model on 2 cores
    (legacy ~1 s) and, in a process that already exported another model, it was seen to
    silently specialise the LSTM's sequence length; the parity checks catch that.
    """
    if exporter not in ("auto", *EXPORTERS):
        raise ValueError(f"exporter {exporter!r}; valid: auto, {', '.join(EXPORTERS)}")
    in_name, out_name = io_names
    attempts: list[tuple[str, bool]] = []
    if exporter in ("auto", "legacy"):
        attempts.append(("legacy", True))
    if exporter in ("auto", "dynamo"):
        attempts += [("dynamo", True)] + ([("dynamo", False)] if len(axes) > 1 else [])
    errors: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "m.onnx"
        for kind, all_dyn in attempts:
            use = axes if all_dyn else {0: axes[0]}
            x = example(all_dyn)
            try:
                sink = io.StringIO()
                with (
                    warnings.catch_warnings(),
                    contextlib.redirect_stdout(sink),
                    contextlib.redirect_stderr(sink),
                ):
                    warnings.simplefilter("ignore")
                    if kind == "dynamo":
                        dims = {i: torch.export.Dim(n, min=1, max=4096) for i, n in use.items()}
                        torch.onnx.export(
                            module, (x,), str(out), dynamo=True, external_data=False,
                            verbose=False, input_names=[in_name], output_names=[out_name],
                            dynamic_shapes={in_name: dims}, opset_version=OPSET, optimize=True,
                        )  # fmt: skip
                    else:
                        torch.onnx.export(
                            module, (x,), str(out), dynamo=False, verbose=False,
                            input_names=[in_name], output_names=[out_name],
                            dynamic_axes={in_name: use, out_name: use}, opset_version=OPSET,
                        )  # fmt: skip
                _fix_output_dims(out, out_name, tuple(use))
                parity = check(out, all_dyn)
                return out.read_bytes(), f"torch {torch.__version__} {kind}", all_dyn, parity
            except Exception as exc:  # try the next exporter; report all failures at the end
                errors.append(f"{kind}(all_dynamic={all_dyn}): {type(exc).__name__}: {exc}"[:500])
    raise ModelError("ONNX export failed: " + " | ".join(errors))


def _fix_output_dims(path: Path, out_name: str, axes: tuple[int, ...]) -> None:
    """Give the output the input's symbolic dims on ``axes`` (the exporter may fix them)."""
    import onnx

    m = onnx.load(str(path))
    in_dims = m.graph.input[0].type.tensor_type.shape.dim
    for out in m.graph.output:
        if out.name != out_name:
            continue
        dims = out.type.tensor_type.shape.dim
        for i in axes:
            if in_dims[i].HasField("dim_param"):
                dims[i].dim_param = in_dims[i].dim_param
            else:
                dims[i].dim_value = in_dims[i].dim_value
    for vi in list(m.graph.value_info):  # stale intermediate shapes would only warn
        m.graph.value_info.remove(vi)
    onnx.save(m, str(path))


def _resolve_mode(model: nn.Module, mode: str) -> str:
    if mode not in EXPORT_MODES:
        raise ValueError(f"mode {mode!r}; valid: {', '.join(EXPORT_MODES)}")
    splittable = bool(getattr(model, "splittable", False))
    if mode == "auto":
        return "split" if splittable else "window"
    if mode == "split" and not splittable:
        name = getattr(model, "model_name", type(model).__name__)
        raise ModelError(
            f"{name} is not splittable (its network spans the whole window); export --mode window"
        )
    return mode


def _file_entry(name: str, data: bytes, io_names: tuple[str, str], used: str) -> dict[str, Any]:
    return {
        "file": name,
        "size_bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "opset": OPSET,
        "input": io_names[0],
        "output": io_names[1],
        "exporter": used,
    }


def export_student(
    model: nn.Module,
    out_path: Path | str,
    *,
    seq_len: int,
    card_fields: Mapping[str, Any] | None = None,
    exporter: str = "auto",
    mode: str = "window",
    normalisation: Mapping[str, Any] | None = None,
    pad: Mapping[str, Any] | None = None,
) -> Path:
    """Write the ONNX graph(s) and ``<stem>.card.json`` (card format 2).

    Parameters
    ----------
    model : Stager
        A :func:`distill.models.build` model (any role; put in eval mode here).
    out_path : Path
        Target ``<stem>.onnx``; parents are created. Split mode writes
        ``<stem>.encoder.onnx`` and ``<stem>.head.onnx`` instead (and removes a stale
        ``<stem>.onnx``; window mode removes stale split files).
    seq_len : int
        Context length in epochs written into the card (the daemon's ring length).
    card_fields : mapping, optional
        Extra card content, e.g. ``training`` (data, protocol, seed, wall time,
        ``recordings``), ``metrics``, ``rebuild_command`` (str), ``channels``
        (channel expectation text). Unknown keys are stored as given.
    exporter : {"auto", "legacy", "dynamo"}
        ONNX exporter; the card records which one produced each file.
    mode : {"window", "split", "auto"}
        ``auto``: split when ``model.splittable``. ``split`` on a non-splittable family
        raises :class:`ModelError`.
    normalisation : mapping, optional
        ``NormalisationSpec.to_card()`` of the normalisation the model was trained with
        (default ``{"kind": "none"}``); an unknown kind is refused here already.
    pad : mapping, optional
        What a missing past epoch is in training (``{"kind": "zero_epoch" | "truncate",
        ...}``; default zero_epoch, what ``distill.data.gather_windows`` does).

    Returns
    -------
    Path
        The ONNX file (window mode) or the card (split mode). Parity with torch is checked
        before anything is written.
    """
    from sleepstream.dsp.normalise import NormalisationSpec

    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    out_path = Path(out_path)
    if out_path.suffix != ".onnx":
        raise ValueError(f"out_path must end in .onnx, got {out_path}")
    mode = _resolve_mode(model, mode)
    norm = dict(normalisation or {"kind": "none"})
    NormalisationSpec.from_card(norm)  # refuse what the daemon would refuse
    pad_doc = dict(pad or ZERO_EPOCH_PAD)
    if pad_doc.get("kind") not in PAD_KINDS:
        raise ValueError(f"pad kind {pad_doc.get('kind')!r}; valid: {', '.join(PAD_KINDS)}")
    if mode == "window" and pad_doc["kind"] == "truncate":
        raise ModelError("pad 'truncate' needs the split form (export --mode split)")
    was_training = model.training
    model.eval()
    try:
        files, section, seq_dyn = _export_files(model, out_path, seq_len, exporter, mode, pad_doc)
    finally:
        model.train(was_training)
    card = _card(model, out_path, seq_len, mode, section, seq_dyn, norm, card_fields or {})
    card_path = card_path_for(out_path)
    parse_card(card, card_path)  # the daemon's validator must accept what we write
    stem = out_path.name[: -len(".onnx")]
    stale = [f"{stem}.onnx"] if mode == "split" else [f"{stem}.encoder.onnx", f"{stem}.head.onnx"]
    for name in stale:
        (out_path.parent / name).unlink(missing_ok=True)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (out_path.parent / name).write_bytes(data)
    card_path.write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return out_path if mode == "window" else card_path


def _export_files(
    model: nn.Module, out_path: Path, seq_len: int, exporter: str, mode: str, pad: dict
) -> tuple[dict[str, bytes], dict[str, Any], bool]:
    """The graph bytes by file name, the card's ``onnx`` / ``split`` section, seq_dynamic."""
    stem = out_path.name[: -len(".onnx")]
    if mode == "window":

        def window_example(dyn: bool) -> torch.Tensor:
            return torch.randn(2, max(seq_len, 2) if dyn else seq_len, 1, EPOCH_SAMPLES) * 20.0

        data, used, dyn, _ = _export_graph(
            LogitsOnly(model).eval(), window_example, (INPUT_NAME, OUTPUT_NAME),
            {0: "batch", 1: "seq"}, check_window(model, seq_len), exporter,
        )  # fmt: skip
        section = _file_entry(out_path.name, data, (INPUT_NAME, OUTPUT_NAME), used)
        section["pad"] = pad
        return {out_path.name: data}, section, dyn

    def epoch_example(dyn: bool) -> torch.Tensor:
        return torch.randn(2, 1, EPOCH_SAMPLES) * 20.0

    def states_example(dyn: bool) -> torch.Tensor:
        s = max(seq_len, 2) if dyn else seq_len
        with torch.no_grad():
            return model.epoch_state(torch.randn(2 * s, 1, EPOCH_SAMPLES) * 20.0).reshape(2, s, -1)

    enc, enc_used, _, _ = _export_graph(
        EncoderGraph(model).eval(), epoch_example, ENCODER_IO, {0: "batch"}, check_encoder(model),
        exporter,
    )  # fmt: skip
    head, head_used, dyn, _ = _export_graph(
        HeadGraph(model).eval(), states_example, HEAD_IO, {0: "batch", 1: "seq"},
        check_head(model, seq_len), exporter,
    )  # fmt: skip
    if pad["kind"] == "truncate" and not dyn:
        raise ModelError("pad 'truncate' needs a head with a dynamic seq axis; export failed to")
    parity = split_parity(model, enc, head, seq_len, pad_kind=pad["kind"], seq_dynamic=dyn)
    names = {"encoder": f"{stem}.encoder.onnx", "head": f"{stem}.head.onnx"}
    section = {
        "encoder": _file_entry(names["encoder"], enc, ENCODER_IO, enc_used),
        "head": {**_file_entry(names["head"], head, HEAD_IO, head_used), "seq_dynamic": dyn},
        "state_dim": int(model.state_dim),
        "pad": pad,
        "parity": parity,
    }
    return {names["encoder"]: enc, names["head"]: head}, section, dyn


def _card(
    model: nn.Module,
    out_path: Path,
    seq_len: int,
    mode: str,
    section: dict[str, Any],
    seq_dyn: bool,
    normalisation: dict[str, Any],
    card_fields: Mapping[str, Any],
) -> dict[str, Any]:
    fields = dict(card_fields)
    name = getattr(model, "model_name", type(model).__name__)
    if mode == "window":
        sha = section["sha256"]
    else:
        both = section["encoder"]["sha256"] + section["head"]["sha256"]
        sha = hashlib.sha256(both.encode("ascii")).hexdigest()
    counts = count_params(model)
    return {
        "format": CARD_FORMAT,
        "mode": mode,
        "model_id": f"{name}-{sha[:12]}",
        "architecture": name,
        "family": getattr(model, "family", "unknown"),
        "role": getattr(model, "role", "unknown"),
        "n_params": counts["n_params"],
        "n_trainable": counts["n_trainable"],
        "param_count_convention": "n_params = trainable + BatchNorm moving mean/var (Keras style)",
        "epoch_dim": int(getattr(model, "epoch_dim", 0)),
        "sequence_dim": int(getattr(model, "sequence_dim", 0)),
        ("onnx" if mode == "window" else "split"): section,
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
            "normalisation": normalisation,
            "model_input": "Epoch.samples (µV, 100 Hz) * Epoch.input_scale",
            "in_graph_normalisation": repr(getattr(model, "norm", "none")),
            "channels": fields.pop("channels", DEFAULT_CHANNELS),
        },
        "training": fields.pop("training", {}),
        "metrics": fields.pop("metrics", {}),
        "rebuild_command": fields.pop("rebuild_command", ""),
        "created_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **fields,
    }


def export_tiny_student(
    tmp_dir: Path | str, seed: int = 0, *, train_steps: int = 3, mode: str = "window"
) -> Path:
    """Build, briefly train and export ``tiny-student``: a small real model for tests.

    Parameters
    ----------
    tmp_dir : Path
        Folder for ``tiny-student.onnx`` (or its split graphs) and its card.
    seed : int
        Seed of weights and of the random training data (deterministic output).
    train_steps : int
        SGD steps on random µV noise with random labels (moves BN statistics and weights
        off their initial values; the model is NOT a useful stager).
    mode : {"window", "split"}
        Export mode.

    Returns
    -------
    Path
        The ONNX file (window) or the card (split); a few tens of kB, a few seconds.
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
        mode=mode,
        card_fields={
            "training": {"data": "random noise (test fixture)", "steps": train_steps, "seed": seed},
            "rebuild_command": f"python -c 'from distill.export import export_tiny_student; "
            f'export_tiny_student("DIR", seed={seed}, train_steps={train_steps}, mode="{mode}")\'',
        },
    )
