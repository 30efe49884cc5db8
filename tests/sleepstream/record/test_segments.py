"""Cutting the raw stream into segments."""

from __future__ import annotations

import numpy as np

from sleepstream.record.segments import Segmenter


def test_segmenter_cuts_full_segments_gaps_and_format_changes():
    """Full segments close at their length; a cut, a new rate or new channels close the open
    one; a cut right after a full segment closes nothing empty."""
    seg = Segmenter(10.0)  # 1000 samples at 100 Hz
    x = np.zeros((1, 1000))
    closed = seg.append(x, 0.0, 100.0, ("a",), cut=False)
    assert [(c.start_ts, c.n) for c in closed] == [(0.0, 1000)]
    assert seg.append(x[:, :300], 20.0, 100.0, ("a",), cut=True) == []  # nothing empty closed
    closed = seg.append(x[:, :200], 30.0, 100.0, ("a",), cut=True)
    assert [(c.start_ts, c.n) for c in closed] == [(20.0, 300)]
    closed = seg.append(np.zeros((2, 50)), 32.0, 100.0, ("a", "b"), cut=False)
    assert [(c.start_ts, c.n, c.channels) for c in closed] == [(30.0, 200, ("a",))]
    closed = seg.append(np.zeros((2, 50)), 33.0, 50.0, ("a", "b"), cut=False)
    assert [c.fs for c in closed] == [100.0]
    assert [(c.start_ts, c.n, c.fs) for c in seg.close()] == [(33.0, 50, 50.0)]
    assert seg.close() == []
