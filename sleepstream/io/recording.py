"""Any recording as a lazily read, chunked stream of µV samples: the one reading API.

:func:`open_recording` sniffs the file and returns a :class:`Recording`:

============  =====================================================  ==========================
format        files                                                  reader
============  =====================================================  ==========================
``edf``       EDF, EDF+C, EDF+D (discontinuous), BDF, BDF+           :mod:`sleepstream.io.edf`
``mne``       everything else ``mne.io.read_raw`` reads: FIF,        :mod:`sleepstream.io.mne_raw`
              BrainVision ``.vhdr``, EEGLAB ``.set``, GDF, CNT, ...
``openbci``   OpenBCI GUI recordings (``%OpenBCI Raw ... Data``)     :mod:`sleepstream.io.board_files`
``brainflow`` BrainFlow ``DataFilter.write_file`` CSV (tab, no       :mod:`sleepstream.io.board_files`
              header; the board's layout is needed)
``dreams``    DREAMS text excerpt (``[C3-A1]`` then one µV a line)   :mod:`sleepstream.io.array`
============  =====================================================  ==========================

A reader never loads a whole night: :meth:`Recording.blocks` yields :class:`Block`\\ s of
about ``block_s`` seconds, each with the samples of the picked channels in µV and the
time of every sample in seconds from the recording's start (``start_datetime``). Where
the file says the recording stopped and resumed (EDF+D record onsets, BrainFlow/OpenBCI
timestamp columns) the timestamps jump: the consumer sees the gap.

Units: every reader converts the file's unit to µV (``V``, ``mV``, ``µV``/``uV``/``UV``,
``nV``); a unit it does not know is taken as µV and reported in
:attr:`ChannelInfo.unit`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from sleepstream.errors import ChannelNotFoundError, DataFileError, EmptyFileError

#: Physical unit (lower case) -> factor to µV.
TO_UV: dict[str, float] = {
    "uv": 1.0,
    "µv": 1.0,
    "μv": 1.0,
    "microvolt": 1.0,
    "microvolts": 1.0,
    "mv": 1e3,
    "v": 1e6,
    "volt": 1e6,
    "volts": 1e6,
    "nv": 1e-3,
}
#: 10-20 EEG sites in order of preference (AASM: central first), to pick a default
#: channel in files without "EEG" in the labels.
EEG_SITES = ("c3", "c4", "cz", "fpz", "f3", "f4", "fz", "fp1", "fp2", "pz", "o1", "o2", "oz")


def unit_factor(unit: str) -> float:
    """Factor from a physical unit (any case: ``UV``, ``mV``, ``V``...) to µV; 1 if unknown."""
    return TO_UV.get(unit.strip().lower(), 1.0)


@dataclass(frozen=True)
class ChannelInfo:
    """One data channel of a recording.

    Attributes
    ----------
    name : str
        Label as the file writes it (board files: the board's electrode names).
    fs : float
        Sampling rate in Hz.
    unit : str
        Physical unit as the file states it (``""`` if none); samples are converted
        from it to µV.
    """

    name: str
    fs: float
    unit: str


@dataclass(frozen=True)
class Block:
    """Consecutive samples of the picked channels.

    Attributes
    ----------
    samples : ndarray, shape (n_channels, n_samples), float64, µV
    timestamps : ndarray, shape (n_samples,), float64
        Seconds from the recording start; jumps where the recording has a gap.
    """

    samples: np.ndarray
    timestamps: np.ndarray

    @property
    def n_samples(self) -> int:
        return int(self.samples.shape[1])


@dataclass(frozen=True)
class Annotation:
    """An annotation with its onset in seconds from the recording start."""

    onset: float
    duration: float
    text: str


@runtime_checkable
class Recording(Protocol):
    """A recording opened for chunked reading (see the module docstring).

    Attributes
    ----------
    path : Path
    format : str
        ``edf``, ``bdf``, ``fif``, ``brainvision``, ``eeglab``, ``openbci``, ``brainflow``...
    channels : tuple of ChannelInfo
        The data channels (annotation signals excluded).
    start_datetime : datetime or None
        Wall-clock time of stream time 0. Naive = the file's local time with the zone
        unknown (EDF, MNE formats, OpenBCI's formatted time); aware (UTC) where the file
        stores absolute time (BrainFlow/OpenBCI Unix timestamps); None if not stated.
    duration_s : float
        Stream time from 0 to the end of the last sample (gaps included), seconds.
    """

    path: Path
    format: str
    channels: tuple[ChannelInfo, ...]
    start_datetime: datetime | None

    @property
    def duration_s(self) -> float: ...

    def blocks(
        self, picks: Sequence[int], *, start_s: float = 0.0, block_s: float = 30.0
    ) -> Iterator[Block]:
        """Samples of ``picks`` (indices into ``channels``, one rate) from ``start_s`` on."""
        ...

    def annotations(self) -> list[Annotation]:
        """Every annotation the file holds (sleep stages and others)."""
        ...

    def close(self) -> None: ...


# ----------------------------------------------------------------------- channel choice
def _norm(label: str) -> str:
    s = label.strip().lower()
    s = re.sub(r"^(eeg|eog|emg)\s+", "", s)
    s = re.sub(r"[\s_:]+", "", s)
    return re.sub(r"\bm([12])\b", r"a\1", s)


def pick_channel(rec: Recording, channel: str | None) -> int:
    """Index of ``channel`` in ``rec.channels``.

    Matching is exact first, then ignoring case, spaces, an ``EEG``/``EOG``/``EMG``
    prefix and the M1/A1, M2/A2 spelling. ``None`` picks the first channel whose label
    contains ``EEG``, else the first 10-20 EEG site in AASM order, else the first channel.

    Raises
    ------
    ChannelNotFoundError
        With the available channels in the message.
    """
    labels = [c.name for c in rec.channels]
    if not labels:
        raise ChannelNotFoundError(f"{rec.path}: the file holds no signals (annotations only)")
    if channel is None:
        for i, label in enumerate(labels):
            if "eeg" in label.lower():
                return i
        for site in EEG_SITES:
            for i, label in enumerate(labels):
                if re.match(rf"{site}(\b|-|$)", _norm(label)):
                    return i
        return 0
    if channel in labels:
        return labels.index(channel)
    hits = [i for i, label in enumerate(labels) if _norm(label) == _norm(channel)]
    if len(hits) == 1:
        return hits[0]
    raise ChannelNotFoundError(
        f"{rec.path}: channel {channel!r} not found; available channels: {', '.join(labels)}"
    )


def pick_channels(rec: Recording, channels: Sequence[str | None]) -> tuple[list[int], float]:
    """Indices of several channels and their common rate (Hz).

    Raises
    ------
    ChannelNotFoundError, DataFileError
        A channel is missing, or the channels differ in sampling rate.
    """
    picks = [pick_channel(rec, ch) for ch in channels]
    rates = {rec.channels[i].fs for i in picks}
    if len(rates) > 1:
        pairs = ", ".join(f"{rec.channels[i].name} {rec.channels[i].fs:g} Hz" for i in picks)
        raise DataFileError(f"{rec.path}: channels differ in sampling rate ({pairs})")
    return picks, rec.channels[picks[0]].fs


# ----------------------------------------------------------------------- opening
def check_file(path: Path | str) -> Path:
    """Raise :class:`DataFileError` if ``path`` is missing, a folder, empty or cannot even
    be probed (name too long, no permission on a parent, a symlink loop...)."""
    p = Path(path)
    with os_errors(p, "cannot open"):
        if not p.exists():
            raise DataFileError(f"{p}: file not found")
        if not p.is_file():
            raise DataFileError(f"{p}: not a regular file")
        if p.stat().st_size == 0:
            raise EmptyFileError(f"{p}: empty file")
    return p


@contextlib.contextmanager
def os_errors(path: Path | str, doing: str = "cannot read") -> Iterator[None]:
    """Turn an :class:`OSError` on ``path`` into a one-line :class:`DataFileError`."""
    try:
        yield
    except OSError as exc:
        why = exc.strerror or str(exc) or type(exc).__name__
        raise DataFileError(f"{path}: {doing}: {why}") from None


#: First bytes of EDF and BDF files.
EDF_MAGIC = (b"0       ", b"\xffBIOSEMI")
#: Suffixes that are always EDF/BDF (ISRUC's ``.rec`` is EDF).
EDF_SUFFIXES = (".edf", ".bdf", ".rec")


def sniff_format(path: Path | str) -> str:
    """``edf``, ``openbci``, ``brainflow``, ``dreams`` or ``mne`` (MNE decides by extension).

    Raises
    ------
    DataFileError
        Missing, a folder, or empty.
    """
    p = check_file(path)
    with os_errors(p), p.open("rb") as f:
        head = f.read(4096)
    if head[:8] in EDF_MAGIC or p.suffix.lower() in EDF_SUFFIXES:
        return "edf"  # a .edf without the magic gets the EDF reader's own error
    if head.lstrip().startswith(b"%OpenBCI"):
        return "openbci"
    first = head.split(b"\n", 1)[0].split(b"\r", 1)[0].strip()
    if first.startswith(b"[") and first.endswith(b"]") and first.lower() != b"[hypnogram]":
        return "dreams"
    fields = first.split(b"\t")
    if len(fields) > 2 and all(_is_number(x) for x in fields):
        return "brainflow"
    return "mne"


def _is_number(token: bytes) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def open_recording(path: Path | str, *, board: str | None = None) -> Recording:
    """Open any supported recording for chunked reading (nothing is preloaded).

    Parameters
    ----------
    path : path
        The recording (see the module docstring for the formats).
    board : str, optional
        BrainFlow board name (``cyton``, ``synthetic``...) whose layout a BrainFlow CSV
        follows; needed when its column count fits several boards. OpenBCI GUI files
        name their board in the header.

    Raises
    ------
    DataFileError
        Missing, empty, truncated, corrupt or unsupported file (one line naming it).
    """
    fmt = sniff_format(path)
    if fmt == "edf":
        from sleepstream.io.edf import EdfRecording

        return EdfRecording(path)
    if fmt in ("openbci", "brainflow"):
        from sleepstream.io.board_files import open_board_file

        return open_board_file(path, fmt, board=board)
    if fmt == "dreams":
        from sleepstream.io.array import dreams_recording

        return dreams_recording(path)
    from sleepstream.io.mne_raw import MneRecording

    return MneRecording(path)


def read_channels(
    rec: Recording, picks: Sequence[int], *, start_s: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """All samples of ``picks`` from ``start_s`` to the end, in memory.

    Returns
    -------
    samples : ndarray, shape (n_channels, n_samples), float64, µV
    timestamps : ndarray, shape (n_samples,), float64, s from the recording start
    """
    parts = list(rec.blocks(picks, start_s=start_s, block_s=600.0))
    if not parts:
        return np.zeros((len(picks), 0)), np.zeros(0)
    return (
        np.concatenate([b.samples for b in parts], axis=1),
        np.concatenate([b.timestamps for b in parts]),
    )
