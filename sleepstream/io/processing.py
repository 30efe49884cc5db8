"""Processing shared by all readers: fitting a hypnogram to its recording, the standard
wake trim, and resampling to the model rate.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np

from sleepstream.errors import HypnogramError
from sleepstream.io.night import Hypnogram, Night
from sleepstream.types import EPOCH_SECONDS, MODEL_FS, UNSCORED


def make_hypnogram(stages: np.ndarray, source: str, start_s: float = 0.0) -> Hypnogram:
    """A contiguous 30-s hypnogram from stage codes.

    Parameters
    ----------
    stages : array-like of int, shape (n_epochs,)
        AASM codes (0..4) or :data:`UNSCORED`.
    source : str
        File the stages came from.
    start_s : float
        Onset of the first epoch in seconds from the recording start.
    """
    stages = np.asarray(stages, dtype=np.int8)
    onsets = start_s + EPOCH_SECONDS * np.arange(stages.shape[0], dtype=np.float64)
    return Hypnogram(stages=stages, onsets=onsets, source=str(source))


def fit_to_recording(
    hypnogram: Hypnogram, duration_s: float, recording: str, *, strict: bool = True
) -> Hypnogram:
    """Make a contiguous hypnogram cover exactly the whole 30-s epochs of a recording.

    Epochs past the end of the recording are dropped when they are all unscored (Sleep-EDF
    hypnograms end with a long ``Sleep stage ?`` that runs past the PSG). A hypnogram that
    scores epochs past the end, or that stops before the recording's last whole epoch, does
    not belong to this recording: :class:`HypnogramError` (with ``strict=False`` the extra
    epochs are cut and the missing ones are padded with :data:`UNSCORED`).

    Parameters
    ----------
    hypnogram : Hypnogram
        Contiguous 30-s stages starting at the recording start.
    duration_s : float
        Recording length in seconds.
    recording : str
        Recording path, for the messages.
    """
    n_rec = int(np.floor(duration_s / EPOCH_SECONDS + 1e-9))
    stages = hypnogram.stages
    n_hyp = stages.shape[0]
    src = hypnogram.source or "hypnogram"
    if n_hyp > n_rec:
        extra = stages[n_rec:]
        if strict and np.any(extra != UNSCORED):
            raise HypnogramError(
                f"{src}: hypnogram is longer than the recording {recording}: it scores "
                f"{int(np.sum(extra != UNSCORED))} epochs past its end "
                f"({n_hyp * EPOCH_SECONDS:.0f} s of stages, recording {duration_s:.0f} s)"
            )
        stages = stages[:n_rec]
    elif n_hyp < n_rec:
        if strict:
            raise HypnogramError(
                f"{src}: hypnogram is shorter than the recording {recording}: "
                f"{n_hyp} epochs ({n_hyp * EPOCH_SECONDS:.0f} s) for {n_rec} epochs "
                f"({duration_s:.0f} s)"
            )
        pad = np.full(n_rec - n_hyp, UNSCORED, dtype=np.int8)
        stages = np.concatenate([stages, pad])
    return make_hypnogram(stages, src)


def sleep_window(stages: np.ndarray, minutes: float = 30.0) -> slice:
    """Epoch slice of the standard trim: ``minutes`` before the first sleep epoch to
    ``minutes`` after the last (clipped to the record). No sleep: the whole record."""
    sleep = np.flatnonzero((stages > 0) & (stages != UNSCORED))
    if sleep.size == 0:
        return slice(0, stages.shape[0])
    margin = int(round(minutes * 60.0 / EPOCH_SECONDS))
    return slice(max(0, int(sleep[0]) - margin), min(stages.shape[0], int(sleep[-1]) + margin + 1))


def trim_hypnogram(hypnogram: Hypnogram, minutes: float = 30.0) -> Hypnogram:
    """The standard trim of a hypnogram alone (onsets keep their recording times)."""
    window = sleep_window(hypnogram.stages, minutes)
    return Hypnogram(
        stages=hypnogram.stages[window].copy(),
        onsets=hypnogram.onsets[window].copy(),
        source=hypnogram.source,
    )


def trim_wake(night: Night, minutes: float = 30.0) -> Night:
    """Keep from ``minutes`` before the first sleep epoch to ``minutes`` after the last.

    This is the DeepSleepNet/SleepKD convention for Sleep-EDF. The signal is cut to the
    kept epochs, onsets are shifted so they count from the new ``signal[0]``, and
    ``meta["trim_offset_s"]`` holds the offset of the cut in the original recording.
    A night without any sleep epoch is returned unchanged.
    """
    stages = night.hypnogram.stages
    window = sleep_window(stages, minutes)
    if window.start == 0 and window.stop == stages.shape[0]:
        return night
    onsets = night.hypnogram.onsets[window]
    if onsets.size == 0:
        return night
    t0 = float(onsets[0])
    i0 = int(round(t0 * night.fs))
    i1 = int(round((float(onsets[-1]) + EPOCH_SECONDS) * night.fs))
    hyp = Hypnogram(stages=stages[window].copy(), onsets=onsets - t0, source=night.hypnogram.source)
    meta = dict(night.meta)
    meta["trim_offset_s"] = float(meta.get("trim_offset_s", 0.0)) + t0
    meta["trim_minutes"] = float(minutes)
    return dataclasses.replace(
        night, signal=np.ascontiguousarray(night.signal[i0:i1]), hypnogram=hyp, meta=meta
    )


def resample_signal(signal: np.ndarray, fs: float, target_fs: float = MODEL_FS) -> np.ndarray:
    """Polyphase resampling from ``fs`` to ``target_fs`` (Hz), float32 out.

    Uses :func:`scipy.signal.resample_poly` with the rational factor
    ``target_fs / fs`` (denominator limited to 1000), so 50, 128, 200, 250, 256, 512 Hz
    and the like are exact. Output length is ``ceil(n * up / down)``.
    """
    signal = np.asarray(signal)
    if abs(fs - target_fs) < 1e-9:
        return signal.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    ratio = Fraction(target_fs / fs).limit_denominator(1000)
    out = resample_poly(signal.astype(np.float64, copy=False), ratio.numerator, ratio.denominator)
    result: np.ndarray = np.asarray(out, dtype=np.float32)
    return result


def resample_night(night: Night, fs: float = MODEL_FS) -> Night:
    """The night at ``fs`` Hz (onsets in seconds are unchanged); ``meta["source_fs"]`` keeps
    the original rate."""
    if abs(night.fs - fs) < 1e-9:
        return night
    meta = dict(night.meta)
    meta.setdefault("source_fs", float(night.fs))
    return dataclasses.replace(
        night, signal=resample_signal(night.signal, night.fs, fs), fs=float(fs), meta=meta
    )
