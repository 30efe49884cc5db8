"""The per-item data path: a torch ``Dataset`` of one pass's (night, window) items.

:meth:`distill.trainset.TrainSet.plan` decides the windows of a pass (real
``(night, start)`` items and hypnogram-assembled ones, ``night = -1``). This module serves
them one at a time, each cut, normalised and augmented with its *own* random stream
(seeded by ``(seed, stage, pass, item)``), so the windows do not depend on how items are
split over DataLoader workers or torchrun processes. Nights may be memory-mapped
(:mod:`distill.prepared`): a window reads only its own epochs.

Batches are ``x (B, seq, 1, 3000)`` float32 and ``y (B, seq)`` int64, pinned when the
training device is a GPU. Under torchrun a ``DistributedSampler`` (no shuffling: the plan
is already shuffled, identically on every rank) gives every rank a disjoint slice of each
global batch; in one process the same slices are the micro-batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from distill.trainset import Augmentation, PassView, TrainSet
from sleepstream.errors import UsageError


class WindowDataset(Dataset):
    """One pass's planned items as a map-style dataset.

    Parameters
    ----------
    train_set : TrainSet
    items : ndarray, shape (M, 2), int
        From :meth:`TrainSet.plan`.
    augment : Augmentation
    views : list of PassView, optional
        From :meth:`TrainSet.pass_view`.
    seed_key : sequence of int
        ``(seed, stage index, pass)``; item ``i`` draws from ``default_rng([*key, 2, i])``.
    """

    def __init__(
        self,
        train_set: TrainSet,
        items: np.ndarray,
        augment: Augmentation,
        views: Sequence[PassView] | None,
        seed_key: Sequence[int],
    ) -> None:
        self.train_set = train_set
        self.items = np.asarray(items, np.int64)
        self.augment = augment
        self.views = views
        self.seed_key = [int(k) for k in seed_key]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([*self.seed_key, 2, int(i)])
        x, y = self.train_set.batch(self.items[i : i + 1], rng, self.augment, self.views)
        return torch.from_numpy(x[0]), torch.from_numpy(y[0])


def make_loader(
    dataset: WindowDataset,
    batch_size: int,
    *,
    workers: int = 0,
    pin_memory: bool = False,
    rank: int = 0,
    world: int = 1,
) -> DataLoader:
    """A DataLoader over ``dataset`` in plan order.

    One process: batches of ``batch_size`` items. ``world > 1``: a ``DistributedSampler``
    (no shuffling, padded to a multiple of ``world`` by repeating the first items, so
    every rank runs the same number of steps) and ``batch_size // world`` items per rank:
    rank ``r`` takes items ``r, r + world, ...``, i.e. slice ``r::world`` of every global
    batch — the same slices as ``--micro-batches world`` in one process.
    """
    kw: dict[str, Any] = {}
    if workers > 0:
        kw.update(num_workers=workers, persistent_workers=False, prefetch_factor=4)
    if world > 1:
        if batch_size % world:
            raise UsageError(f"batch size {batch_size} is not a multiple of {world} processes")
        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=False)
        return DataLoader(dataset, batch_size=batch_size // world, sampler=sampler,
                          pin_memory=pin_memory, **kw)  # fmt: skip
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, pin_memory=pin_memory, **kw)
