"""BIDS: stages from an ``*_events.tsv`` and the (recording, events) pairs of a BIDS tree.

The events files :mod:`sleepstream.commands.export_bids` writes hold one row per scored
30-s epoch: ``onset`` (s from the first sample), ``duration`` (30), ``trial_type``
(``Sleep stage W/N1/N2/N3/R``, unscored ``Sleep stage ?``) and extra columns (stage,
confidence, quality, model id). Any events file whose ``trial_type`` values are sleep
stages in that vocabulary (or Sleep-EDF's ``Sleep stage 1..4``) reads the same way.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from sleepstream.errors import DataFileError, HypnogramError
from sleepstream.io.annotations import stage_hypnogram
from sleepstream.io.datasets import RecordingPair
from sleepstream.io.night import Hypnogram
from sleepstream.io.recording import check_file

#: Data files of a BIDS EEG recording, in order of preference.
_EEG_SUFFIXES = (".edf", ".bdf", ".vhdr", ".set", ".fif")


@dataclass(frozen=True)
class _Event:
    onset: float
    duration: float
    text: str


def read_events_tsv(path: Path | str) -> Hypnogram:
    """The sleep stages of a BIDS ``*_events.tsv`` as a 30-s hypnogram.

    Raises
    ------
    DataFileError
        Unreadable file, or missing ``onset``/``duration``/``trial_type`` columns.
    HypnogramError
        No stage among the events, or a stage off the 30-s grid.
    """
    p = check_file(path)
    events: list[_Event] = []
    try:
        with p.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh, delimiter="\t")
            missing = [
                c for c in ("onset", "duration", "trial_type") if c not in (reader.fieldnames or [])
            ]
            if missing:
                raise DataFileError(f"{p}: not a BIDS events file (no {', '.join(missing)} column)")
            for line, row in enumerate(reader, start=2):
                try:
                    onset = float(row["onset"])
                    dur = float(row["duration"]) if row["duration"] not in ("", "n/a") else 0.0
                except (TypeError, ValueError):
                    raise DataFileError(
                        f"{p}: line {line}: bad onset/duration {row['onset']!r}/{row['duration']!r}"
                    ) from None
                events.append(_Event(onset, dur, row["trial_type"] or ""))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataFileError(f"{p}: not a readable TSV ({exc})") from None
    except OSError as exc:
        raise DataFileError(f"{p}: cannot read: {exc.strerror or exc}") from None
    hyp = stage_hypnogram(events, str(p))
    if hyp is None:
        raise HypnogramError(f"{p}: no sleep stage events (trial_type 'Sleep stage ...')")
    return hyp


def find_bids_pairs(root: Path | str) -> list[RecordingPair]:
    """Every ``sub-*/[ses-*/]eeg/*_eeg.<ext>`` with a sibling ``*_events.tsv``, sorted.

    The data file is the first of EDF, BDF, BrainVision, EEGLAB, FIF found for a
    recording; ``RecordingPair.dataset`` is ``"bids"`` and ``subject`` the ``sub-`` label
    (with ``_ses-<label>`` when there is a session).
    """
    root = Path(root)
    out = []
    for events in sorted(root.glob("sub-*/**/eeg/*_events.tsv")):
        stem = events.name[: -len("_events.tsv")]
        eeg = next(
            (events.with_name(f"{stem}_eeg{s}") for s in _EEG_SUFFIXES
             if events.with_name(f"{stem}_eeg{s}").is_file()),
            None,
        )  # fmt: skip
        if eeg is None:
            continue
        entities = dict(e.split("-", 1) for e in stem.split("_") if "-" in e)
        subject = entities.get("sub", "")
        if entities.get("ses"):
            subject += f"_ses-{entities['ses']}"
        out.append(RecordingPair(eeg, events, "bids", subject))
    return out
