"""Model cards: what the daemon checks before it trusts an ONNX file."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from sleepstream.errors import ModelError
from sleepstream.inference import card_path_for, load_card, load_stager
from sleepstream.inference.card import training_recording_match


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


# -- format 2: modes, normalisation, training recordings, format 1 compatibility -------
def test_card_v2_split_card_names_both_graphs(tiny_pair) -> None:
    """A split card lists encoder and head with sha256 and size, the state dim, the pad
    (documented) and the composed parity; the stager loads it from the card or the stem."""
    _, split = tiny_pair
    card = load_card(split)
    assert card.version == 2 and card.mode == "split" and card.state_dim == 5
    for role in ("encoder", "head"):
        g = card.graphs[role]
        assert card.graph_path(role).stat().st_size == g.size_bytes
        assert hashlib.sha256(card.graph_path(role).read_bytes()).hexdigest() == g.sha256
    assert card.pad["kind"] == "zero_epoch" and "zero epoch" in card.pad["description"]
    parity = card.raw["split"]["parity"]
    assert parity["seqs"] == [1, 20, 23] and 0 in parity["padded_starts"]
    assert parity["max_abs_logits"] < 1e-4 and card.normalisation == {"kind": "none"}
    assert card.model_id.endswith(card.sha256[:12])
    assert load_stager(split.with_name("m.onnx")).model_id == load_stager(split).model_id


def test_card_v2_split_head_sha_mismatch_raises(tiny_pair, tmp_path: Path) -> None:
    """Each split graph is checked against its own sha256 (here the head's)."""
    _, split = tiny_pair
    for f in split.parent.iterdir():
        shutil.copy(f, tmp_path / f.name)
    head = tmp_path / "m.head.onnx"
    data = bytearray(head.read_bytes())
    data[-1] ^= 0xFF
    head.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"m\.head\.onnx.*sha256"):
        load_stager(tmp_path / "m.card.json")


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("mode", "stream", "mode"),
        ("split.encoder.input", "eeg", "split.encoder.input"),
        ("split.head.output", "probs", "split.head.output"),
        ("split.state_dim", 0, "split.state_dim"),
        ("split.pad", {"kind": "mean_state"}, "split.pad.kind"),
        ("input_contract.normalisation", "InputNorm()", "normalisation"),
        ("training.recordings", [{"sha256": "x"}], "training.recordings"),
    ],
)
def test_card_v2_wrong_fields_raise(tiny_pair, tmp_path: Path, field: str, value, match) -> None:
    """Broken v2 fields raise ModelError naming the card and the field."""
    _, split = tiny_pair
    for f in split.parent.iterdir():
        shutil.copy(f, tmp_path / f.name)
    card = tmp_path / "m.card.json"
    _edit(card, field, value)
    with pytest.raises(ModelError, match=match) as info:
        load_stager(card)
    assert "m.card.json" in str(info.value)


def test_card_unknown_normalisation_kind_refused(tiny_onnx: Path) -> None:
    """A card declaring a normalisation this sleepstream does not implement is refused,
    naming the card and the kind."""
    _edit(card_path_for(tiny_onnx), "input_contract.normalisation", {"kind": "zscore-per-night"})
    with pytest.raises(ModelError, match=r"tiny-student\.card\.json.*'zscore-per-night'"):
        load_stager(tiny_onnx)


def test_card_running_scale_normalisation_loaded(tiny_onnx: Path) -> None:
    """A declared running-robust-scale normalisation reaches the stager as a spec."""
    from sleepstream.dsp.normalise import NormalisationSpec

    spec = NormalisationSpec(reference_uv=20.0)
    _edit(card_path_for(tiny_onnx), "input_contract.normalisation", spec.to_card())
    assert load_stager(tiny_onnx).normalisation == spec


def test_card_v1_still_loads(tiny_onnx: Path) -> None:
    """A format-1 card (string normalisation, no mode) loads as window mode, kind none."""
    card = card_path_for(tiny_onnx)
    doc = json.loads(card.read_text())
    doc["format"] = "sleepstream-model-card/1"
    del doc["mode"]
    doc["input_contract"]["normalisation"] = "InputNorm(mode='scale', scale_uv=50.0, clip=20.0)"
    del doc["onnx"]["pad"]
    card.write_text(json.dumps(doc))
    stager = load_stager(tiny_onnx)
    assert stager.card.version == 1 and stager.mode == "window"
    assert stager.card.normalisation == {"kind": "none"} and stager.pad_kind == "zero_epoch"
    assert stager.normalisation.kind == "none" and stager.card.training_recordings == ()


def test_training_recording_match_by_hash_then_name(tiny_onnx: Path, tmp_path: Path) -> None:
    """The file's sha256 identifies a training recording under any name; failing that,
    the name does; other files do not match."""
    rec = tmp_path / "night.edf"
    rec.write_bytes(b"0123456789" * 100)
    sha = hashlib.sha256(rec.read_bytes()).hexdigest()
    recs = [{"name": "SC4001E0-PSG.edf", "sha256": sha, "channels": ["EEG Fpz-Cz"]}]
    _edit(card_path_for(tiny_onnx), "training.recordings", recs)
    card = load_card(card_path_for(tiny_onnx))
    assert training_recording_match(card, rec)  # renamed copy: same bytes
    assert training_recording_match(card.raw, rec)
    other = tmp_path / "SC4001E0-PSG.edf"
    other.write_bytes(b"cropped")
    assert training_recording_match(card, other)  # same name
    stranger = tmp_path / "excerpt1.edf"
    stranger.write_bytes(b"other")
    assert not training_recording_match(card, stranger)
    assert not training_recording_match(
        load_card(card_path_for(tiny_onnx)).raw | {"training": {}}, rec
    )


@pytest.mark.slow
def test_daemon_refuses_unknown_normalisation(tiny_onnx: Path, tmp_path: Path, helpers) -> None:
    """`sleepstream run` with a model whose normalisation kind it does not implement exits
    with the model error code (7) and one line naming the card and the kind."""
    import subprocess

    _edit(card_path_for(tiny_onnx), "input_contract.normalisation", {"kind": "zscore-night"})
    argv = ["run", "--board", "synthetic", "--model", str(tiny_onnx), "--no-metrics"]
    argv += ["--state-dir", str(tmp_path / "state"), "--broker-port", str(helpers.free_port())]
    res = subprocess.run(
        helpers.sleepstream_cmd(*argv), capture_output=True, text=True, timeout=120,
        env=helpers.daemon_env(tmp_path),
    )  # fmt: skip
    assert res.returncode == 7, res.stderr
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and "tiny-student.card.json" in err[0] and "'zscore-night'" in err[0]
