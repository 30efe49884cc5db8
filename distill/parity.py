"""ONNX Runtime vs torch parity checks for :mod:`distill.export`.

Each check scores random µV input (×30, 100 Hz epochs of 3000 samples) through the
exported graph and through the torch model and returns the worst |Δ logits| (or state),
raising :class:`~sleepstream.errors.ModelError` when it is not below :data:`PARITY_TOL`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sleepstream.errors import ModelError
from sleepstream.inference.card import ENCODER_IO, HEAD_IO, INPUT_NAME, OUTPUT_NAME, PAD_KINDS
from sleepstream.types import EPOCH_SAMPLES

#: Parity bound between ONNX Runtime and torch, max |Δ logits|.
PARITY_TOL: float = 1e-4


def ort_session(data: bytes | Path) -> Any:
    """A CPU ONNX Runtime session of a serialised graph or a file."""
    import onnxruntime as ort

    src = str(data) if isinstance(data, Path) else data
    return ort.InferenceSession(src, providers=["CPUExecutionProvider"])


def _assert_parity(worst: float, what: str) -> float:
    if not worst < PARITY_TOL:
        raise ModelError(
            f"{what}: ONNX Runtime / torch parity failed, max |Δ logits| = {worst:.3g}"
        )
    return worst


def _parity_seqs(seq_len: int, dynamic: bool) -> list[int]:
    return sorted({1, seq_len, seq_len + 3}) if dynamic else [seq_len]


def check_window(model: nn.Module, seq_len: int) -> Callable[[Path, bool], float]:
    """``check(path, seq_dynamic)`` of a window graph ``(B, S, 1, 3000) -> (B, S, 5)``."""

    def check(path: Path, dyn: bool) -> float:
        sess = ort_session(path)
        gen = torch.Generator().manual_seed(0)
        worst = 0.0
        for b in (1, 3):
            for s in _parity_seqs(seq_len, dyn):
                x = torch.randn(b, s, 1, EPOCH_SAMPLES, generator=gen) * 30.0
                with torch.no_grad():
                    ref = model(x)["logits"].numpy()
                got = sess.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
                worst = max(worst, float(np.abs(ref - got).max()))
        return _assert_parity(worst, f"{path} (window graph)")

    return check


def check_encoder(model: nn.Module) -> Callable[[Path, bool], float]:
    """``check(path, seq_dynamic)`` of an encoder graph ``(N, 1, 3000) -> (N, D)``."""

    def check(path: Path, dyn: bool) -> float:
        sess = ort_session(path)
        gen = torch.Generator().manual_seed(0)
        worst = 0.0
        for n in (1, 3):
            x = torch.randn(n, 1, EPOCH_SAMPLES, generator=gen) * 30.0
            with torch.no_grad():
                ref = model.epoch_state(x).numpy()
            got = sess.run([ENCODER_IO[1]], {ENCODER_IO[0]: x.numpy()})[0]
            worst = max(worst, float(np.abs(ref - got).max()))
        return _assert_parity(worst, f"{path} (encoder graph)")

    return check


def check_head(model: nn.Module, seq_len: int) -> Callable[[Path, bool], float]:
    """``check(path, seq_dynamic)`` of a head graph ``(B, S, D) -> (B, S, 5)``."""

    def check(path: Path, dyn: bool) -> float:
        sess = ort_session(path)
        gen = torch.Generator().manual_seed(0)
        worst = 0.0
        for s in _parity_seqs(seq_len, dyn):
            x = torch.randn(2 * s, 1, EPOCH_SAMPLES, generator=gen) * 30.0
            with torch.no_grad():
                states = model.epoch_state(x).reshape(2, s, -1)
                ref = model.sequence_logits(states).numpy()
            got = sess.run([HEAD_IO[1]], {HEAD_IO[0]: states.numpy()})[0]
            worst = max(worst, float(np.abs(ref - got).max()))
        return _assert_parity(worst, f"{path} (head graph)")

    return check


def split_parity(
    model: nn.Module,
    encoder: bytes | Path,
    head: bytes | Path,
    seq_len: int,
    *,
    pad_kind: str = "zero_epoch",
    seq_dynamic: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Compose the ONNX encoder and head and compare them with the torch window model.

    For each context length ``s`` (1, ``seq_len``, ``seq_len + 3``; only ``seq_len`` when
    the head is not seq-dynamic) and each number ``p`` of missing past epochs (0, 1,
    ``s // 2``, ``s - 1``), a batch of 2 random windows is scored both ways:

    - ``zero_epoch`` pad: torch on the window with its first ``p`` rows set to 0 µV;
      ONNX: the head over ``p`` pad states (encoder of a zero epoch) followed by the
      encoder states of the ``s - p`` real epochs;
    - ``truncate`` pad: torch on the last ``s - p`` rows only; ONNX: the head over their
      ``s - p`` states.

    Returns
    -------
    dict
        ``{"reference": ..., "max_abs_logits": float, "seqs": [...], "padded_starts":
        [...], "pad": pad_kind}`` (written into the card).

    Raises
    ------
    ModelError
        If the worst |Δ logits| is not below :data:`PARITY_TOL`.
    """
    if pad_kind not in PAD_KINDS:
        raise ValueError(f"pad kind {pad_kind!r}; valid: {', '.join(PAD_KINDS)}")
    enc, hd = ort_session(encoder), ort_session(head)

    def encode(x: np.ndarray) -> np.ndarray:
        return enc.run([ENCODER_IO[1]], {ENCODER_IO[0]: x.reshape(-1, 1, EPOCH_SAMPLES)})[0]

    pad_state = encode(np.zeros((1, EPOCH_SAMPLES), np.float32))[0]
    gen = torch.Generator().manual_seed(seed)
    worst, seqs, pads = 0.0, _parity_seqs(seq_len, seq_dynamic), set()
    for s in seqs:
        for p in sorted({0, 1, s // 2, s - 1} & set(range(s))):
            pads.add(p)
            x = torch.randn(2, s, 1, EPOCH_SAMPLES, generator=gen) * 30.0
            real = x[:, p:].numpy()
            states = encode(real).reshape(2, s - p, -1)
            if pad_kind == "zero_epoch":
                x[:, :p] = 0.0
                states = np.concatenate(
                    [np.broadcast_to(pad_state, (2, p, states.shape[2])), states], axis=1
                )
                ref_in = x
            else:
                ref_in = x[:, p:]
            with torch.no_grad():
                ref = model(ref_in)["logits"].numpy()
            got = hd.run([HEAD_IO[1]], {HEAD_IO[0]: np.ascontiguousarray(states, np.float32)})[0]
            worst = max(worst, float(np.abs(ref - got).max()))
    _assert_parity(worst, "split graphs composed")
    return {
        "reference": "torch window model (distill), batch 2, random µV",
        "max_abs_logits": worst,
        "seqs": seqs,
        "padded_starts": sorted(pads),
        "pad": pad_kind,
    }
