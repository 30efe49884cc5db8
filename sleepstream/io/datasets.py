"""Dataset helpers: the bundled real data, and the pairing of PSG and hypnogram files in
a full local Sleep-EDF or ISRUC download.

Full downloads
--------------
- Sleep-EDF Expanded (PhysioNet ``sleep-edf-database-expanded-1.0.0``): point
  :func:`find_sleep_edf_pairs` at the folder (or at ``sleep-cassette/``); it pairs every
  ``SC*-PSG.edf`` (or ``ST*-PSG.edf``) with the ``*-Hypnogram.edf`` whose name shares the
  first 7 characters (``SC4001E0-PSG.edf`` + ``SC4001EC-Hypnogram.edf``).
- ISRUC-Sleep subgroup III: after unpacking, each subject folder holds ``N.rec`` (EDF)
  and the scorer files ``N_1.txt`` / ``N_2.txt``; :func:`find_isruc_pairs` pairs them.

:func:`load_pairs` turns either list into trimmed 100-Hz nights.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from sleepstream.errors import DataFileError
from sleepstream.io.dreams import read_dreams_excerpt
from sleepstream.io.night import Hypnogram, Night
from sleepstream.io.processing import trim_hypnogram, trim_wake
from sleepstream.io.readers import read_isruc, read_recording, read_sleep_edf
from sleepstream.io.text import read_hyp_text
from sleepstream.types import MODEL_FS

SC4001_PSG = "SC4001E0-PSG.edf"
SC4001_HYPNOGRAM = "SC4001EC-Hypnogram.edf"
#: Number of DREAMS spindle excerpts.
DREAMS_EXCERPTS = 8


@dataclass(frozen=True)
class RecordingPair:
    """A recording and its hypnogram in a local dataset folder."""

    psg: Path
    hypnogram: Path
    dataset: str  # "sleep-edf", "isruc", "bids", or any name (read by read_recording)
    subject: str


def load_sc4001(
    data_dir: Path | str,
    channel: str = "EEG Fpz-Cz",
    *,
    cache: bool | Path | str | None = None,
) -> Night:
    """Sleep-EDF SC4001 night 1, trimmed, at 100 Hz: 841 epochs for ``EEG Fpz-Cz``.

    Parameters
    ----------
    data_dir : path
        Folder with ``SC4001E0-PSG.edf`` and ``SC4001EC-Hypnogram.edf``.
    """
    d = Path(data_dir)
    night = read_sleep_edf(d / SC4001_PSG, d / SC4001_HYPNOGRAM, channel, fs=MODEL_FS, cache=cache)
    return trim_wake(night)


def load_dreams(data_dir: Path | str, *, cache: bool | Path | str = False) -> list[Night]:
    """The 8 DREAMS spindle excerpts at 100 Hz with 30-s labels (60 epochs each).

    Not cached unless asked (licence: no derivatives); never trimmed (30-min excerpts).
    """
    d = Path(data_dir)
    return [
        read_dreams_excerpt(d / f"excerpt{i}.txt", fs=MODEL_FS, cache=cache)
        for i in range(1, DREAMS_EXCERPTS + 1)
    ]


def load_sleep_edf20_hypnograms(data_dir: Path | str, *, trim: bool = True) -> list[Hypnogram]:
    """The 39 Sleep-EDF-20 ``.hyp``-style hypnograms (``SC4*-PSG.edf.csv``), trimmed.

    Sorted by file name; ``Hypnogram.source`` is the file path.
    """
    d = Path(data_dir)
    files = sorted(d.glob("SC4*"))
    if not files:
        raise DataFileError(f"{d}: no Sleep-EDF hypnograms (SC4*) in this folder")
    hyps = [read_hyp_text(f) for f in files]
    return [trim_hypnogram(h) for h in hyps] if trim else hyps


def find_sleep_edf_pairs(root: Path | str) -> list[RecordingPair]:
    """Every ``S[CT]*-PSG.edf`` under ``root`` (recursively) with its ``*-Hypnogram.edf``.

    The hypnogram shares the PSG's first 7 characters (the last letters differ:
    ``SC4001E0-PSG.edf`` / ``SC4001EC-Hypnogram.edf``). PSGs without a hypnogram are
    skipped; sorted by subject.
    """
    root = Path(root)
    hyps: dict[str, Path] = {}
    for h in root.rglob("S[CT]*-Hypnogram.edf"):
        hyps.setdefault(h.name[:7], h)
    pairs = []
    for psg in sorted(root.rglob("S[CT]*-PSG.edf")):
        hyp = hyps.get(psg.name[:7])
        if hyp is not None:
            pairs.append(RecordingPair(psg, hyp, "sleep-edf", psg.name[:7]))
    return pairs


def find_isruc_pairs(root: Path | str, scorer: int = 1) -> list[RecordingPair]:
    """Every ISRUC ``N.rec`` (or ``N.edf``) under ``root`` with its ``N_<scorer>.txt``.

    Sorted by subject number.
    """
    root = Path(root)
    pairs = []
    for rec in [*root.rglob("*.rec"), *root.rglob("*.edf")]:
        labels = rec.with_name(f"{rec.stem}_{scorer}.txt")
        if labels.is_file():
            pairs.append(RecordingPair(rec, labels, "isruc", rec.stem))

    def order(p: RecordingPair) -> tuple[int, str]:
        m = re.match(r"\d+", p.subject)
        return (int(m.group()) if m else 10**9, str(p.psg))

    return sorted(pairs, key=order)


def iter_nights(
    pairs: Sequence[RecordingPair],
    channel: str | None = None,
    *,
    fs: float = MODEL_FS,
    trim: bool = True,
    cache: bool | Path | str | None = None,
) -> Iterator[Night]:
    """Nights of :func:`find_sleep_edf_pairs` / :func:`find_isruc_pairs`, one at a time
    (a full night at 100 Hz is ~30 MB). ``channel`` defaults to ``EEG Fpz-Cz`` for
    Sleep-EDF and ``C3-A2`` for ISRUC."""
    for p in pairs:
        if p.dataset == "isruc":
            night = read_isruc(p.psg, p.hypnogram, channel or "C3-A2", fs=fs, cache=cache)
        elif p.dataset == "sleep-edf":
            night = read_sleep_edf(p.psg, p.hypnogram, channel or "EEG Fpz-Cz", fs=fs, cache=cache)
        else:  # any recording format and any hypnogram format the readers know
            night = read_recording(
                p.psg, channel, p.hypnogram, fs=fs, dataset=p.dataset, cache=cache
            )
        yield trim_wake(night) if trim else night


def load_pairs(
    pairs: Sequence[RecordingPair],
    channel: str | None = None,
    *,
    fs: float = MODEL_FS,
    trim: bool = True,
    cache: bool | Path | str | None = None,
) -> list[Night]:
    """:func:`iter_nights` as a list."""
    return list(iter_nights(pairs, channel, fs=fs, trim=trim, cache=cache))
