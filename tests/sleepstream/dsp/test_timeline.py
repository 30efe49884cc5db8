"""Timeline: placing samples by counting despite jitter, gaps and backward jumps."""

from __future__ import annotations

import numpy as np

from sleepstream.dsp.timeline import Timeline


def _summary(tl: Timeline, ts: np.ndarray, size: int) -> list[tuple]:
    segs = []
    for i in range(0, ts.size, size):
        for s in tl.place(ts[i : i + size]):
            segs.append(
                (s.kind, s.stop - s.start if s.kind in ("data", "drop", "skip") else s.count)
            )
    # merge consecutive segments of the same kind (chunking splits them)
    merged: list[list] = []
    for kind, n in segs:
        if merged and merged[-1][0] == kind and kind != "clock_reset":
            merged[-1][1] += n
        else:
            merged.append([kind, n])
    return [tuple(m) for m in merged]


def test_timeline_ignores_subsample_jitter():
    """±0.4-sample timestamp jitter places every sample by counting: no fill, no drop."""
    rng = np.random.default_rng(0)
    ts = np.arange(5000) / 250 + rng.uniform(-0.4, 0.4, 5000) / 250
    tl = Timeline(250.0)
    assert _summary(tl, ts, 100) == [("data", 5000)]
    assert tl.n == 5000 and tl.n_filled == 0 and tl.n_dropped == 0


def test_timeline_forward_jump_is_filled():
    """A 1.5-s hole at 100 Hz becomes exactly 150 fill samples, same for any chunking."""
    ts = np.r_[np.arange(1000), np.arange(1150, 2000)] / 100
    for size in (1, 7, 1000):
        tl = Timeline(100.0)
        assert _summary(tl, ts, size) == [("data", 1000), ("fill", 150), ("data", 850)]
        assert tl.n == 2000 and tl.n_filled == 150


def test_timeline_backward_jump_drops_overlap():
    """Timestamps that go back 0.5 s drop the 50 overlapping samples, then continue."""
    ts = np.r_[np.arange(1000), np.arange(950, 1500)] / 100
    for size in (1, 13, 2000):
        tl = Timeline(100.0)
        assert _summary(tl, ts, size) == [("data", 1000), ("drop", 50), ("data", 500)]
        assert tl.n_dropped == 50 and tl.n == 1500


def test_timeline_large_backward_jump_is_clock_reset():
    """A backward jump beyond backwards_reset_s re-anchors instead of dropping."""
    ts = np.r_[np.arange(1000) / 100 + 500.0, np.arange(1000) / 100]
    tl = Timeline(100.0, backwards_reset_s=30.0)
    assert _summary(tl, ts, 64) == [("data", 1000), ("clock_reset", 0), ("data", 1000)]
    assert tl.n_clock_resets == 1 and tl.n_dropped == 0


def test_timeline_huge_forward_jump_is_clock_reset():
    """A forward jump beyond max_gap_s is a clock jump: re-anchored, not filled."""
    ts = np.r_[np.arange(100), np.arange(100) + 1e7] / 100
    tl = Timeline(100.0, max_gap_s=3600.0)
    assert _summary(tl, ts, 100) == [("data", 100), ("clock_reset", 0), ("data", 100)]
    assert tl.n_filled == 0


def test_timeline_slow_clock_drift_re_anchors_in_small_steps():
    """A device 0.1 % slower than nominal gets a 2-3 sample fill now and then, never more."""
    fs = 250.0
    ts = np.arange(int(600 * fs)) / (fs * 0.999)  # 10 min, timestamps advance too fast
    tl = Timeline(fs)
    segs = _summary(tl, ts, 250)
    fills = [n for kind, n in segs if kind == "fill"]
    assert fills and max(fills) <= 3
    # the stream time covered by placed samples matches the timestamps (within tolerance)
    assert abs(tl.n / fs - (ts[-1] + 1 / fs)) < 3 / fs


def test_timeline_origin_starts_on_grid_line():
    """With an origin, placement starts at the grid line before the first sample."""
    ts = 45.3 + np.arange(100) / 100
    tl = Timeline(100.0, origin=0.0)
    assert _summary(tl, ts, 10) == [("fill", 1530), ("data", 100)]
    assert tl.first_index == 1 and tl.grid0 == 30.0


def test_timeline_nan_timestamp_placed_by_counting():
    """A NaN timestamp does not break placement: the sample takes the next slot."""
    ts = np.arange(300) / 100
    ts[120] = np.nan
    tl = Timeline(100.0)
    assert _summary(tl, ts, 50) == [("data", 300)]


def test_timeline_samples_before_origin_are_skipped_not_dropped():
    """Samples stamped before the origin are skipped (no backward-jump count)."""
    ts = 10.0 + np.arange(1000) / 100  # 10..20 s, origin at 15 s
    tl = Timeline(100.0, origin=15.0)
    assert _summary(tl, ts, 64) == [("skip", 500), ("data", 500)]
    assert tl.n_dropped == 0 and tl.n_skipped == 500 and tl.first_index == 0
