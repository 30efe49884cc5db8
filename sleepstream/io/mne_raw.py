"""Every format ``mne.io.read_raw`` reads (FIF, BrainVision, EEGLAB, GDF, CNT, ...), lazily.

The file is opened with ``preload=False``; :meth:`MneRecording.blocks` asks MNE for one
block of samples at a time (``raw.get_data(picks, start, stop)``). MNE holds every
channel in SI units: a channel whose unit is volts is converted to µV; any other channel
(``misc`` without a unit, ...) is passed on as stored and its unit reported as ``""``.

EDF and BDF files never come here (:mod:`sleepstream.io.edf` reads them, including
EDF+D and headers whose unit MNE misreads, such as ``UV``).

``start_datetime``: MNE keeps ``meas_date`` in UTC. Most converters (and MNE's own EDF
reader) store the recorder's local clock time there as if it were UTC, so it is handed
on as a naive datetime (zone unknown), consistent with EDF.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sleepstream.errors import DataFileError
from sleepstream.io.recording import Annotation, Block, ChannelInfo, check_file

#: Suffix -> format name reported in ``Recording.format``.
_FORMATS = {
    ".fif": "fif",
    ".gz": "fif",
    ".vhdr": "brainvision",
    ".set": "eeglab",
    ".gdf": "gdf",
    ".cnt": "cnt",
    ".mff": "egi",
    ".nxe": "eximia",
    ".lay": "persyst",
    ".mef": "mef",
    ".snirf": "snirf",
}
#: FIFF unit code of volts.
_FIFF_UNIT_V = 107


def _format_of(path: Path) -> str:
    return _FORMATS.get(path.suffix.lower(), path.suffix.lower().lstrip(".") or "unknown")


def _first_line(exc: BaseException, path: Path | None = None) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    if path is not None:  # the message already starts with the path: say "the file"
        line = re.sub(r"\w*Path\('[^']*'\)", "the file", line)
        for form in (str(path.resolve()), str(path)):
            line = line.replace(form, "the file")
        line = line.replace("file the file", "the file")
    return line


class MneRecording:
    """A recording opened through ``mne.io.read_raw`` (:class:`~.recording.Recording`)."""

    def __init__(self, path: Path | str) -> None:
        self.path = p = check_file(path)
        self.format = _format_of(p)
        import mne

        try:
            raw = mne.io.read_raw(p, preload=False, verbose="error")
        except ValueError as exc:
            msg = _first_line(exc, p)
            if msg.startswith("Unsupported file type"):
                raise DataFileError(
                    f"{p}: unsupported recording format {p.suffix or '(no extension)'!r} "
                    "(EDF/BDF, an OpenBCI or BrainFlow file, or any format mne.io.read_raw "
                    "reads: FIF, BrainVision .vhdr, EEGLAB .set, GDF, ...)"
                ) from None
            raise DataFileError(f"{p}: cannot read {self.format} file: {msg}") from None
        except Exception as exc:  # each MNE reader fails in its own way on a corrupt file
            raise DataFileError(
                f"{p}: cannot read {self.format} file: {_first_line(exc)}"
            ) from None
        self._raw: Any = raw
        fs = float(raw.info["sfreq"])
        units = [ch["unit"] for ch in raw.info["chs"]]
        self._factor = np.array([1e6 if u == _FIFF_UNIT_V else 1.0 for u in units])
        self.channels = tuple(
            ChannelInfo(name, fs, "V" if u == _FIFF_UNIT_V else "")
            for name, u in zip(raw.ch_names, units, strict=True)
        )
        self._first_time = float(raw.first_samp) / fs
        meas = raw.info["meas_date"]
        self.start_datetime: dt.datetime | None = (
            None
            if meas is None
            else (meas + dt.timedelta(seconds=self._first_time)).replace(tzinfo=None)
        )

    def __enter__(self) -> MneRecording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Drop MNE's file handles."""
        self._raw = None

    @property
    def duration_s(self) -> float:
        return float(self._raw.n_times) / float(self._raw.info["sfreq"])

    def blocks(
        self, picks: Sequence[int], *, start_s: float = 0.0, block_s: float = 30.0
    ) -> Iterator[Block]:
        """Samples of ``picks`` in blocks of ``block_s`` seconds from ``start_s`` on."""
        if not picks:
            raise DataFileError(f"{self.path}: no channel picked")
        fs = float(self._raw.info["sfreq"])
        n_times = int(self._raw.n_times)
        step = max(1, int(round(block_s * fs)))
        factor = self._factor[list(picks)][:, None]
        for a in range(max(0, int(np.ceil(start_s * fs - 1e-9))), n_times, step):
            b = min(n_times, a + step)
            try:
                data = self._raw.get_data(picks=list(picks), start=a, stop=b)
            except Exception as exc:
                raise DataFileError(
                    f"{self.path}: cannot read samples {a}..{b}: {_first_line(exc)}"
                ) from None
            yield Block(np.asarray(data, dtype=np.float64) * factor, np.arange(a, b) / fs)

    def annotations(self) -> list[Annotation]:
        """The file's annotations, onsets in seconds from its first sample."""
        ann = self._raw.annotations
        shift = self._first_time if ann.orig_time is not None else 0.0
        return [
            Annotation(float(o) - shift, float(d), _text(str(t)))
            for o, d, t in zip(ann.onset, ann.duration, ann.description, strict=True)
        ]


def _text(description: str) -> str:
    """BrainVision markers read as ``Type/Description``: a ``Comment`` keeps its text."""
    return description.split("/", 1)[1] if description.startswith("Comment/") else description
