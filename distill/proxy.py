"""The cross-derivation proxy: model selection from SC4001 alone, never from DREAMS.

SC4001 has two derivations that see different cortex at different amplitudes (Fpz-Cz and
Pz-Oz). The proxy trains on one and scores on the other, which is the closest thing to
"another montage, another amplifier" that one night allows. Each derivation becomes its
own single-channel :class:`~distill.data.Recording` (``SC4001/EEG Fpz-Cz``, ...), so the
usual :class:`~distill.folds.Fold` masks, training sets and scorers work unchanged.

Folds (``k`` blocks; ``guard`` epochs, normally the window length):

- ``k == 0``: one fold per direction: train on all of A, early-stop on all of B, score on
  all of B. The score is the early-stopping set, so it is slightly optimistic; the label
  says so.
- ``k >= 3``: per direction and block ``j``: train on A minus blocks ``j`` and
  ``j + 1`` (cyclic) and ``guard`` epochs around them; early-stop on B block ``j + 1``;
  score on B block ``j``. Disjoint in derivation and in time.

Scoring (``excerpt`` epochs, default 60 = 30 min, like a DREAMS excerpt): each scored
run is cut into excerpts that are scored as recordings of their own, causally from a cold
start (history zero-padded, the normaliser restarted), as the test set will be
(:func:`excerpts`). ``excerpt == 0`` scores the blocks in place, with their history.

Training sees only derivation A, so channel swap and derivation mixing are impossible
under this proxy (use ``within-night-blocks`` to judge those).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from distill.data import Recording
from distill.folds import Fold, _guarded, block_bounds, runs_to_mask
from sleepstream.errors import UsageError

PROTOCOL = "cross-derivation"
#: Direction names and the (train, score) derivations of SC4001.
DIRECTIONS: dict[str, tuple[str, str]] = {
    "fpz-pz": ("EEG Fpz-Cz", "EEG Pz-Oz"),
    "pz-fpz": ("EEG Pz-Oz", "EEG Fpz-Cz"),
}


def split_derivations(rec: Recording) -> list[Recording]:
    """One single-channel recording per derivation, named ``<name>/<channel>``."""
    return [
        Recording(f"{rec.name}/{ch}", {ch: sig}, rec.labels, rec.dataset)
        for ch, sig in rec.signals.items()
    ]


def parse_directions(text: str) -> list[str]:
    """``both`` or a comma list of :data:`DIRECTIONS` keys."""
    if text == "both":
        return list(DIRECTIONS)
    out = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in out if t not in DIRECTIONS]
    if bad or not out:
        raise UsageError(
            f"--proxy-direction {text!r}: valid: both, {', '.join(DIRECTIONS)} (comma list)"
        )
    return out


def cross_derivation_folds(
    rec: Recording, k: int = 0, guard: int = 20, directions: Sequence[str] = tuple(DIRECTIONS)
) -> tuple[list[Recording], list[Fold]]:
    """The proxy's recordings (one per derivation) and folds; see the module docstring.

    Raises
    ------
    UsageError
        If ``rec`` lacks a derivation a direction needs, or ``k`` is 1 or 2.
    """
    if k in (1, 2) or k < 0:
        raise UsageError(f"cross-derivation: --folds {k}: use 0 (whole night) or >= 3 blocks")
    recs = split_derivations(rec)
    by_ch = {next(iter(r.signals)): r for r in recs}
    n = rec.n_epochs
    folds = []
    for d in directions:
        a_ch, b_ch = DIRECTIONS[d]
        if a_ch not in by_ch or b_ch not in by_ch:
            raise UsageError(
                f"cross-derivation {d}: {rec.name} needs {a_ch!r} and {b_ch!r}; "
                f"has {', '.join(rec.channels)} (pass --channels with both)"
            )
        a, b = by_ch[a_ch], by_ch[b_ch]
        none = {r.name: np.zeros(n, bool) for r in recs}
        if k == 0:
            whole = np.ones(n, bool)
            folds.append(
                Fold(
                    d, PROTOCOL, {**none, a.name: whole}, {**none, b.name: whole}, {b.name: whole}
                )  # fmt: skip
            )
            continue
        bounds = block_bounds(n, k)
        for j in range(k):
            t, v = bounds[j], bounds[(j + 1) % k]
            folds.append(
                Fold(
                    f"{d}-block{j}",
                    PROTOCOL,
                    {**none, a.name: _guarded(n, [t, v], guard)},
                    {**none, b.name: runs_to_mask([v], n)},
                    {b.name: runs_to_mask([t], n)},
                )
            )
    return recs, folds


def excerpts(
    recs: Sequence[Recording], test: dict[str, np.ndarray], length: int
) -> list[Recording]:
    """The test epochs of ``recs`` cut into recordings of ``length`` epochs (the last of a
    run may be shorter), named ``<name>@<first epoch>``; every epoch of them is scored.

    Epochs outside ``test`` are not in any excerpt, so nothing outside the test mask is
    seen as history either.
    """
    from distill.folds import mask_to_runs

    if length < 1:
        raise UsageError(f"excerpt length must be >= 1 epoch, got {length}")
    out = []
    for rec in recs:
        m = test.get(rec.name)
        if m is None:
            continue
        for a, b in mask_to_runs(np.asarray(m, bool)):
            for s in range(a, b, length):
                e = min(b, s + length)
                sig = {ch: v[s * 3000 : e * 3000] for ch, v in rec.signals.items()}
                out.append(Recording(f"{rec.name}@{s}", sig, rec.labels[s:e], rec.dataset))
    return out
