"""A reference hypnogram aligned on a recorded night's 30-s grid, and the agreement.

Alignment (``align_reference``): the night's epoch ``k`` starts ``onsets[k]`` seconds
after the night start (its first recorded sample). With an offset ``T`` (seconds from
the reference's start to the night start: ``--reference-offset``, else the manifest's
``source_offset_s`` written by ``replay``), epoch ``k`` is compared with the reference
epoch that starts nearest to ``T + onsets[k]``; every night epoch must fall inside the
reference. Without an offset, in this order:

1. the reference has exactly the night's epoch count: epoch for epoch (``T = 0``);
2. the reference is longer and every extra epoch at its end is unscored (Sleep-EDF
   hypnograms run on with ``Sleep stage ?`` past the PSG): ``T = 0``;
3. the reference after the standard wake trim (30 min before the first and after the
   last sleep epoch, as for Sleep-EDF-20 and ``load_sc4001``) has exactly the night's
   epoch count: ``T`` = the trimmed start;
4. otherwise :class:`HypnogramError` naming both lengths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sleepstream.errors import DataFileError, HypnogramError
from sleepstream.io.night import Hypnogram
from sleepstream.report.night import RecordedNight, load_night
from sleepstream.scoring import agreement
from sleepstream.types import EPOCH_SECONDS, UNSCORED


def load_reference(path: str | Path) -> Hypnogram:
    """Any hypnogram :func:`sleepstream.io.readers.read_hypnogram` reads, or another
    recorded night (its directory or its ``hypnogram.csv``)."""
    p = Path(path)
    try:
        is_dir = p.is_dir()
        is_night_csv = p.name == "hypnogram.csv" and (p.parent / "night.json").exists()
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte...
        raise DataFileError(f"{p}: cannot open: {getattr(exc, 'strerror', None) or exc}") from None
    if is_dir or is_night_csv:
        other = load_night(p if is_dir else p.parent)
        return Hypnogram(other.stages.astype(np.int8), other.onsets.copy(), str(p))
    from sleepstream.io.readers import read_hypnogram

    return read_hypnogram(p)


def _trim_window(stages: np.ndarray, minutes: float = 30.0) -> slice:
    sleep = np.flatnonzero((stages > 0) & (stages != UNSCORED))
    if sleep.size == 0:
        return slice(0, stages.shape[0])
    margin = int(round(minutes * 60.0 / EPOCH_SECONDS))
    return slice(max(0, int(sleep[0]) - margin), min(stages.shape[0], int(sleep[-1]) + margin + 1))


def align_reference(
    ref: Hypnogram, night: RecordedNight, offset_s: float | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Reference stages on the night's grid (see the module docstring for the rules).

    Returns
    -------
    stages : ndarray, shape (night.n_epochs,), int64
    info : dict
        ``rule``, ``offset_s`` and the reference's length.
    """
    n_ref, n = len(ref), night.n_epochs
    src = ref.source or "reference"
    if n_ref == 0:
        raise HypnogramError(f"{src}: reference hypnogram is empty")
    ref_start = float(ref.onsets[0])
    rel = night.onsets - float(night.onsets[0])  # the night's grid from its first epoch
    if offset_s is None and night.manifest.get("source_offset_s") is not None:
        offset_s, rule = float(night.manifest["source_offset_s"]), "manifest source_offset_s"
        rel = night.onsets
    elif offset_s is not None:
        rule, rel = "given offset", night.onsets
    elif n_ref == n:
        offset_s, rule = ref_start, "same length"
    elif n_ref > n and np.all(ref.stages[n:] == UNSCORED):
        offset_s, rule = ref_start, "reference longer, unscored tail ignored"
    else:
        window = _trim_window(ref.stages)
        if window.stop - window.start != n:
            raise HypnogramError(
                f"{src}: reference has {n_ref} epochs ({window.stop - window.start} after the "
                f"30-min wake trim) but the night has {n}; pass --reference-offset SECONDS"
            )
        offset_s, rule = float(ref.onsets[window.start]), "30-min wake trim of the reference"
    j = np.rint((offset_s + rel - ref_start) / EPOCH_SECONDS).astype(np.int64)
    if j[0] < 0 or j[-1] >= n_ref:
        raise HypnogramError(
            f"{src}: reference covers {n_ref * EPOCH_SECONDS:.0f} s but the night needs "
            f"{(offset_s + rel[0] - ref_start):.0f} s to {(offset_s + rel[-1] - ref_start) + EPOCH_SECONDS:.0f} s of it"
        )
    info = {
        "rule": rule,
        "offset_s": float(offset_s),
        "reference_epochs": n_ref,
        "max_misalignment_s": float(np.max(np.abs(offset_s + rel - ref_start - j * EPOCH_SECONDS))),
    }
    return ref.stages[j].astype(np.int64), info


def reference_agreement(
    ref_path: str | Path, night: RecordedNight, offset_s: float | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Aligned reference stages and the agreement figures (via :mod:`sleepstream.scoring`)."""
    ref = load_reference(ref_path)
    stages, info = align_reference(ref, night, offset_s)
    m = agreement(stages, night.stages)
    return stages, {"path": str(ref_path), "alignment": info, **m}
