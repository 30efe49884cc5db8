"""Plain-text hypnograms: Sleep-EDF ``.hyp``-style symbols and ISRUC scorer files."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from sleepstream.errors import DataFileError, EmptyFileError
from sleepstream.io import stages as st
from sleepstream.io.edf import check_file
from sleepstream.io.night import Hypnogram
from sleepstream.io.processing import make_hypnogram


def read_text_lines(path: Path | str, what: str) -> list[tuple[int, str]]:
    """Non-blank lines of a small ASCII text file as ``(line_number, text)``; lines may end
    in ``\\r``, ``\\n`` or both.

    Raises
    ------
    DataFileError
        Missing, empty, binary or non-ASCII file, or only blank lines.
    """
    p = check_file(path)
    raw = p.read_bytes()
    if b"\x00" in raw or raw[:8] in (b"0       ", b"\xffBIOSEMI"):
        raise DataFileError(f"{p}: not a text {what} (binary content)")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise DataFileError(f"{p}: not a text {what} (non-ASCII bytes)") from None
    lines = [(i + 1, s.strip()) for i, s in enumerate(re.split(r"\r\n|\r|\n", text))]
    lines = [(i, s) for i, s in lines if s]
    if not lines:
        raise EmptyFileError(f"{p}: empty file (no {what} lines)")
    return lines


def read_hyp_text(path: Path | str) -> Hypnogram:
    """A Sleep-EDF ``.hyp``-style text hypnogram.

    One R&K symbol per 30-s epoch (``W 1 2 3 4 R ?``, also ``M`` for movement), lines
    separated by ``\\r`` (or ``\\n``); the first symbol is the first 30 s of the PSG.
    S3 and S4 become N3; ``?`` and movement become unscored.

    Raises
    ------
    HypnogramError
        For an unknown symbol (the message names the line).
    """
    lines = read_text_lines(path, "hypnogram")
    stages = np.array([st.hyp_text_stage(s, str(path), i) for i, s in lines], dtype=np.int8)
    return make_hypnogram(stages, str(path))


def read_isruc_labels(path: Path | str) -> Hypnogram:
    """An ISRUC scorer file (``<subject>_1.txt`` or ``_2.txt``): one integer code per 30-s
    epoch, 0=W, 1=N1, 2=N2, 3=N3, 5=REM (see :data:`~sleepstream.io.stages.ISRUC_STAGES`).
    """
    lines = read_text_lines(path, "hypnogram")
    stages = np.array(
        [st.coded_stage(s, st.ISRUC_STAGES, str(path), i) for i, s in lines], dtype=np.int8
    )
    return make_hypnogram(stages, str(path))


def sniff_text_hypnogram(path: Path | str) -> str:
    """Guess a text hypnogram's format: ``"dreams"`` (``[Hypnogram]`` header),
    ``"isruc"`` (integer codes including 0 or 5) or ``"hyp"`` (Sleep-EDF symbols)."""
    lines = read_text_lines(path, "hypnogram")
    if lines[0][1].lower().startswith("[hypnogram"):
        return "dreams"
    tokens = {s for _, s in lines}
    if tokens & {"0", "5"} and all(re.fullmatch(r"-?\d+", t) for t in tokens):
        return "isruc"
    return "hyp"
