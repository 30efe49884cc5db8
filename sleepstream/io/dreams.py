"""DREAMS Sleep Spindles database: text excerpts and their 5-s hypnograms.

Licence: the DREAMS files may be used as they are but no adaptation may be distributed.
This reader therefore works in memory and does **not** cache by default; never write its
output into the repository.

30-s labels (the majority rule)
-------------------------------
The DREAMS hypnograms hold one R&K code per 5 s, scored in 20-s epochs (constant over
blocks of 4 entries; in excerpt 8 the 20-s grid is shifted by 10 s, its first block has 6
entries). A 30-s epoch ``k`` covers the six 5-s entries ``6k .. 6k+5``. After mapping each
entry to AASM (S3, S4 -> N3; negative codes -> unscored), the epoch gets the **stage held
by most of its six entries**. On a tie (3-3 or 2-2-2) it gets the stage of entry ``6k+3``,
the 5-s interval that starts at the epoch's centre (15 s). An unscored majority gives an
unscored epoch. With either 20-s grid, every 30-s epoch contains one whole 20-s block
(4 entries), so on the real files the majority is always strict (4 of 6 or 6 of 6) and the
tie rule never fires; excerpt 8 needs no special case.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sleepstream.errors import DataFileError, EmptyFileError, HypnogramError
from sleepstream.io import stages as st
from sleepstream.io.cache import CacheSpec, cached_night
from sleepstream.io.edf import check_file
from sleepstream.io.night import Night
from sleepstream.io.processing import fit_to_recording, make_hypnogram, resample_signal
from sleepstream.io.text import read_text_lines
from sleepstream.types import UNSCORED

#: Duration of every DREAMS spindle excerpt, s.
EXCERPT_SECONDS = 1800.0
#: 5-s entries per 30-s epoch.
_PER_EPOCH = 6


def read_dreams_signal(
    path: Path | str, duration_s: float = EXCERPT_SECONDS
) -> tuple[np.ndarray, float, str]:
    """A DREAMS text excerpt: ``[CHANNEL]`` on the first line, then one µV value per line.

    The rate is implied: ``round(n_samples / duration_s)`` Hz (50, 100 or 200).

    Returns
    -------
    signal : ndarray, shape (n_samples,), float32, µV
    fs : float, Hz
    channel : str
    """
    p = check_file(path)
    raw = p.read_bytes()
    head, _, body = raw.partition(b"\n")
    try:
        first = head.decode("ascii").strip()
    except UnicodeDecodeError:
        raise DataFileError(f"{p}: not a DREAMS excerpt (binary content)") from None
    if not (first.startswith("[") and first.endswith("]")):
        raise DataFileError(
            f"{p}: not a DREAMS excerpt (first line {first[:40]!r} is not [CHANNEL])"
        )
    channel = first[1:-1].strip()
    tokens = body.split()
    try:
        signal = np.fromiter(map(float, tokens), dtype=np.float64, count=len(tokens))
    except ValueError:
        bad = next(t for t in tokens if not _is_float(t.decode("latin-1")))
        raise DataFileError(
            f"{p}: not a DREAMS excerpt (value {bad[:20]!r} is not a number)"
        ) from None
    if signal.size == 0:
        raise EmptyFileError(f"{path}: empty file (no samples after the channel name)")
    fs = float(round(signal.size / duration_s))
    if fs <= 0:
        raise DataFileError(f"{path}: only {signal.size} samples for {duration_s:.0f} s")
    return signal.astype(np.float32), fs, channel


def _is_float(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def read_dreams_hypnogram_5s(path: Path | str) -> np.ndarray:
    """The 5-s entries of a DREAMS hypnogram as AASM codes, shape (n_entries,), int8."""
    lines = read_text_lines(path, "hypnogram")
    if lines[0][1].lower().startswith("[hypnogram"):
        lines = lines[1:]
    if not lines:
        raise EmptyFileError(f"{path}: empty file (no hypnogram values)")
    return np.array(
        [st.coded_stage(s, st.DREAMS_STAGES, str(path), i) for i, s in lines], dtype=np.int8
    )


def majority_30s(stages_5s: np.ndarray, source: str = "hypnogram") -> np.ndarray:
    """30-s labels from 5-s labels by the module's majority rule.

    Parameters
    ----------
    stages_5s : ndarray, shape (6 * n_epochs,)
        AASM codes or :data:`UNSCORED`, one per 5 s.

    Returns
    -------
    ndarray, shape (n_epochs,), int8
    """
    stages_5s = np.asarray(stages_5s, dtype=np.int8)
    if stages_5s.size % _PER_EPOCH:
        raise HypnogramError(
            f"{source}: {stages_5s.size} entries of 5 s is not a whole number of 30-s epochs"
        )
    blocks = stages_5s.reshape(-1, _PER_EPOCH)
    out = np.empty(blocks.shape[0], dtype=np.int8)
    codes = np.arange(UNSCORED, 5)
    for k, block in enumerate(blocks):
        votes = np.array([np.sum(block == c) for c in codes])
        best = np.flatnonzero(votes == votes.max())
        out[k] = codes[best[0]] if best.size == 1 else block[3]
    return out


def read_dreams_excerpt(
    signal_txt: Path | str,
    hypnogram_txt: Path | str | None = None,
    *,
    fs: float | None = None,
    cache: bool | Path | str = False,
) -> Night:
    """One DREAMS excerpt with 30-s labels (see the module docstring for the rule).

    Parameters
    ----------
    signal_txt : path
        ``excerptN.txt``.
    hypnogram_txt : path, optional
        Defaults to ``Hypnogram_excerptN.txt`` next to it.
    fs : float, optional
        Resample to this rate (Hz); ``None`` keeps the file's rate.
    cache : bool or path
        Off by default (the DREAMS licence forbids distributing derivatives); pass
        ``True`` or a folder to cache in your own cache directory.
    """
    signal_txt = Path(signal_txt)
    if hypnogram_txt is None:
        hypnogram_txt = signal_txt.with_name(f"Hypnogram_{signal_txt.stem}.txt")
    hypnogram_txt = Path(hypnogram_txt)

    def build() -> Night:
        signal, native_fs, channel = read_dreams_signal(signal_txt)
        duration = signal.size / native_fs
        stages = majority_30s(read_dreams_hypnogram_5s(hypnogram_txt), str(hypnogram_txt))
        hyp = fit_to_recording(
            make_hypnogram(stages, str(hypnogram_txt)), duration, str(signal_txt)
        )
        out_fs = native_fs if fs is None else float(fs)
        meta = {
            "path": str(signal_txt),
            "hypnogram_path": str(hypnogram_txt),
            "dataset": "dreams",
            "subject": signal_txt.stem,
            "start": "",
            "duration_s": float(duration),
            "channels": [channel],
            "source_fs": native_fs,
        }
        return Night(
            signal=resample_signal(signal, native_fs, out_fs),
            fs=out_fs,
            channel=channel,
            hypnogram=hyp,
            meta=meta,
        )

    spec = CacheSpec("dreams", (signal_txt, hypnogram_txt), {"fs": fs})
    return cached_night(spec, build, cache, default=False)
