"""Splits: which epochs of which recordings train, validate and test a model.

A :class:`Fold` holds one boolean mask per recording for train, validation and test.
``within-night-blocks`` cuts one night into ``k`` contiguous blocks and leaves a guard gap of
``seq`` epochs between training epochs and held-out blocks, so no training window contains a
held-out epoch. It is optimistic (same night, same subject) and every report says so.
Subject-wise folds (:func:`subject_kfold`, :func:`subject_holdout`) keep every night of a
person on one side.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from distill.data import Recording
from sleepstream.errors import UsageError


@dataclass(frozen=True)
class Fold:
    """Boolean epoch masks per recording name for train / validation / test."""

    name: str
    protocol: str
    train: dict[str, np.ndarray]
    val: dict[str, np.ndarray] = field(default_factory=dict)
    test: dict[str, np.ndarray] = field(default_factory=dict)

    def to_json(self) -> dict:
        """JSON-able form: masks as lists of ``[start, stop)`` runs."""

        def runs(m: dict[str, np.ndarray]) -> dict[str, list[list[int]]]:
            return {k: mask_to_runs(v) for k, v in m.items()}

        n = {k: int(v.shape[0]) for k, v in self.train.items()}
        return {
            "name": self.name,
            "protocol": self.protocol,
            "n_epochs": n,
            "train": runs(self.train),
            "val": runs(self.val),
            "test": runs(self.test),
        }

    @classmethod
    def from_json(cls, d: dict) -> Fold:
        n = d["n_epochs"]

        def masks(m: dict) -> dict[str, np.ndarray]:
            return {k: runs_to_mask(v, n[k]) for k, v in m.items()}

        return cls(d["name"], d["protocol"], masks(d["train"]), masks(d["val"]), masks(d["test"]))


def mask_to_runs(mask: np.ndarray) -> list[list[int]]:
    """``[[start, stop), ...]`` runs of True in a boolean mask."""
    m = np.concatenate([[False], np.asarray(mask, bool), [False]])
    edges = np.flatnonzero(m[1:] != m[:-1])
    return [[int(a), int(b)] for a, b in zip(edges[::2], edges[1::2], strict=True)]


def runs_to_mask(runs: Iterable[Sequence[int]], n: int) -> np.ndarray:
    mask = np.zeros(n, bool)
    for a, b in runs:
        mask[a:b] = True
    return mask


def block_bounds(n: int, k: int) -> list[tuple[int, int]]:
    """``k`` contiguous, near-equal blocks covering ``range(n)``."""
    if k < 2 or n < k:
        raise UsageError(f"within-night-blocks: k={k} blocks for {n} epochs")
    edges = np.linspace(0, n, k + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def _guarded(n: int, blocks: Sequence[tuple[int, int]], guard: int) -> np.ndarray:
    out = np.ones(n, bool)
    for a, b in blocks:
        out[max(0, a - guard) : min(n, b + guard)] = False
    return out


def within_night_blocks(
    rec: Recording, k: int = 5, guard: int = 20, val: str = "next"
) -> list[Fold]:
    """``k`` folds over contiguous blocks of one night.

    Fold ``j`` tests on block ``j`` and validates (early stopping) on another block:
    ``val="next"`` (default) takes block ``(j + 1) % k``; ``val="neighbour"`` takes block
    ``j + 1``, or ``j - 1`` for the last block, so the training epochs form as few runs as
    possible and the two night edges (where the wake is) are never both held out. Training
    epochs are the rest, minus ``guard`` epochs on each side of the held-out blocks, so no
    training window of ``guard`` (= seq) epochs overlaps a held-out epoch.
    Optimistic: train and test come from the same night.
    """
    n = rec.n_epochs
    if k < 3:
        raise UsageError(
            f"within-night-blocks needs k >= 3 blocks (test, validation, train), got {k}"
        )
    bounds = block_bounds(n, k)
    folds = []
    for j in range(k):
        if val == "next":
            vj = (j + 1) % k
        elif val == "neighbour":
            vj = j + 1 if j + 1 < k else j - 1
        else:
            raise UsageError(f"within-night-blocks val={val!r}: valid: neighbour, next")
        t, v = bounds[j], bounds[vj]
        train = _guarded(n, [t, v], guard)
        folds.append(
            Fold(
                f"block{j}",
                "within-night-blocks",
                {rec.name: train},
                {rec.name: runs_to_mask([v], n)},
                {rec.name: runs_to_mask([t], n)},
            )
        )
    return folds


def full_night_fold(rec: Recording, k: int = 5, guard: int = 20, val_block: int = -1) -> Fold:
    """Train on a whole night except one validation block (for early stopping) and guards."""
    n = rec.n_epochs
    v = block_bounds(n, k)[val_block]
    return Fold(
        "full", "full", {rec.name: _guarded(n, [v], guard)}, {rec.name: runs_to_mask([v], n)}
    )


def subject_kfold(
    recs: Sequence[Recording],
    subject_of: dict[str, str],
    k: int,
    seed: int = 0,
    val_fraction: float = 0.1,
    protocol: str = "subject-kfold",
) -> list[Fold]:
    """Folds by subject: every night of a subject lands in the same fold.

    Subjects are shuffled with ``seed`` and cut into ``k`` near-equal groups; fold ``j``
    tests on group ``j`` and validates (early stopping) on ``max(1, round(val_fraction *
    n))`` of the other subjects (seeded per fold); the rest train. ``k`` equal to the
    number of subjects is leave-one-subject-out.

    Raises
    ------
    UsageError
        With fewer than 3 subjects or ``k`` outside ``[2, n_subjects]``.
    """
    subs = sorted({subject_of[r.name] for r in recs})
    if len(subs) < 3:
        raise UsageError(f"{protocol} needs at least 3 subjects, got {len(subs)}")
    if not 2 <= k <= len(subs):
        raise UsageError(f"{protocol}: --folds {k} with {len(subs)} subjects (2..{len(subs)})")
    order = [subs[i] for i in np.random.default_rng(seed).permutation(len(subs))]
    groups = np.array_split(np.arange(len(subs)), k)
    folds = []
    for j, g in enumerate(groups):
        test = {order[i] for i in g}
        rest = [s for s in order if s not in test]
        n_val = max(1, round(val_fraction * len(rest)))
        pick = np.random.default_rng([seed, j]).permutation(len(rest))[:n_val]
        val = {rest[i] for i in pick}

        def masks(which: set[str]) -> dict[str, np.ndarray]:
            return {r.name: np.full(r.n_epochs, subject_of[r.name] in which) for r in recs}

        train = set(rest) - val
        folds.append(Fold(f"fold{j}", protocol, masks(train), masks(val), masks(test)))
    return folds


def subject_holdout(recs: Sequence[Recording], val_fraction: float = 0.1, seed: int = 0) -> Fold:
    """Train on every subject but ``max(1, round(val_fraction * n))`` held out for early
    stopping (no test set: a final model, tested elsewhere, e.g. on DREAMS)."""
    subs = sorted({r.subject or r.name for r in recs})
    if len(subs) < 2:
        raise UsageError(f"a subject hold-out needs at least 2 subjects, got {len(subs)}")
    n_val = max(1, round(val_fraction * len(subs)))
    val = {subs[i] for i in np.random.default_rng(seed).permutation(len(subs))[:n_val]}
    train = {r.name: np.full(r.n_epochs, (r.subject or r.name) not in val) for r in recs}
    held = {r.name: np.full(r.n_epochs, (r.subject or r.name) in val) for r in recs}
    return Fold("full", "full", train, held)


def nightwise_kfold(recs: Sequence[Recording], k: int, seed: int = 0) -> list[Fold]:
    """Folds by night: each night is tested once; one other night validates.

    Raises
    ------
    UsageError
        With fewer than 3 nights (train, validation and test need one each).
    """
    if len(recs) < 3:
        raise UsageError(f"nightwise-kfold needs at least 3 nights, got {len(recs)}")
    k = min(k, len(recs))
    order = np.random.default_rng(seed).permutation(len(recs))
    groups = np.array_split(order, k)
    folds = []
    for j in range(k):
        test = set(groups[j].tolist())
        val = {int(groups[(j + 1) % k][0])}
        full = {r.name: np.ones(r.n_epochs, bool) for r in recs}
        none = {r.name: np.zeros(r.n_epochs, bool) for r in recs}
        pick = lambda ids, full=full, none=none: {  # noqa: E731
            r.name: (full if i in ids else none)[r.name] for i, r in enumerate(recs)
        }
        train_ids = set(range(len(recs))) - test - val
        folds.append(Fold(f"fold{j}", "nightwise-kfold", pick(train_ids), pick(val), pick(test)))
    return folds
