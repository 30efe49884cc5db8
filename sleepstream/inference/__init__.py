"""Run-time inference: load an exported stager plus its card, stage epochs.

Numpy and ONNX Runtime only; never torch or :mod:`distill`.

- :func:`load_stager` -> :class:`Stager` (window or split graphs, checked against the card);
- :class:`ContextStager`: per-device rings of per-epoch states; predictions per
  (device key, epoch), each epoch encoded once;
- :mod:`~sleepstream.inference.card`: the model card (format 2; format 1 still loads).
"""

from __future__ import annotations

from sleepstream.inference.card import (
    CARD_FORMAT,
    ModelCard,
    card_path_for,
    load_card,
    training_recording_match,
)
from sleepstream.inference.context import ContextError, ContextStager, Scored, check_lookahead
from sleepstream.inference.stager import (
    DEFAULT_MODEL_NAME,
    MODELS_DIR,
    Stager,
    default_model_path,
    load_stager,
    softmax,
)

__all__ = [
    "CARD_FORMAT",
    "DEFAULT_MODEL_NAME",
    "MODELS_DIR",
    "ContextError",
    "ContextStager",
    "ModelCard",
    "Scored",
    "Stager",
    "card_path_for",
    "check_lookahead",
    "default_model_path",
    "load_card",
    "load_stager",
    "softmax",
    "training_recording_match",
]
