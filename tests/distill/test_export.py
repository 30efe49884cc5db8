"""ONNX export: parity with torch, the model card, the export and models commands."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from safetensors.torch import save_file

from distill.cli import main
from distill.export import export_student, export_tiny_student
from distill.models import build, count_params

torch.set_num_threads(1)


def _parity(model: torch.nn.Module, onnx_path: Path, seqs: list[int]) -> float:
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(123)
    worst = 0.0
    for b in (1, 2):
        for s in seqs:
            x = torch.randn(b, s, 1, 3000, generator=gen) * 40.0
            with torch.no_grad():
                ref = model(x)["logits"].numpy()
            got = sess.run(["logits"], {"eeg": x.numpy()})[0]
            assert got.shape == (b, s, 5)
            worst = max(worst, float(np.abs(ref - got).max()))
    return worst


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(1)
    model = build("tiny-teacher").eval()
    with torch.no_grad():  # move BN statistics off their defaults so they matter
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    out = tmp_path_factory.mktemp("exp") / "tiny.onnx"
    export_student(
        model,
        out,
        seq_len=4,
        card_fields={
            "training": {"data": "none"},
            "metrics": {"within-night-blocks": {"causal": {"accuracy": 0.5}}},
            "rebuild_command": "distill export --checkpoint x --out tiny.onnx",
            "channels": "Fpz-Cz",
        },
    )
    return model, out


def test_export_parity_tiny(tiny_export) -> None:
    """ONNX Runtime matches torch within 1e-4 on the tiny teacher for several seq lengths."""
    model, path = tiny_export
    assert _parity(model, path, [1, 3, 4, 11]) < 1e-4


def test_export_card_contents(tiny_export) -> None:
    """The card records size, sha256, parameter count, the input contract and training fields."""
    model, path = tiny_export
    card = json.loads(path.with_name("tiny.card.json").read_text())
    data = path.read_bytes()
    assert card["onnx"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert card["onnx"]["size_bytes"] == len(data) and card["onnx"]["file"] == "tiny.onnx"
    assert card["n_params"] == count_params(model)["n_params"]
    assert card["architecture"] == "tiny-teacher" and card["role"] == "teacher"
    ic = card["input_contract"]
    assert (ic["fs_hz"], ic["units"], ic["seq_len"], ic["scored_position"]) == (
        100.0,
        "uV",
        4,
        "last",
    )
    assert ic["channels"] == "Fpz-Cz" and ic["causal"] is True
    assert card["metrics"]["within-night-blocks"]["causal"]["accuracy"] == 0.5
    assert card["rebuild_command"].startswith("distill export")


def test_export_single_file(tiny_export) -> None:
    """The ONNX file is self-contained: no external-data side files are written."""
    _, path = tiny_export
    assert sorted(p.name for p in path.parent.iterdir()) == ["tiny.card.json", "tiny.onnx"]


@pytest.mark.parametrize(
    "name", ["deepsleepnet-student", pytest.param("deepsleepnet-teacher", marks=pytest.mark.slow)]
)
def test_export_parity_deepsleepnet(tmp_path: Path, name: str) -> None:
    """The paper-size DeepSleepNet student (1.55 M) and teacher (5.5 M) export with parity < 1e-4."""
    torch.manual_seed(0)
    model = build(name).eval()
    path = export_student(model, tmp_path / "s.onnx", seq_len=20, card_fields={})
    assert _parity(model, path, [1, 5, 20]) < 1e-4


@pytest.mark.slow
def test_export_parity_dynamo_exporter(tmp_path: Path) -> None:
    """The dynamo exporter path also yields a parity-checked, loadable graph."""
    torch.manual_seed(0)
    model = build("tiny-student").eval()
    path = export_student(model, tmp_path / "d.onnx", seq_len=5, card_fields={}, exporter="dynamo")
    card = json.loads(path.with_name("d.card.json").read_text())
    assert "dynamo" in card["onnx"]["exporter"]
    seqs = [1, 5, 8] if card["input_contract"]["seq_dynamic"] else [5]
    assert _parity(model, path, seqs) < 1e-4


def test_export_tiny_student_helper(tmp_path: Path) -> None:
    """export_tiny_student writes a loadable model + card; same seed, byte-identical ONNX."""
    from sleepstream.inference import load_stager

    p = export_tiny_student(tmp_path / "a", seed=3)
    stager = load_stager(p)
    x = np.random.default_rng(0).standard_normal((2, stager.seq_len, 1, 3000)).astype(np.float32)
    q = export_tiny_student(tmp_path / "b", seed=3)
    np.testing.assert_allclose(stager.logits(x), load_stager(q).logits(x), atol=1e-6)
    assert p.read_bytes() == q.read_bytes()
    r = export_tiny_student(tmp_path / "c", seed=4)
    assert r.read_bytes() != p.read_bytes()


def test_export_command_from_state_dict(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`distill export` turns a bare safetensors state dict (+ --model) into ONNX + card."""
    torch.manual_seed(0)
    model = build("tiny-student").eval()
    ckpt = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(ckpt))
    metrics = tmp_path / "m.json"
    metrics.write_text(json.dumps({"cross-dataset": {"offline": {"macro_f1": 0.4}}}))
    out = tmp_path / "out" / "st.onnx"
    rc = main(
        [
            "export",
            "--checkpoint",
            str(ckpt),
            "--model",
            "tiny-student",
            "--out",
            str(out),
            "--seq-len",
            "3",
            "--metrics",
            str(metrics),
            "--mode",
            "window",
        ]
    )
    assert rc == 0 and out.is_file()
    card = json.loads(out.with_name("st.card.json").read_text())
    assert card["input_contract"]["seq_len"] == 3
    assert card["metrics"]["cross-dataset"]["offline"]["macro_f1"] == 0.4
    assert (
        "--model tiny-student" in card["rebuild_command"] and str(ckpt) in card["rebuild_command"]
    )
    assert _parity(model, out, [3]) < 1e-4
    assert "wrote" in capsys.readouterr().out


def test_export_command_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Missing --model without a sidecar, or a missing checkpoint, exit non-zero with one line."""
    ckpt = tmp_path / "w.safetensors"
    save_file({"x": torch.zeros(1)}, str(ckpt))
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "a.onnx")]) == 2
    assert "--model" in capsys.readouterr().err
    rc = main(
        [
            "export",
            "--checkpoint",
            str(ckpt),
            "--model",
            "tiny-student",
            "--out",
            str(tmp_path / "a.onnx"),
        ]
    )
    assert rc == 7  # ModelError: state dict does not fit the model
    rc = main(
        [
            "export",
            "--checkpoint",
            str(tmp_path / "no.safetensors"),
            "--model",
            "tiny-student",
            "--out",
            str(tmp_path / "a.onnx"),
        ]
    )
    assert rc == 7 and "not found" in capsys.readouterr().err


def test_models_command_json(capsys: pytest.CaptureFixture) -> None:
    """`distill models --json` lists {name, family, role, n_params} for every registered model."""
    from distill.models import MODEL_SPECS

    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list(MODEL_SPECS)
    by_name = {r["name"]: r for r in rows}
    assert by_name["deepsleepnet-student"]["n_params"] == 1_552_906
    assert all({"name", "family", "role", "n_params"} <= set(r) for r in rows)


def test_export_command_from_train_checkpoint(tmp_path: Path) -> None:
    """A `distill train` checkpoint (weights + sidecar) exports without --model; the card
    carries the training command, channels and the rebuild command."""
    from distill.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = build("tiny-ta", seq_len=4).eval()
    ckpt = save_checkpoint(
        tmp_path / "best.safetensors",
        model,
        {
            "model": "tiny-ta",
            "model_kwargs": {"seq_len": 4},
            "seq_len": 4,
            "channels": ["EEG Fpz-Cz"],
            "datasets": ["sc4001"],
            "command": "distill train --model tiny-ta --seq-len 4",
        },
    )
    out = tmp_path / "ta.onnx"
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    card = json.loads(out.with_name("ta.card.json").read_text())
    assert card["architecture"] == "tiny-ta" and card["input_contract"]["seq_len"] == 4
    assert "EEG Fpz-Cz" in card["input_contract"]["channels"]
    assert card["training"]["datasets"] == ["sc4001"]
    assert card["rebuild_command"].startswith(
        "distill train --model tiny-ta --seq-len 4 && distill export"
    )
    assert card["mode"] == "split" and not out.exists()  # auto: the family splits
    from sleepstream.inference import load_stager

    x = torch.randn(2, 4, 1, 3000) * 40
    with torch.no_grad():
        ref = model(x)["logits"].numpy()
    assert np.abs(load_stager(out).logits(x.numpy()) - ref).max() < 1e-4


# -- split export ------------------------------------------------------------------------
def test_export_split_writes_encoder_head_and_card(tmp_path: Path) -> None:
    """--mode split writes exactly the encoder, the head and the card; the card records the
    composed parity at seq 1, seq_len, seq_len + 3 with padded starts; a window export at
    the same path afterwards removes the stale split graphs."""
    torch.manual_seed(0)
    model = build("tiny-teacher").eval()
    card_path = export_student(model, tmp_path / "m.onnx", seq_len=5, mode="split")
    assert card_path == tmp_path / "m.card.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "m.card.json",
        "m.encoder.onnx",
        "m.head.onnx",
    ]
    card = json.loads(card_path.read_text())
    assert card["format"] == "sleepstream-model-card/2" and card["mode"] == "split"
    sp = card["split"]
    assert (sp["encoder"]["input"], sp["encoder"]["output"]) == ("eeg_epoch", "state")
    assert (sp["head"]["input"], sp["head"]["output"]) == ("states", "logits")
    assert sp["state_dim"] == model.state_dim == 5
    assert sp["parity"]["seqs"] == [1, 5, 8] and sp["parity"]["padded_starts"] == [0, 1, 2, 4, 7]
    assert sp["parity"]["max_abs_logits"] < 1e-4
    enc = ort.InferenceSession(str(tmp_path / "m.encoder.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 1, 3000) * 40
    with torch.no_grad():
        ref = model.epoch_state(x).numpy()
    assert np.abs(enc.run(["state"], {"eeg_epoch": x.numpy()})[0] - ref).max() < 1e-4
    export_student(model, tmp_path / "m.onnx", seq_len=5, mode="window")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.card.json", "m.onnx"]


@pytest.mark.slow
def test_export_split_refused_for_salient(tmp_path: Path) -> None:
    """SalientSleepNet is not splittable: --mode split is refused, auto falls back to window."""
    from sleepstream.errors import ModelError

    torch.manual_seed(0)
    model = build("salient-student").eval()
    with pytest.raises(ModelError, match="not splittable"):
        export_student(model, tmp_path / "s.onnx", seq_len=3, mode="split")
    out = export_student(model, tmp_path / "s.onnx", seq_len=3, mode="auto")
    assert json.loads(out.with_name("s.card.json").read_text())["mode"] == "window"


def test_export_refuses_unknown_normalisation(tmp_path: Path) -> None:
    """A normalisation kind the daemon would refuse is refused at export already."""
    from sleepstream.errors import ModelError

    with pytest.raises(ModelError, match="'per-night-z'"):
        export_student(
            build("tiny-student").eval(), tmp_path / "a.onnx", seq_len=3,
            normalisation={"kind": "per-night-z"},
        )  # fmt: skip


def test_export_command_split_carries_sidecar_contract(tmp_path: Path) -> None:
    """`distill export` of a sidecar with normalisation, recordings and a truncated history
    writes a split card with all three (and the sidecar's training machine and start time
    in the card's training section); the truncated composition is parity-checked and the
    daemon's stager reproduces the torch model on short windows."""
    from distill.checkpoint import save_checkpoint
    from sleepstream.dsp.normalise import NormalisationSpec
    from sleepstream.inference import load_stager

    torch.manual_seed(0)
    model = build("tiny-ta", seq_len=4).eval()
    spec = NormalisationSpec(reference_uv=15.0)
    recs = [{"name": "SC4001E0-PSG.edf", "sha256": "ab" * 32, "channels": ["EEG Fpz-Cz"]}]
    machine = {"platform": "Linux-6.1-x86_64", "cpu": "x86_64", "device": "cpu",
               "device_name": None, "amp": False, "world_size": 1, "torch": "2.13.0"}  # fmt: skip
    ckpt = save_checkpoint(
        tmp_path / "best.safetensors",
        model,
        {"model": "tiny-ta", "model_kwargs": {"seq_len": 4}, "seq_len": 4,
         "normalisation": spec.to_card(), "recordings": recs, "history_pad": "truncate",
         "machine": machine, "started_at": "2026-11-29T21:04:05Z"},
    )  # fmt: skip
    out = tmp_path / "ta.onnx"
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    card = json.loads(out.with_name("ta.card.json").read_text())
    assert card["mode"] == "split" and card["split"]["pad"] == {"kind": "truncate"}
    assert card["split"]["parity"]["pad"] == "truncate"
    assert card["input_contract"]["normalisation"] == spec.to_card()
    assert card["training"]["recordings"] == recs
    assert card["training"]["machine"] == machine
    assert card["training"]["started_at"] == "2026-11-29T21:04:05Z"
    stager = load_stager(out)
    assert stager.normalisation == spec and stager.pad_kind == "truncate"
    x = torch.randn(1, 2, 1, 3000) * 30
    with torch.no_grad():
        ref = model(x)["logits"].numpy()
    assert np.abs(stager.logits(x.numpy()) - ref).max() < 1e-4
