"""The per-item data path: one torch DataLoader serves every pass of a training stage.

:meth:`distill.trainset.TrainSet.plan` decides the windows of a pass (real
``(night, start)`` items and hypnogram-assembled ones, ``night = -1``). This module serves
them one at a time, each cut, normalised and augmented with its *own* random stream
(seeded by ``(seed, stage, pass, item)``), so the windows do not depend on how items are
split over DataLoader workers or torchrun processes. Nights may be memory-mapped
(:mod:`distill.prepared`): a window reads only its own epochs.

The workers live for the whole stage (:class:`StageLoader`): they are forked once, when
the first pass starts, and keep preparing windows across pass boundaries (while the
training process validates and writes checkpoints). Every item's key carries its pass, so
a worker computes that pass's views (normalisation cuts, night-level augmentation:
:meth:`TrainSet.pass_view`, from the pass's own seed) itself, once per pass.

Batches are ``x (B, seq, 1, 3000)`` float32 and ``y (B, seq)`` int64, pinned when the
training device is a GPU. Under torchrun each rank takes the items a
``DistributedSampler`` (no shuffling: the plan is already shuffled, identically on every
rank) gives it: slice ``r::world`` of every global batch; in one process the same slices
are the micro-batches.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any, cast

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from distill.trainset import Augmentation, PassView, TrainSet
from sleepstream.errors import UsageError

#: One item: ``(pass, index in the pass's plan, night or -1 = assembled, start epoch)``.
Key = tuple[int, int, int, int]

_NOT_YET = object()


def pass_items(
    train_set: TrainSet,
    key: Sequence[int],
    weights: np.ndarray | None,
    batch_size: int,
) -> tuple[np.ndarray, np.random.Generator]:
    """The items ``(M, 2)`` of one pass (``key = (seed, stage index, pass)``) and the
    generator after planning (the in-memory path cuts its windows from it)."""
    rng = np.random.default_rng([int(k) for k in key])
    items = train_set.plan(rng, weights)
    if train_set.seq == 1 and len(items) % batch_size == 1 and len(items) > 1:
        items = items[:-1]  # BatchNorm cannot train on a batch of one epoch
    return items, rng


def view_rng(key: Sequence[int]) -> np.random.Generator:
    """The generator of a pass's views (sessions, night-level augmentation): a stream of
    its own, so runs without them draw the windows they drew before these existed."""
    return np.random.default_rng([*(int(k) for k in key), 1])


def rank_batches(n: int, batch_size: int, rank: int = 0, world: int = 1) -> list[list[int]]:
    """Item indices of this rank's batches of a pass of ``n`` items.

    One process: consecutive batches of ``batch_size``. ``world > 1``: the indices a
    ``DistributedSampler`` (no shuffling, padded to a multiple of ``world`` by repeating
    the first items, so every rank runs the same number of steps) gives rank ``rank``, in
    batches of ``batch_size // world``: slice ``rank::world`` of every global batch.
    """
    if world > 1:
        if batch_size % world:
            raise UsageError(f"batch size {batch_size} is not a multiple of {world} processes")
        ds = cast(Dataset[int], range(n))  # a sized index space is all the sampler reads
        idx = list(DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=False))
        size = batch_size // world
    else:
        idx, size = list(range(n)), batch_size
    return [idx[a : a + size] for a in range(0, len(idx), size)]


class PassWindows(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """The windows of every pass of a stage, addressed by :data:`Key`.

    Item ``(p, i, r, s)`` is window ``s`` of night ``r`` (``r = -1``: assembled), cut with
    ``default_rng([*seed_key, p, 2, i])`` through :meth:`TrainSet.batch` with pass
    ``p``'s views (computed here from :func:`view_rng` and kept for one pass).

    Parameters
    ----------
    train_set : TrainSet
    augment : Augmentation
    seed_key : sequence of int
        ``(seed, stage index)``.
    """

    def __init__(self, train_set: TrainSet, augment: Augmentation, seed_key: Sequence[int]):
        self.train_set = train_set
        self.augment = augment
        self.seed_key = [int(k) for k in seed_key]
        self._views: tuple[int, Any] = (-1, _NOT_YET)

    def views(self, p: int) -> list[PassView] | None:
        """Pass ``p``'s :class:`PassView` list (None when nights are shown as they are)."""
        if self._views[0] != p or self._views[1] is _NOT_YET:
            self._views = (p, self.train_set.pass_view(view_rng([*self.seed_key, p]), self.augment))
        return cast("list[PassView] | None", self._views[1])

    def __getitem__(self, key: Key) -> tuple[torch.Tensor, torch.Tensor]:
        p, i, r, s = (int(v) for v in key)
        rng = np.random.default_rng([*self.seed_key, p, 2, i])
        item = np.array([[r, s]], np.int64)
        x, y = self.train_set.batch(item, rng, self.augment, self.views(p))
        return torch.from_numpy(x[0]), torch.from_numpy(y[0])


class _PassBatches(Sampler[list[Key]]):
    """The keys of this rank's batches, pass after pass (runs in the training process)."""

    def __init__(self, loader: StageLoader) -> None:
        self.loader = loader

    def __iter__(self) -> Iterator[list[Key]]:
        ld = self.loader
        for p in ld.passes:
            items = ld.items(p)
            for idx in rank_batches(len(items), ld.batch_size, ld.rank, ld.world):
                yield [(p, i, int(items[i, 0]), int(items[i, 1])) for i in idx]


class StageLoader:
    """Batches of every pass of one training stage from one DataLoader.

    Parameters
    ----------
    train_set : TrainSet
    augment : Augmentation
    seed_key : sequence of int
        ``(seed, stage index)``; pass ``p`` plans its items with ``(seed, stage, p)``.
    weights : ndarray (5,), optional
        Class weights of a weighted sampler (see :meth:`TrainSet.plan`).
    batch_size : int
        Global batch (split over torchrun processes).
    passes : range
        The passes this stage will run (early stopping may end it sooner).
    workers : int
        DataLoader worker processes (0: items are cut in this process).
    pin_memory : bool
    rank, world : int
        This process and the number of processes (torchrun).
    """

    def __init__(
        self,
        train_set: TrainSet,
        augment: Augmentation,
        seed_key: Sequence[int],
        weights: np.ndarray | None,
        batch_size: int,
        passes: range,
        *,
        workers: int = 0,
        pin_memory: bool = False,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        if world > 1 and batch_size % world:
            raise UsageError(f"batch size {batch_size} is not a multiple of {world} processes")
        self.train_set, self.weights = train_set, weights
        self.seed_key = [int(k) for k in seed_key]
        self.batch_size, self.passes = batch_size, passes
        self.rank, self.world = rank, world
        self.dataset = PassWindows(train_set, augment, self.seed_key)
        kw: dict[str, Any] = {}
        if workers > 0:
            kw.update(num_workers=workers, prefetch_factor=4)
        self.dataloader = DataLoader(self.dataset, batch_sampler=_PassBatches(self),
                                     pin_memory=pin_memory, **kw)  # fmt: skip
        self._plans: dict[int, np.ndarray] = {}
        self._it: Iterator[Any] | None = None

    def items(self, p: int) -> np.ndarray:
        """Pass ``p``'s planned items ``(M, 2)`` (see :func:`pass_items`)."""
        if p not in self._plans:
            self._plans = {k: v for k, v in self._plans.items() if k >= p - 1}
            key = [*self.seed_key, p]
            self._plans[p] = pass_items(self.train_set, key, self.weights, self.batch_size)[0]
        return self._plans[p]

    def n_batches(self, p: int) -> int:
        """Batches this rank runs in pass ``p``."""
        return len(rank_batches(len(self.items(p)), self.batch_size, self.rank, self.world))

    def batches(self, p: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Pass ``p``'s batches. Passes must be asked in order, each consumed whole.

        The DataLoader iterator (and its workers) starts at the first pass asked. Creating
        an iterator draws one number from torch's global generator; each later pass draws
        one too, so dropout masks are what they were when every pass had its own iterator.
        """
        if self._it is None:
            self._it = iter(self.dataloader)
        else:
            torch.empty((), dtype=torch.int64).random_()
        return itertools.islice(self._it, self.n_batches(p))

    def close(self) -> None:
        """Stop the workers (also when the stage stops early with batches prefetched)."""
        it, self._it = self._it, None
        shutdown = getattr(it, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
