"""Evaluation: scored positions, protocol labels, and the `distill evaluate` command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from distill.evaluate import (
    PROTOCOL_LABELS,
    predict_causal_strided,
    predict_targets,
    summarise,
    to_markdown,
)

WNB = "within-night-blocks (optimistic: same night)"


def id_predictor(x: np.ndarray) -> np.ndarray:
    """Logit 0 = epoch id at each position; logit 1 = number of real (non-padded) epochs."""
    out = np.zeros(x.shape[:2] + (5,), np.float32)
    out[..., 0] = x[:, :, 0, :].mean(axis=-1)
    out[..., 1] = (x[:, :, 0, 0] != 0).sum(axis=1)[:, None]
    return out


@pytest.mark.parametrize("mode", ["causal", "offline"])
def test_predict_targets_reads_the_scored_position(mode, id_recording):
    """Each target's logits come from the window position holding that target."""
    rec = id_recording(100)
    tg = np.array([0, 1, 50, 99])
    out = predict_targets(id_predictor, rec, tg, seq=7, mode=mode, batch_size=3)
    assert out[:, 0].tolist() == (tg + 1).tolist()
    real = out[:, 1].tolist()
    assert real == ([1, 2, 7, 7] if mode == "causal" else [4, 5, 7, 4])


def test_predict_causal_strided_keeps_past_context(id_recording):
    """The strided validator scores every target with >= seq - stride past epochs."""
    rec = id_recording(100)
    tg = np.r_[30:60, 70:95]
    out = predict_causal_strided(id_predictor, rec, tg, seq=20, stride=5)
    assert out[:, 0].tolist() == (tg + 1).tolist()
    assert out[:, 1].min() == 20


def test_outputs_label_within_night_blocks_as_optimistic():
    """JSON and Markdown of within-night-blocks carry the optimistic label."""
    yt = np.array([0, 1, 2, 2, 3, 4])
    res = summarise({"block0": {"causal": (yt, yt)}}, "within-night-blocks")
    assert res["protocol_label"] == WNB == PROTOCOL_LABELS["within-night-blocks"]
    assert res["modes"]["causal"]["pooled"]["accuracy"] == 1.0
    md = to_markdown(res)
    assert md.startswith(f"## {WNB}") and md.count(WNB) >= 2


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory, shared_data):
    """A tiny model trained (1 + 1 epochs) on SC4001 fold block0 and on the full night."""
    from distill.cli import main

    root = tmp_path_factory.mktemp("runs")
    common = [
        "--model",
        "tiny-student",
        "--data",
        str(shared_data),
        "--pretrain-epochs",
        "1",
        "--epochs",
        "1",
        "--seq-len",
        "3",
        "--no-progress",
    ]
    assert (
        main(
            [
                "train",
                "--split",
                "within-night-blocks",
                "--fold",
                "0",
                "--out",
                str(root / "wnb"),
                *common,
            ]
        )
        == 0
    )
    assert main(["train", "--split", "full", "--out", str(root / "full"), *common]) == 0
    return root


@pytest.mark.slow
def test_evaluate_checkpoint_within_night_blocks(tiny_runs, shared_data, tmp_path, capsys):
    """A fold checkpoint is scored on its own held-out block, both modes, JSON + Markdown."""
    from distill.checkpoint import read_sidecar
    from distill.cli import main
    from distill.folds import Fold

    rc = main(
        [
            "evaluate",
            "--checkpoint",
            str(tiny_runs / "wnb"),
            "--protocol",
            "within-night-blocks",
            "--mode",
            "both",
            "--data",
            str(shared_data),
            "--out",
            str(tmp_path),
            "--stem",
            "wnb",
        ]
    )
    assert rc == 0
    res = json.loads((tmp_path / "wnb.json").read_text())
    fold = Fold.from_json(read_sidecar(tiny_runs / "wnb" / "block0" / "best.safetensors")["fold"])
    n_test = int(fold.test["SC4001"].sum())
    assert res["protocol_label"] == WNB
    for mode in ("causal", "offline"):
        assert res["modes"][mode]["pooled"]["n_epochs"] == n_test
    assert WNB in (tmp_path / "wnb.md").read_text() and WNB in capsys.readouterr().out
    assert res["command"].startswith("distill evaluate")


@pytest.mark.slow
def test_evaluate_checkpoint_cross_dataset_on_dreams(tiny_runs, shared_data, tmp_path):
    """Cross-dataset scores the 8 DREAMS excerpts (scored 30-s epochs only)."""
    from distill.cli import main

    rc = main(
        [
            "evaluate",
            "--checkpoint",
            str(tiny_runs / "full" / "best.safetensors"),
            "--protocol",
            "cross-dataset",
            "--mode",
            "causal",
            "--data",
            str(shared_data),
            "--out",
            str(tmp_path),
            "--stem",
            "x",
        ]
    )
    assert rc == 0
    res = json.loads((tmp_path / "x.json").read_text())
    assert len(res["test_set"]) == 8
    assert 400 < res["modes"]["causal"]["pooled"]["n_epochs"] <= 480
    assert "offline" not in res["modes"]


@pytest.mark.slow  # tiny_runs trains two models
def test_evaluate_rejects_protocol_mismatch(tiny_runs, shared_data):
    """A full-night checkpoint has no held-out block: within-night-blocks is refused (exit 2)."""
    from distill.cli import main

    rc = main(
        [
            "evaluate",
            "--checkpoint",
            str(tiny_runs / "full" / "best.safetensors"),
            "--protocol",
            "within-night-blocks",
            "--data",
            str(shared_data),
        ]
    )
    assert rc == 2
    rc = main(
        [
            "evaluate",
            "--model",
            "tiny-student",
            "--protocol",
            "nightwise-kfold",
            "--data",
            str(shared_data),
        ]
    )
    assert rc == 2  # one night with EEG is not enough for night-wise folds


@pytest.mark.slow
def test_evaluate_onnx_matches_checkpoint(tiny_runs, shared_data, tmp_path):
    """The exported model, run through sleepstream.inference, gives the checkpoint's figures."""
    from distill.checkpoint import load_model
    from distill.cli import main
    from distill.export import export_student

    ckpt = tiny_runs / "full" / "best.safetensors"
    model, meta = load_model(ckpt)
    onnx = export_student(
        model,
        tmp_path / "tiny.onnx",
        seq_len=meta["seq_len"],
        card_fields={"training": {"datasets": meta["datasets"], "fold": meta["fold"]}},
    )
    args = ["--protocol", "cross-dataset", "--mode", "causal", "--data", str(shared_data)]
    assert (
        main(["evaluate", "--onnx", str(onnx), *args, "--out", str(tmp_path), "--stem", "o"]) == 0
    )
    assert (
        main(["evaluate", "--checkpoint", str(ckpt), *args, "--out", str(tmp_path), "--stem", "t"])
        == 0
    )
    o = json.loads((tmp_path / "o.json").read_text())["modes"]
    t = json.loads((tmp_path / "t.json").read_text())["modes"]
    assert o["causal"]["pooled"]["n_epochs"] > 400
    assert o["causal"]["pooled"]["confusion"] == t["causal"]["pooled"]["confusion"]


@pytest.mark.slow
def test_evaluate_model_trains_then_scores_cross_dataset(shared_data, tmp_path):
    """`--model` trains on SC4001 (run folder written) and scores DREAMS in one command."""
    from distill.cli import main

    rc = main(
        [
            "evaluate",
            "--model",
            "tiny-student",
            "--protocol",
            "cross-dataset",
            "--mode",
            "offline",
            "--data",
            str(shared_data),
            "--runs",
            str(tmp_path / "runs"),
            "--pretrain-epochs",
            "1",
            "--epochs",
            "1",
            "--seq-len",
            "3",
            "--no-progress",
            "--out",
            str(tmp_path),
            "--stem",
            "m",
        ]
    )
    assert rc == 0
    assert (tmp_path / "runs" / "best.safetensors").is_file()
    res = json.loads((tmp_path / "m.json").read_text())
    assert res["model"] == "tiny-student" and len(res["test_set"]) == 8
    assert list(res["modes"]) == ["offline"]


@pytest.mark.slow
def test_evaluate_onnx_applies_the_cards_normalisation(shared_data, tmp_path):
    """A model trained with --normalise: its card declares the spec (from the sidecar),
    and `evaluate --onnx` applies it per DREAMS excerpt exactly as the checkpoint path does."""
    from distill.cli import main

    run = tmp_path / "run"
    common = ["--data", str(shared_data), "--no-progress"]
    assert main(["train", "--model", "tiny-student", "--split", "full", "--out", str(run),
                 "--pretrain-epochs", "1", "--epochs", "1", "--seq-len", "3",
                 "--normalise", "running-robust-scale", *common]) == 0  # fmt: skip
    onnx = tmp_path / "norm.onnx"
    ckpt = run / "best.safetensors"
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(onnx), "--mode",
                 "window"]) == 0  # fmt: skip
    card = json.loads(onnx.with_name("norm.card.json").read_text())
    assert card["input_contract"]["normalisation"]["kind"] == "running-robust-scale"
    args = ["--protocol", "cross-dataset", "--mode", "causal", *common[:2], "--out", str(tmp_path)]
    assert main(["evaluate", "--onnx", str(onnx), *args, "--stem", "o"]) == 0
    assert main(["evaluate", "--checkpoint", str(ckpt), *args, "--stem", "t"]) == 0
    o = json.loads((tmp_path / "o.json").read_text())
    t = json.loads((tmp_path / "t.json").read_text())
    assert o["normalisation"]["kind"] == t["normalisation"]["kind"] == "running-robust-scale"
    assert (
        o["modes"]["causal"]["pooled"]["confusion"] == t["modes"]["causal"]["pooled"]["confusion"]
    )
