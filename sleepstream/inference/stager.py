"""Run an exported stager with ONNX Runtime (numpy + onnxruntime only, never torch).

>>> stager = load_stager()                       # the shipped default model
>>> logits = stager.logits(windows)              # (B, S, 1, 3000) model input -> (B, S, 5)

A model is a window graph (``mode`` window: ``eeg (B, S, 1, 3000) -> logits``) or a pair
of split graphs (``mode`` split: an epoch encoder ``(N, 1, 3000) -> state (N, D)`` and a
sequence head ``(B, S, D) -> logits``). Both look the same from here:

- :meth:`Stager.encode` turns epochs into per-epoch *states* (split: the encoder; window:
  the epoch itself, ``D = 3000``);
- :meth:`Stager.head` turns windows of states into logits (split: the head; window: the
  window graph);
- :attr:`Stager.pad_state` is the state of a missing past epoch (card ``pad``).

:class:`~sleepstream.inference.context.ContextStager` keeps a ring of states per device
on top of this, so each epoch is encoded once. The ONNX bytes are read once, hashed,
compared with the card's sha256 and handed to ONNX Runtime from memory, so the graph that
runs is the graph that was checked. ORT calls of one batch may run on a bounded pool of
``workers`` threads (one intra-op thread each).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from sleepstream.errors import ModelError
from sleepstream.inference.card import (
    ENCODER_IO,
    HEAD_IO,
    INPUT_NAME,
    OUTPUT_NAME,
    ModelCard,
    card_path_for,
    load_card,
)
from sleepstream.types import EPOCH_SAMPLES, N_STAGES, UNSCORED, StagePrediction

#: Folder of the models shipped with the package.
MODELS_DIR: Path = Path(__file__).resolve().parents[1] / "models"
#: Stem of the shipped default student inside :data:`MODELS_DIR`.
DEFAULT_MODEL_NAME: str = "default.onnx"


def default_model_path() -> Path:
    """Card of the shipped default model (``sleepstream/models/default.card.json``).

    The card names the model whatever its mode (a split model has no ``default.onnx``).
    """
    return card_path_for(MODELS_DIR / DEFAULT_MODEL_NAME)


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax along ``axis`` (float64 out)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=axis, keepdims=True), dtype=np.float64)


class Stager:
    """An exported stager (window or split graphs) with its card.

    Do not construct directly; use :func:`load_stager`.

    Attributes
    ----------
    card : ModelCard
        The validated model card.
    mode : {"window", "split"}
    seq_len : int
        Context length in epochs (``card.seq_len``), the scored epoch included.
    state_dim : int
        Width ``D`` of a per-epoch state (3000 in window mode).
    pad_state : ndarray, shape (D,), float32
        State of a missing past epoch (``zero_epoch`` pad: the encoding of 0 µV).
    pad_kind : {"zero_epoch", "truncate"}
    normalisation : NormalisationSpec
        The per-device input normalisation the model was trained with.
    model_id : str
        Identifier carried by every prediction.
    """

    def __init__(
        self,
        sessions: dict[str, Any],
        card: ModelCard,
        normalisation: Any,
        *,
        max_batch: int = 64,
        workers: int = 1,
    ) -> None:
        self._sessions = sessions
        self.card = card
        self.mode = card.mode
        self.seq_len = card.seq_len
        self.state_dim = card.state_dim
        self.model_id = card.model_id
        self.pad_kind = str(card.pad["kind"])
        self.normalisation = normalisation
        self.max_batch = int(max_batch)
        self.workers = max(1, int(workers))
        self._pool = (
            ThreadPoolExecutor(self.workers, thread_name_prefix="ort") if self.workers > 1 else None
        )
        self.seq_dynamic = bool(card.raw.get("input_contract", {}).get("seq_dynamic", False))
        if self.mode == "split":
            self.seq_dynamic = bool(card.raw["split"]["head"].get("seq_dynamic", True))
            try:
                self.pad_state = self.encode(np.zeros((1, EPOCH_SAMPLES), np.float32))[0]
            except Exception as exc:  # ORT's own exception types
                raise ModelError(
                    f"{card.graph_path('encoder')}: encoder fails on a zero epoch: {exc}".splitlines()[
                        0
                    ]
                ) from None
        else:
            self.pad_state = np.zeros(EPOCH_SAMPLES, np.float32)

    def close(self) -> None:
        """Stop the ORT worker threads (idempotent)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    # -- graphs ---------------------------------------------------------------------
    def _run(self, role: str, io: tuple[str, str], x: np.ndarray, per_row: int = 1) -> np.ndarray:
        """Run graph ``role`` on ``x`` in chunks of at most ``max_batch`` epochs (on the pool).

        ``per_row`` is the number of epochs one row of ``x`` encodes (a window: its
        length; the encoder and the head: 1), so one ORT call never encodes more than
        ``max_batch`` epochs: ORT's memory arena keeps the peak of the largest call.
        """
        sess = self._sessions[role]
        x = np.ascontiguousarray(x, dtype=np.float32)
        rows = max(1, self.max_batch // max(1, per_row))
        parts = [x[i : i + rows] for i in range(0, x.shape[0], rows)]

        def one(part: np.ndarray) -> np.ndarray:
            return np.asarray(sess.run([io[1]], {io[0]: part})[0])

        if len(parts) > 1 and self._pool is not None:
            return np.concatenate(list(self._pool.map(one, parts)), axis=0)
        return np.concatenate([one(p) for p in parts], axis=0)

    def encode(self, epochs: np.ndarray) -> np.ndarray:
        """Per-epoch states of model-input epochs.

        Parameters
        ----------
        epochs : ndarray, shape (N, 3000) or (N, 1, 3000)
            Model input: µV times the epoch's ``input_scale``, 100 Hz.

        Returns
        -------
        ndarray, shape (N, state_dim), float32
        """
        x = np.asarray(epochs, dtype=np.float32)
        x = x.reshape(x.shape[0], EPOCH_SAMPLES) if x.ndim in (2, 3) else x
        if x.ndim != 2 or x.shape[1] != EPOCH_SAMPLES:
            raise ModelError(
                f"{self.card.path}: epochs must be (N, {EPOCH_SAMPLES}), got {np.shape(epochs)}"
            )
        if self.mode == "window" or x.shape[0] == 0:
            return np.array(x, dtype=np.float32) if self.mode == "window" else self._no_states()
        return self._run("encoder", ENCODER_IO, x[:, None, :])

    def _no_states(self) -> np.ndarray:
        return np.zeros((0, self.state_dim), np.float32)

    def head(self, states: np.ndarray) -> np.ndarray:
        """Logits of windows of states.

        Parameters
        ----------
        states : ndarray, shape (B, S, state_dim), float32
            Oldest first; the scored epoch (causal) is the last.

        Returns
        -------
        ndarray, shape (B, S, 5), float32
        """
        x = np.asarray(states, dtype=np.float32)
        if x.ndim != 3 or x.shape[2] != self.state_dim:
            raise ModelError(
                f"{self.card.path}: states must be (B, S, {self.state_dim}), got {x.shape}"
            )
        if not self.seq_dynamic and x.shape[1] != self.seq_len:
            raise ModelError(
                f"{self.card.path}: window of {x.shape[1]} epochs, model needs seq_len={self.seq_len}"
            )
        if x.shape[0] == 0:
            return np.zeros((0, x.shape[1], N_STAGES), np.float32)
        if self.mode == "window":
            return self._run("window", (INPUT_NAME, OUTPUT_NAME), x[:, :, None, :], x.shape[1])
        return self._run("head", HEAD_IO, x)

    def logits(self, windows: np.ndarray) -> np.ndarray:
        """Raw model scores of whole windows (offline evaluation, tests).

        Parameters
        ----------
        windows : ndarray, shape (batch, seq, 1, 3000) or (batch, seq, 3000)
            Model input (µV times ``input_scale``) at 100 Hz; converted to float32. Rows
            of zeros are padding (``zero_epoch``), exactly as in training.

        Returns
        -------
        ndarray, shape (batch, seq, 5), float32
        """
        x = np.asarray(windows, dtype=np.float32)
        if x.ndim == 3:
            x = x[:, :, None, :]
        if x.ndim != 4 or x.shape[2] != 1 or x.shape[3] != EPOCH_SAMPLES:
            raise ModelError(
                f"{self.card.path}: input must be (batch, seq, 1, {EPOCH_SAMPLES}), "
                f"got {tuple(np.shape(windows))}"
            )
        b, s = x.shape[:2]
        return self.head(self.encode(x.reshape(b * s, EPOCH_SAMPLES)).reshape(b, s, -1))


def scored(
    index: int, probs: np.ndarray, model_id: str, quality: Sequence[str] = ()
) -> StagePrediction:
    """A prediction from probabilities ``(5,)``: argmax stage, max-probability confidence."""
    stage = int(np.argmax(probs))
    return StagePrediction(
        epoch_index=index,
        stage=stage,
        probabilities=probs,
        confidence=float(probs[stage]),
        model_id=model_id,
        quality=tuple(quality),
    )


def unscored(
    index: int, model_id: str, quality: Sequence[str], reasons: Sequence[str]
) -> StagePrediction:
    """An :data:`UNSCORED` prediction: zero probabilities, confidence 0, the reasons."""
    return StagePrediction(
        epoch_index=index,
        stage=UNSCORED,
        probabilities=np.zeros(N_STAGES),
        confidence=0.0,
        model_id=model_id,
        quality=tuple(quality),
        reasons=tuple(reasons),
    )


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def load_stager(
    model_path: Path | str | None = None,
    *,
    intra_op_num_threads: int = 1,
    max_batch: int = 64,
    workers: int | None = None,
) -> Stager:
    """Load an exported stager and check it against its card.

    Parameters
    ----------
    model_path : Path, optional
        The card (``<stem>.card.json``) or ``<stem>.onnx`` (its card is
        ``<stem>.card.json``; a split model has no ``<stem>.onnx`` file). None: the shipped
        default (:func:`default_model_path`).
    intra_op_num_threads : int
        ONNX Runtime intra-op threads per call (default 1: the daemon shares small
        machines and parallelises over ``workers`` instead).
    max_batch : int
        Most epochs encoded by one ONNX Runtime call (a window of S epochs counts S; the
        sequence head counts one per row). ORT keeps the peak memory of its largest call.
    workers : int, optional
        Threads that run the ORT calls of one batch concurrently (a bounded pool; 1 = the
        calling thread only). Default: 2, or 1 on a one-core machine.

    Raises
    ------
    ModelError
        Missing/unreadable file, card missing or invalid, sha256 mismatch, a graph whose
        inputs/outputs do not follow the contract, or a normalisation kind this
        sleepstream does not implement.
    """
    from sleepstream.dsp.normalise import NormalisationSpec

    path = Path(model_path) if model_path is not None else default_model_path()
    if model_path is None and not path.is_file():
        raise ModelError(
            f"{path}: no default model is shipped in this install; pass a model path or "
            f"write one with `distill export --checkpoint CKPT --out {path.parent / DEFAULT_MODEL_NAME}`"
        )
    card = load_card(card_path_for(path))
    if path != card.path and card.mode == "window" and card.onnx_file != path.name:
        raise ModelError(f"{card.path}: card describes {card.onnx_file!r}, not {path.name!r}")
    try:
        normalisation = NormalisationSpec.from_card(card.normalisation)
    except ModelError as exc:
        raise ModelError(f"{card.path}: {exc}") from None
    sessions = {}
    for role, graph in card.graphs.items():
        gpath = card.graph_path(role)
        try:
            data = gpath.read_bytes()
        except FileNotFoundError:
            raise ModelError(f"{gpath}: model file not found") from None
        except OSError as exc:
            raise ModelError(f"{gpath}: model file unreadable: {exc}") from None
        digest = sha256_hex(data)
        if digest != graph.sha256:
            raise ModelError(
                f"{gpath}: sha256 {digest[:16]}... does not match its card ({graph.sha256[:16]}...)"
            )
        sessions[role] = _open_session(data, gpath, intra_op_num_threads)
        _check_io(sessions[role], graph.input, graph.output, gpath)
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    stager = Stager(sessions, card, normalisation, max_batch=max_batch, workers=workers)
    _probe(stager)
    return stager


def _open_session(data: bytes, path: Path, threads: int) -> Any:
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


def _check_io(session: Any, want_in: str, want_out: str, path: Path) -> None:
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if [i.name for i in inputs] != [want_in] or want_out not in [o.name for o in outputs]:
        raise ModelError(
            f"{path}: graph inputs {[i.name for i in inputs]} / outputs "
            f"{[o.name for o in outputs]}, expected [{want_in!r}] / [{want_out!r}]"
        )


def _probe(stager: Stager) -> None:
    """Shapes of the graphs against the card: one zero window through :meth:`Stager.logits`."""
    card, path = stager.card, stager.card.path
    if stager.mode == "window":
        shape = stager._sessions["window"].get_inputs()[0].shape
        if len(shape) != 4 or shape[2] != 1 or shape[3] != EPOCH_SAMPLES:
            raise ModelError(
                f"{card.graph_path('window')}: input {INPUT_NAME!r} has shape {shape}, "
                "expected (batch, seq, 1, 3000)"
            )
        if isinstance(shape[1], int) and shape[1] != card.seq_len:
            raise ModelError(
                f"{card.graph_path('window')}: input seq dimension {shape[1]} differs from "
                f"card seq_len {card.seq_len}"
            )
    elif stager.pad_state.shape != (card.state_dim,):
        raise ModelError(
            f"{card.graph_path('encoder')}: state shape {stager.pad_state.shape}, card "
            f"state_dim {card.state_dim}"
        )
    try:
        out = stager.logits(np.zeros((1, card.seq_len, 1, EPOCH_SAMPLES), np.float32))
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"{path}: model fails on a zero window: {exc}".splitlines()[0]) from None
    if out.shape != (1, card.seq_len, N_STAGES):
        raise ModelError(
            f"{path}: output shape {out.shape}, expected (1, {card.seq_len}, {N_STAGES})"
        )
