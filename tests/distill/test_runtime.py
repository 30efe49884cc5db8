"""Where training runs: device names, precision, the DataLoader path, micro-batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distill import models
from distill.augment import AugmentConfig
from distill.config import OptimConfig, StageConfig
from distill.ddpcheck import synthetic_night
from distill.loader import WindowDataset, make_loader
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


def _items(ts: TrainSet) -> np.ndarray:
    return ts.plan(np.random.default_rng([0, 2, 0]))


def test_dataloader_windows_do_not_depend_on_workers():
    """Each item has its own random stream: 0 or 2 workers give the same batches."""
    rec = synthetic_night(60)
    ts = TrainSet([rec], [np.ones(60, bool)], seq=3, stride=1)
    ds = WindowDataset(ts, _items(ts), AUG, None, (0, 2, 0))
    a = [(x.clone(), y.clone()) for x, y in make_loader(ds, 8, workers=0)]
    b = list(make_loader(ds, 8, workers=2))
    assert len(a) == len(b) == int(np.ceil(len(ds) / 8))
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert a[0][0].shape == (8, 3, 1, 3000) and a[0][0].dtype == torch.float32


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
