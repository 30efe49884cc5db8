"""Where training runs: device names, precision, the DataLoader path, micro-batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distill import models
from distill.augment import AugmentConfig
from distill.config import OptimConfig, StageConfig
from distill.ddpcheck import synthetic_night
from distill.loader import StageLoader, pass_items, rank_batches, view_rng
from distill.loop import cross_entropy, fit
from distill.runtime import Runtime, resolve_device, set_determinism
from distill.trainset import Augmentation, TrainSet
from sleepstream.errors import UsageError

AUG = Augmentation(AugmentConfig(gain=True, noise=True, filter=True), shift=100, channel_swap=True)


def test_device_names_and_precision_on_cpu():
    """auto is cpu here; CUDA requests fail with one line; AMP is off on CPU."""
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="no CUDA device"):
            Runtime(device="cuda:0")
    with pytest.raises(UsageError, match="valid: auto, cpu"):
        Runtime(device="tpu")
    rt = Runtime(device="cpu", amp="auto")
    assert rt.amp_dtype() is None and rt.grad_scaler() is None
    d = rt.describe()
    assert d["device"] == "cpu" and d["loader"] == "memory" and d["world_size"] == 1
    with pytest.raises(UsageError, match="micro-batches"):
        Runtime(micro_batches=0)


def _stage_batches(ts: TrainSet, workers: int, passes: range, aug=AUG, world: int = 1, rank=0):
    ld = StageLoader(ts, aug, (0, 2), None, 8, passes, workers=workers, rank=rank, world=world)
    try:
        return [[(x.clone(), y.clone()) for x, y in ld.batches(p)] for p in passes]
    finally:
        ld.close()


def test_dataloader_windows_do_not_depend_on_workers():
    """Each item has its own random stream: 0 or 2 workers give the same batches, pass
    after pass, from workers that live for the whole stage."""
    rec = synthetic_night(60)
    ts = TrainSet([rec], [np.ones(60, bool)], seq=3, stride=1)
    a = _stage_batches(ts, 0, range(3))
    b = _stage_batches(ts, 2, range(3))
    n = len(pass_items(ts, (0, 2, 0), None, 8)[0])
    assert [len(p) for p in a] == [len(p) for p in b] and len(a[0]) == int(np.ceil(n / 8))
    for pa, pb in zip(a, b, strict=True):
        for (xa, ya), (xb, yb) in zip(pa, pb, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(a[0][0][0], a[1][0][0])  # each pass plans and draws anew
    assert a[0][0][0].shape == (8, 3, 1, 3000) and a[0][0][0].dtype == torch.float32


def test_dataloader_item_is_its_own_window_of_its_pass():
    """Item i of pass p is TrainSet.batch of that item alone with the generator
    (seed, stage, p, 2, i) and pass p's views (here: normalisation sessions and a
    night-level augmentation, computed in the worker); a resumed stage (passes 2..3)
    gives the same batches as those passes of a whole one."""
    from distill.normalise import NightNorm

    rec = synthetic_night(60)
    norm = NightNorm.build([rec], {"kind": "running-robust-scale"})
    ts = TrainSet([rec], [np.ones(60, bool)], seq=3, stride=2, norm=norm, session_len=10)
    aug = Augmentation(AugmentConfig(gain=True, noise=True), shift=50, channel_swap=True,
                       where="night")  # fmt: skip
    got = _stage_batches(ts, 1, range(4), aug)
    for p in (0, 3):
        items = pass_items(ts, (0, 2, p), None, 8)[0]
        views = ts.pass_view(view_rng((0, 2, p)), aug)
        for b, idx in enumerate(rank_batches(len(items), 8)):
            want = [ts.batch(items[i : i + 1], np.random.default_rng([0, 2, p, 2, i]), aug, views)
                    for i in idx]  # fmt: skip
            assert np.array_equal(got[p][b][0].numpy(), np.concatenate([w[0] for w in want]))
            assert np.array_equal(got[p][b][1].numpy(), np.concatenate([w[1] for w in want]))
    resumed = _stage_batches(ts, 0, range(2, 4), aug)
    for pa, pb in zip(got[2:], resumed, strict=True):
        assert all(torch.equal(xa, xb) for (xa, _), (xb, _) in zip(pa, pb, strict=True))


def test_ranks_split_every_global_batch_like_a_distributed_sampler():
    """Two ranks take slices 0::2 and 1::2 of each global batch (the last padded with the
    first items), so together they see every item of the pass."""
    rec = synthetic_night(60)
    ts = TrainSet([rec], [np.ones(60, bool)], seq=3, stride=1)
    n = len(pass_items(ts, (0, 2, 0), None, 8)[0])
    r0, r1 = rank_batches(n, 8, 0, 2), rank_batches(n, 8, 1, 2)
    assert len(r0) == len(r1) == int(np.ceil(np.ceil(n / 2) / 4))
    assert r0[0] == [0, 2, 4, 6] and r1[0] == [1, 3, 5, 7]
    assert set(sum(r0 + r1, [])) == set(range(n))
    with pytest.raises(UsageError, match="not a multiple of 2"):
        rank_batches(n, 7, 0, 2)
    full = _stage_batches(ts, 0, range(1))[0]
    half = _stage_batches(ts, 0, range(1), world=2, rank=1)[0]
    assert torch.equal(half[0][0], full[0][0][1::2])


def _fit(rt: Runtime, epochs: int = 2) -> dict[str, torch.Tensor]:
    set_determinism(0)
    net = models.build("tiny-student")
    rec = synthetic_night(62)
    ts = TrainSet([rec], [np.ones(62, bool)], seq=3, stride=3)
    stage = StageConfig(epochs=epochs, batch_size=8, optim=OptimConfig(lr=1e-2))
    fit(net, ts, cross_entropy(), stage, augment=AUG, seed=1, progress=False, runtime=rt)
    return {k: v.clone() for k, v in net.state_dict().items()}


@pytest.mark.slow
def test_dataloader_path_is_deterministic_and_trains_like_itself_with_workers():
    """The DataLoader path gives identical weights with 0 or 2 workers; the in-memory
    path (one random stream per pass) gives other weights; micro-batches change the
    BatchNorm statistics, so they differ too."""
    w0 = _fit(Runtime(loader="dataloader", workers=0))
    w2 = _fit(Runtime(loader="dataloader", workers=2))
    mem = _fit(Runtime(loader="memory"))
    micro = _fit(Runtime(loader="dataloader", micro_batches=2))
    assert all(torch.equal(w0[k], w2[k]) for k in w0)
    assert any(not torch.equal(w0[k], mem[k]) for k in w0)
    assert any(not torch.equal(w0[k], micro[k]) for k in w0)
