"""Placing timestamped samples on a uniform sample grid: jitter, gaps, backward jumps.

Samples are placed by *counting*: sample ``n`` of the stream sits at
``t_anchor + (n - n_anchor) / fs``.  A timestamp is only trusted when it deviates from
that expectation by more than ``max_drift_samples`` (default 2 samples), so the
fraction-of-a-sample wobble of (dejittered) LSL or BrainFlow timestamps never moves
samples.  Beyond the tolerance:

* **forward jump** of ``d`` samples (``d > max_drift_samples``): ``round(d)`` missing
  samples are inserted as *fill* (the signal chain holds the last valid value and
  counts them into ``gap_fraction``), and the grid is re-anchored at the new sample.
  A jump longer than ``max_gap_s`` is taken as a clock jump instead: re-anchored with no
  fill, and reported as a ``clock_reset`` event.
* **backward jump** (a timestamp earlier than the slot it would take, by more than
  the tolerance): the overlapping samples are *dropped* (their slots were already
  filled) until the timestamps catch up with the grid (to within half a sample); they
  are counted and reported as a ``drop`` event.  A backward jump larger than ``backwards_reset_s`` is taken as a
  clock reset (e.g. a restarted stream): the grid is re-anchored at the new sample, no
  sample is dropped, and a ``clock_reset`` event is reported.

The same rule applies sample by sample, so the result does not depend on chunking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

EPS = 1e-9


@dataclass(frozen=True)
class Segment:
    """One step of the placement of a chunk.

    ``kind`` is ``"data"`` (input samples ``start:stop`` of the chunk, placed in
    order), ``"fill"`` (``count`` missing samples), ``"drop"`` (input samples
    ``start:stop`` discarded) or ``"clock_reset"`` (the grid was re-anchored).
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
    max_drift_samples, max_gap_s, backwards_reset_s : float
        See the module docstring.
    """

    def __init__(
        self,
        fs: float,
        *,
        origin: float | None = None,
        epoch_s: float = 30.0,
        max_drift_samples: float = 2.0,
        max_gap_s: float = 12 * 3600.0,
        backwards_reset_s: float = 30.0,
    ) -> None:
        self.fs = float(fs)
        self.origin = origin
        self.epoch_s = float(epoch_s)
        self.tol = float(max_drift_samples)
        self.max_gap = float(max_gap_s) * self.fs
        self.back_reset = float(backwards_reset_s) * self.fs
        self.started = False
        #: Stream time of placed sample 0 (a grid line), set at the first sample.
        self.grid0 = 0.0
        #: Epoch index of ``grid0`` on the grid that starts at ``origin``.
        self.first_index = 0
        self.n = 0  # samples placed so far (data + fill)
        self._t_anchor = 0.0
        self._n_anchor = 0
        self.n_filled = 0
        self.n_dropped = 0
        self.n_clock_resets = 0
        self._dropping = False

    def place(self, ts: np.ndarray) -> list[Segment]:
        """Place a chunk's timestamps (s, shape (n,)); return the segments in order."""
        ts = np.asarray(ts, dtype=np.float64)
        if ts.size == 1 and self.started and not self._dropping:
            # Scalar fast path (sample-by-sample sources); same rule as below.
            d = (float(ts[0]) - self._t_anchor) * self.fs - (self.n - self._n_anchor)
            if abs(d) <= self.tol:
                self.n += 1
                return [Segment("data", 0, 1)]
        segs: list[Segment] = []
        i = 0
        if not self.started and ts.size:
            i = self._start(ts, segs)
        m = ts.size
        while i < m:
            if self._dropping:
                # Drop every sample whose slot is already taken (across chunks).
                dev0 = (ts[i:] - self._t_anchor) * self.fs - (self.n - self._n_anchor)
                ok = np.flatnonzero(dev0 > -0.5)
                k = int(ok[0]) if ok.size else m - i
                if k:
                    segs.append(Segment("drop", i, i + k))
                    self.n_dropped += k
                    i += k
                if ok.size:
                    self._dropping = False
                continue
            pos = np.arange(m - i, dtype=np.float64)
            dev = (ts[i:] - self._t_anchor) * self.fs - (self.n - self._n_anchor) - pos
            bad = np.flatnonzero(~(np.abs(dev) <= self.tol))  # NaN timestamps count as bad
            j = int(bad[0]) if bad.size else m - i
            if j:
                segs.append(Segment("data", i, i + j))
                self.n += j
                i += j
                if i == m:
                    break
            d = float(dev[j])
            if not math.isfinite(d):
                # A NaN/inf timestamp: place the sample by counting.
                segs.append(Segment("data", i, i + 1))
                self.n += 1
                i += 1
            elif d > self.tol:
                if d > self.max_gap:
                    segs.append(Segment("clock_reset"))
                    self.n_clock_resets += 1
                else:
                    fill = int(round(d))
                    segs.append(Segment("fill", count=fill))
                    self.n += fill
                    self.n_filled += fill
                self._anchor(ts[i])
            elif -d > self.back_reset:
                segs.append(Segment("clock_reset"))
                self.n_clock_resets += 1
                self._anchor(ts[i])
            else:
                self._dropping = True
        return segs

    def _anchor(self, t: float) -> None:
        self._t_anchor = float(t)
        self._n_anchor = self.n

    def _start(self, ts: np.ndarray, segs: list[Segment]) -> int:
        """Set the grid from the first finite timestamp; returns the first index to place."""
        finite = np.flatnonzero(np.isfinite(ts))
        if not finite.size:
            # No usable time yet: drop (counted) until a finite timestamp arrives.
            segs.append(Segment("drop", 0, ts.size))
            self.n_dropped += ts.size
            return ts.size
        i = int(finite[0])
        if self.origin is not None:
            late = np.flatnonzero(ts[i:] >= self.origin - 0.5 / self.fs)
            skip = i + (int(late[0]) if late.size else ts.size - i)
        else:
            skip = i
        if skip:
            segs.append(Segment("drop", 0, skip))
            self.n_dropped += skip
        if skip >= ts.size:
            return ts.size
        t0 = float(ts[skip])
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
