"""Replay any recording file as a stream: EDF/EDF+D/BDF, every MNE format, OpenBCI GUI
and BrainFlow files (see :mod:`sleepstream.io.recording`).

The file is read lazily, one block at a time in a worker thread: a 24-hour recording is
never held in memory. Timestamps are the recording's own stream time in seconds from
its start (:attr:`FileReplaySource.start_datetime`): sample index / fs for contiguous
files, the record onsets of an EDF+D file, the timestamp column of a BrainFlow or
OpenBCI file. A pause in the recording is therefore a jump in the timestamps, which the
DSP turns into gap epochs exactly as for a live board. With ``loop`` the timestamps keep
increasing across passes, so stream time never goes backwards.

A finite ``speed`` paces chunks by the wall clock (``speed=1`` is real time, ``30`` is
30x); ``"max"`` hands chunks over as fast as the consumer takes them, so nothing is
ever dropped. Chunks are ``chunk_seconds`` long: 300 s at ``--speed max`` (one read and
one DSP call per 10 epochs, which reach inference as one batch: 2.2x the epochs/s of
30-s chunks, ``bench/throughput.py``), 1 s when paced. The output does not depend on the
chunk size.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sleepstream.errors import DataFileError, UsageError
from sleepstream.types import Chunk

log = logging.getLogger(__name__)

#: Bounds of a paced replay's speed factor (1 = real time; beyond: ``max``).
MIN_SPEED, MAX_SPEED = 0.01, 1e6
#: Stream seconds per chunk at ``--speed max`` and when paced.
MAX_SPEED_CHUNK_S = 300.0
PACED_CHUNK_S = 1.0


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
    if not MIN_SPEED <= factor <= MAX_SPEED:
        raise UsageError(
            f"--speed {value!r}: expected 'max' or a factor from {MIN_SPEED:g} to {MAX_SPEED:g}"
        )
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


class FileReplaySource:
    """Stream a recording file's channel(s) in chunks.

    Parameters
    ----------
    path : Path
        Any supported recording (EDF/BDF, an MNE format, OpenBCI GUI, BrainFlow CSV).
    channel : str or sequence of str, optional
        Channel label(s); default: the first EEG channel (board files: every EEG
        channel, so a profile's derivation finds its reference). All must share one fs.
    speed : "max" or float
        Replay speed factor (1 = real time).
    start : float
        Offset into the recording in seconds from its start.
    loop : bool
        Start over at ``start`` when the file ends (timestamps keep increasing).
    chunk_seconds : float, optional
        Stream time per chunk in seconds (default 300 at ``max``, else 1).
    board : str, optional
        BrainFlow board whose layout a BrainFlow file follows (the profile's board).

    Attributes
    ----------
    start_datetime : datetime or None
        Wall-clock time of stream time 0 as the recording states it, known once entered
        (naive = the file's local time, zone unknown; aware where the file stores Unix
        time); see :class:`sleepstream.io.recording.Recording`.
    """

    dropped_samples: int = 0  # paced by the consumer: nothing is ever dropped
    reconnects: int = 0
    queue_depth: int = 0
    #: The rate and the start come from the recording (the profile's fs only bounds it).
    from_file: bool = True

    def __init__(
        self,
        path: Path | str,
        channel: str | Sequence[str] | None = None,
        *,
        speed: str | float | None = "max",
        start: float = 0.0,
        loop: bool = False,
        chunk_seconds: float | None = None,
        board: str | None = None,
    ) -> None:
        self.path = Path(path)
        self._wanted: list[str | None] = (
            [channel] if channel is None or isinstance(channel, str) else list(channel)
        )
        if not self._wanted:
            raise UsageError("file replay: give at least one channel")
        self.speed = parse_speed(speed)
        if not math.isfinite(start) or start < 0:
            raise UsageError(f"--start {start!r}: expected seconds >= 0")
        if chunk_seconds is None:
            chunk_seconds = MAX_SPEED_CHUNK_S if self.speed is None else PACED_CHUNK_S
        if not math.isfinite(chunk_seconds) or chunk_seconds <= 0:
            raise UsageError(f"chunk_seconds {chunk_seconds!r}: expected seconds > 0")
        self.start = float(start)
        self.loop = bool(loop)
        self.chunk_seconds = float(chunk_seconds)
        self.board = board
        self.name = f"file:{self.path}"
        self.fs = 0.0
        self.channels: tuple[str, ...] = ()
        self.format = ""
        self.start_datetime: dt.datetime | None = None
        self.received_samples = 0
        self._rec: Any = None
        self._picks: list[int] = []
        self._it: Iterator[Any] | None = None
        self._offset = 0.0  # added to timestamps: one pass length per loop
        self._first_t: float | None = None
        self._checked = False
        self._pacer = Paced(self.speed)

    # ------------------------------------------------------------------ lifecycle
    def _open(self) -> None:
        from sleepstream.io.recording import open_recording, pick_channels

        rec = open_recording(self.path, board=self.board)
        if self._wanted == [None] and rec.format in ("openbci", "brainflow"):
            picks, fs = list(range(len(rec.channels))), rec.channels[0].fs
        else:
            picks, fs = pick_channels(rec, self._wanted)
        if rec.duration_s <= 0:
            raise DataFileError(f"{self.path}: the recording holds no samples")
        if self.start >= rec.duration_s:
            raise UsageError(
                f"--start {self.start:g} s is past the end of {self.path} ({rec.duration_s:g} s)"
            )
        self._rec, self._picks, self.fs = rec, picks, float(fs)
        self.channels = tuple(rec.channels[i].name for i in picks)
        self.format = rec.format
        self.start_datetime = rec.start_datetime
        self._it = self._blocks()

    def _blocks(self) -> Iterator[Any]:
        it: Iterator[Any] = self._rec.blocks(
            self._picks, start_s=self.start, block_s=self.chunk_seconds
        )
        return it

    async def __aenter__(self) -> FileReplaySource:
        await asyncio.to_thread(self._open)
        self._offset, self._first_t, self._checked = 0.0, None, False
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._rec is not None:
            self._rec.close()
        self._rec, self._it = None, None

    @property
    def duration_s(self) -> float:
        """Length of the recording in seconds (gaps included); 0 before entering."""
        return 0.0 if self._rec is None else float(self._rec.duration_s)

    # ------------------------------------------------------------------ iteration
    def __aiter__(self) -> FileReplaySource:
        return self

    def _next_block(self) -> Any:
        assert self._it is not None
        block = next(self._it, None)
        if block is None and self.loop:
            self._offset += self._rec.duration_s - self.start
            self._it = self._blocks()
            block = next(self._it, None)
        return block

    async def __anext__(self) -> Chunk:
        if self._it is None:
            raise StopAsyncIteration
        block = await asyncio.to_thread(self._next_block)
        if block is None:
            raise StopAsyncIteration
        ts = block.timestamps + self._offset
        if self._first_t is None:
            self._first_t = float(ts[0])
        if not self._checked:
            self._check_amplitude(block.samples)
        await self._pacer.wait(float(ts[-1]) + 1.0 / self.fs - self._first_t)
        self.received_samples += block.n_samples
        return Chunk(
            samples=np.ascontiguousarray(block.samples, dtype=np.float64),
            timestamps=ts,
            fs=self.fs,
            channels=self.channels,
            received_at=time.perf_counter(),
        )

    def _check_amplitude(self, samples: np.ndarray) -> None:
        """Warn once when the first block's amplitude points at a wrong unit."""
        if samples.shape[1] < self.fs:
            return
        self._checked = True
        std = float(np.nanstd(samples[0]))
        if std > 5000.0 or 0.0 < std < 0.05:
            unit = self._rec.channels[self._picks[0]].unit or "(none)"
            log.warning(
                "%s: channel %s has a standard deviation of %.3g µV after conversion from "
                "its unit %s; EEG is ~5-100 µV: check the file's unit or the profile's "
                "scale_to_uv", self.path, self.channels[0], std, unit,
            )  # fmt: skip

    def info(self) -> dict[str, Any]:
        """Summary for logs: file, format, channels, fs, duration, speed."""
        return {
            "path": str(self.path),
            "format": self.format,
            "channels": list(self.channels),
            "fs": self.fs,
            "duration_s": self.duration_s,
            "start_datetime": None
            if self.start_datetime is None
            else self.start_datetime.isoformat(),
            "speed": "max" if self.speed is None else self.speed,
            "start_s": self.start,
            "loop": self.loop,
        }


#: The historical name (``edf:`` sources); it reads every supported format.
EDFReplaySource = FileReplaySource
