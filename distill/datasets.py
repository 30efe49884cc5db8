"""Which nights a dataset holds: the recordings, their hypnograms and their subjects.

``distill prepare DATA --dataset NAME`` and ``distill reproduce`` read a dataset through
:func:`find_sources`, one :class:`NightSource` per night:

- ``sleep-edf-20`` / ``sleep-edf-78``: a local copy of PhysioNet's Sleep-EDF Expanded
  (Sleep Cassette ``SC4ssN*-PSG.edf`` with ``*-Hypnogram.edf``; subjects 0-19, or all);
- ``isruc``: ISRUC-Sleep ``N.rec`` (or ``.edf``) with the first scorer's ``N_1.txt``;
- ``bids``: a BIDS tree (``sub-*/[ses-*/]eeg/*_eeg.<edf|bdf|vhdr|set|fif>`` with the
  sibling ``*_events.tsv`` whose ``trial_type`` holds the stages, as ``sleepstream
  export-bids`` and mne-bids write them); the subject is the ``sub-`` label, so the
  sessions of one person stay in one fold;
- ``pairs``: a lab's own list, ``DATA`` being a tab-separated file (or a folder holding
  ``pairs.tsv``), see :func:`read_pairs_tsv`: any recording sleepstream's readers open
  (EDF/EDF+/EDF+D/BDF, FIF, BrainVision, EEGLAB, GDF and whatever ``mne.io.read_raw``
  reads, OpenBCI GUI and BrainFlow files) with a hypnogram in any format
  :func:`sleepstream.io.read_hypnogram` reads (EDF+ annotations, ``.hyp`` text, ISRUC,
  DREAMS, BIDS ``events.tsv``, a FIF/BrainVision/EEGLAB file's stage annotations), or,
  with no hypnogram, the recording's own stage annotations.

Every night is read by :func:`read_night` through :mod:`sleepstream.io` (the daemon's
readers), trimmed to 30 min of wake around sleep and resampled to 100 Hz.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np

from sleepstream.errors import DataFileError, HypnogramError, UsageError
from sleepstream.io.night import Night

DATASETS = ("sleep-edf-20", "sleep-edf-78", "isruc", "bids", "pairs")
#: Default derivations per dataset (bids and pairs: name them with ``--channels``).
DEFAULT_CHANNELS = {
    "sleep-edf-20": ("EEG Fpz-Cz",),
    "sleep-edf-78": ("EEG Fpz-Cz",),
    "isruc": ("C3-A2",),
}
#: Columns of a pairs file (``recording`` is required).
PAIRS_COLUMNS = ("recording", "hypnogram", "subject", "name", "channels", "board")


@dataclass(frozen=True)
class NightSource:
    """One night of a dataset: where its signal and stages are, and whose night it is.

    Attributes
    ----------
    psg : Path
        The recording (any format :func:`sleepstream.io.open_recording` opens).
    hypnogram : Path or None
        Its stages in any format :func:`sleepstream.io.read_hypnogram` reads; None: the
        recording's own stage annotations.
    dataset : str
        Reader family: ``sleep-edf``, ``isruc``, ``bids`` or ``pairs``.
    subject : str
        The person (subject-wise folds keep a subject's nights together).
    night : int
        1, 2, ... in the order of the subject's nights.
    name : str
        Unique night name (fold masks and model cards use it).
    channels : tuple of str, optional
        This file's labels of the prepared derivations, in ``--channels`` order
        (default: the ``--channels`` names themselves).
    board : str, optional
        BrainFlow board layout of a BrainFlow file (``cyton``, ``synthetic``...).
    """

    psg: Path
    hypnogram: Path | None
    dataset: str
    subject: str
    night: int
    name: str
    channels: tuple[str, ...] | None = None
    board: str | None = None

    @property
    def legacy(self) -> bool:
        """Sleep-EDF and ISRUC: read by their dataset readers (keys as before)."""
        return self.dataset in ("sleep-edf", "isruc")


def find_sources(data: Path | str, dataset: str, board: str | None = None) -> list[NightSource]:
    """The nights of ``dataset`` under ``data`` (see the module docstring).

    Raises
    ------
    UsageError
        Unknown dataset.
    DataFileError
        ``data`` missing, or a pairs file that cannot be read (naming file and line).
    """
    from sleepstream.io import find_bids_pairs, find_isruc_pairs, find_sleep_edf_pairs

    if dataset not in DATASETS:
        raise UsageError(f"--dataset {dataset!r}: valid: {', '.join(DATASETS)}")
    data = Path(data)
    if dataset == "pairs":
        return read_pairs_tsv(data / "pairs.tsv" if data.is_dir() else data, board)
    if not data.is_dir():
        raise DataFileError(f"{data}: no such folder")
    if dataset == "isruc":
        return [NightSource(p.psg, p.hypnogram, p.dataset, str(p.subject), 1,
                            f"{p.dataset}-{p.subject}") for p in find_isruc_pairs(data)]  # fmt: skip
    if dataset == "bids":
        out: list[NightSource] = []
        seen: dict[str, int] = {}
        for p in find_bids_pairs(data):
            ent = bids_entities(p.hypnogram.name)
            subject = f"sub-{ent.get('sub', '')}"
            seen[subject] = seen.get(subject, 0) + 1
            name = p.hypnogram.name[: -len("_events.tsv")]
            out.append(NightSource(p.psg, p.hypnogram, "bids", subject, seen[subject], name, None,
                                   board))  # fmt: skip
        return out
    out = []
    for p in find_sleep_edf_pairs(data):
        if not p.psg.name.startswith("SC"):
            continue
        m = re.match(r"(S[CT]\d\d\d)(\d)", p.psg.name)
        if dataset == "sleep-edf-20" and int(p.psg.name[3:5]) >= 20:
            continue
        subject, night = (m.group(1), int(m.group(2))) if m else (str(p.subject), 1)
        out.append(NightSource(p.psg, p.hypnogram, p.dataset, subject, night, p.psg.name[:6]))
    return out


def bids_entities(filename: str) -> dict[str, str]:
    """``sub-01_ses-2_task-sleep_events.tsv`` -> ``{"sub": "01", "ses": "2", "task": "sleep"}``."""
    return dict(e.split("-", 1) for e in Path(filename).name.split("_") if "-" in e)


def read_pairs_tsv(path: Path | str, board: str | None = None) -> list[NightSource]:
    """A lab's list of nights: a tab-separated file with a header line.

    Columns (any order; ``#`` starts a comment line): ``recording`` (required), and
    optionally ``hypnogram`` (empty: the recording's own stage annotations), ``subject``
    (default: the recording's file stem), ``name`` (default: the recording's path
    relative to the file's folder, without suffix, ``/`` as ``-``; outside that folder:
    ``<its folder>-<stem>``), ``channels`` (this file's labels of the
    ``--channels`` derivations, comma-separated) and ``board`` (BrainFlow layout;
    default ``board``). Relative paths are relative to the file's folder. A row's night
    number counts that subject's rows in order.

    Raises
    ------
    DataFileError
        Missing or unreadable file, no ``recording`` column, an unknown column, an empty
        ``recording`` cell or a name that repeats (naming the file and line).
    """
    p = Path(path)
    if not p.is_file():
        raise DataFileError(f"{p}: no such pairs file (tab-separated: recording, hypnogram, "
                            "subject...)")  # fmt: skip
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(f"{p}: cannot read: {exc}") from None
    rows = [(i, line) for i, line in enumerate(text.splitlines(), 1)
            if line.strip() and not line.lstrip().startswith("#")]  # fmt: skip
    if not rows:
        raise DataFileError(f"{p}: empty pairs file (header: recording<TAB>hypnogram<TAB>subject)")
    header = [h.strip().lower() for h in next(csv.reader([rows[0][1]], delimiter="\t"))]
    bad = [h for h in header if h not in PAIRS_COLUMNS]
    if "recording" not in header or bad:
        what = f"unknown column {bad[0]!r}" if bad else "no 'recording' column"
        raise DataFileError(f"{p}: line {rows[0][0]}: {what}; columns: {', '.join(PAIRS_COLUMNS)}")
    base = p.parent
    parsed = []
    for line_no, line in rows[1:]:
        cells = [c.strip() for c in next(csv.reader([line], delimiter="\t"))]
        row = dict(zip(header, cells + [""] * (len(header) - len(cells)), strict=False))
        if not row["recording"]:
            raise DataFileError(f"{p}: line {line_no}: empty 'recording'")
        psg = _resolve(base, row["recording"])
        hyp = _resolve(base, row["hypnogram"]) if row.get("hypnogram") else None
        chans = (
            tuple(c.strip() for c in row["channels"].split(",")) if row.get("channels") else None
        )
        parsed.append((line_no, psg, hyp, row.get("subject") or _stem(psg), row.get("name"),
                       chans, row.get("board") or board))  # fmt: skip
    out: list[NightSource] = []
    seen: dict[str, int] = {}
    names: dict[str, int] = {}
    for line_no, psg, hyp, subject, name, chans, brd in parsed:
        name = name or _default_name(psg, base)
        if name in names:
            raise DataFileError(f"{p}: line {line_no}: night name {name!r} repeats line "
                                f"{names[name]} (add a 'name' column)")  # fmt: skip
        names[name] = line_no
        seen[subject] = seen.get(subject, 0) + 1
        out.append(NightSource(psg, hyp, "pairs", subject, seen[subject], name, chans, brd))
    return out


def _resolve(base: Path, cell: str) -> Path:
    q = Path(cell).expanduser()
    return q if q.is_absolute() else base / q


def _default_name(psg: Path, base: Path) -> str:
    try:
        folders = psg.parent.relative_to(base).parts
    except ValueError:  # outside the pairs file's folder: its own folder's name
        folders = (psg.parent.name,)
    return "-".join([*folders, _stem(psg)])


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".edf.csv", "_raw.fif", "_eeg.fif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def source_files(src: NightSource) -> list[Path]:
    """Every file a night is read from: the recording, files sharing its stem (a
    BrainVision ``.vmrk``/``.eeg``, an EEGLAB ``.fdt``), and the hypnogram."""
    files = [src.psg]
    if not src.legacy:
        files += sorted(q for q in src.psg.parent.glob(f"{_glob_escape(src.psg.stem)}.*")
                        if q != src.psg and q != src.hypnogram and q.is_file())  # fmt: skip
    return files + ([src.hypnogram] if src.hypnogram is not None else [])


def _glob_escape(s: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", s)


def read_night(src: NightSource, channels: Sequence[str]) -> list[Night]:
    """The night's derivations as trimmed 100-Hz :class:`~sleepstream.io.Night` objects,
    one per entry of ``channels`` (the prepared names; ``src.channels`` the file's labels).

    Raises
    ------
    DataFileError, ChannelNotFoundError, HypnogramError
        One line naming the file: unreadable, channel missing, no stages.
    """
    from sleepstream.io import iter_nights, read_recording, trim_wake

    if src.legacy:
        from sleepstream.io import RecordingPair

        pair = RecordingPair(src.psg, cast(Path, src.hypnogram), src.dataset, src.subject)
        return [next(iter_nights([pair], ch, fs=100.0, trim=True, cache=False)) for ch in channels]
    labels = src.channels or tuple(channels)
    if len(labels) != len(channels):
        raise DataFileError(f"{src.psg}: {len(labels)} file channels ({', '.join(labels)}) "
                            f"for {len(channels)} derivations ({', '.join(channels)})")  # fmt: skip
    for f in (src.psg, src.hypnogram):
        if f is not None and not f.exists():
            raise DataFileError(f"{f}: no such file")
    nights = []
    for label in labels:
        night = read_recording(src.psg, label, src.hypnogram, fs=100.0, dataset=src.dataset,
                               cache=False, board=src.board)  # fmt: skip
        if not (np.asarray(night.stages) >= 0).any():
            where = "its hypnogram" if src.hypnogram else "no hypnogram given and the file"
            raise HypnogramError(f"{src.psg}: {where} has no scored sleep stage")
        nights.append(trim_wake(night))
    return nights
