"""Whole-night readers: any EDF/BDF, Sleep-EDF PSG + hypnogram, ISRUC, and a hypnogram
reader that recognises every supported format.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sleepstream.io.cache import CacheSpec, cached_night
from sleepstream.io.dreams import majority_30s, read_dreams_hypnogram_5s
from sleepstream.io.edf import (
    annotations_hypnogram,
    open_edf,
    pick_channel,
    read_edf_hypnogram,
    read_signal,
    recording_meta,
)
from sleepstream.io.night import Hypnogram, Night
from sleepstream.io.processing import fit_to_recording, make_hypnogram, resample_signal
from sleepstream.io.text import read_hyp_text, read_isruc_labels, sniff_text_hypnogram
from sleepstream.types import EPOCH_SECONDS, UNSCORED

HypnogramLike = Hypnogram | Path | str | None


def is_edf_file(path: Path | str) -> bool:
    """True when the file starts with an EDF or BDF version field."""
    try:
        with Path(path).open("rb") as f:
            return f.read(8) in (b"0       ", b"\xffBIOSEMI")
    except OSError:
        return False


def read_hypnogram(path: Path | str, fmt: str | None = None) -> Hypnogram:
    """Any supported hypnogram file as 30-s AASM stages from the recording start.

    Parameters
    ----------
    path : path
        EDF+ annotations (Sleep-EDF ``*-Hypnogram.edf``), ``.hyp``-style text, an ISRUC
        scorer file or a DREAMS 5-s hypnogram (converted by the majority rule of
        :mod:`sleepstream.io.dreams`).
    fmt : {"edf", "hyp", "isruc", "dreams"}, optional
        Skip format detection.
    """
    if fmt is None:
        fmt = "edf" if is_edf_file(path) else sniff_text_hypnogram(path)
    if fmt == "edf":
        return read_edf_hypnogram(path)
    if fmt == "hyp":
        return read_hyp_text(path)
    if fmt == "isruc":
        return read_isruc_labels(path)
    if fmt == "dreams":
        return make_hypnogram(majority_30s(read_dreams_hypnogram_5s(path), str(path)), str(path))
    raise ValueError(f"unknown hypnogram format {fmt!r}")


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
    """One channel of any EDF/EDF+/BDF file as a :class:`Night`.

    Parameters
    ----------
    path : path
        The recording (any extension).
    channel : str, optional
        Signal label (see :func:`~sleepstream.io.edf.pick_channel` for the matching);
        ``None`` takes the first EEG channel.
    hypnogram : Hypnogram or path, optional
        Stages for this recording. Without it, stage annotations inside the file (EDF+)
        are used, else every whole 30-s epoch is :data:`UNSCORED`.
    fs : float, optional
        Resample to this rate (Hz); ``None`` keeps the channel's rate.
    strict : bool
        Reject a hypnogram that is longer (with scored epochs) or shorter than the
        recording (see :func:`~sleepstream.io.processing.fit_to_recording`).
    cache : bool or path
        Off by default here; see :mod:`sleepstream.io.cache`.

    Raises
    ------
    DataFileError, ChannelNotFoundError, HypnogramError
    """
    path = Path(path)
    hyp_file = None if hypnogram is None or isinstance(hypnogram, Hypnogram) else Path(hypnogram)

    def build() -> Night:
        edf = open_edf(path)
        index = pick_channel(edf, channel, path)
        signal, native_fs, unit = read_signal(edf, index, path)
        meta = recording_meta(edf, path)
        duration = signal.size / native_fs
        if isinstance(hypnogram, Hypnogram):
            hyp = hypnogram
        elif hyp_file is not None:
            hyp = read_hypnogram(hyp_file)
        else:
            hyp = _own_annotations(edf, path) or make_hypnogram(
                np.full(int(duration // EPOCH_SECONDS), UNSCORED, dtype=np.int8), str(path)
            )
        hyp = fit_to_recording(hyp, duration, str(path), strict=strict)
        out_fs = native_fs if fs is None else float(fs)
        meta.update(
            dataset=dataset,
            subject=path.name.split("-")[0].split(".")[0],
            hypnogram_path=hyp.source,
            source_fs=native_fs,
            unit=unit,
            duration_s=float(duration),
        )
        return Night(
            signal=resample_signal(signal, native_fs, out_fs),
            fs=out_fs,
            channel=edf.signals[index].label,
            hypnogram=hyp,
            meta=meta,
        )

    if isinstance(hypnogram, Hypnogram):
        return build()  # an in-memory hypnogram has no file to key the cache on
    files = [path] if hyp_file is None else [path, hyp_file]
    spec = CacheSpec(dataset, files, {"channel": channel, "fs": fs, "strict": strict})
    return cached_night(spec, build, cache)


def _own_annotations(edf: object, path: Path) -> Hypnogram | None:
    try:
        annotations = edf.annotations  # type: ignore[attr-defined]
    except Exception:
        return None
    return annotations_hypnogram(annotations, str(path))


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
