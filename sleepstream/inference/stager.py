"""Run an exported stager with ONNX Runtime (numpy + onnxruntime only, never torch).

>>> stager = load_stager()                       # the shipped default model
>>> preds = stager.predict(epochs)               # list[StagePrediction]

The ONNX bytes are read once, hashed, compared with the card's sha256 and handed to
ONNX Runtime from memory, so the graph that runs is the graph that was checked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sleepstream.errors import ModelError
from sleepstream.inference.card import (
    INPUT_NAME,
    OUTPUT_NAME,
    ModelCard,
    card_path_for,
    load_card,
)
from sleepstream.types import EPOCH_SAMPLES, N_STAGES, UNSCORED, Epoch, StagePrediction

#: Folder of the models shipped with the package.
MODELS_DIR: Path = Path(__file__).resolve().parents[1] / "models"
#: File name of the shipped default student inside :data:`MODELS_DIR`.
DEFAULT_MODEL_NAME: str = "default.onnx"


def default_model_path() -> Path:
    """Path of the shipped default model (``sleepstream/models/default.onnx``)."""
    return MODELS_DIR / DEFAULT_MODEL_NAME


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax along ``axis`` (float64 out)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


class Stager:
    """An ONNX stager with its card.

    Do not construct directly; use :func:`load_stager`.

    Attributes
    ----------
    card : ModelCard
        The validated model card.
    seq_len : int
        Window length in epochs the model expects (``card.seq_len``).
    model_id : str
        Identifier carried by every prediction.
    """

    def __init__(self, session, card: ModelCard, max_batch: int = 64):
        self._session = session
        self.card = card
        self.seq_len = card.seq_len
        self.model_id = card.model_id
        self.max_batch = int(max_batch)

    def logits(self, windows: np.ndarray) -> np.ndarray:
        """Raw model scores.

        Parameters
        ----------
        windows : ndarray, shape (batch, seq, 1, 3000) or (batch, seq, 3000)
            EEG in µV at 100 Hz; converted to float32.

        Returns
        -------
        ndarray, shape (batch, seq, 5), float32
        """
        x = np.asarray(windows, dtype=np.float32)
        if x.ndim == 3:
            x = x[:, :, None, :]
        if x.ndim != 4 or x.shape[2] != 1 or x.shape[3] != EPOCH_SAMPLES:
            raise ModelError(
                f"{self.card.model_path}: input must be (batch, seq, 1, {EPOCH_SAMPLES}), "
                f"got {tuple(np.shape(windows))}"
            )
        if not self.card.raw.get("input_contract", {}).get("seq_dynamic", False) and (
            x.shape[1] != self.seq_len
        ):
            raise ModelError(
                f"{self.card.model_path}: window of {x.shape[1]} epochs, model needs seq_len={self.seq_len}"
            )
        out = [
            self._session.run(
                [OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(x[i : i + self.max_batch])}
            )[0]
            for i in range(0, x.shape[0], self.max_batch)
        ]
        return (
            np.concatenate(out, axis=0) if out else np.zeros((0, x.shape[1], N_STAGES), np.float32)
        )

    def predict(self, epochs: Sequence[Epoch], lookahead: int = 0) -> list[StagePrediction]:
        """Stage each epoch from its window (batched).

        Parameters
        ----------
        epochs : sequence of Epoch
            Each ``window`` is ``(seq, 3000)`` µV, the newest epoch last.
        lookahead : int
            0 (causal): score the last row, i.e. ``epoch.index`` itself. ``k > 0``: score the
            row ``k`` epochs before the last (``epoch.index - k``), using ``k`` epochs of
            future context; the prediction is then ``k`` epochs late. The quality flags and
            unscored reasons of the given epoch are carried over.

        Returns
        -------
        list of StagePrediction
            One per input epoch, same order. Unscorable epochs (non-empty
            ``unscored_reasons``, non-finite samples, or ``index - lookahead < 0``) get
            ``stage = UNSCORED``, zero probabilities, confidence 0 and the reasons. Note that
            N1 is the least reliable stage for every stager.
        """
        if not 0 <= lookahead < self.seq_len:
            raise ModelError(
                f"{self.card.path}: lookahead {lookahead} must be in [0, seq_len={self.seq_len})"
            )
        pos = self.seq_len - 1 - lookahead
        results: list[StagePrediction | None] = [None] * len(epochs)
        todo: list[int] = []
        for i, ep in enumerate(epochs):
            reasons = tuple(ep.unscored_reasons)
            win = np.asarray(ep.window)
            if win.shape != (self.seq_len, EPOCH_SAMPLES):
                raise ModelError(
                    f"{self.card.model_path}: epoch {ep.index} window shape {win.shape}, "
                    f"model needs ({self.seq_len}, {EPOCH_SAMPLES})"
                )
            if not reasons and not np.isfinite(win).all():
                reasons = ("nonfinite",)
            if not reasons and ep.index - lookahead < 0:
                reasons = ("no_context",)
            if reasons:
                results[i] = StagePrediction(
                    epoch_index=ep.index - lookahead,
                    stage=UNSCORED,
                    probabilities=np.zeros(N_STAGES),
                    confidence=0.0,
                    model_id=self.model_id,
                    quality=tuple(ep.quality),
                    reasons=reasons,
                )
            else:
                todo.append(i)
        if todo:
            batch = np.stack([np.asarray(epochs[i].window, dtype=np.float32) for i in todo])
            probs = softmax(self.logits(batch[:, :, None, :])[:, pos, :])
            for j, i in enumerate(todo):
                p = probs[j]
                stage = int(np.argmax(p))
                results[i] = StagePrediction(
                    epoch_index=epochs[i].index - lookahead,
                    stage=stage,
                    probabilities=p,
                    confidence=float(p[stage]),
                    model_id=self.model_id,
                    quality=tuple(epochs[i].quality),
                )
        return [r for r in results if r is not None]


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def load_stager(
    model_path: Path | str | None = None, *, intra_op_num_threads: int = 1, max_batch: int = 64
) -> Stager:
    """Load an ONNX stager and check it against its card.

    Parameters
    ----------
    model_path : Path, optional
        ``<stem>.onnx`` (its card is ``<stem>.card.json``) or the card itself. None: the
        shipped default (:func:`default_model_path`).
    intra_op_num_threads : int
        ONNX Runtime intra-op threads (default 1: the daemon shares small machines).
    max_batch : int
        Largest batch handed to ONNX Runtime in one call.

    Raises
    ------
    ModelError
        Missing/unreadable file, card missing or invalid, sha256 mismatch, or a graph whose
        inputs/outputs do not follow the contract.
    """
    path = Path(model_path) if model_path is not None else default_model_path()
    if model_path is None and not path.is_file():
        raise ModelError(
            f"{path}: no default model is shipped in this install; pass a model path or "
            f"write one with `distill export --checkpoint CKPT --out {path}`"
        )
    if path.name.endswith(".card.json"):
        card = load_card(path)
        path = card.model_path
    else:
        card = load_card(card_path_for(path))
        if card.onnx_file != path.name:
            raise ModelError(f"{card.path}: card describes {card.onnx_file!r}, not {path.name!r}")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"{path}: model file not found") from None
    except OSError as exc:
        raise ModelError(f"{path}: model file unreadable: {exc}") from None
    digest = sha256_hex(data)
    if digest != card.sha256:
        raise ModelError(
            f"{path}: sha256 {digest[:16]}... does not match its card ({card.sha256[:16]}...)"
        )
    session = _open_session(data, path, intra_op_num_threads)
    _check_graph(session, card, path)
    return Stager(session, card, max_batch=max_batch)


def _open_session(data: bytes, path: Path, threads: int):
    import onnxruntime as ort  # lazy: heavy, only the daemon's inference needs it

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, int(threads))
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own exception types (Fail, InvalidProtobuf...)
        raise ModelError(
            f"{path}: ONNX Runtime cannot load the model: {exc}".splitlines()[0]
        ) from None


def _check_graph(session, card: ModelCard, path: Path) -> None:
    inputs = session.get_inputs()
    outputs = session.get_outputs()
    if [i.name for i in inputs] != [INPUT_NAME] or OUTPUT_NAME not in [o.name for o in outputs]:
        raise ModelError(
            f"{path}: graph inputs {[i.name for i in inputs]} / outputs {[o.name for o in outputs]}, "
            f"expected [{INPUT_NAME!r}] / [{OUTPUT_NAME!r}]"
        )
    shape = inputs[0].shape
    if len(shape) != 4 or shape[2] != 1 or shape[3] != EPOCH_SAMPLES:
        raise ModelError(
            f"{path}: input {INPUT_NAME!r} has shape {shape}, expected (batch, seq, 1, 3000)"
        )
    if isinstance(shape[1], int) and shape[1] != card.seq_len:
        raise ModelError(
            f"{path}: input seq dimension {shape[1]} differs from card seq_len {card.seq_len}"
        )
    probe = np.zeros((1, card.seq_len, 1, EPOCH_SAMPLES), np.float32)
    try:
        out = session.run([OUTPUT_NAME], {INPUT_NAME: probe})[0]
    except Exception as exc:
        raise ModelError(f"{path}: model fails on a zero window: {exc}".splitlines()[0]) from None
    if out.shape != (1, card.seq_len, N_STAGES):
        raise ModelError(
            f"{path}: output shape {out.shape}, expected (1, {card.seq_len}, {N_STAGES})"
        )
