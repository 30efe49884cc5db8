"""The training loop shared by every stage, every model and every KD method: :func:`fit`.

``fit`` trains one model on one :class:`~distill.trainset.TrainSet` with a loss callback
``loss_fn(outputs, batch) -> (loss, logs)`` (``batch`` carries ``x``, ``y``, ``epoch`` and
``stage``), early-stops on validation macro-F1 and restores the best weights.

Determinism: each pass draws its windows from generators seeded by ``(seed, stage,
pass)`` and dropout from ``torch.manual_seed`` of the same key, so a resumed run continues
exactly where it stopped. With several slices per step (``--micro-batches`` or torchrun)
dropout is reseeded per slice, so one process with N micro-batches and N processes
compute the same step.

Where it runs is a :class:`~distill.runtime.Runtime`: device, autocast (bf16/fp16),
memory or DataLoader windows, micro-batches, DDP under torchrun (rank 0 alone writes
checkpoints and logs; every rank resumes from rank 0's last checkpoint).
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from distill.checkpoint import load_optimizer, load_weights, read_sidecar, save_checkpoint
from distill.config import StageConfig
from distill.loader import StageLoader, pass_items, view_rng
from distill.runtime import Runtime, barrier, broadcast, rank, world_size
from distill.trainset import Augmentation, TrainSet

LossFn = Callable[[dict[str, torch.Tensor], dict[str, Any]], tuple[torch.Tensor, dict[str, float]]]
Validator = Callable[[torch.nn.Module], dict[str, Any]]


def cross_entropy(key: str = "logits", weights: np.ndarray | None = None) -> LossFn:
    """Hard-label loss callback on ``outputs[key]`` ``(B, S, 5)``; label ``-1`` is ignored."""
    w = None if weights is None else torch.as_tensor(weights, dtype=torch.float32)

    def loss_fn(outputs: dict[str, torch.Tensor], batch: dict[str, Any]):
        logits = outputs[key]
        y = batch["y"]
        if not (y >= 0).any():
            loss = logits.sum() * 0.0
        else:
            loss = F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]).float(),
                y.reshape(-1),
                weight=None if w is None else w.to(logits.device),
                ignore_index=-1,
            )
        return loss, {"ce": float(loss.detach())}

    return loss_fn


@dataclass
class FitResult:
    best_metric: float
    best_epoch: int
    history: list[dict[str, Any]]
    wall_s: float

    def summary(self) -> dict[str, Any]:
        """What a run records of one training stage."""
        return {
            "best_val_macro_f1": self.best_metric,
            "best_epoch": self.best_epoch,
            "history": self.history,
            "wall_s": self.wall_s,
        }


class _Step(nn.Module):
    """One training step's forward *and* loss, so DDP sees every trained parameter (the
    student and a method's alignment maps) in the graph it reduces."""

    def __init__(self, owner: nn.Module, model: nn.Module, loss_fn: LossFn, key: str):
        super().__init__()
        self.owner = owner  # registered: its parameters are the trained ones
        self._model = model  # the model itself, or a part of ``owner``
        self.loss_fn, self.key = loss_fn, key

    def forward(self, x: torch.Tensor, y: torch.Tensor, epoch: int, stage: str):
        out = self._model(x)
        loss, logs = self.loss_fn(out, {"x": x, "y": y, "epoch": epoch, "stage": stage})
        return loss, out[self.key].detach(), logs


def _set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)


def _step_seed(seed: int, stage_index: int, epoch: int, step: int, part: int) -> int:
    return int(np.random.default_rng([seed, stage_index, epoch, step, part, 3]).integers(2**62))


def fit(
    model: torch.nn.Module,
    train_set: TrainSet,
    loss_fn: LossFn,
    stage: StageConfig,
    *,
    validate: Validator | None = None,
    augment: Augmentation | None = None,
    seed: int = 0,
    stage_name: str = "sequence",
    stage_index: int = 2,
    sampler_weights: np.ndarray | None = None,
    checkpoint_dir: Path | None = None,
    sidecar: dict[str, Any] | None = None,
    resume: bool = False,
    progress: bool = True,
    parameters=None,
    runtime: Runtime | None = None,
    state_module: nn.Module | None = None,
) -> FitResult:
    """Train ``model`` on ``train_set`` with ``loss_fn``; early-stop on validation macro-F1.

    Parameters
    ----------
    loss_fn : callable
        ``loss_fn(outputs, batch) -> (loss, logs)``; ``batch`` has ``x (B, seq, 1, 3000)``,
        ``y (B, seq)`` (``-1`` = masked), ``epoch`` (int) and ``stage`` (str).
    validate : callable, optional
        ``validate(model) -> metrics`` with ``macro_f1``; without it the last epoch is kept.
        Run on rank 0; its result is broadcast.
    sampler_weights : ndarray (5,), optional
        Class weights for a weighted sampler (see :meth:`TrainSet.plan`).
    checkpoint_dir : Path, optional
        Writes ``<stage_name>-last`` (with optimiser) after every epoch and
        ``<stage_name>-best``; with ``resume`` an existing ``-last`` is continued.
    parameters : iterable, optional
        Parameters to optimise (default: all of ``model`` that require grad).
    runtime : Runtime, optional
        Device, precision, loader, micro-batches (default: CPU, float32, in memory).
    state_module : nn.Module, optional
        The module holding every trained parameter (a distiller: student + alignment
        maps); saved in ``-last`` checkpoints, moved to the device and wrapped in DDP.
        Default ``model``. ``-best`` checkpoints hold ``model`` only.
    """
    rt = runtime or Runtime()
    device = rt.torch_device
    world, rk = world_size(), rank()
    main = rk == 0
    augment = augment or Augmentation.off()
    owner = state_module if state_module is not None else model
    owner.to(device)
    model.to(device)
    key = "epoch_logits" if stage_name == "pretrain" else "logits"
    step_module: nn.Module = _Step(owner, model, loss_fn, key)
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        # Stage 1 leaves the sequence head unused; methods may leave an alignment map
        # unused in a stage. Plain stage 2 uses every parameter (no extra graph walk).
        unused = stage_name == "pretrain" or owner is not model
        step_module = nn.parallel.DistributedDataParallel(
            step_module, device_ids=ids, find_unused_parameters=unused
        )
    params = [p for p in (parameters or owner.parameters()) if p.requires_grad]
    opt = stage.optim.build(params)
    scaler = rt.grad_scaler()
    history: list[dict[str, Any]] = []
    best, best_epoch, bad, start = -math.inf, -1, 0, 0
    best_state = None
    last = best_path = None
    if checkpoint_dir is not None:
        last = Path(checkpoint_dir) / f"{stage_name}-last.safetensors"
        best_path = Path(checkpoint_dir) / f"{stage_name}-best.safetensors"
        if resume and last.is_file():
            meta = read_sidecar(last)
            load_weights(last, owner)
            load_optimizer(last, opt, meta)
            st = meta["train_state"]
            history, best, best_epoch, bad = st["history"], st["best"], st["best_epoch"], st["bad"]
            start = st["epoch"] + 1
            if best_path.is_file():
                current = {k: v.clone() for k, v in model.state_dict().items()}
                load_weights(best_path, model)
                best_state = {k: v.clone() for k, v in model.state_dict().items()}
                model.load_state_dict(current)
            if st.get("done"):
                start = stage.epochs
    micro = rt.micro_batches
    reseed = micro > 1 or world > 1
    t0 = time.perf_counter()
    loader = None
    if rt.per_item:  # one DataLoader (one set of workers) serves every pass of the stage
        loader = StageLoader(train_set, augment, (seed, stage_index), sampler_weights,
                             stage.batch_size, range(start, stage.epochs), workers=rt.workers,
                             pin_memory=device.type == "cuda", rank=rk, world=world)  # fmt: skip
    try:
        for epoch in range(start, stage.epochs):
            if bad > stage.patience:
                break
            torch.manual_seed(seed * 10_000 + stage_index * 1_000 + epoch)
            lr = stage.optim.lr_at(epoch, stage.epochs)
            _set_lr(opt, lr)
            if loader is not None:
                batches, n_batches = loader.batches(epoch), loader.n_batches(epoch)
            else:
                batches, n_batches = _memory_batches(
                    train_set, (seed, stage_index, epoch), sampler_weights, augment,
                    stage.batch_size)  # fmt: skip
            owner.train()
            bar = tqdm(
                range(n_batches),
                desc=f"{stage_name} {epoch + 1}/{stage.epochs}",
                disable=not (progress and main),
                leave=False,
                dynamic_ncols=True,
                mininterval=0.2 if sys.stderr.isatty() else 5.0,
            )
            tot, n_seen, correct, n_lab = 0.0, 0, 0, 0
            log_sums: dict[str, float] = {}
            for b, (x, y) in zip(bar, batches, strict=False):
                x = x.to(device, non_blocking=True)
                y = y.to(device, non_blocking=True)
                parts = (
                    [(x[k::micro], y[k::micro]) for k in range(micro)] if micro > 1 else [(x, y)]
                )
                parts = [p for p in parts if len(p[0])]
                opt.zero_grad(set_to_none=True)
                for k, (xk, yk) in enumerate(parts):
                    if reseed:
                        torch.manual_seed(_step_seed(seed, stage_index, epoch, b, k * world + rk))
                    sync = k == len(parts) - 1 or world == 1
                    ctx = contextlib.nullcontext() if sync else step_module.no_sync()
                    with ctx:
                        with rt.autocast():
                            loss, logits, logs = step_module(xk, yk, epoch, stage_name)
                        scaled = loss / len(parts)
                        (scaler.scale(scaled) if scaler is not None else scaled).backward()
                    m = yk >= 0
                    correct += int((logits.argmax(-1)[m] == yk[m]).sum())
                    n_lab += int(m.sum())
                    tot += float(loss.detach()) * len(xk)
                    for name, v in logs.items():
                        log_sums[name] = log_sums.get(name, 0.0) + float(v) * len(xk)
                    n_seen += len(xk)
                if scaler is not None:
                    scaler.unscale_(opt)
                if stage.optim.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, stage.optim.grad_clip)
                if scaler is not None:
                    scaler.step(opt)
                    scaler.update()
                else:
                    opt.step()
                bar.set_postfix(
                    loss=f"{tot / max(n_seen, 1):.3f}",
                    acc=f"{correct / max(n_lab, 1):.3f}",
                    **{k: f"{v:.3f}" for k, v in logs.items() if k != "ce"},
                )
            bar.close()
            rec = {
                "epoch": epoch,
                "lr": lr,
                "loss": tot / max(n_seen, 1),
                "train_acc": correct / max(n_lab, 1),
                "wall_s": time.perf_counter() - t0,
                **{f"train_{k}": v / max(n_seen, 1) for k, v in log_sums.items()},
            }
            if validate is not None:
                vm = broadcast(validate(model) if main else None)
                rec.update(
                    val_macro_f1=vm["macro_f1"], val_accuracy=vm["accuracy"], val_kappa=vm["kappa"]
                )
                metric = vm["macro_f1"]
            else:
                metric = -rec["loss"]
            history.append(rec)
            if metric > best:
                best, best_epoch, bad = metric, epoch, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                if best_path is not None and main:
                    save_checkpoint(
                        best_path,
                        model,
                        dict(sidecar or {}, stage=stage_name, best_epoch=epoch, best=best),
                    )
            else:
                bad += 1
            if progress and main:
                tqdm.write(
                    f"{stage_name} epoch {epoch + 1}/{stage.epochs} loss {rec['loss']:.4f} "
                    f"train-acc {rec['train_acc']:.3f}"
                    + (
                        f" val-MF1 {rec['val_macro_f1']:.3f} val-acc {rec['val_accuracy']:.3f}"
                        if validate is not None
                        else ""
                    )
                    + f" lr {lr:.2e} [{rec['wall_s']:.0f} s]"
                )
            if last is not None and main:
                state = {
                    "epoch": epoch,
                    "history": history,
                    "best": best,
                    "best_epoch": best_epoch,
                    "bad": bad,
                }
                save_checkpoint(
                    last,
                    owner,
                    dict(sidecar or {}, stage=stage_name, train_state=state),
                    optimizer=opt,
                )
            barrier()
    finally:
        if loader is not None:
            loader.close()

    if best_state is not None:
        model.load_state_dict(best_state)
    _sync_buffers(model)
    if last is not None and last.is_file() and main:
        meta = read_sidecar(last)
        meta["train_state"]["done"] = True
        meta.pop("format", None)
        meta.pop("optimizer", None)
        save_checkpoint(last, owner, meta, optimizer=opt)
    barrier()
    return FitResult(best, best_epoch, history, time.perf_counter() - t0)


def _sync_buffers(model: nn.Module) -> None:
    """Rank 0's BatchNorm statistics on every rank (each rank updated its own from its
    slices), so every rank ends with the model rank 0 saves."""
    if world_size() > 1 and torch.distributed.is_initialized():
        for buf in model.buffers():
            torch.distributed.broadcast(buf, src=0)


def _memory_batches(
    train_set: TrainSet,
    key: tuple[int, int, int],
    weights: np.ndarray | None,
    augment: Augmentation,
    batch_size: int,
) -> tuple[Iterator[tuple[torch.Tensor, torch.Tensor]], int]:
    """The in-memory path: one pass's batches (``x``, ``y`` tensors), cut in this process
    from one random stream per pass, and their number."""
    items, rng = pass_items(train_set, key, weights, batch_size)
    views = train_set.pass_view(view_rng(key), augment)
    n = max(1, math.ceil(len(items) / batch_size))

    def gen() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for b in range(n):
            chunk = items[b * batch_size : (b + 1) * batch_size]
            if len(chunk) == 0:
                continue
            x, y = train_set.batch(chunk, rng, augment, views)
            yield torch.from_numpy(x), torch.from_numpy(y)

    return gen(), n
