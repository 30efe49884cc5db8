"""Helpers for the DSP tests: synthetic EEG-like signals and chunked runs of a chain."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from sleepstream.dsp import EpochConfig, FilterConfig, Montage, QualityConfig, SignalChain
from sleepstream.types import Chunk, Epoch

UTC0 = datetime(2024, 1, 1, 22, 0, tzinfo=UTC)


def eeg_like(n: int, fs: float, seed: int = 0, offset_uv: float = 0.0) -> np.ndarray:
    """Brown-ish noise plus alpha and delta, ~20 µV std; shape (n,), µV."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / fs
    white = rng.normal(0.0, 1.0, n)
    brown = np.cumsum(white)
    brown -= np.convolve(brown, np.ones(int(fs)) / int(fs), mode="same")
    x = 3.0 * brown + 15 * np.sin(2 * np.pi * 10 * t) + 25 * np.sin(2 * np.pi * 1.2 * t)
    return x + offset_uv


def chunked(
    x: np.ndarray,
    ts: np.ndarray,
    fs: float,
    size: int,
    *,
    channel: str = "EEG",
    electrode_off: np.ndarray | None = None,
) -> list[Chunk]:
    """Cut a single-channel signal into :class:`Chunk` s of ``size`` samples."""
    out = []
    for i in range(0, x.size, size):
        sl = slice(i, i + size)
        out.append(
            Chunk(
                samples=x[None, sl],
                timestamps=ts[sl],
                fs=fs,
                channels=(channel,),
                received_at=float(i),
                electrode_off=None if electrode_off is None else electrode_off[sl],
            )
        )
    return out


def make_chain(
    *,
    fs: float | None = None,
    filters: FilterConfig | None = None,
    quality: QualityConfig | None = None,
    **epoch_kw,
) -> SignalChain:
    """A chain on channel ``EEG`` with a fixed UTC origin (deterministic ``start_clock``)."""
    return SignalChain(
        Montage("EEG"),
        filters=filters,
        quality=quality,
        epochs=EpochConfig(clock_origin=UTC0, **epoch_kw),
        expected_fs=fs,
    )


def run_chain(chain: SignalChain, chunks: list[Chunk]) -> list[Epoch]:
    """Push every chunk, then flush; all epochs in order."""
    out: list[Epoch] = []
    for c in chunks:
        out.extend(chain.push(c))
    out.extend(chain.flush())
    return out


@pytest.fixture
def uniform_ts():
    """``uniform_ts(n, fs, t0=0)``: timestamps of a gap-free stream."""

    def make(n: int, fs: float, t0: float = 0.0) -> np.ndarray:
        return t0 + np.arange(n) / fs

    return make


@pytest.fixture
def eeg():
    """``eeg(n, fs, seed=0, offset_uv=0.0)``: see :func:`eeg_like`."""
    return eeg_like


@pytest.fixture
def chunk_signal():
    """``chunk_signal(x, ts, fs, size, ...)``: see :func:`chunked`."""
    return chunked


@pytest.fixture
def chain_factory():
    """``chain_factory(fs=..., filters=..., quality=..., **epoch_kw)``."""
    return make_chain


@pytest.fixture
def run():
    """``run(chain, chunks)``: push all chunks then flush."""
    return run_chain
