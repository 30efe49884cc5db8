"""Annotations: EDF+ time-stamped annotation lists (TALs), and sleep stages among any
format's annotations turned into a 30-s hypnogram.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from sleepstream.errors import DataFileError, HypnogramError
from sleepstream.io import stages as st
from sleepstream.io.night import Hypnogram
from sleepstream.io.processing import make_hypnogram
from sleepstream.types import EPOCH_SECONDS, UNSCORED


@dataclass(frozen=True)
class Tal:
    """One EDF+ time-stamped annotation list: onset and duration (s), its texts."""

    onset: float
    duration: float
    texts: tuple[str, ...]


def parse_tals(raw: bytes, path: Path | str) -> list[Tal]:
    """The TALs in the bytes of one data record's annotation signal.

    A TAL is ``+onset[\\x15duration]\\x14text\\x14...\\x14\\x00``; the first of a record is
    the time-keeping TAL (its onset is the record's onset, its text empty).

    Raises
    ------
    DataFileError
        An onset or duration that is not a number.
    """
    out: list[Tal] = []
    for piece in raw.split(b"\x00"):
        if not piece.strip(b"\x14"):
            continue
        parts = piece.split(b"\x14")
        onset_b, _, dur_b = parts[0].partition(b"\x15")
        try:
            if onset_b[:1] not in (b"+", b"-"):
                raise ValueError(onset_b)
            onset = float(onset_b.decode("ascii"))
            duration = float(dur_b.decode("ascii")) if dur_b.strip() else 0.0
        except (ValueError, UnicodeDecodeError):
            raise DataFileError(
                f"{path}: corrupt EDF+ annotation (onset {parts[0][:24]!r} is not a number)"
            ) from None
        texts = tuple(t.decode("utf-8", errors="replace").strip() for t in parts[1:])
        out.append(Tal(onset, duration, texts))
    return out


class _HasAnnotation(Protocol):
    @property
    def onset(self) -> float: ...

    @property
    def duration(self) -> float: ...

    @property
    def text(self) -> str: ...


def stage_hypnogram(annotations: Iterable[_HasAnnotation], source: str) -> Hypnogram | None:
    """Contiguous 30-s stages from annotations, or ``None`` if none is a stage.

    Stage annotations (``Sleep stage W/1/2/3/4/R/?``, ``Sleep stage N1..``,
    ``Movement time``) must start and last a multiple of 30 s from the recording start
    (a zero duration means one epoch). Epochs that no annotation covers are unscored;
    other annotations (lights, arousals...) are ignored.

    Raises
    ------
    HypnogramError
        A stage annotation off the 30-s grid, or an unknown stage label.
    """
    items = [a for a in annotations if st.is_stage_annotation(a.text)]
    if not items:
        return None
    spans = []
    for a in items:
        code = st.edf_annotation_stage(a.text, source)
        dur = float(a.duration) if a.duration else EPOCH_SECONDS
        first, n = float(a.onset) / EPOCH_SECONDS, dur / EPOCH_SECONDS
        if abs(first - round(first)) > 1e-3 or abs(n - round(n)) > 1e-3 or first < -1e-3:
            raise HypnogramError(
                f"{source}: stage annotation {a.text.strip()!r} at {a.onset} s lasting "
                f"{dur} s is not on the 30-s epoch grid"
            )
        spans.append((int(round(first)), int(round(n)), code))
    n_epochs = max(first + n for first, n, _ in spans)
    stages = np.full(n_epochs, UNSCORED, dtype=np.int8)
    for first, n, code in spans:
        stages[first : first + n] = code
    return make_hypnogram(stages, source)
