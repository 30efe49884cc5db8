"""Placing timestamped samples on a uniform sample grid: jitter, gaps, backward jumps.

Samples are placed by *counting*: sample ``n`` of the stream sits at
``t_anchor + (n - n_anchor) / fs``.  A timestamp is only trusted when it deviates from
that expectation by more than the tolerance (``max_drift_samples``), so the
fraction-of-a-sample wobble of dejittered LSL timestamps never moves samples.  Beyond
the tolerance:

* **forward deviation** (a sample stamped later than its slot): host-stamped sources
  (BrainFlow) stall and then catch up, so a late sample is only *suspect*.  The
  decision waits for up to ``confirm_s`` (0.25 s) of samples: if any of them is back
  within the tolerance it was jitter and all are placed by counting; if all stay late
  it is a **gap**: ``round(d)`` missing samples are inserted as *fill* (``d`` the
  smallest lateness in the window, since host stamps are late, never early), the
  chain holds the last valid value there and counts them into ``gap_fraction``, and
  the grid is re-anchored.  A jump longer than ``max_gap_s`` is a clock jump instead:
  re-anchored with no fill, reported as ``clock_reset``.
* **backward jump** (a timestamp earlier than its slot by more than the tolerance):
  the overlapping samples are *dropped* (their slots were already filled) until the
  timestamps catch up with the grid (to within half a sample); they are counted and
  reported as ``drop``.  A backward jump larger than ``backwards_reset_s`` is a clock
  reset (e.g. a restarted stream): the grid is re-anchored at the new sample, nothing
  is dropped, and ``clock_reset`` is reported.
* a NaN/inf timestamp: the sample is placed by counting.

The grid starts at the lower envelope of the first ``confirm_s`` of timestamps (so
nothing is placed before that many samples have arrived, or :meth:`Timeline.flush`).

Indices in :class:`Segment` are *absolute* input-sample indices (0 = the first sample
ever passed to :meth:`Timeline.place`); samples whose decision is pending are reported
in later calls (or by :meth:`Timeline.flush`).  The rule is applied sample by sample,
so the result does not depend on chunking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

EPS = 1e-9


@dataclass(frozen=True)
class Segment:
    """One step of the placement.

    ``kind`` is ``"data"`` (input samples ``start:stop``, absolute indices, placed in
    order), ``"fill"`` (``count`` missing samples), ``"drop"`` (input samples
    ``start:stop`` discarded: backward timestamps), ``"skip"`` (input samples before
    the stream started: no finite timestamp yet, or before ``origin``) or
    ``"clock_reset"`` (the grid was re-anchored).
    """

    kind: str
    start: int = 0
    stop: int = 0
    count: int = 0


class Timeline:
    """Stateful placement of timestamped samples on the ``fs`` grid.

    Parameters
    ----------
    fs : float
        Nominal sampling rate, Hz.
    origin : float or None
        Stream time (s) of the 30-s grid origin; None = the first sample's time.
    epoch_s : float
        Grid period (s); with an explicit origin the placed stream starts at the
        grid line at or before the first sample, the samples in between being fill.
    max_drift_samples, confirm_s, max_gap_s, backwards_reset_s : float
        See the module docstring.
    """

    def __init__(
        self,
        fs: float,
        *,
        origin: float | None = None,
        epoch_s: float = 30.0,
        max_drift_samples: float = 2.0,
        confirm_s: float = 0.25,
        max_gap_s: float = 12 * 3600.0,
        backwards_reset_s: float = 30.0,
    ) -> None:
        self.fs = float(fs)
        self.origin = origin
        self.epoch_s = float(epoch_s)
        self.tol = float(max_drift_samples)
        self.confirm = max(1, int(round(confirm_s * self.fs)))
        self.max_gap = float(max_gap_s) * self.fs
        self.back_reset = float(backwards_reset_s) * self.fs
        self.started = False
        #: Stream time of placed sample 0 (a grid line), set at the first sample.
        self.grid0 = 0.0
        #: Epoch index of ``grid0`` on the grid that starts at ``origin``.
        self.first_index = 0
        self.n = 0  # samples placed so far (data + fill)
        self.n_in = 0  # input samples seen so far
        self.n_filled = 0
        self.n_dropped = 0
        self.n_skipped = 0
        self.n_clock_resets = 0
        self._t_anchor = 0.0
        self._n_anchor = 0
        self._dropping = False
        self._pend_ts = np.zeros(0)  # timestamps of undecided samples
        self._pend_from = 0  # absolute index of the first undecided sample

    @property
    def pending(self) -> int:
        """Input samples whose placement is still undecided."""
        return int(self._pend_ts.size)

    @property
    def first_pending(self) -> int:
        """Absolute index of the first undecided input sample."""
        return self._pend_from

    def place(self, ts: np.ndarray) -> list[Segment]:
        """Place a chunk's timestamps (s, shape (n,)); return the decided segments."""
        ts = np.asarray(ts, dtype=np.float64).reshape(-1)
        base = self.n_in - self._pend_ts.size
        self.n_in += ts.size
        if self._pend_ts.size == 0 and ts.size == 1 and self.started and not self._dropping:
            # Scalar fast path (sample-by-sample sources); same rule as _run.
            d = (float(ts[0]) - self._t_anchor) * self.fs - (self.n - self._n_anchor)
            if abs(d) <= self.tol:
                self.n += 1
                self._pend_from = self.n_in
                return [Segment("data", base, base + 1)]
        if self._pend_ts.size:
            ts = np.concatenate([self._pend_ts, ts])
        segs: list[Segment] = []
        i = self._run(ts, base, segs, final=False)
        self._pend_ts = ts[i:].copy()
        self._pend_from = base + i
        return segs

    def flush(self) -> list[Segment]:
        """End of stream: decide the pending samples with the window available."""
        ts, base = self._pend_ts, self._pend_from
        segs: list[Segment] = []
        self._run(ts, base, segs, final=True)
        self._pend_ts = np.zeros(0)
        self._pend_from = self.n_in
        return segs

    # ------------------------------------------------------------------ internals
    def _emit(self, segs: list[Segment], kind: str, a: int, b: int) -> None:
        if b <= a:
            return
        if segs and segs[-1].kind == kind and segs[-1].stop == a and kind != "clock_reset":
            segs[-1] = Segment(kind, segs[-1].start, b)
        else:
            segs.append(Segment(kind, a, b))
        if kind == "data":
            self.n += b - a
        elif kind == "drop":
            self.n_dropped += b - a
        else:
            self.n_skipped += b - a

    def _run(self, ts: np.ndarray, base: int, segs: list[Segment], *, final: bool) -> int:
        """Decide samples of ``ts`` (absolute index ``base + i``); return the first undecided."""
        m = ts.size
        i = 0
        if not self.started and m:
            i = self._start(ts, base, segs, final)
            if not self.started:
                return i  # waiting for the first confirmation window
        while i < m:
            if self._dropping:
                dev0 = (ts[i:] - self._t_anchor) * self.fs - (self.n - self._n_anchor)
                ok = np.flatnonzero(dev0 > -0.5)  # first sample whose slot is free again
                k = int(ok[0]) if ok.size else m - i
                self._emit(segs, "drop", base + i, base + i + k)
                i += k
                if ok.size:
                    self._dropping = False
                continue
            pos = np.arange(m - i, dtype=np.float64)
            dev = (ts[i:] - self._t_anchor) * self.fs - (self.n - self._n_anchor) - pos
            bad = np.flatnonzero(~(np.abs(dev) <= self.tol))  # NaN timestamps count as bad
            j = int(bad[0]) if bad.size else m - i
            self._emit(segs, "data", base + i, base + i + j)
            i += j
            if i == m:
                break
            d = float(dev[j])
            if not math.isfinite(d):
                self._emit(segs, "data", base + i, base + i + 1)
                i += 1
            elif d > self.tol:
                # Suspect gap: wait for a confirmation window of samples.
                win = dev[j : j + self.confirm]
                back = np.flatnonzero(~(win[1:] > self.tol))
                if back.size:  # jitter: a sample came back within tolerance
                    k = 1 + int(back[0])
                    self._emit(segs, "data", base + i, base + i + k)
                    i += k
                    continue
                if win.size < self.confirm and not final:
                    return i  # undecided: wait for more samples
                lateness = float(np.min(win))
                if lateness > self.max_gap:
                    segs.append(Segment("clock_reset"))
                    self.n_clock_resets += 1
                    self._anchor(float(ts[i]), 0)
                else:
                    fill = int(round(lateness))
                    segs.append(Segment("fill", count=fill))
                    self.n += fill
                    self.n_filled += fill
                    k = int(np.argmin(win))  # the least-late sample anchors the grid
                    self._anchor(float(ts[i + k]), k)
            elif -d > self.back_reset:
                segs.append(Segment("clock_reset"))
                self.n_clock_resets += 1
                self._anchor(float(ts[i]), 0)
            else:
                self._dropping = True
        return m

    def _anchor(self, t: float, ahead: int) -> None:
        """Re-anchor so that the sample ``ahead`` positions from now sits at time ``t``."""
        self._t_anchor = t
        self._n_anchor = self.n + ahead

    def _start(self, ts: np.ndarray, base: int, segs: list[Segment], final: bool) -> int:
        """Set the grid from the first usable samples; returns the first index to place.

        The grid is anchored on the lower envelope ``min_k(ts[k] - k / fs)`` of the first
        ``confirm`` samples, so a first sample stamped late does not skew the grid.
        """
        finite = np.flatnonzero(np.isfinite(ts))
        if not finite.size:
            # No usable time yet: skip (counted) until a finite timestamp arrives.
            self._emit(segs, "skip", base, base + ts.size)
            return ts.size
        i = int(finite[0])
        if self.origin is not None:
            late = np.flatnonzero(ts[i:] >= self.origin - 0.5 / self.fs)
            skip = i + (int(late[0]) if late.size else ts.size - i)
        else:
            skip = i
        self._emit(segs, "skip", base, base + skip)
        if skip >= ts.size:
            return ts.size
        win = ts[skip : skip + self.confirm]
        if win.size < self.confirm and not final:
            return skip
        t0 = float(np.nanmin(win - np.arange(win.size) / self.fs))
        if float(ts[skip]) - t0 < 1e-6:
            t0 = float(ts[skip])  # regular stamps: keep the first timestamp exactly
        self.started = True
        if self.origin is None:
            self.grid0 = t0
            self.first_index = 0
            lead = 0
        else:
            k = math.floor((t0 - self.origin) / self.epoch_s + EPS)
            self.first_index = k
            self.grid0 = self.origin + k * self.epoch_s
            lead = int(round((t0 - self.grid0) * self.fs))
        self._t_anchor = self.grid0
        self._n_anchor = 0
        if lead > 0:
            segs.append(Segment("fill", count=lead))
            self.n += lead
            self.n_filled += lead
        return skip
