"""Cutting the raw stream into EDF segments, and the segments waiting to be written."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class OpenSegment:
    """The segment being filled.

    Attributes
    ----------
    fs : float
        Hz.
    channels : tuple of str
    start_ts : float
        Stream time of its first sample, s.
    parts : list of ndarray, each (n_channels, k)
    n : int
        Samples so far.
    """

    fs: float
    channels: tuple[str, ...]
    start_ts: float
    parts: list[np.ndarray] = field(default_factory=list)
    n: int = 0


@dataclass
class PendingSegment:
    """A closed segment waiting to be written (held in memory until it is).

    Attributes
    ----------
    index : int
        Its number: file ``raw_<index>.edf``.
    data : ndarray, shape (n_channels, n_samples), float64
        Source units, exactly as received.
    fs : float
    channels : tuple of str
    start_s : float
        Seconds from the night start.
    """

    index: int
    data: np.ndarray
    fs: float
    channels: tuple[str, ...]
    start_s: float

    @property
    def file(self) -> str:
        return f"raw_{self.index:04d}.edf"

    def info(self) -> dict[str, Any]:
        """The segment's manifest entry (without its start date or padding)."""
        return {
            "file": self.file,
            "start_s": round(self.start_s, 6),
            "n_samples": int(self.data.shape[1]),
            "duration_s": round(self.data.shape[1] / self.fs, 6),
            "fs": self.fs,
            "channels": list(self.channels),
        }


class Segmenter:
    """Cuts the raw stream into segments of ``segment_seconds``.

    A segment also ends at a cut (a gap or a clock reset), or when the rate or the
    channels change.
    """

    def __init__(self, segment_seconds: float) -> None:
        self.segment_seconds = float(segment_seconds)
        self.open: OpenSegment | None = None

    def append(
        self, x: np.ndarray, start_ts: float, fs: float, channels: tuple[str, ...], cut: bool
    ) -> list[OpenSegment]:
        """Add samples ``x`` (n_channels, n) starting at stream time ``start_ts`` (s);
        return the segments this closed, in order."""
        closed: list[OpenSegment] = []
        seg = self.open
        if seg is not None and (cut or seg.fs != fs or seg.channels != channels):
            if seg.n:
                closed.append(seg)
            seg = None
        if seg is None:
            seg = OpenSegment(fs=fs, channels=channels, start_ts=start_ts)
        per_segment = max(1, int(round(self.segment_seconds * fs)))
        while x.shape[1]:
            take = min(per_segment - seg.n, x.shape[1])
            seg.parts.append(x[:, :take].copy())
            seg.n += take
            x, start_ts = x[:, take:], start_ts + take / fs
            if seg.n >= per_segment:
                closed.append(seg)
                seg = OpenSegment(fs=fs, channels=channels, start_ts=start_ts)
        self.open = seg
        return closed

    def close(self) -> list[OpenSegment]:
        """End the stream: the open segment, if it holds samples."""
        seg, self.open = self.open, None
        return [seg] if seg is not None and seg.n else []
