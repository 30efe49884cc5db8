"""Whole-night readers: one channel of any recording with its hypnogram, Sleep-EDF, ISRUC,
and a hypnogram reader that recognises every supported format.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sleepstream.errors import HypnogramError
from sleepstream.io.annotations import stage_hypnogram
from sleepstream.io.cache import CacheSpec, cached_night
from sleepstream.io.dreams import majority_30s, read_dreams_hypnogram_5s
from sleepstream.io.edf import read_edf_hypnogram
from sleepstream.io.night import Hypnogram, Night
from sleepstream.io.processing import fit_to_recording, make_hypnogram, resample_signal
from sleepstream.io.recording import (
    EDF_MAGIC,
    Recording,
    open_recording,
    pick_channel,
    read_channels,
    sniff_format,
)
from sleepstream.io.text import read_hyp_text, read_isruc_labels, sniff_text_hypnogram
from sleepstream.types import EPOCH_SECONDS, UNSCORED

HypnogramLike = Hypnogram | Path | str | None

#: Formats :func:`read_hypnogram` reads (``fmt=``).
HYPNOGRAM_FORMATS = ("edf", "hyp", "isruc", "dreams", "bids", "annotations")


def is_edf_file(path: Path | str) -> bool:
    """True when the file starts with an EDF or BDF version field."""
    try:
        with Path(path).open("rb") as f:
            return f.read(8) in EDF_MAGIC
    except OSError:
        return False


def _sniff_hypnogram(path: Path | str) -> str:
    if is_edf_file(path):
        return "edf"
    p = Path(path)
    if p.name.endswith("_events.tsv") or p.suffix.lower() == ".tsv":
        return "bids"
    if sniff_format(p) == "mne":
        suffix = p.suffix.lower()
        if suffix not in ("", ".txt", ".hyp", ".csv") and not suffix[1:].isdigit():
            return "annotations"
    return sniff_text_hypnogram(path)


def read_hypnogram(path: Path | str, fmt: str | None = None) -> Hypnogram:
    """Any supported hypnogram file as 30-s AASM stages from the recording start.

    Parameters
    ----------
    path : path
        EDF+ annotations (Sleep-EDF ``*-Hypnogram.edf``, or a PSG with stage
        annotations), ``.hyp``-style text, an ISRUC scorer file, a DREAMS 5-s hypnogram
        (majority rule of :mod:`sleepstream.io.dreams`), a BIDS ``*_events.tsv`` (see
        :mod:`sleepstream.io.bids`) or any recording MNE reads whose annotations are
        sleep stages (FIF, BrainVision ``.vhdr``, EEGLAB ``.set``...).
    fmt : {"edf", "hyp", "isruc", "dreams", "bids", "annotations"}, optional
        Skip format detection.
    """
    if fmt is None:
        fmt = _sniff_hypnogram(path)
    if fmt == "edf":
        return read_edf_hypnogram(path)
    if fmt == "hyp":
        return read_hyp_text(path)
    if fmt == "isruc":
        return read_isruc_labels(path)
    if fmt == "dreams":
        return make_hypnogram(majority_30s(read_dreams_hypnogram_5s(path), str(path)), str(path))
    if fmt == "bids":
        from sleepstream.io.bids import read_events_tsv

        return read_events_tsv(path)
    if fmt == "annotations":
        rec = open_recording(path)
        hyp = stage_hypnogram(rec.annotations(), str(path))
        if hyp is None:
            raise HypnogramError(f"{path}: no sleep stage annotations in this file")
        return hyp
    raise ValueError(f"unknown hypnogram format {fmt!r}; valid: {', '.join(HYPNOGRAM_FORMATS)}")


def own_hypnogram(rec: Recording) -> Hypnogram | None:
    """The stages among a recording's own annotations, or None."""
    return stage_hypnogram(rec.annotations(), str(rec.path))


def place_on_grid(
    samples: np.ndarray, timestamps: np.ndarray, fs: float, duration_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """Samples put at their times on a contiguous grid from stream time 0.

    Runs of samples are placed by counting from the first sample of the run; a new run
    starts where the time jumps by more than two sample periods (a gap, left as zeros)
    or goes backwards (a later run overwrites).

    Returns
    -------
    signal : ndarray, shape (round(duration_s * fs),), float32
    present : ndarray of bool, same shape; False in gaps
    """
    n = int(round(duration_s * fs))
    signal = np.zeros(n, dtype=np.float32)
    present = np.zeros(n, dtype=bool)
    if samples.size == 0:
        return signal, present
    expected = np.diff(timestamps) * fs
    breaks = np.flatnonzero((expected > 2.0) | (expected < 0.0)) + 1
    for a, b in zip(np.r_[0, breaks], np.r_[breaks, samples.size], strict=True):
        start = int(round(timestamps[a] * fs))
        lo, hi = max(0, start), min(n, start + (b - a))
        if hi > lo:
            signal[lo:hi] = samples[a + lo - start : a + hi - start]
            present[lo:hi] = True
    return signal, present


def read_recording(
    path: Path | str,
    channel: str | None = None,
    hypnogram: HypnogramLike = None,
    *,
    fs: float | None = None,
    strict: bool = True,
    dataset: str = "recording",
    cache: bool | Path | str | None = False,
    board: str | None = None,
) -> Night:
    """One channel of any supported recording, whole, as a :class:`Night`.

    Parameters
    ----------
    path : path
        EDF/EDF+/BDF (any extension), any format ``mne.io.read_raw`` reads, an OpenBCI
        GUI or BrainFlow file, or a DREAMS text excerpt (see
        :mod:`sleepstream.io.recording`).
    channel : str, optional
        Channel label (see :func:`~sleepstream.io.recording.pick_channel`); ``None``
        takes the first EEG channel.
    hypnogram : Hypnogram or path, optional
        Stages for this recording (any format :func:`read_hypnogram` reads). Without it,
        stage annotations inside the file are used, else every whole 30-s epoch is
        :data:`UNSCORED`.
    fs : float, optional
        Resample to this rate (Hz); ``None`` keeps the channel's rate.
    strict : bool
        Reject a hypnogram that is longer (with scored epochs) or shorter than the
        recording (see :func:`~sleepstream.io.processing.fit_to_recording`).
    cache : bool or path
        Off by default here; see :mod:`sleepstream.io.cache`.
    board : str, optional
        Board layout of a BrainFlow file (see :func:`~.recording.open_recording`).

    Notes
    -----
    A discontinuous recording (EDF+D, a BrainFlow file with a pause) is placed on a
    contiguous grid from its start: the gaps are zeros and every epoch that overlaps a
    gap is unscored, so no training or evaluation ever sees filled samples as sleep.
    ``meta["gaps_s"]`` is the missing time in seconds.

    Raises
    ------
    DataFileError, ChannelNotFoundError, HypnogramError
    """
    path = Path(path)
    hyp_file = None if hypnogram is None or isinstance(hypnogram, Hypnogram) else Path(hypnogram)

    def build() -> Night:
        rec = open_recording(path, board=board)
        index = pick_channel(rec, channel)
        info = rec.channels[index]
        samples, ts = read_channels(rec, [index])
        duration = rec.duration_s
        signal, present = place_on_grid(samples[0], ts, info.fs, duration)
        if isinstance(hypnogram, Hypnogram):
            hyp = hypnogram
        elif hyp_file is not None:
            hyp = read_hypnogram(hyp_file)
        else:
            hyp = own_hypnogram(rec) or make_hypnogram(
                np.full(int(duration // EPOCH_SECONDS), UNSCORED, dtype=np.int8), str(path)
            )
        hyp = fit_to_recording(hyp, duration, str(path), strict=strict)
        missing = ~present
        if missing.any():
            hyp = _unscore_gaps(hyp, missing, info.fs)
        out_fs = info.fs if fs is None else float(fs)
        start = rec.start_datetime
        meta = {
            "path": str(path),
            "format": rec.format,
            "start": start.isoformat() if start is not None else "",
            "channels": [c.name for c in rec.channels],
            "dataset": dataset,
            "subject": path.name.split("-")[0].split(".")[0],
            "hypnogram_path": hyp.source,
            "source_fs": info.fs,
            "unit": info.unit,
            "duration_s": float(duration),
            "gaps_s": float(missing.sum() / info.fs),
        }
        rec.close()
        return Night(
            signal=resample_signal(signal, info.fs, out_fs),
            fs=out_fs,
            channel=info.name,
            hypnogram=hyp,
            meta=meta,
        )

    if isinstance(hypnogram, Hypnogram):
        return build()  # an in-memory hypnogram has no file to key the cache on
    files = [path] if hyp_file is None else [path, hyp_file]
    spec = CacheSpec(dataset, files, {"channel": channel, "fs": fs, "strict": strict})
    return cached_night(spec, build, cache)


def _unscore_gaps(hyp: Hypnogram, missing: np.ndarray, fs: float) -> Hypnogram:
    stages = hyp.stages.copy()
    n = int(round(EPOCH_SECONDS * fs))
    for k, onset in enumerate(hyp.onsets):
        a = int(round(onset * fs))
        if missing[a : a + n].any():
            stages[k] = UNSCORED
    return Hypnogram(stages=stages, onsets=hyp.onsets, source=hyp.source)


def read_edf(
    path: Path | str,
    channel: str | None = None,
    hypnogram: HypnogramLike = None,
    *,
    fs: float | None = None,
    strict: bool = True,
    dataset: str = "edf",
    cache: bool | Path | str | None = False,
) -> Night:
    """:func:`read_recording` under its historical name (any format is accepted)."""
    return read_recording(
        path, channel, hypnogram, fs=fs, strict=strict, dataset=dataset, cache=cache
    )


def read_sleep_edf(
    psg: Path | str,
    hypnogram: Path | str,
    channel: str = "EEG Fpz-Cz",
    *,
    fs: float | None = None,
    strict: bool = True,
    cache: bool | Path | str | None = None,
) -> Night:
    """A Sleep-EDF PSG channel with its EDF+ hypnogram (``*-Hypnogram.edf``) or its
    ``.hyp``-style text hypnogram, untrimmed. Cached by default (see
    :mod:`sleepstream.io.cache`)."""
    return read_edf(psg, channel, hypnogram, fs=fs, strict=strict, dataset="sleep-edf", cache=cache)


def read_isruc(
    rec: Path | str,
    labels: Path | str | None = None,
    channel: str = "C3-A2",
    *,
    fs: float | None = None,
    strict: bool = True,
    cache: bool | Path | str | None = None,
) -> Night:
    """An ISRUC recording (``N.rec``, which is EDF) with a scorer file (default
    ``N_1.txt`` next to it: one code per 30-s epoch, 0=W 1=N1 2=N2 3=N3 5=REM).

    ``C3-A2`` also matches ``C3-M2``. Cached by default (see :mod:`sleepstream.io.cache`).
    """
    rec = Path(rec)
    labels = rec.with_name(f"{rec.stem}_1.txt") if labels is None else Path(labels)

    def build() -> Night:
        return read_edf(
            rec, channel, read_isruc_labels(labels), fs=fs, strict=strict, dataset="isruc"
        )

    spec = CacheSpec("isruc", [rec, labels], {"channel": channel, "fs": fs, "strict": strict})
    return cached_night(spec, build, cache)
