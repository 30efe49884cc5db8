"""The night's stages in memory and the three files written from them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import NamedTuple

import numpy as np

from sleepstream.record import files
from sleepstream.types import EPOCH_SECONDS, UNSCORED, Epoch, StagePrediction, stage_name


class StageRow(NamedTuple):
    """One epoch's recorded verdict (the latest one: a revision replaces the first)."""

    epoch_index: int
    start: str  # ISO-8601 of the epoch's start on the night's clock
    onset_s: float  # from the night start
    stage: int  # -1 = unscored
    confidence: float
    reasons: str  # ";"-joined
    probabilities: tuple[float, ...]  # p_W .. p_REM (zeros when unscored)


def stage_row(epoch: Epoch, prediction: StagePrediction, onset_s: float, start: str) -> StageRow:
    """The row of one verdict."""
    stage = int(prediction.stage)
    probs = np.zeros(5) if stage == UNSCORED else np.asarray(prediction.probabilities, float)
    return StageRow(
        epoch.index,
        start,
        onset_s,
        stage,
        0.0 if stage == UNSCORED else float(prediction.confidence),
        ";".join(prediction.reasons or epoch.unscored_reasons),
        tuple(float(p) for p in probs),
    )


def write_stage_files(
    night_dir: Path, rows: list[StageRow], grid_offset_s: float, edf_start: dt.datetime
) -> None:
    """Rewrite ``hypnogram.csv``, ``hypnodensity.csv`` and ``stages.edf`` (blocking, atomic).

    Parameters
    ----------
    rows : list of StageRow
        In epoch order.
    grid_offset_s : float
        Onset of epoch 0 from the night start, s.
    edf_start : datetime
        Naive local night start for the EDF header.
    """
    files.write_csv_atomic(
        night_dir / "hypnogram.csv",
        files.HYPNOGRAM_COLUMNS,
        [
            (r.epoch_index, r.start, f"{r.onset_s:.3f}", stage_name(r.stage), f"{r.confidence:.4f}",
             r.reasons)
            for r in rows
        ],
    )  # fmt: skip
    files.write_csv_atomic(
        night_dir / "hypnodensity.csv",
        files.HYPNODENSITY_COLUMNS,
        [(r.epoch_index, r.start, *(f"{p:.5f}" for p in r.probabilities)) for r in rows],
    )
    # the EDF+ hypnogram is continuous: epochs never published are "Sleep stage ?"
    by_index = {r.epoch_index: r for r in rows}
    indices = range(rows[0].epoch_index, rows[-1].epoch_index + 1) if rows else range(0)
    onsets = [grid_offset_s + k * EPOCH_SECONDS for k in indices]
    stages = [by_index[k].stage if k in by_index else UNSCORED for k in indices]
    files.write_stages_edf(night_dir / "stages.edf", onsets, stages, edf_start)
