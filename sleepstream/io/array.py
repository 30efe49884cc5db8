"""A recording held in memory (small files only: the DREAMS text excerpts)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from sleepstream.errors import DataFileError
from sleepstream.io.recording import Annotation, Block, ChannelInfo


class ArrayRecording:
    """Channels already in memory, in µV, contiguous from stream time 0.

    Parameters
    ----------
    path : Path
        Where the samples came from (for messages).
    fmt : str
        Format name.
    data : ndarray, shape (n_channels, n_samples), µV
    fs : float
        Sampling rate, Hz.
    names : sequence of str
        One per row of ``data``.
    """

    def __init__(
        self,
        path: Path,
        fmt: str,
        data: np.ndarray,
        fs: float,
        names: Sequence[str],
        *,
        start_datetime: dt.datetime | None = None,
        annotations: Sequence[Annotation] = (),
    ) -> None:
        self.path = Path(path)
        self.format = fmt
        self._data = np.atleast_2d(np.asarray(data, dtype=np.float64))
        self._fs = float(fs)
        self.channels = tuple(ChannelInfo(n, self._fs, "uV") for n in names)
        self.start_datetime = start_datetime
        self._annotations = list(annotations)

    @property
    def duration_s(self) -> float:
        return float(self._data.shape[1] / self._fs)

    def blocks(
        self, picks: Sequence[int], *, start_s: float = 0.0, block_s: float = 30.0
    ) -> Iterator[Block]:
        if not picks:
            raise DataFileError(f"{self.path}: no channel picked")
        step = max(1, int(round(block_s * self._fs)))
        first = max(0, int(np.ceil(start_s * self._fs - 1e-9)))
        for a in range(first, self._data.shape[1], step):
            b = min(self._data.shape[1], a + step)
            yield Block(self._data[list(picks), a:b], np.arange(a, b) / self._fs)

    def annotations(self) -> list[Annotation]:
        return list(self._annotations)

    def close(self) -> None:
        """Nothing to release."""


def dreams_recording(path: Path | str) -> ArrayRecording:
    """A DREAMS text excerpt (``[C3-A1]`` then one µV value per line; 30 min)."""
    from sleepstream.io.dreams import read_dreams_signal

    signal, fs, name = read_dreams_signal(path)
    return ArrayRecording(Path(path), "dreams", signal[None, :], fs, [name])
