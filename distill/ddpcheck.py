"""Check that N processes (DDP, gloo on CPU) train exactly like one process.

:func:`ddp_vs_single` trains the same model on the same synthetic night for a few steps
twice: in ``world`` processes under ``DistributedDataParallel`` (each taking slice ``r`` of
every global batch), and in one process with ``--micro-batches world`` (the same slices,
one after another, gradients accumulated). It reports the largest parameter difference
between ranks and between the two runs. Used by the tests and ``bench/distill_ddp.py``.
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch


def synthetic_night(n: int = 96, seed: int = 0):
    """A learnable two-derivation night: stage ``k`` is a 2-Hz sine of ``10 (k + 1)`` µV."""
    from distill.data import Recording

    rng = np.random.default_rng(seed)
    labels = np.repeat(rng.integers(0, 5, n // 4 + 1), 4)[:n].astype(np.int64)
    t = np.arange(3000) / 100.0
    x = (10.0 * (labels[:, None] + 1)) * np.sin(2 * np.pi * 2.0 * t)[None, :]
    x = (x + rng.normal(0, 2.0, x.shape)).astype(np.float32)
    return Recording("synth", {"a": x.ravel(), "b": (0.8 * x).ravel()}, labels, "synthetic")


def _train(
    steps: int, batch: int, world: int, seed: int, model: str, out: Path, micro: int = 1
) -> None:
    """Train ``steps`` optimizer steps (one pass) and save the parameters to ``out``."""
    from distill import models
    from distill.augment import AugmentConfig
    from distill.config import OptimConfig, StageConfig
    from distill.loop import cross_entropy, fit
    from distill.runtime import Runtime, rank, set_determinism
    from distill.trainset import Augmentation, TrainSet

    set_determinism(seed)
    net = models.build(model)
    rec = synthetic_night(steps * batch * 3 + 2)  # exactly steps * batch windows of 3
    ts = TrainSet([rec], [np.ones(rec.n_epochs, bool)], seq=3, stride=3)
    aug = Augmentation(AugmentConfig(gain=True, noise=True), shift=100, channel_swap=True)
    stage = StageConfig(epochs=1, batch_size=batch, optim=OptimConfig(lr=1e-3, schedule="none"))
    rt = Runtime(loader="dataloader", micro_batches=micro)
    fit(net, ts, cross_entropy(), stage, augment=aug, seed=seed, progress=False, runtime=rt)
    torch.save({k: v.detach().clone() for k, v in net.named_parameters()}, out / f"r{rank()}.pt")


def _worker(local: int, world: int, port: int, args: tuple) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(local),
                      LOCAL_RANK=str(local), WORLD_SIZE=str(world))  # fmt: skip
    torch.distributed.init_process_group("gloo", rank=local, world_size=world)
    try:
        _train(*args)
    finally:
        torch.distributed.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ddp_vs_single(
    steps: int = 10,
    world: int = 2,
    batch: int = 8,
    seed: int = 0,
    model: str = "tiny-student",
    single_micro: int | None = None,
) -> dict[str, Any]:
    """Largest |Δ parameter| across ranks and vs one process with ``single_micro``
    (default ``world``) micro-batches.

    The model keeps its BatchNorm and dropout: per-slice batch statistics and per-slice
    dropout seeds are the same in both runs (with ``single_micro=1`` they are not, which
    shows what the comparison detects).
    """
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        ddp, one = Path(tmp) / "ddp", Path(tmp) / "one"
        ddp.mkdir()
        one.mkdir()
        args = (steps, batch, world, seed, model, ddp)
        env = {
            k: os.environ.pop(k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK") if k in os.environ
        }
        try:
            mp.start_processes(_worker, args=(world, free_port(), args), nprocs=world,
                               start_method="fork")  # fmt: skip
            _train(steps, batch, 1, seed, model, one, single_micro or world)
        finally:
            os.environ.update(env)
        ranks = [torch.load(ddp / f"r{r}.pt", weights_only=True) for r in range(world)]
        single = torch.load(one / "r0.pt", weights_only=True)

    def maxdiff(a: dict, b: dict) -> float:
        return max(float((a[k] - b[k]).abs().max()) for k in a)

    return {
        "steps": steps,
        "world": world,
        "global_batch": batch,
        "model": model,
        "max_abs_diff_across_ranks": max(maxdiff(ranks[0], r) for r in ranks[1:]),
        "max_abs_diff_vs_single": maxdiff(ranks[0], single),
        "max_abs_param": max(float(v.abs().max()) for v in single.values()),
        "single_micro_batches": single_micro or world,
    }
