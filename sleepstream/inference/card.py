"""Model card: the JSON file that travels next to every exported ONNX stager.

``<stem>.onnx`` is described by ``<stem>.card.json``. The daemon trusts a model only
through its card: the sha256 of the ONNX bytes must match, and the input contract must be
the project's signal contract (100 Hz, µV, 3000 samples per epoch, 5 classes, the scored
epoch last in causal windows). Numpy-free and torch-free: stdlib only.

Card layout (``format`` = :data:`CARD_FORMAT`)::

    {
      "format": "sleepstream-model-card/1",
      "model_id": "deepsleepnet-student-1a2b3c4d5e6f",
      "architecture": "deepsleepnet-student", "family": "deepsleepnet", "role": "student",
      "n_params": 1552906, "n_trainable": 1552138, "param_count_convention": "...",
      "onnx": {"file": "x.onnx", "size_bytes": 6213000, "sha256": "...", "opset": 18,
               "input": "eeg", "output": "logits", "exporter": "..."},
      "input_contract": {"fs_hz": 100.0, "units": "uV", "epoch_samples": 3000,
                         "seq_len": 20, "seq_dynamic": true, "n_channels": 1,
                         "causal": true, "scored_position": "last",
                         "stages": ["W", "N1", "N2", "N3", "REM"],
                         "channels": "..."},
      "training": {...}, "metrics": {...}, "rebuild_command": "distill export ...",
      "created_utc": "..."
    }
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sleepstream.errors import ModelError
from sleepstream.types import EPOCH_SAMPLES, MODEL_FS, STAGE_NAMES

#: Card format tag; bump the suffix on incompatible changes.
CARD_FORMAT: str = "sleepstream-model-card/1"
#: ONNX graph input and output names of the contract.
INPUT_NAME: str = "eeg"
OUTPUT_NAME: str = "logits"


def card_path_for(model_path: Path) -> Path:
    """``<stem>.card.json`` next to ``<stem>.onnx``."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.stem + ".card.json")


@dataclass(frozen=True, slots=True)
class ModelCard:
    """The validated content of a model card.

    Attributes
    ----------
    path : Path
        The card file.
    model_id : str
        Identifier published with every prediction (architecture + sha256 prefix).
    architecture, family, role : str
        Registry name, family and role of the exported model.
    n_params : int
        Parameter count (Keras style: trainable + BatchNorm moving statistics).
    onnx_file : str
        ONNX file name, relative to the card's folder.
    sha256 : str
        Hex sha256 of the ONNX file's bytes.
    size_bytes : int
        ONNX file size in bytes.
    fs_hz : float
        Sampling rate the model expects, Hz (100).
    units : str
        Input units (``"uV"``).
    epoch_samples : int
        Samples per epoch (3000).
    seq_len : int
        Context length in epochs the model was trained and exported for.
    causal : bool
        True: the scored epoch is the last row of the window.
    stages : tuple of str
        Class names in output order.
    raw : dict
        The whole JSON document (training data, protocol, metrics, rebuild command...).
    """

    path: Path
    model_id: str
    architecture: str
    family: str
    role: str
    n_params: int
    onnx_file: str
    sha256: str
    size_bytes: int
    fs_hz: float
    units: str
    epoch_samples: int
    seq_len: int
    causal: bool
    stages: tuple[str, ...]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def model_path(self) -> Path:
        """The ONNX file this card describes."""
        return self.path.parent / self.onnx_file


def _get(doc: dict, dotted: str, kind: type | tuple[type, ...], where: Path) -> Any:
    node: Any = doc
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ModelError(f"{where}: model card field {dotted!r} is missing")
        node = node[part]
    if isinstance(node, bool) and kind in (int, float, (int, float)):
        raise ModelError(f"{where}: model card field {dotted!r} must be a number, got {node!r}")
    if not isinstance(node, kind):
        raise ModelError(f"{where}: model card field {dotted!r} has the wrong type: {node!r}")
    return node


def parse_card(doc: dict[str, Any], path: Path) -> ModelCard:
    """Validate a card document against the signal contract; :class:`ModelError` if not."""
    path = Path(path)
    if not isinstance(doc, dict):
        raise ModelError(f"{path}: model card must be a JSON object")
    fmt = _get(doc, "format", str, path)
    if fmt != CARD_FORMAT:
        raise ModelError(f"{path}: model card field 'format' is {fmt!r}, expected {CARD_FORMAT!r}")
    sha = _get(doc, "onnx.sha256", str, path).lower()
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise ModelError(f"{path}: model card field 'onnx.sha256' is not a hex sha256: {sha!r}")
    for key, want in (("onnx.input", INPUT_NAME), ("onnx.output", OUTPUT_NAME)):
        got = _get(doc, key, str, path)
        if got != want:
            raise ModelError(f"{path}: model card field {key!r} is {got!r}, expected {want!r}")
    fs = float(_get(doc, "input_contract.fs_hz", (int, float), path))
    if fs != MODEL_FS:
        raise ModelError(
            f"{path}: model card field 'input_contract.fs_hz' is {fs}, expected {MODEL_FS}"
        )
    units = _get(doc, "input_contract.units", str, path)
    if units not in ("uV", "µV"):
        raise ModelError(
            f"{path}: model card field 'input_contract.units' is {units!r}, expected 'uV'"
        )
    n_samp = _get(doc, "input_contract.epoch_samples", int, path)
    if n_samp != EPOCH_SAMPLES:
        raise ModelError(
            f"{path}: model card field 'input_contract.epoch_samples' is {n_samp}, expected {EPOCH_SAMPLES}"
        )
    seq_len = _get(doc, "input_contract.seq_len", int, path)
    if seq_len < 1:
        raise ModelError(
            f"{path}: model card field 'input_contract.seq_len' must be >= 1, got {seq_len}"
        )
    stages = tuple(_get(doc, "input_contract.stages", list, path))
    if stages != STAGE_NAMES:
        raise ModelError(
            f"{path}: model card field 'input_contract.stages' is {list(stages)}, expected {list(STAGE_NAMES)}"
        )
    causal = _get(doc, "input_contract.causal", bool, path)
    scored = _get(doc, "input_contract.scored_position", str, path)
    if causal and scored != "last":
        raise ModelError(
            f"{path}: model card field 'input_contract.scored_position' is {scored!r}; a causal model scores 'last'"
        )
    onnx_file = _get(doc, "onnx.file", str, path)
    if Path(onnx_file).name != onnx_file:
        raise ModelError(
            f"{path}: model card field 'onnx.file' must be a bare file name, got {onnx_file!r}"
        )
    return ModelCard(
        path=path,
        model_id=_get(doc, "model_id", str, path),
        architecture=_get(doc, "architecture", str, path),
        family=_get(doc, "family", str, path),
        role=_get(doc, "role", str, path),
        n_params=_get(doc, "n_params", int, path),
        onnx_file=onnx_file,
        sha256=sha,
        size_bytes=_get(doc, "onnx.size_bytes", int, path),
        fs_hz=fs,
        units=units,
        epoch_samples=n_samp,
        seq_len=seq_len,
        causal=causal,
        stages=stages,
        raw=doc,
    )


def load_card(path: Path) -> ModelCard:
    """Read and validate a card file; :class:`ModelError` naming the file if it fails."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelError(
            f"{path}: model card not found (expected next to the .onnx file)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: model card unreadable: {exc}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: model card is not valid JSON: {exc}") from None
    return parse_card(doc, path)
