"""Helpers for the report tests: small recorded nights made with the real recorder."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from sleepstream.sinks.recorder import Recorder
from sleepstream.types import UNSCORED, Chunk, Epoch, StagePrediction


def record_night(
    state_dir: Path,
    stages: Sequence[int],
    *,
    eeg: np.ndarray | None = None,
    fs: float = 100.0,
    **recorder_kw,
) -> Path:
    """Record ``stages`` (one publish per epoch) and optionally ``eeg`` (channels, samples).

    The prediction of epoch k puts 0.8 on its stage and 0.05 on the others.
    """

    async def go() -> Path:
        async with Recorder(
            state_dir, device=recorder_kw.pop("device", "bed1"), **recorder_kw
        ) as rec:
            per_epoch = int(30 * fs)
            for k, s in enumerate(stages):
                if eeg is not None:
                    for a in range(k * per_epoch, (k + 1) * per_epoch, 500):
                        x = eeg[:, a : a + 500]
                        await rec.write_chunk(
                            Chunk(
                                x,
                                (a + np.arange(x.shape[1])) / fs,
                                fs,
                                tuple(f"EEG {i}" for i in range(eeg.shape[0])),
                                0.0,
                            )
                        )
                p = np.full(5, 0.05)
                if s != UNSCORED:
                    p[s] = 0.8
                await rec.publish(
                    Epoch(k, 30.0 * k, "2026-01-01T00:00:00Z", np.zeros(3000, np.float32)),
                    StagePrediction(k, int(s), p, 0.8 if s != UNSCORED else 0.0, "m"),
                )
        return rec.night_dir

    return asyncio.run(go())


@pytest.fixture
def make_night(tmp_path) -> Callable[..., Path]:
    """``make_night(stages, eeg=None, **recorder_kw) -> night_dir`` under ``tmp_path``."""
    return lambda stages, **kw: record_night(tmp_path / "state", stages, **kw)
