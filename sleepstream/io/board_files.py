"""OpenBCI GUI recordings and BrainFlow ``DataFilter.write_file`` files, read lazily.

BrainFlow file (``DataFilter.write_file``)
    Tab-separated numbers, no header, one row per sample and one column per row of the
    board's data array (``BoardShim.get_num_rows``). Which columns are EEG, which is
    the timestamp (Unix seconds) and what the electrodes are called come from the
    board's BrainFlow layout: the board is given (the profile's ``board``) or, when the
    column count fits only one board, inferred.

OpenBCI GUI file (``OpenBCI-RAW-*.txt``), as the GUI's ``DataWriterODF`` writes it
    ``%OpenBCI Raw EXG Data`` (``EEG`` in older versions), ``%Number of channels = N``,
    ``%Sample Rate = R Hz``, ``%Board = OpenBCI_GUI$BoardCytonSerial``, then a line of
    column names (the board's data rows: ``Sample Index``, ``EXG Channel 0..N-1``, ...,
    ``Timestamp``, ..., ``Timestamp (Formatted)``) and comma-separated rows. The GUI v3
    layout (no column line; ``index, N EEG, 3 aux, HH:MM:SS.mmm``) is read too.

EEG values are µV in both (BrainFlow's unit). Channels get the board's electrode names
(``Fp1``, ``C3``... for a Cyton; ``EEG1``... where BrainFlow has none), as the live
BrainFlow source names them, so the board's profile applies unchanged. Timestamps are
honoured: a pause in the recording is a jump in :attr:`Block.timestamps` (gap epochs
downstream), exactly as with a live board.
"""

from __future__ import annotations

import datetime as dt
import io
import itertools
import math
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sleepstream.errors import DataFileError, UsageError
from sleepstream.io.recording import Annotation, Block, ChannelInfo, check_file, os_errors
from sleepstream.sources.boards import BOARDS

#: OpenBCI GUI ``%Board`` class name fragments -> board name, most specific first.
_GUI_BOARDS = (("daisy", "cyton-daisy"), ("cyton", "cyton"), ("ganglion", "ganglion"),
               ("synthetic", "synthetic"))  # fmt: skip


@dataclass(frozen=True)
class BoardLayout:
    """Where a board's data sit in BrainFlow's data array.

    Attributes
    ----------
    board : str
        Board name (:data:`sleepstream.sources.boards.BOARDS`).
    n_rows : int
        Rows of the data array (columns of a BrainFlow file).
    eeg_rows : tuple of int
    timestamp_row : int
    names : tuple of str
        Electrode names of the EEG rows (``EEG1``... where BrainFlow has none).
    fs : float
        Sampling rate, Hz.
    """

    board: str
    n_rows: int
    eeg_rows: tuple[int, ...]
    timestamp_row: int
    names: tuple[str, ...]
    fs: float


def board_layout(board: str) -> BoardLayout:
    """The BrainFlow layout of a board name (no session is opened).

    Raises
    ------
    UsageError
        Unknown board name, or a board without a fixed layout (``playback``).
    """
    key = board.strip().lower()
    if key not in BOARDS or key == "playback":
        valid = ", ".join(b for b in BOARDS if b != "playback")
        raise UsageError(f"unknown board {board!r} for a BrainFlow file; valid: {valid}")
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    try:
        from brainflow.board_shim import BoardIds, BoardShim
    except ImportError as exc:
        raise DataFileError(f"reading BrainFlow files needs BrainFlow ({exc})") from None
    BoardShim.disable_board_logger()
    bid = BoardIds[BOARDS[key][0]].value
    rows = tuple(int(r) for r in BoardShim.get_eeg_channels(bid))
    try:
        names = tuple(BoardShim.get_eeg_names(bid))
    except Exception:  # BrainFlow has no names for e.g. the Ganglion
        names = ()
    if len(names) != len(rows):
        names = tuple(f"EEG{i + 1}" for i in range(len(rows)))
    return BoardLayout(
        key,
        int(BoardShim.get_num_rows(bid)),
        rows,
        int(BoardShim.get_timestamp_channel(bid)),
        names,
        float(BoardShim.get_sampling_rate(bid)),
    )


def boards_with_rows(n_rows: int) -> list[str]:
    """Board names whose data array has ``n_rows`` rows (one name per BrainFlow board)."""
    seen, out = set(), []
    for name, (member, _hint) in BOARDS.items():
        if name in ("playback", "openbci") or member in seen:
            continue
        seen.add(member)
        if board_layout(name).n_rows == n_rows:
            out.append(name)
    return out


@dataclass(frozen=True)
class _Columns:
    """How to read a text file: delimiter, data columns, the timestamp column."""

    delimiter: str
    eeg: tuple[int, ...]
    timestamp: int  # column of Unix seconds, or -1 for OpenBCI v3 formatted time
    n_columns: int
    header_lines: int


class BoardFileRecording:
    """A BrainFlow or OpenBCI GUI text recording (:class:`~.recording.Recording`)."""

    def __init__(
        self,
        path: Path,
        fmt: str,
        columns: _Columns,
        names: Sequence[str],
        fs: float,
        board: str | None,
    ) -> None:
        self.path = path
        self.format = fmt
        self.board = board
        self._cols = columns
        self.channels = tuple(ChannelInfo(n, fs, "uV") for n in names)
        self._fs = fs
        first = self._first_rows(path)
        self._t0 = float(first[0])
        self.start_datetime: dt.datetime | None = (
            dt.datetime.fromtimestamp(self._t0, dt.UTC) if columns.timestamp >= 0 else None
        )
        if columns.timestamp < 0 and fmt == "openbci":
            self.start_datetime = None  # v3: a time of day without a date
        self._t_last = self._last_time(path)

    # ------------------------------------------------------------------ parsing
    def _lines(self, f: io.TextIOBase) -> Iterator[tuple[int, str]]:
        for number, line in enumerate(f, start=1):
            if number <= self._cols.header_lines or not line.strip() or line.startswith("%"):
                continue
            yield number, line

    def _parse(self, batch: list[tuple[int, str]], at_eof: bool) -> tuple[np.ndarray, np.ndarray]:
        """EEG ``(n_eeg, n)`` and raw time ``(n,)`` of the lines (bad last line dropped)."""
        c = self._cols
        use = list(c.eeg) + ([c.timestamp] if c.timestamp >= 0 else [])
        try:
            arr = np.loadtxt(
                [line for _, line in batch], delimiter=c.delimiter, usecols=use, ndmin=2,
                dtype=np.float64,
            )  # fmt: skip
            times = arr[:, -1] if c.timestamp >= 0 else self._clock([ln for _, ln in batch])
        except ValueError:
            rows, stamps = [], []
            for k, (number, line) in enumerate(batch):
                fields = line.rstrip("\r\n").split(c.delimiter)
                try:
                    if len(fields) != c.n_columns:
                        raise ValueError(line)
                    rows.append([float(fields[i]) for i in c.eeg])
                    stamps.append(
                        float(fields[c.timestamp]) if c.timestamp >= 0 else self._clock([line])[0]
                    )
                except ValueError:
                    if at_eof and k == len(batch) - 1:
                        break  # the last row of a recording cut by a crash
                    raise DataFileError(
                        f"{self.path}: line {number}: not a {self.format} data row "
                        f"({line.strip()[:48]!r})"
                    ) from None
            arr = np.asarray(rows, dtype=np.float64).reshape(-1, len(c.eeg))
            return arr.T, np.asarray(stamps, dtype=np.float64)
        return arr[:, : len(c.eeg)].T, times

    @staticmethod
    def _clock(lines: list[str]) -> np.ndarray:
        """Seconds of the day from OpenBCI v3's ``HH:MM:SS.mmm`` last column."""
        out = np.empty(len(lines))
        for i, line in enumerate(lines):
            hh, mm, ss = line.rsplit(",", 1)[1].strip().split(":")
            out[i] = int(hh) * 3600 + int(mm) * 60 + float(ss)
        return out

    def _first_rows(self, path: Path) -> np.ndarray:
        with os_errors(path), path.open(encoding="utf-8", errors="replace") as f:
            batch = list(itertools.islice(self._lines(f), 1))
        if not batch:
            raise DataFileError(f"{path}: {self.format} file holds no data rows")
        _eeg, times = self._parse(batch, at_eof=False)
        return times

    def _last_time(self, path: Path) -> float:
        with os_errors(path), path.open("rb") as f:
            size = path.stat().st_size
            f.seek(max(0, size - 65536))
            tail = f.read().decode("utf-8", errors="replace").splitlines()
        for line in reversed(tail[1:] if size > 65536 else tail):
            if line.strip() and not line.startswith("%"):
                try:
                    _eeg, t = self._parse([(0, line)], at_eof=True)
                except DataFileError:
                    continue
                if t.size:
                    return float(t[0])
        return self._t0

    def _unwrap(self, t: np.ndarray, last: float) -> np.ndarray:
        """OpenBCI v3 clock: add a day at each midnight roll-over."""
        if self._cols.timestamp >= 0:
            return t
        t = t.copy()
        prev = last
        for i in range(t.size):
            while t[i] < prev - 43200:
                t[i] += 86400
            prev = t[i]
        return t

    # ------------------------------------------------------------------ protocol
    @property
    def duration_s(self) -> float:
        last = self._unwrap(np.array([self._t_last]), self._t0)[0]
        return float(last - self._t0 + 1.0 / self._fs)

    def blocks(
        self, picks: Sequence[int], *, start_s: float = 0.0, block_s: float = 30.0
    ) -> Iterator[Block]:
        if not picks:
            raise DataFileError(f"{self.path}: no channel picked")
        n = max(1, int(round(block_s * self._fs)))
        last = self._t0
        with os_errors(self.path), self.path.open(encoding="utf-8", errors="replace") as f:
            lines = self._lines(f)
            batch = list(itertools.islice(lines, n))
            while batch:
                nxt = list(itertools.islice(lines, n))
                eeg, t = self._parse(batch, at_eof=not nxt)
                t = self._unwrap(t, last)
                if t.size:
                    last = float(t[-1])
                    ts = t - self._t0
                    keep = ts >= start_s - 1e-9
                    if keep.any():
                        yield Block(eeg[list(picks)][:, keep], ts[keep])
                batch = nxt

    def annotations(self) -> list[Annotation]:
        """These files carry no annotations."""
        return []

    def close(self) -> None:
        """Nothing is held open between reads."""


def _header(path: Path) -> tuple[list[str], str | None]:
    """The ``%`` lines and the first non-``%`` line of a text file."""
    meta: list[str] = []
    with os_errors(path), path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("%"):
                meta.append(line.strip())
                continue
            if line.strip():
                return meta, line.rstrip("\r\n")
    return meta, None


def _openbci(path: Path, given: str | None) -> BoardFileRecording:
    meta, first = _header(path)
    if first is None:
        raise DataFileError(f"{path}: OpenBCI file holds no data rows")
    fields = {}
    for line in meta:
        key, sep, value = line.lstrip("%").partition("=")
        if sep:
            fields[key.strip().lower()] = value.strip()
    board = given
    cls = fields.get("board", "").lower()
    for fragment, name in _GUI_BOARDS:
        if fragment in cls:
            board = name
            break
    try:
        fs = float(re.findall(r"[\d.]+", fields.get("sample rate", ""))[0])
    except IndexError:
        fs = board_layout(board).fs if board else math.nan
    if not (math.isfinite(fs) and fs > 0):
        raise DataFileError(f"{path}: OpenBCI header has no '%Sample Rate = ... Hz' line")
    cols = [c.strip() for c in first.split(",")]
    try:
        float(cols[0])
        has_names = False
    except ValueError:
        has_names = True
    if has_names:
        eeg = tuple(i for i, c in enumerate(cols) if re.fullmatch(r"(EXG|EEG) Channel \d+", c))
        if "Timestamp" not in cols or not eeg:
            raise DataFileError(
                f"{path}: OpenBCI column line lacks 'EXG Channel' or 'Timestamp' columns"
            )
        columns = _Columns(",", eeg, cols.index("Timestamp"), len(cols), len(meta) + 1)
    else:  # GUI v3: index, N EEG, 3 aux, formatted time
        n = len(cols) - 5
        if n < 1:
            raise DataFileError(f"{path}: OpenBCI v3 row has {len(cols)} columns, expected >= 6")
        columns = _Columns(",", tuple(range(1, n + 1)), -1, len(cols), len(meta))
    names = _names(board, len(columns.eeg))
    return BoardFileRecording(path, "openbci", columns, names, fs, board)


def _names(board: str | None, n: int) -> tuple[str, ...]:
    if board is not None:
        layout = board_layout(board)
        if len(layout.names) >= n:
            return layout.names[:n]
    return tuple(f"EEG{i + 1}" for i in range(n))


def _brainflow(path: Path, board: str | None) -> BoardFileRecording:
    with os_errors(path), path.open(encoding="utf-8", errors="replace") as f:
        first = f.readline().rstrip("\r\n")
    n_cols = len(first.split("\t"))
    if board is None:
        fits = boards_with_rows(n_cols)
        if len(fits) != 1:
            which = f"fits boards {', '.join(fits)}" if fits else "fits no known board"
            raise DataFileError(
                f"{path}: a BrainFlow file with {n_cols} columns {which}; name its board "
                "(replay/run: a board profile such as --profile cyton; inspect: --board cyton)"
            )
        board = fits[0]
    layout = board_layout(board)
    if layout.n_rows != n_cols:
        raise DataFileError(
            f"{path}: BrainFlow file has {n_cols} columns but board {board!r} writes "
            f"{layout.n_rows}; is this a {board} recording?"
        )
    columns = _Columns("\t", layout.eeg_rows, layout.timestamp_row, n_cols, 0)
    return BoardFileRecording(path, "brainflow", columns, layout.names, layout.fs, board)


def open_board_file(path: Path | str, fmt: str, *, board: str | None = None) -> BoardFileRecording:
    """Open an OpenBCI GUI (``fmt="openbci"``) or BrainFlow (``"brainflow"``) file.

    Raises
    ------
    DataFileError
        No data rows, a malformed header, or a column count that fits no (or several)
        boards.
    """
    p = check_file(path)
    if fmt == "openbci":
        return _openbci(p, board)
    if fmt == "brainflow":
        return _brainflow(p, board)
    raise ValueError(f"not a board file format: {fmt!r}")
