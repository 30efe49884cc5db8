"""The teacher → TA → student chain (distill.distillation) on tiny models and a synthetic night."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from distill.data import Recording
from distill.distillation import MethodSpec, family_models, n_params, run_chain, uses_assistant
from distill.folds import full_night_fold
from distill.train import StageConfig, TrainConfig
from distill.trainset import Augmentation
from sleepstream.errors import UsageError


def _night(n: int = 40, seed: int = 0) -> Recording:
    """Stage k is a 2 Hz sine of amplitude 10 (k + 1) µV plus noise; runs of 4 epochs."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(rng.integers(0, 5, n // 4 + 1), 4)[:n]
    t = np.arange(3000) / 100.0
    x = (10.0 * (labels[:, None] + 1)) * np.sin(2 * np.pi * 2.0 * t)[None, :]
    x = (x + rng.normal(0, 2.0, x.shape)).astype(np.float32)
    return Recording("synth", {"ch0": x.ravel()}, labels.astype(np.int64), "synthetic")


def _cfg() -> TrainConfig:
    one = StageConfig(epochs=1, batch_size=16, patience=1)
    return TrainConfig(model="tiny-student", seq_len=3, pretrain=one, sequence=one,
                       augment=Augmentation.off(), assembled_ratio=0.0)  # fmt: skip


def test_family_models_names_roles_and_rejects_unknown_family():
    """deepsleepnet has teacher/TA/student; an unknown family lists the valid ones."""
    assert family_models("deepsleepnet") == {
        "teacher": "deepsleepnet-teacher", "ta": "deepsleepnet-ta",
        "student": "deepsleepnet-student",
    }  # fmt: skip
    with pytest.raises(UsageError, match="deepsleepnet"):
        family_models("resnet")


def test_method_spec_parses_options_and_validates_them():
    """name:key=value parses typed values; bad names and options fail before training."""
    spec = MethodSpec.parse("sleepkd:preset=code,alpha=0.5,chain=false")
    assert spec.options == {"preset": "code", "alpha": 0.5, "chain": False}
    assert not uses_assistant(spec) and uses_assistant(MethodSpec.parse("takd"))
    assert not uses_assistant(MethodSpec.parse("kd"))
    with pytest.raises(UsageError, match="valid methods"):
        MethodSpec.parse("hinton")
    with pytest.raises(UsageError, match="alfa"):
        MethodSpec.parse("sleepkd:alfa=1")


def test_method_spec_key_names_the_loss_not_the_spelling():
    """Specs that train the same loss share a key; any real difference shows in it."""
    key = MethodSpec.parse
    assert key("sleepkd").key == key("sleepkd:preset=paper").key == "sleepkd"
    assert key("sleepkd:alpha=0.1").key == "sleepkd"  # the default value
    assert key("sleepkd:gamma=0,chain=false").key == key("sleepkd:chain=false,gamma=0.0").key
    assert key("sleepkd:gamma=0,chain=false").key == "sleepkd:chain=False,gamma=0.0"
    assert key("sleepkd:preset=code").key != "sleepkd"
    assert key("kd").key == "kd" and key("kd:temperature=2").key != "kd"


@pytest.mark.parametrize(("method", "with_ta"), [("kd", False), ("sleepkd", True)])
def test_run_chain_trains_ta_only_when_used_and_keeps_teacher_frozen(tmp_path, method, with_ta):
    """The chain writes teacher/[ta/]student checkpoints; the teacher is not changed by KD."""
    torch.manual_seed(0)
    rec = _night()
    fold = full_night_fold(rec, k=4, guard=3)
    cfg = _cfg()
    first = run_chain(MethodSpec.parse(method), "tiny", cfg, [rec], fold, out_dir=tmp_path,
                      progress=False)  # fmt: skip
    assert (tmp_path / "teacher" / "best.safetensors").is_file()
    assert (tmp_path / "ta" / "best.safetensors").is_file() == with_ta
    assert (first.ta is not None) == with_ta
    assert (tmp_path / "student" / "best.safetensors").is_file()
    teacher_state = {k: v.clone() for k, v in first.teacher.state_dict().items()}
    # a second run reuses every checkpoint: same student weights, teacher untouched
    again = run_chain(MethodSpec.parse(method), "tiny", replace(cfg, seed=1), [rec], fold,
                      out_dir=tmp_path, progress=False)  # fmt: skip
    for k, v in first.student.state_dict().items():
        assert torch.equal(v, again.student.state_dict()[k])
    for k, v in first.teacher.state_dict().items():
        assert torch.equal(v, teacher_state[k])
    assert n_params(first.teacher) > n_params(first.student)


def test_run_chain_distils_from_given_teacher_without_training_one(tmp_path):
    """With ``teacher=`` the chain trains no teacher and leaves its weights bit-identical."""
    from distill.models import build

    torch.manual_seed(0)
    rec = _night()
    teacher = build("tiny-teacher")
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    res = run_chain(MethodSpec.parse("dgkd"), "tiny", _cfg(), [rec],
                    full_night_fold(rec, k=4, guard=3), out_dir=tmp_path, teacher=teacher,
                    progress=False)  # fmt: skip
    assert not (tmp_path / "teacher").exists()
    assert res.ta is not None
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())
