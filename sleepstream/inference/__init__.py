"""Run-time inference: load an exported ONNX stager plus its card, stage epochs.

Numpy and ONNX Runtime only; never torch or :mod:`distill`.
"""

from __future__ import annotations

from sleepstream.inference.card import CARD_FORMAT, ModelCard, card_path_for, load_card
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
    "ModelCard",
    "Stager",
    "card_path_for",
    "default_model_path",
    "load_card",
    "load_stager",
    "softmax",
]
