"""Model cards: what the daemon checks before it trusts an ONNX file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sleepstream.errors import ModelError
from sleepstream.inference import card_path_for, load_card, load_stager


def _edit(card: Path, dotted: str, value) -> None:
    doc = json.loads(card.read_text())
    node = doc
    *parents, last = dotted.split(".")
    for p in parents:
        node = node[p]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    card.write_text(json.dumps(doc))


def test_load_card_reads_contract(tiny_onnx: Path) -> None:
    """A freshly exported card parses with the project's signal contract."""
    card = load_card(card_path_for(tiny_onnx))
    assert card.fs_hz == 100.0 and card.epoch_samples == 3000 and card.units == "uV"
    assert card.causal and card.seq_len == 5 and card.stages == ("W", "N1", "N2", "N3", "REM")
    assert card.model_path == tiny_onnx and card.model_id.startswith("tiny-student-")
    assert card.size_bytes == tiny_onnx.stat().st_size


def test_load_stager_sha256_mismatch_raises(tiny_onnx: Path) -> None:
    """A model file whose bytes differ from the card's sha256 is refused, naming the file."""
    data = bytearray(tiny_onnx.read_bytes())
    data[-1] ^= 0xFF
    tiny_onnx.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"tiny-student\.onnx.*sha256"):
        load_stager(tiny_onnx)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("input_contract.fs_hz", 128.0, "fs_hz"),
        ("input_contract.epoch_samples", 3840, "epoch_samples"),
        ("input_contract.units", "V", "units"),
        ("input_contract.stages", ["W", "N1", "N2", "N3"], "stages"),
        ("input_contract.seq_len", 0, "seq_len"),
        ("input_contract.scored_position", "centre", "scored_position"),
        ("onnx.input", "x", "onnx.input"),
        ("onnx.sha256", "abc", "onnx.sha256"),
        ("format", "other/1", "format"),
        ("model_id", KeyError, "model_id"),
    ],
)
def test_load_card_wrong_contract_raises(tiny_onnx: Path, field: str, value, match: str) -> None:
    """A card that breaks the contract raises ModelError naming the card file and field."""
    card = card_path_for(tiny_onnx)
    _edit(card, field, value)
    with pytest.raises(ModelError, match=match) as info:
        load_stager(tiny_onnx)
    assert "tiny-student.card.json" in str(info.value)


def test_load_card_wrong_type_raises(tiny_onnx: Path) -> None:
    """A field of the wrong JSON type is refused, naming the field."""
    _edit(card_path_for(tiny_onnx), "input_contract.causal", "yes")
    with pytest.raises(ModelError, match="causal"):
        load_stager(tiny_onnx)


def test_load_stager_unreadable_model_raises(tiny_onnx: Path) -> None:
    """Garbage bytes with a matching sha256 still fail cleanly (ONNX Runtime cannot load)."""
    import hashlib

    tiny_onnx.write_bytes(b"not an onnx graph")
    _edit(card_path_for(tiny_onnx), "onnx.sha256", hashlib.sha256(b"not an onnx graph").hexdigest())
    with pytest.raises(ModelError, match="cannot load"):
        load_stager(tiny_onnx)


def test_load_stager_missing_files_raise(tiny_onnx: Path, tmp_path: Path) -> None:
    """A missing card, missing model or a non-JSON card each raise ModelError naming the file."""
    with pytest.raises(ModelError, match="nope.card.json"):
        load_stager(tmp_path / "nope.onnx")
    card = card_path_for(tiny_onnx)
    tiny_onnx.unlink()
    with pytest.raises(ModelError, match="not found"):
        load_stager(tiny_onnx)
    card.write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_card(card)


def test_load_stager_accepts_card_path(tiny_onnx: Path) -> None:
    """The card path itself may be given instead of the ONNX path."""
    stager = load_stager(card_path_for(tiny_onnx))
    assert stager.card.model_path == tiny_onnx
