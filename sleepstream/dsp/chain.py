"""The whole causal signal chain behind one object: Chunk in, Epochs out.

``montage -> timeline (gaps, jitter, backward jumps) -> NaN guard -> raw quality ->
notch -> band-pass -> resample to 100 Hz -> epoch buffer -> normaliser``; see
:mod:`sleepstream.dsp.epochs` for the policies.  The daemon builds one
:class:`SignalChain` per device from its profile and calls :meth:`SignalChain.push`
for every chunk and :meth:`SignalChain.flush` at the end of the stream.

Policies in one place (details in the modules):

* **grid** - epoch ``index`` starts at stream time ``origin + 30 * index`` (origin =
  the first sample's time unless ``EpochConfig.origin``); ``start_clock`` is
  ``EpochConfig.clock_origin + start_time``: in UTC when the clock's zone is known, and
  without an offset when it is a recording's local time whose zone is unknown (an EDF
  file: the events then say ``time_zone: null``).  Every index is emitted exactly once, in
  order; ``Epoch.samples`` is the epoch's own 3000 samples (µV, 100 Hz). The model's
  context (past epochs) is the stager's (:mod:`sleepstream.inference.context`).
* **timestamps** (:mod:`~sleepstream.dsp.timeline`) - placed by counting; jitter up
  to max(2 samples, 20 ms) ignored; a late stamp is a gap only if it stays late for
  0.25 s; gaps are filled (last valid value held) and counted in ``gap_fraction``;
  backward jumps drop the overlapping samples (``time_backwards``); jumps beyond
  ``max_gap_s`` / ``backwards_reset_s`` re-anchor (``clock_reset``).
* **NaN/inf** - replaced by the last finite value before any filter (flag
  ``nonfinite``); the filters restart after >= 1 s of invalid samples.
* **quality** (:mod:`~sleepstream.dsp.quality`) - ``gap``, ``nonfinite``,
  ``electrode_off`` above 10 % and ``flat`` make an epoch unscored; ``clipping``,
  ``amplitude``, ``line_noise``, ``time_backwards``, ``clock_reset`` lower the
  confidence (:func:`~sleepstream.dsp.quality.confidence_factor`).
* **latency** - an epoch is emitted when its last input sample (plus the resampler's
  look-ahead, ~0.4 s at 250 Hz, when fs != 100 Hz, plus up to 0.25 s while a late timestamp
  awaits confirmation) has arrived; ``last_sample_at`` is the ``received_at`` of the
  chunk that completed it.

Sample rate policy: the rate of the first chunk must equal ``expected_fs`` within the
relative ``fs_tolerance`` (the profile's ``fs_tolerance``) or
:class:`~sleepstream.errors.SourceError` is raised, unless ``allow_other_fs`` is set
(a recording: the daemon streams it at the file's own rate).
When accepted, the chain is built for the chunk's own rate (filters designed at that
rate, the resampler takes any rate to 100 Hz), so a 250.0-Hz profile fed 251 Hz within
tolerance still yields an exact 100-Hz model input.  A rate that changes mid-stream
always raises :class:`~sleepstream.errors.SourceError` (filter and resampler state
cannot carry over).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

import numpy as np

from sleepstream.dsp.epochs import EpochBuffer, EpochConfig
from sleepstream.dsp.filters import FilterConfig
from sleepstream.dsp.montage import Montage
from sleepstream.dsp.quality import QualityConfig
from sleepstream.errors import SourceError
from sleepstream.types import Chunk, Epoch

if TYPE_CHECKING:
    from sleepstream.profiles import Profile


class EpochNormaliser(Protocol):
    """The chain's last stage (:class:`sleepstream.dsp.normalise.RunningScale`)."""

    def apply(self, samples_uv: np.ndarray, usable: bool) -> float:
        """The factor for this epoch; the state moves only when ``usable``."""
        ...


@dataclass(frozen=True)
class ChainStats:
    """Counters since the start of the stream (for metrics)."""

    samples_in: int = 0
    samples_filled: int = 0
    samples_dropped: int = 0
    samples_skipped: int = 0
    clock_resets: int = 0
    epochs: int = 0
    epochs_unscored: int = 0


class SignalChain:
    """Chunk -> list of Epoch, causal and chunk-size independent.

    Parameters
    ----------
    montage : Montage
        Channel / derivation and scale to µV.
    filters : FilterConfig, optional
        Notch and band-pass at the source rate (default: none).
    quality : QualityConfig, optional
        Quality thresholds (default: the documented defaults).
    epochs : EpochConfig, optional
        Grid origin, context length, timestamp policy.
    expected_fs : float or None
        The profile's sampling rate (Hz); None accepts whatever the first chunk says.
    fs_tolerance : float
        Relative deviation from ``expected_fs`` accepted (0.01 = 1 %).
    allow_other_fs : bool
        Accept a first chunk whose rate differs from ``expected_fs`` by more (a recording
        streamed at its own rate); the filters must still fit below its Nyquist frequency.
    source : str
        Where the settings came from (a profile file), named in errors.
    normaliser : EpochNormaliser, optional
        The last stage (:class:`~sleepstream.dsp.normalise.RunningScale`): each emitted
        epoch gets ``input_scale = normaliser.apply(samples, usable)``, usable meaning
        scorable and free of the flags that must not move the scale.
    """

    def __init__(
        self,
        montage: Montage,
        *,
        filters: FilterConfig | None = None,
        quality: QualityConfig | None = None,
        epochs: EpochConfig | None = None,
        expected_fs: float | None = None,
        fs_tolerance: float = 1e-6,
        allow_other_fs: bool = False,
        source: str = "",
        normaliser: EpochNormaliser | None = None,
    ) -> None:
        self.montage = montage
        self.filter_config = filters or FilterConfig()
        self.quality_config = quality or QualityConfig()
        self.epoch_config = epochs or EpochConfig()
        self.expected_fs = expected_fs
        self.fs_tolerance = float(fs_tolerance)
        self.allow_other_fs = allow_other_fs
        #: Where the settings came from (the profile's file), for error messages.
        self.source = source
        #: The last stage: the device's causal amplitude normaliser (None: input_scale 1).
        self.normaliser: EpochNormaliser | None = normaliser
        self.buffer: EpochBuffer | None = None

    @classmethod
    def from_profile(
        cls,
        profile: Profile,
        *,
        clock_origin: datetime | None = None,
        origin: float | None = None,
        rate_from_source: bool = False,
        normaliser: EpochNormaliser | None = None,
    ) -> SignalChain:
        """The chain of a :class:`~sleepstream.profiles.Profile`: the one mapping of its keys.

        ``channel``, ``reference`` (several: their mean), ``scale_to_uv`` -> :class:`Montage`;
        ``notch_hz``, ``bandpass_hz`` -> :class:`FilterConfig`; every quality threshold ->
        :class:`QualityConfig` (:meth:`QualityConfig.from_thresholds`); ``fs``,
        ``fs_tolerance`` -> the rate check. With ``rate_from_source`` (a recording) the
        source's own rate is used and the profile only bounds it: the filters must fit
        below its Nyquist frequency. ``prior_scale_uv`` is the normaliser's prior: the
        caller builds it (:func:`sleepstream.wiring.make_normaliser`) because its kind
        comes from the model's card. ``clock_origin`` is the wall-clock time of stream
        time 0: aware (a zone is known; epochs in UTC), naive (a recording's local time,
        zone unknown: epochs without an offset) or None (this machine's clock, UTC, at the
        first sample).
        """
        refs = tuple(profile.reference)
        reference = None if not refs else (refs[0] if len(refs) == 1 else refs)
        return cls(
            Montage(profile.channel, reference, float(profile.scale_to_uv)),
            filters=FilterConfig(notch_hz=profile.notch_hz, bandpass_hz=profile.bandpass_hz),
            quality=QualityConfig.from_thresholds(profile.quality, line_hz=profile.notch_hz),
            epochs=EpochConfig(clock_origin=clock_origin, origin=origin),
            expected_fs=profile.fs,
            fs_tolerance=profile.fs_tolerance,
            allow_other_fs=rate_from_source,
            source=profile.path or profile.name,
            normaliser=normaliser,
        )

    @property
    def fs(self) -> float | None:
        """The source rate in Hz once the first chunk arrived."""
        return None if self.buffer is None else self.buffer.fs

    @property
    def delay_s(self) -> float:
        """Look-ahead of the resampler (s): an epoch is emitted this long after its end."""
        return 0.0 if self.buffer is None else self.buffer.resampler.delay_s

    def push(self, chunk: Chunk) -> list[Epoch]:
        """Process one chunk; return the epochs it completed, in index order."""
        fs = float(chunk.fs)
        if self.buffer is None:
            self.buffer = self._build(fs)
        elif not _same_rate(fs, self.buffer.fs):
            raise SourceError(
                f"sample rate changed mid-stream from {self.buffer.fs:g} Hz to {fs:g} Hz"
            )
        x = self.montage.select(chunk)
        ts = np.asarray(chunk.timestamps, dtype=np.float64).reshape(-1)
        if ts.size != x.size:
            raise SourceError(
                f"chunk has {x.size} samples but {ts.size} timestamps (channel {self.montage.name})"
            )
        return self._normalise(self.buffer.push(x, ts, chunk.received_at, chunk.electrode_off))

    def flush(self) -> list[Epoch]:
        """End of stream: emit the complete epochs still held back; the chain is then closed."""
        return [] if self.buffer is None else self._normalise(self.buffer.flush())

    def _normalise(self, epochs: list[Epoch]) -> list[Epoch]:
        if self.normaliser is None or not epochs:
            return epochs
        from sleepstream.dsp.normalise import usable_from_flags

        out = []
        for e in epochs:
            usable = e.scorable and usable_from_flags(e.quality)
            factor = float(self.normaliser.apply(e.samples, usable))
            out.append(dataclasses.replace(e, input_scale=factor))
        return out

    def stats(self) -> ChainStats:
        """Counters for metrics: samples in / filled / dropped, epochs, unscored."""
        b = self.buffer
        if b is None:
            return ChainStats()
        return ChainStats(
            samples_in=b.n_samples,
            samples_filled=b.timeline.n_filled,
            samples_dropped=b.timeline.n_dropped,
            samples_skipped=b.timeline.n_skipped,
            clock_resets=b.timeline.n_clock_resets,
            epochs=b.n_epochs,
            epochs_unscored=b.n_unscored,
        )

    def _build(self, fs: float) -> EpochBuffer:
        if not (np.isfinite(fs) and fs > 0):
            raise SourceError(f"source reports an invalid sample rate fs={fs!r} Hz")
        exp = self.expected_fs
        off = exp is not None and abs(fs - exp) > max(self.fs_tolerance, 1e-9) * exp
        where = f"{self.source}: " if self.source else ""
        if off and not self.allow_other_fs:
            raise SourceError(
                f"{where}source delivers {fs:g} Hz but the profile expects fs={exp:g} Hz "
                f"(±{100 * self.fs_tolerance:g} %); fix the profile's fs or the device setting"
            )
        band = self.filter_config.bandpass_hz
        high = band[1] if band is not None else None
        if high is not None and high >= fs / 2:
            raise SourceError(
                f"{where}signal.bandpass_hz high edge {high:g} Hz must be below the "
                f"source's Nyquist frequency ({fs / 2:g} Hz at {fs:g} Hz)"
            )
        return EpochBuffer(fs, self.epoch_config, self.quality_config, self.filter_config)


def _same_rate(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(abs(a), abs(b))
