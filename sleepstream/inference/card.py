"""Model card: the JSON file that travels next to every exported stager.

``<stem>.card.json`` describes the graph(s) of one model. The daemon trusts a model only
through its card: the sha256 of every ONNX file must match, and the input contract must be
the project's signal contract (100 Hz, µV, 3000 samples per epoch, 5 classes, the scored
epoch last in causal windows). Stdlib only (no numpy, no torch).

Format 2 (``format`` = :data:`CARD_FORMAT`)::

    {
      "format": "sleepstream-model-card/2",
      "mode": "split",                         # or "window"
      "model_id": "deepsleepnet-student-1a2b3c4d5e6f",
      "architecture": "deepsleepnet-student", "family": "deepsleepnet", "role": "student",
      "n_params": 1552906, "n_trainable": 1552138, "param_count_convention": "...",
      # mode "window": one graph, eeg (B, S, 1, 3000) -> logits (B, S, 5)
      "onnx": {"file": "x.onnx", "size_bytes": 6213000, "sha256": "...", "opset": 18,
               "input": "eeg", "output": "logits", "exporter": "..."},
      # mode "split": an epoch encoder and a sequence head
      "split": {
        "encoder": {"file": "x.encoder.onnx", "sha256": "...", "size_bytes": ...,
                    "input": "eeg_epoch", "output": "state"},      # (N, 1, 3000) -> (N, D)
        "head": {"file": "x.head.onnx", "sha256": "...", "size_bytes": ...,
                 "input": "states", "output": "logits"},           # (B, S, D) -> (B, S, 5)
        "state_dim": 5,
        "pad": {"kind": "zero_epoch", "description": "..."},
        "parity": {"max_abs_logits": 3e-7, "seqs": [1, 20, 23], "padded_starts": [...]}
      },
      "input_contract": {"fs_hz": 100.0, "units": "uV", "epoch_samples": 3000,
                         "seq_len": 20, "seq_dynamic": true, "n_channels": 1,
                         "causal": true, "scored_position": "last",
                         "stages": ["W", "N1", "N2", "N3", "REM"],
                         "normalisation": {"kind": "none"},   # NormalisationSpec.to_card()
                         "channels": "..."},
      "training": {"recordings": [{"name": "SC4001E0-PSG.edf", "sha256": "...",
                                   "channels": ["EEG Fpz-Cz"]}], ...},
      "metrics": {...}, "rebuild_command": "distill export ...", "created_utc": "..."
    }

Padding (``pad.kind``, what a missing past epoch is; exactly as in training):

- ``"zero_epoch"``: an all-zero epoch (0 µV) in the window, i.e. in split mode the
  encoder's state of a zero epoch. This is what ``distill.data.gather_windows`` does
  before the night starts, and the only kind of a format-1 card.
- ``"truncate"``: no padding; the head (or window graph) sees only the epochs that exist.

Format 1 (``sleepstream-model-card/1``) still loads: mode ``window``, normalisation
``{"kind": "none"}`` (its ``normalisation`` string describes the in-graph ``InputNorm``),
pad ``zero_epoch``, no training recordings.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sleepstream.errors import ModelError
from sleepstream.types import EPOCH_SAMPLES, MODEL_FS, STAGE_NAMES

#: Card format tag written by ``distill export``; bump the suffix on incompatible changes.
CARD_FORMAT: str = "sleepstream-model-card/2"
#: Format 1 cards (window graph only) still load.
CARD_FORMAT_V1: str = "sleepstream-model-card/1"
#: ONNX graph input and output names of the window graph.
INPUT_NAME: str = "eeg"
OUTPUT_NAME: str = "logits"
#: Input/output names of the split graphs: encoder (N, 1, 3000) -> (N, D), head (B, S, D) -> (B, S, 5).
ENCODER_IO: tuple[str, str] = ("eeg_epoch", "state")
HEAD_IO: tuple[str, str] = ("states", "logits")
#: Card modes.
MODES: tuple[str, ...] = ("window", "split")
#: Implemented representations of a missing past epoch (see the module docstring).
PAD_KINDS: tuple[str, ...] = ("zero_epoch", "truncate")
#: The pad of format-1 cards and of ``distill`` training windows today.
ZERO_EPOCH_PAD: dict[str, str] = {
    "kind": "zero_epoch",
    "description": (
        "a missing past epoch (before the recording started) is an all-zero epoch (0 µV) "
        "in the window; in split mode its state is the encoder's output on that zero epoch "
        "(what distill.data.gather_windows feeds the model during training)"
    ),
}


def card_path_for(model_path: Path) -> Path:
    """``<stem>.card.json`` next to ``<stem>.onnx`` (a card path is returned as is)."""
    model_path = Path(model_path)
    if model_path.name.endswith(".card.json"):
        return model_path
    return model_path.with_name(model_path.stem + ".card.json")


@dataclass(frozen=True, slots=True)
class GraphFile:
    """One ONNX file named by a card.

    Attributes
    ----------
    role : str
        ``"window"``, ``"encoder"`` or ``"head"``.
    file : str
        Bare file name, relative to the card's folder.
    sha256 : str
        Hex sha256 of the file's bytes.
    size_bytes : int
    input, output : str
        Graph input and output names.
    """

    role: str
    file: str
    sha256: str
    size_bytes: int
    input: str
    output: str


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
    version : int
        Card format (1 or 2).
    mode : {"window", "split"}
    graphs : dict of str to GraphFile
        ``{"window": ...}`` or ``{"encoder": ..., "head": ...}``.
    state_dim : int
        Width ``D`` of the per-epoch state (split); 3000 in window mode (the state of an
        epoch is then its model input).
    pad : dict
        How a missing past epoch is represented (``kind`` in :data:`PAD_KINDS`).
    normalisation : dict
        ``input_contract.normalisation`` (``{"kind": "none"}`` or
        ``NormalisationSpec.to_card()``); format-1 strings map to ``{"kind": "none"}``.
    training_recordings : tuple of dict
        ``{"name", "sha256", "channels"}`` per training recording (may be empty).
    fs_hz, units, epoch_samples, seq_len, causal, stages :
        The input contract (100 Hz, ``"uV"``, 3000, context epochs, scored last, W..REM).
    raw : dict
        The whole JSON document.
    """

    path: Path
    model_id: str
    architecture: str
    family: str
    role: str
    n_params: int
    version: int
    mode: str
    graphs: dict[str, GraphFile]
    state_dim: int
    pad: dict[str, Any]
    normalisation: dict[str, Any]
    training_recordings: tuple[dict[str, Any], ...]
    fs_hz: float
    units: str
    epoch_samples: int
    seq_len: int
    causal: bool
    stages: tuple[str, ...]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def sha256(self) -> str:
        """The model's digest: the window graph's sha256, or (split) the sha256 of the
        encoder's and the head's hex digests concatenated."""
        if self.mode == "window":
            return self.graphs["window"].sha256
        both = self.graphs["encoder"].sha256 + self.graphs["head"].sha256
        return hashlib.sha256(both.encode("ascii")).hexdigest()

    @property
    def size_bytes(self) -> int:
        """Bytes of all graph files together."""
        return sum(g.size_bytes for g in self.graphs.values())

    @property
    def onnx_file(self) -> str:
        """The window graph's file name (window mode); the card's name in split mode."""
        return self.graphs["window"].file if self.mode == "window" else self.path.name

    @property
    def model_path(self) -> Path:
        """The window ONNX file (window mode), else the card: what names the model."""
        return self.path.parent / self.onnx_file

    def graph_path(self, role: str) -> Path:
        """Path of the ``role`` graph (``window``, ``encoder`` or ``head``)."""
        return self.path.parent / self.graphs[role].file


def _get(doc: Mapping[str, Any], dotted: str, kind: type | tuple[type, ...], where: Path) -> Any:
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


def _fail(where: Path, key: str, got: Any, want: str) -> ModelError:
    return ModelError(f"{where}: model card field {key!r} is {got!r}, expected {want}")


def _is_sha(s: str) -> bool:
    return len(s) == 64 and all(c in "0123456789abcdef" for c in s)


def _graph(
    doc: Mapping[str, Any], key: str, role: str, io: tuple[str, str], where: Path
) -> GraphFile:
    sha = _get(doc, f"{key}.sha256", str, where).lower()
    if not _is_sha(sha):
        raise ModelError(f"{where}: model card field '{key}.sha256' is not a hex sha256: {sha!r}")
    for sub, want in zip(("input", "output"), io, strict=True):
        got = _get(doc, f"{key}.{sub}", str, where)
        if got != want:
            raise _fail(where, f"{key}.{sub}", got, repr(want))
    name = _get(doc, f"{key}.file", str, where)
    if Path(name).name != name or not name:
        raise ModelError(
            f"{where}: model card field '{key}.file' must be a bare file name, got {name!r}"
        )
    size = _get(doc, f"{key}.size_bytes", int, where)
    return GraphFile(role, name, sha, size, io[0], io[1])


def _pad(node: Any, key: str, where: Path) -> dict[str, Any]:
    if node is None:
        return dict(ZERO_EPOCH_PAD)
    if not isinstance(node, dict) or node.get("kind") not in PAD_KINDS:
        kind = node.get("kind") if isinstance(node, dict) else node
        raise _fail(where, f"{key}.kind", kind, f"one of {list(PAD_KINDS)}")
    return dict(node)


def _normalisation(ic: Mapping[str, Any], version: int, where: Path) -> dict[str, Any]:
    node = ic.get("normalisation")
    if version == 1 and (node is None or isinstance(node, str)):
        return {"kind": "none"}  # v1: the graph's own InputNorm, described as a string
    if not isinstance(node, dict) or not isinstance(node.get("kind"), str):
        raise ModelError(
            f"{where}: model card field 'input_contract.normalisation' must be a dict with a "
            f"'kind' (NormalisationSpec.to_card()), got {node!r}"
        )
    return dict(node)


def _recordings(doc: Mapping[str, Any], where: Path) -> tuple[dict[str, Any], ...]:
    training = doc.get("training", {})
    recs = training.get("recordings", []) if isinstance(training, dict) else []
    if not isinstance(recs, list):
        raise _fail(where, "training.recordings", recs, "a list")
    for i, r in enumerate(recs):
        if not isinstance(r, dict) or not isinstance(r.get("name"), str):
            raise _fail(where, f"training.recordings[{i}]", r, "an object with a 'name'")
        sha = r.get("sha256")
        if sha is not None and not (isinstance(sha, str) and _is_sha(sha.lower())):
            raise _fail(where, f"training.recordings[{i}].sha256", sha, "a hex sha256")
    return tuple(dict(r) for r in recs)


def _contract(
    doc: Mapping[str, Any], where: Path
) -> tuple[float, str, int, int, tuple[str, ...], bool]:
    fs = float(_get(doc, "input_contract.fs_hz", (int, float), where))
    if fs != MODEL_FS:
        raise _fail(where, "input_contract.fs_hz", fs, str(MODEL_FS))
    units = _get(doc, "input_contract.units", str, where)
    if units not in ("uV", "µV"):
        raise _fail(where, "input_contract.units", units, "'uV'")
    n_samp = _get(doc, "input_contract.epoch_samples", int, where)
    if n_samp != EPOCH_SAMPLES:
        raise _fail(where, "input_contract.epoch_samples", n_samp, str(EPOCH_SAMPLES))
    seq_len = _get(doc, "input_contract.seq_len", int, where)
    if seq_len < 1:
        raise _fail(where, "input_contract.seq_len", seq_len, ">= 1")
    stages = tuple(_get(doc, "input_contract.stages", list, where))
    if stages != STAGE_NAMES:
        raise _fail(where, "input_contract.stages", list(stages), str(list(STAGE_NAMES)))
    causal = _get(doc, "input_contract.causal", bool, where)
    scored = _get(doc, "input_contract.scored_position", str, where)
    if causal and scored != "last":
        raise _fail(where, "input_contract.scored_position", scored, "'last' (causal model)")
    return fs, units, n_samp, seq_len, stages, causal


def parse_card(doc: dict[str, Any], path: Path) -> ModelCard:
    """Validate a card document (format 1 or 2); :class:`ModelError` naming field and value."""
    path = Path(path)
    if not isinstance(doc, dict):
        raise ModelError(f"{path}: model card must be a JSON object")
    fmt = _get(doc, "format", str, path)
    if fmt not in (CARD_FORMAT, CARD_FORMAT_V1):
        raise _fail(path, "format", fmt, f"{CARD_FORMAT!r} (or {CARD_FORMAT_V1!r})")
    version = 1 if fmt == CARD_FORMAT_V1 else 2
    mode = "window" if version == 1 else _get(doc, "mode", str, path)
    if mode not in MODES:
        raise _fail(path, "mode", mode, f"one of {list(MODES)}")
    fs, units, n_samp, seq_len, stages, causal = _contract(doc, path)
    if mode == "window":
        graphs = {"window": _graph(doc, "onnx", "window", (INPUT_NAME, OUTPUT_NAME), path)}
        state_dim = EPOCH_SAMPLES
        pad = _pad(doc["onnx"].get("pad"), "onnx.pad", path)
    else:
        graphs = {
            "encoder": _graph(doc, "split.encoder", "encoder", ENCODER_IO, path),
            "head": _graph(doc, "split.head", "head", HEAD_IO, path),
        }
        state_dim = _get(doc, "split.state_dim", int, path)
        if state_dim < 1:
            raise _fail(path, "split.state_dim", state_dim, ">= 1")
        pad = _pad(_get(doc, "split.pad", dict, path), "split.pad", path)
    return ModelCard(
        path=path,
        model_id=_get(doc, "model_id", str, path),
        architecture=_get(doc, "architecture", str, path),
        family=_get(doc, "family", str, path),
        role=_get(doc, "role", str, path),
        n_params=_get(doc, "n_params", int, path),
        version=version,
        mode=mode,
        graphs=graphs,
        state_dim=state_dim,
        pad=pad,
        normalisation=_normalisation(doc["input_contract"], version, path),
        training_recordings=_recordings(doc, path),
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


def file_sha256(path: Path | str, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes (read in 1-MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def training_recording_match(card: ModelCard | Mapping[str, Any], path: Path | str) -> bool:
    """True when ``path`` is one of the recordings the model was trained on.

    The file's sha256 is compared with every ``training.recordings[].sha256``; failing
    that, its file name with the recordings' names (a renamed copy is caught by the hash,
    a re-exported or cropped copy of the same night by the name). ``replay`` and
    ``report`` call this to warn that a score on this file is not a generalisation result.

    Parameters
    ----------
    card : ModelCard or dict
        A parsed card or the raw card document.
    path : Path
        The recording (e.g. an EDF file). An unreadable file is judged by its name only.
    """
    if isinstance(card, ModelCard):
        recs: Any = card.training_recordings
    else:
        training = card.get("training", {})
        recs = training.get("recordings", []) if isinstance(training, dict) else []
    recs = [r for r in recs if isinstance(r, dict)]
    if not recs:
        return False
    path = Path(path)
    shas = {str(r["sha256"]).lower() for r in recs if isinstance(r.get("sha256"), str)}
    if shas:
        try:
            if file_sha256(path) in shas:
                return True
        except OSError:
            pass
    return path.name in {r.get("name") for r in recs}
