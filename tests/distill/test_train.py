"""Two-stage training loop, loss callbacks, determinism, checkpoints and resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from distill.augment import AugmentConfig
from distill.checkpoint import load_model, load_optimizer, read_sidecar, save_checkpoint
from distill.data import Recording
from distill.folds import full_night_fold
from distill.train import (
    OptimConfig,
    StageConfig,
    TrainConfig,
    cross_entropy,
    fit,
    set_determinism,
    train_run,
)
from distill.trainset import Augmentation, TrainSet
from sleepstream.errors import ModelError, UsageError


def stage_recording(n: int = 160, seed: int = 0, name: str = "synth") -> Recording:
    """A learnable night: stage k is a 2 Hz sine of amplitude 10 (k + 1) µV plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(rng.integers(0, 5, n // 4 + 1), 4)[:n]
    t = np.arange(3000) / 100.0
    x = (10.0 * (labels[:, None] + 1)) * np.sin(2 * np.pi * 2.0 * t)[None, :]
    x = (x + rng.normal(0, 2.0, x.shape)).astype(np.float32)
    sig = {"a": x.ravel(), "b": (0.9 * x).ravel()}
    return Recording(name, sig, labels.astype(np.int64), "synthetic")


def tiny_config(**kw) -> TrainConfig:
    base = dict(
        model="tiny-student",
        seq_len=4,
        pretrain=StageConfig(epochs=2, batch_size=16, optim=OptimConfig(lr=1e-2)),
        sequence=StageConfig(epochs=2, batch_size=8, optim=OptimConfig(lr=1e-2)),
        assembled_ratio=0.0,
    )
    return TrainConfig(**{**base, **kw})


def _weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [v.clone() for v in model.state_dict().values()]


@pytest.mark.slow
def test_train_run_learns_separable_stages():
    """Stage-1 pre-training reaches a high validation macro-F1 on a learnable night."""
    torch.set_num_threads(1)
    rec = stage_recording(200)
    cfg = tiny_config(
        pretrain=StageConfig(epochs=8, batch_size=16, optim=OptimConfig(lr=1e-2, schedule="none")),
        sequence=StageConfig(epochs=0),
        augment=Augmentation.off(),
    )
    _, summary = train_run(cfg, [rec], full_night_fold(rec, k=4, guard=5), progress=False)
    hist = summary["pretrain"]["history"]
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert summary["pretrain"]["best_val_macro_f1"] > 0.6


def test_train_run_is_deterministic_given_seed(tmp_path):
    """Same seed, same weights; another seed, other weights (both stages, augmentation on)."""
    torch.set_num_threads(1)
    rec = stage_recording(80)
    fold = full_night_fold(rec, k=4, guard=4)
    a, _ = train_run(tiny_config(seed=3), [rec], fold, progress=False)
    b, _ = train_run(tiny_config(seed=3), [rec], fold, progress=False)
    c, _ = train_run(tiny_config(seed=4), [rec], fold, progress=False)
    assert all(torch.equal(x, y) for x, y in zip(_weights(a), _weights(b), strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(_weights(a), _weights(c), strict=True))


def test_fit_calls_custom_loss_callback_and_logs():
    """fit() trains with any loss callback; its logs are averaged into the history."""
    torch.set_num_threads(1)
    set_determinism(0)
    from distill.models import build

    rec = stage_recording(40)
    model = build("tiny-student")
    ce = cross_entropy("logits")
    seen = []

    def loss_fn(outputs, batch):
        seen.append((batch["epoch"], batch["stage"], tuple(batch["x"].shape[1:])))
        loss, logs = ce(outputs, batch)
        return loss, {**logs, "extra": 2.0}

    ts = TrainSet([rec], [np.ones(40, bool)], seq=4)
    res = fit(
        model, ts, loss_fn, StageConfig(epochs=2, batch_size=4), stage_name="kd", progress=False
    )
    assert {s[0] for s in seen} == {0, 1} and {s[1] for s in seen} == {"kd"}
    assert seen[0][2] == (4, 1, 3000)
    assert res.history[0]["train_extra"] == pytest.approx(2.0)
    assert res.best_epoch in (0, 1)


def test_cross_entropy_ignores_masked_labels():
    """Label -1 positions do not change the loss; an all-masked batch gives 0."""
    logits = torch.randn(2, 3, 5, requires_grad=True)
    y = torch.tensor([[0, 1, -1], [2, -1, -1]])
    loss_fn = cross_entropy("logits")
    full, _ = loss_fn({"logits": logits}, {"y": y})
    other = logits.detach().clone()
    other[0, 2] = 100.0
    same, _ = loss_fn({"logits": other}, {"y": y})
    assert float(full.detach()) == pytest.approx(float(same))
    zero, _ = loss_fn({"logits": logits}, {"y": torch.full((2, 3), -1)})
    assert float(zero.detach()) == 0.0
    zero.backward()


def test_fit_resume_matches_uninterrupted_run(tmp_path):
    """A run stopped after one epoch and resumed ends with the same weights as one straight run."""
    torch.set_num_threads(1)
    from distill.models import build

    rec = stage_recording(60)
    ts = TrainSet([rec], [np.ones(60, bool)], seq=4)
    stage = StageConfig(epochs=3, batch_size=8, optim=OptimConfig(lr=1e-2))
    aug = Augmentation(AugmentConfig(gain=True, noise=True), shift=300, channel_swap=True)

    set_determinism(0)
    straight = build("tiny-student")
    fit(straight, ts, cross_entropy(), stage, augment=aug, seed=1, progress=False)

    ce = cross_entropy()

    def stop_at_epoch_1(outputs, batch):
        if batch["epoch"] == 1:
            raise KeyboardInterrupt
        return ce(outputs, batch)

    set_determinism(0)
    resumed = build("tiny-student")
    with pytest.raises(KeyboardInterrupt):
        fit(
            resumed,
            ts,
            stop_at_epoch_1,
            stage,
            augment=aug,
            seed=1,
            progress=False,
            checkpoint_dir=tmp_path,
        )
    assert read_sidecar(tmp_path / "sequence-last.safetensors")["train_state"]["epoch"] == 0
    fresh = build("tiny-student")
    res = fit(
        fresh,
        ts,
        ce,
        stage,
        augment=aug,
        seed=1,
        progress=False,
        checkpoint_dir=tmp_path,
        resume=True,
    )
    assert [h["epoch"] for h in res.history] == [0, 1, 2]
    assert all(torch.equal(x, y) for x, y in zip(_weights(straight), _weights(fresh), strict=True))


def test_checkpoint_roundtrip_restores_model_and_optimizer(tmp_path):
    """Weights, sidecar and Adam state come back from safetensors + JSON, no pickle."""
    from distill.models import build

    set_determinism(0)
    model = build("tiny-student")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(2, 3, 1, 3000) * 20
    model(x)["logits"].sum().backward()
    opt.step()
    path = save_checkpoint(
        tmp_path / "m.safetensors",
        model,
        {"model": "tiny-student", "model_kwargs": {}, "note": (1, 2)},
        opt,
    )
    assert (tmp_path / "m.optim.safetensors").is_file()
    assert json.loads((tmp_path / "m.json").read_text())["note"] == [1, 2]
    back, meta = load_model(path)
    model.eval()
    with torch.no_grad():
        assert torch.equal(back(x)["logits"], model(x)["logits"])
    opt2 = torch.optim.Adam(back.parameters(), lr=5.0)
    assert load_optimizer(path, opt2, meta)
    assert opt2.param_groups[0]["lr"] == pytest.approx(1e-3)
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert all(torch.equal(s1[k]["exp_avg"], s2[k]["exp_avg"]) for k in s1)


def test_load_model_rejects_bad_checkpoint(tmp_path):
    """A missing sidecar or a weights file for another model raises ModelError."""
    from distill.models import build

    with pytest.raises(ModelError):
        load_model(tmp_path / "none.safetensors")
    path = save_checkpoint(
        tmp_path / "m.safetensors",
        build("tiny-student"),
        {"model": "tiny-teacher", "model_kwargs": {}},
    )
    with pytest.raises(ModelError):
        load_model(path)


def test_configs_reject_bad_values_and_roundtrip():
    """Configs are validated at construction and survive their JSON form."""
    with pytest.raises(UsageError):
        OptimConfig(name="rmsprop")
    with pytest.raises(UsageError):
        TrainConfig(balance="magic")
    cfg = tiny_config()
    assert TrainConfig.from_json(json.loads(json.dumps(cfg.to_json()))) == cfg
    cos = OptimConfig(lr=1.0, schedule="cosine", min_lr_ratio=0.1)
    assert cos.lr_at(0, 10) == pytest.approx(1.0) and cos.lr_at(9, 10) == pytest.approx(0.1)
    assert OptimConfig(lr=1.0, schedule="step", step_size=2, gamma=0.5).lr_at(4, 10) == 0.25


@pytest.mark.slow
def test_train_command_writes_checkpoint(tmp_path, shared_data):
    """`distill train` on SC4001 (both derivations) writes a loadable checkpoint + sidecar."""
    from distill.cli import main

    out = tmp_path / "run"
    rc = main(
        [
            "train",
            "--model",
            "tiny-student",
            "--split",
            "within-night-blocks",
            "--fold",
            "2",
            "--out",
            str(out),
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
    )
    assert rc == 0
    meta = read_sidecar(out / "block2" / "best.safetensors")
    assert meta["channels"] == ["EEG Fpz-Cz", "EEG Pz-Oz"]
    assert meta["fold"]["protocol"] == "within-night-blocks" and meta["seq_len"] == 3
    assert meta["command"].startswith("distill train")
    load_model(out / "block2" / "best.safetensors")
    assert (
        main(["train", "--model", "tiny-student", "--out", str(out), "--optimizer", "rmsprop"]) == 2
    )


@pytest.mark.slow
def test_train_command_with_generalisation_hooks_and_proxy(tmp_path, shared_data, capsys):
    """Normalisation, night-level augmentation, sessions and night-start windows on the
    cross-derivation proxy: the sidecar records what export needs; evaluate scores the
    proxy's held-out derivation as cold-start excerpts."""
    import json

    from distill.cli import main

    out = tmp_path / "proxy"
    rc = main(["train", "--model", "tiny-student", "--split", "cross-derivation", "--folds", "0",
               "--proxy-direction", "fpz-pz", "--out", str(out), "--data", str(shared_data),
               "--pretrain-epochs", "1", "--epochs", "1", "--seq-len", "3", "--no-progress",
               "--normalise", "running-robust-scale", "--normalise-param", "window_epochs=60",
               "--augment", "gain,filter,noise,sign_flip,time_scale", "--augment-param",
               "gain_max=3", "--augment-where", "night", "--session-len", "120",
               "--start-windows", "0.5"])  # fmt: skip
    assert rc == 0
    meta = read_sidecar(out / "fpz-pz" / "best.safetensors")
    assert meta["normalisation"]["kind"] == "running-robust-scale"
    assert meta["normalisation"]["window_epochs"] == 60
    cfg = TrainConfig.from_json(meta["config"])
    assert cfg.augment.where == "night" and cfg.augment.signal.gain_max == 3.0
    assert cfg.augment.signal.active == ("filter", "time_scale", "noise", "sign_flip", "gain")
    assert cfg.session_len == 120 and cfg.start_windows == 0.5
    assert meta["fold"]["protocol"] == "cross-derivation"
    assert "--augment-param gain_max=3" in meta["command"]
    capsys.readouterr()
    rc = main(["evaluate", "--checkpoint", str(out / "fpz-pz"), "--protocol",
               "cross-derivation", "--mode", "causal", "--data", str(shared_data),
               "--out", str(tmp_path), "--stem", "p"])  # fmt: skip
    assert rc == 0
    res = json.loads((tmp_path / "p.json").read_text())
    assert res["modes"]["causal"]["pooled"]["n_epochs"] == 841  # all of Pz-Oz, scored once
    assert "model-selection proxy" in res["protocol_label"]
