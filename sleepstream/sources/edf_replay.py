"""Replay any EDF recording as a stream: chosen channel(s), speed factor, start offset, loop.

Timestamps are the sample index in the file divided by fs (seconds from the file's
start); with ``loop`` they keep increasing across passes, so stream time never goes
backwards. A finite ``speed`` paces chunks by the wall clock (``speed=1`` is real
time, ``30`` is 30x); ``"max"`` hands chunks over as fast as the consumer takes them,
so nothing is ever dropped.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sleepstream.errors import DataFileError, UsageError
from sleepstream.types import Chunk


def parse_speed(value: str | float | None) -> float | None:
    """``"max"`` (or ``None``/``inf``) -> ``None``; a positive factor -> float.

    Raises
    ------
    UsageError
        Not ``max`` and not a positive finite number.
    """
    if value is None:
        return None
    if isinstance(value, str):
        if value.strip().lower() == "max":
            return None
        try:
            value = float(value)
        except ValueError:
            raise UsageError(f"--speed {value!r}: expected 'max' or a positive number") from None
    factor = float(value)
    if math.isinf(factor) and factor > 0:
        return None
    if not math.isfinite(factor) or factor <= 0:
        raise UsageError(f"--speed {value!r}: expected 'max' or a positive number")
    return factor


class Paced:
    """Wall-clock pacing shared by file-like sources (``speed=None`` = no pacing)."""

    def __init__(self, speed: float | None) -> None:
        self.speed = speed
        self._t0: float | None = None

    async def wait(self, stream_seconds: float) -> None:
        """Sleep until ``stream_seconds`` of stream have been due at this speed."""
        if self.speed is None:
            await asyncio.sleep(0)  # let other tasks run between chunks
            return
        loop = asyncio.get_running_loop()
        if self._t0 is None:
            self._t0 = loop.time()
        delay = self._t0 + stream_seconds / self.speed - loop.time()
        await asyncio.sleep(max(0.0, delay))


class EDFReplaySource:
    """Stream an EDF file's channel(s) in chunks.

    Parameters
    ----------
    path : Path
        The EDF/EDF+/BDF file.
    channel : str or sequence of str, optional
        Channel label(s); default: the first EEG channel. All must share one fs.
    speed : "max" or float
        Replay speed factor (1 = real time).
    start : float
        Offset into the file in seconds.
    loop : bool
        Start over at ``start`` when the file ends (timestamps keep increasing).
    chunk_seconds : float
        Stream time per chunk in seconds (1 s by default).
    """

    dropped_samples: int = 0  # paced by the consumer: nothing is ever dropped
    reconnects: int = 0
    queue_depth: int = 0

    def __init__(
        self,
        path: Path | str,
        channel: str | Sequence[str] | None = None,
        *,
        speed: str | float | None = "max",
        start: float = 0.0,
        loop: bool = False,
        chunk_seconds: float = 1.0,
    ) -> None:
        self.path = Path(path)
        self._wanted: list[str | None] = (
            [channel] if channel is None or isinstance(channel, str) else list(channel)
        )
        if not self._wanted:
            raise UsageError("edf replay: give at least one channel")
        self.speed = parse_speed(speed)
        if not math.isfinite(start) or start < 0:
            raise UsageError(f"--start {start!r}: expected seconds >= 0")
        if not math.isfinite(chunk_seconds) or chunk_seconds <= 0:
            raise UsageError(f"chunk_seconds {chunk_seconds!r}: expected seconds > 0")
        self.start = float(start)
        self.loop = bool(loop)
        self.chunk_seconds = float(chunk_seconds)
        self.name = f"edf:{self.path}"
        self.fs = 0.0
        self.channels: tuple[str, ...] = ()
        self.received_samples = 0
        self._data: np.ndarray | None = None
        self._pos = 0
        self._emitted = 0
        self._start_idx = 0
        self._pacer = Paced(self.speed)

    # ------------------------------------------------------------------ lifecycle
    def _read(self) -> tuple[np.ndarray, float, tuple[str, ...]]:
        from sleepstream.io.edf import open_edf, pick_channel, read_signal

        edf = open_edf(self.path)
        rows, rates, labels = [], [], []
        for ch in self._wanted:
            idx = pick_channel(edf, ch, self.path)
            x, fs, _unit = read_signal(edf, idx, self.path)
            rows.append(x)
            rates.append(fs)
            labels.append(edf.signals[idx].label)
        if len(set(rates)) > 1:
            pairs = ", ".join(f"{c} {f:g} Hz" for c, f in zip(labels, rates, strict=True))
            raise DataFileError(f"{self.path}: channels differ in sampling rate ({pairs})")
        n = min(r.shape[0] for r in rows)
        if n == 0:
            raise DataFileError(f"{self.path}: channel {labels[0]!r} holds no samples")
        return np.stack([r[:n] for r in rows]), rates[0], tuple(labels)

    async def __aenter__(self) -> EDFReplaySource:
        data, fs, labels = await asyncio.to_thread(self._read)
        start_idx = int(round(self.start * fs))
        if start_idx >= data.shape[1]:
            raise UsageError(
                f"--start {self.start:g} s is past the end of {self.path} "
                f"({data.shape[1] / fs:g} s)"
            )
        self._data, self.fs, self.channels = data, fs, labels
        self._start_idx = self._pos = start_idx
        self._emitted = 0
        self._chunk = max(1, int(round(self.chunk_seconds * fs)))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._data = None

    @property
    def duration_s(self) -> float:
        """Length of the loaded channel(s) in seconds."""
        return 0.0 if self._data is None else self._data.shape[1] / self.fs

    @property
    def n_samples(self) -> int:
        """Samples per channel in the file."""
        return 0 if self._data is None else int(self._data.shape[1])

    # ------------------------------------------------------------------ iteration
    def __aiter__(self) -> EDFReplaySource:
        return self

    async def __anext__(self) -> Chunk:
        if self._data is None:
            raise StopAsyncIteration
        total = self._data.shape[1]
        if self._pos >= total:
            if not self.loop:
                raise StopAsyncIteration
            self._pos = self._start_idx
        stop = min(total, self._pos + self._chunk)
        block = self._data[:, self._pos : stop]
        first = self._start_idx + self._emitted
        n = stop - self._pos
        self._pos = stop
        self._emitted += n
        await self._pacer.wait(self._emitted / self.fs)
        self.received_samples += n
        return Chunk(
            samples=block.astype(np.float64),
            timestamps=(first + np.arange(n)) / self.fs,
            fs=self.fs,
            channels=self.channels,
            received_at=time.perf_counter(),
        )

    def info(self) -> dict[str, Any]:
        """Summary for logs: file, channels, fs, duration, speed."""
        return {
            "path": str(self.path),
            "channels": list(self.channels),
            "fs": self.fs,
            "duration_s": self.duration_s,
            "speed": "max" if self.speed is None else self.speed,
            "start_s": self.start,
            "loop": self.loop,
        }
