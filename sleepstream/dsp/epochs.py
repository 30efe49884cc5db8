"""The epoch buffer: timestamped µV samples in, 30-s :class:`~sleepstream.types.Epoch` out.

Pipeline inside :class:`EpochBuffer` (all causal and stateful; the output does not
depend on how the input is chunked):

1. :class:`~sleepstream.dsp.timeline.Timeline` places samples on the input-rate grid
   by counting (jitter-tolerant), fills forward gaps, drops samples whose timestamps
   went backwards.
2. NaN guard: NaN/inf samples and gap fill are replaced by the **last finite value**
   (0 before the first one) so they never reach the filter state; they are counted per
   epoch (``nonfinite``, ``gap``).
3. :class:`~sleepstream.dsp.quality.RawEpochTracker` gathers the raw (pre-notch)
   statistics per epoch: gap, NaN, lead-off, clipping, line noise.
4. :class:`~sleepstream.dsp.filters.FilterBank` (notch, band-pass; optional).
5. :class:`~sleepstream.dsp.resample.StreamingResampler` to 100 Hz (identity at 100 Hz;
   its group delay is compensated, so sample ``k`` of the output is at stream time
   ``grid0 + k / 100``).
6. Assembly into 3000-sample epochs and :func:`~sleepstream.dsp.quality.assess`. Each
   :class:`~sleepstream.types.Epoch` carries its own samples only: the buffer does not
   know the model's sequence length (the stager keeps each device's context).

The grid: epoch ``index`` starts at stream time ``origin + 30 * index``; with
``origin=None`` the grid starts at the first sample (index 0).  With an explicit origin
the first epoch emitted is the one containing the first sample, its part before that
sample counted as gap.  A gap spanning whole epochs emits each of them (unscored,
reason ``gap``): no index is ever skipped.  :meth:`EpochBuffer.flush` emits only
complete epochs, unless ``emit_partial`` pads the last one with gap fill.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from sleepstream.dsp.filters import FilterBank, FilterConfig
from sleepstream.dsp.quality import QualityConfig, RawEpochTracker, RawStats, assess
from sleepstream.dsp.resample import StreamingResampler
from sleepstream.dsp.timeline import Segment, Timeline
from sleepstream.errors import ConfigError
from sleepstream.types import EPOCH_SAMPLES, EPOCH_SECONDS, MODEL_FS, Epoch


def _mask(m: np.ndarray | None, n: int) -> np.ndarray:
    return np.zeros(n, dtype=bool) if m is None else m


@dataclass(frozen=True)
class EpochConfig:
    """Epoch grid and timestamp policy.

    Attributes
    ----------
    origin : float or None
        Stream time (s) of epoch index 0; None = the first sample's timestamp.
    clock_origin : datetime or None
        Wall-clock time of stream time 0. Aware (any zone): epochs are stamped in UTC.
        Naive (a recording's local time whose zone is unknown, e.g. an EDF start): epochs
        stay naive local times, written without an offset. None: this machine's clock,
        UTC, ``now - t_first`` at the first sample.
    max_drift_samples, max_drift_s : float
        Timestamp deviation tolerated before re-anchoring (jitter): the larger of
        ``max_drift_samples`` samples and ``max_drift_s`` seconds.  Dejittered LSL
        timestamps wobble by a fraction of a sample; BrainFlow's host timestamps
        jitter by 10-20 ms, hence the 20-ms floor (shorter holes are absorbed by
        counting until they add up).
    confirm_gap_s : float
        A late timestamp becomes a gap only if every sample for this long stays late
        (host-stamped sources stall and catch up); the decision delays those samples.
    max_gap_s : float
        Forward jumps longer than this (s) are clock jumps (re-anchor, no fill).
    backwards_reset_s : float
        Backward jumps longer than this (s) are clock resets (re-anchor, no drop);
        shorter ones drop the overlapping samples.
    emit_partial : bool
        :meth:`EpochBuffer.flush` pads and emits a trailing partial epoch.
    """

    origin: float | None = None
    clock_origin: datetime | None = None
    max_drift_samples: float = 2.0
    max_drift_s: float = 0.02
    confirm_gap_s: float = 0.25
    max_gap_s: float = 12 * 3600.0
    backwards_reset_s: float = 30.0
    emit_partial: bool = False

    def __post_init__(self) -> None:
        if self.max_drift_samples < 0.5:
            raise ConfigError(f"epochs: max_drift_samples={self.max_drift_samples} must be >= 0.5")


class EpochBuffer:
    """Timestamped µV samples at ``fs`` in, :class:`Epoch` s on the 30-s grid out.

    Parameters
    ----------
    fs : float
        Input rate, Hz (default 100 Hz: no resampling).
    config : EpochConfig, optional
    quality : QualityConfig, optional
    filters : FilterConfig or None
        Notch / band-pass applied at ``fs`` before resampling; None = none.
    """

    def __init__(
        self,
        fs: float = MODEL_FS,
        config: EpochConfig | None = None,
        quality: QualityConfig | None = None,
        filters: FilterConfig | None = None,
    ) -> None:
        if not (np.isfinite(fs) and fs > 0):
            raise ConfigError(f"epochs: fs={fs!r} Hz must be a positive number")
        self.fs = float(fs)
        self.config = config = config or EpochConfig()
        self.quality = quality = quality or QualityConfig()
        self.timeline = Timeline(
            fs,
            origin=config.origin,
            epoch_s=EPOCH_SECONDS,
            max_drift_samples=max(config.max_drift_samples, config.max_drift_s * fs),
            confirm_s=config.confirm_gap_s,
            max_gap_s=config.max_gap_s,
            backwards_reset_s=config.backwards_reset_s,
        )
        self.tracker = RawEpochTracker(fs, quality, EPOCH_SECONDS)
        self.filters = FilterBank(fs, filters or FilterConfig())
        self.resampler = StreamingResampler(fs, MODEL_FS)
        self._hold = 0.0
        self._last_received = 0.0
        self._back_x = np.zeros(0)  # input samples whose placement is pending
        self._back_eoff: np.ndarray | None = None
        self._back_from = 0
        self._parts: list[np.ndarray] = []
        self._n_part = 0
        self._r_out = 0  # relative index of the 100-Hz epoch being assembled
        self._data: dict[int, np.ndarray] = {}
        self._raw: dict[int, RawStats] = {}
        self._next = 0  # next relative epoch to emit
        origin = config.clock_origin
        if origin is not None and origin.tzinfo is not None:
            origin = origin.astimezone(UTC)  # once, so every epoch is stamped in UTC
        self._clock0: datetime | None = origin
        self._closed = False
        self.n_epochs = 0
        self.n_unscored = 0
        self.n_samples = 0

    # ------------------------------------------------------------------ public API
    @property
    def first_index(self) -> int:
        """Epoch index of the first emitted epoch (0 unless an origin is set)."""
        return self.timeline.first_index

    def push(
        self,
        samples: np.ndarray,
        timestamps: np.ndarray,
        received_at: float,
        electrode_off: np.ndarray | None = None,
    ) -> list[Epoch]:
        """Add samples; return the epochs completed by them (in index order).

        Parameters
        ----------
        samples : ndarray, shape (n,), µV
            May contain NaN/inf (flagged and replaced).
        timestamps : ndarray, shape (n,), s
            Stream time of each sample.
        received_at : float
            ``time.perf_counter()`` when these samples arrived.
        electrode_off : ndarray of bool, shape (n,), optional
        """
        if self._closed:
            raise RuntimeError("EpochBuffer.push after flush()")
        x = np.asarray(samples, dtype=np.float64).reshape(-1)
        ts = np.asarray(timestamps, dtype=np.float64).reshape(-1)
        if ts.size != x.size:
            raise ValueError(f"epochs: {x.size} samples but {ts.size} timestamps")
        eoff = None if electrode_off is None else np.asarray(electrode_off, dtype=bool).reshape(-1)
        if eoff is not None and eoff.size != x.size:
            raise ValueError(f"epochs: {x.size} samples but {eoff.size} electrode_off flags")
        self.n_samples += x.size
        if self._back_x.size:
            x = np.concatenate([self._back_x, x])
            if eoff is not None or self._back_eoff is not None:
                eoff = np.concatenate(
                    [_mask(self._back_eoff, self._back_x.size), _mask(eoff, ts.size)]
                )
        base = self._back_from
        was_started = self.timeline.started
        segments = self.timeline.place(ts)
        if not was_started and self.timeline.started and self._clock0 is None:
            self._clock0 = datetime.now(UTC) - timedelta(seconds=self.timeline.grid0)
        self._apply(segments, x, eoff, base, received_at)
        keep = self.timeline.first_pending - base
        self._back_x = x[keep:].copy()
        self._back_eoff = None if eoff is None else eoff[keep:].copy()
        self._back_from = self.timeline.first_pending
        return self._drain()

    def _apply(
        self,
        segments: list[Segment],
        x: np.ndarray,
        eoff: np.ndarray | None,
        base: int,
        received_at: float,
    ) -> None:
        for seg in segments:
            if seg.kind == "data":
                sl = slice(seg.start - base, seg.stop - base)
                self._feed(x[sl], False, None if eoff is None else eoff[sl], received_at)
            elif seg.kind == "fill":
                self._fill(seg.count, received_at)
            elif seg.kind == "drop":
                self.tracker.note_drop(seg.stop - seg.start)
            elif seg.kind == "clock_reset":
                self.tracker.note_clock_reset()
            # "skip": samples before the stream started (counted by the timeline only)

    def flush(self) -> list[Epoch]:
        """End of stream: emit the epochs still held back by the resampler's delay."""
        if self._closed:
            return []
        base = self._back_from
        self._apply(self.timeline.flush(), self._back_x, self._back_eoff, base, self._last_received)
        self._back_x = np.zeros(0)
        self._back_eoff = None
        t = self.tracker
        if self.config.emit_partial and t.n > t.bound(t.r):
            self._fill(t.bound(t.r + 1) - t.n, self._last_received)
        self._closed = True
        self._assemble(self.resampler.flush())
        return self._drain()

    # ------------------------------------------------------------------ internals
    def _fill(self, count: int, received_at: float) -> None:
        block = max(1, int(EPOCH_SECONDS * self.fs))
        while count > 0:
            k = min(block, count)
            self._feed(np.full(k, np.nan), True, None, received_at)
            count -= k

    def _feed(
        self, raw: np.ndarray, is_fill: bool, eoff: np.ndarray | None, received_at: float
    ) -> None:
        self._last_received = received_at
        finite = np.isfinite(raw)
        filled = np.full(raw.size, is_fill)
        nonfinite = ~finite & ~filled
        clipped = None
        if self.quality.clip_uv is not None:
            with np.errstate(invalid="ignore"):
                clipped = finite & (np.abs(raw) >= self.quality.clip_uv)
        values = raw
        if not finite.all():
            # Hold the last finite value (vectorised forward fill).
            pos = np.where(finite, np.arange(raw.size), -1)
            np.maximum.accumulate(pos, out=pos)
            values = np.where(pos >= 0, raw[np.maximum(pos, 0)], self._hold)
        if values.size:
            self._hold = float(values[-1])
        for r, stats in self.tracker.add(values, filled, nonfinite, eoff, clipped, received_at):
            self._raw[r] = stats
        y = self.filters.process(values, invalid=~finite)
        self._assemble(self.resampler.process(y))

    def _assemble(self, z: np.ndarray) -> None:
        i = 0
        while i < z.size:
            k = min(z.size - i, EPOCH_SAMPLES - self._n_part)
            self._parts.append(z[i : i + k])
            self._n_part += k
            i += k
            if self._n_part == EPOCH_SAMPLES:
                self._data[self._r_out] = np.concatenate(self._parts)
                self._r_out += 1
                self._parts, self._n_part = [], 0

    def _drain(self) -> list[Epoch]:
        out: list[Epoch] = []
        while self._next in self._data and self._next in self._raw:
            r = self._next
            data = self._data.pop(r)
            stats = self._raw.pop(r)
            out.append(self._make_epoch(r, data, stats))
            self._next += 1
        return out

    def _make_epoch(self, r: int, data: np.ndarray, stats: RawStats) -> Epoch:
        flags, reasons, gap = assess(stats, data, self.quality)
        index = self.first_index + r
        start = self.timeline.grid0 + r * EPOCH_SECONDS
        clock = (self._clock0 or datetime.now(UTC)) + timedelta(seconds=start)
        self.n_epochs += 1
        self.n_unscored += bool(reasons)
        return Epoch(
            index=index,
            start_time=float(start),
            start_clock=clock.isoformat(timespec="milliseconds"),
            samples=data.astype(np.float32),
            gap_fraction=gap,
            quality=flags,
            unscored_reasons=reasons,
            last_sample_at=stats.received_at,
        )
