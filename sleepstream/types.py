"""The shared vocabulary: stages, the signal contract, chunks, epochs and predictions.

Everything that crosses a module boundary (readers -> distill, source -> DSP ->
epoch buffer -> inference -> sinks) is one of these types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

#: Length of one scoring epoch in seconds (AASM).
EPOCH_SECONDS: float = 30.0
#: Sampling rate of the model input in Hz.
MODEL_FS: float = 100.0
#: Samples per model epoch (30 s at 100 Hz).
EPOCH_SAMPLES: int = 3000
#: Integer code for an epoch that is not scored (movement, ``?``, gap, bad signal).
UNSCORED: int = -1


class Stage(IntEnum):
    """AASM sleep stages; the integer is the model's class index."""

    W = 0
    N1 = 1
    N2 = 2
    N3 = 3
    REM = 4


#: Stage names in class-index order.
STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in Stage)
N_STAGES: int = len(STAGE_NAMES)


def stage_name(code: int) -> str:
    """Name of a stage code, ``"unscored"`` for :data:`UNSCORED`."""
    return "unscored" if code == UNSCORED else Stage(code).name


@dataclass(frozen=True, slots=True)
class Chunk:
    """A block of samples as a source delivers it.

    Attributes
    ----------
    samples : ndarray, shape (n_channels, n_samples), float64
        Raw values in the source's units (see the profile's ``scale_to_uv``).
    timestamps : ndarray, shape (n_samples,), float64
        Stream time of each sample in seconds (source clock; LSL or BrainFlow
        timestamps, or sample index / fs for file replays).
    fs : float
        Nominal sampling rate in Hz.
    channels : tuple of str
        One name per row of ``samples``.
    received_at : float
        ``time.perf_counter()`` when the chunk reached the daemon (latency origin).
    electrode_off : ndarray of bool, shape (n_samples,), optional
        Lead-off flags where the board reports them.
    """

    samples: np.ndarray
    timestamps: np.ndarray
    fs: float
    channels: tuple[str, ...]
    received_at: float
    electrode_off: np.ndarray | None = None

    @property
    def n_samples(self) -> int:
        return int(self.samples.shape[1])


@dataclass(frozen=True, slots=True)
class Epoch:
    """One 30-s epoch ready for scoring (the DSP's output; no model context).

    The DSP does not know the model's sequence length: the stager keeps each device's
    context (:class:`sleepstream.inference.ContextStager`: a ring of per-epoch states in
    split mode, of model-input epochs in window mode).

    Attributes
    ----------
    index : int
        Epoch number on the stream's 30-s grid (0 = first epoch of the session). A
        device's indices are contiguous: every grid epoch is emitted once, in order, gap
        epochs included.
    start_time : float
        Stream time of the epoch's first sample, seconds.
    start_clock : str
        Wall-clock start, ISO-8601 to the millisecond: with an offset (UTC) when the
        clock's zone is known, without one (the recording's local time) otherwise.
    samples : ndarray, shape (3000,), float32
        The epoch in µV at 100 Hz (filtered, resampled; gaps filled, see ``gap_fraction``).
    gap_fraction : float
        Fraction of the epoch's samples that were missing and filled.
    quality : tuple of str
        Quality flags (``flat``, ``clipping``, ``nonfinite``, ``amplitude``,
        ``line_noise``, ``electrode_off``, ``gap``, ``time_backwards``, ``clock_reset``).
    unscored_reasons : tuple of str
        Non-empty when the epoch must not get a stage (it still is context for the next
        epochs, as its samples were in a window before).
    last_sample_at : float
        ``time.perf_counter()`` when the epoch's last sample arrived.
    input_scale : float
        The device's causal normalisation factor at this epoch: the model input is
        ``samples * input_scale`` (1.0 when the model declares no normalisation; see
        :mod:`sleepstream.dsp.normalise`). A past epoch in the model's context keeps the
        factor it was emitted with.
    """

    index: int
    start_time: float
    start_clock: str
    samples: np.ndarray
    gap_fraction: float = 0.0
    quality: tuple[str, ...] = ()
    unscored_reasons: tuple[str, ...] = ()
    last_sample_at: float = 0.0
    input_scale: float = 1.0

    @property
    def scorable(self) -> bool:
        return not self.unscored_reasons


@dataclass(frozen=True, slots=True)
class StagePrediction:
    """The model's verdict on one epoch.

    ``stage`` is :data:`UNSCORED` (and ``probabilities`` all zero) when the epoch
    was not scorable; ``reasons`` then says why.
    """

    epoch_index: int
    stage: int
    probabilities: np.ndarray
    confidence: float
    model_id: str
    quality: tuple[str, ...] = ()
    reasons: tuple[str, ...] = field(default=())

    @property
    def stage_name(self) -> str:
        return stage_name(self.stage)
