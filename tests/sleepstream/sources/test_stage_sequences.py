"""Stage sequences: Sleep-EDF text hypnograms, the Markov matrix and chain."""

from __future__ import annotations

import numpy as np
import pytest

from sleepstream.errors import HypnogramError
from sleepstream.sources.stage_sequences import (
    TRANSITIONS,
    estimate_transitions,
    markov_stages,
    read_hypnogram_text,
    trim_wake,
)


def test_transition_matrix_matches_sleep_edf20_hypnograms(hypnograms_dir):
    """The hard-coded Markov matrix is the one estimated from the 39 hypnograms."""
    np.testing.assert_allclose(estimate_transitions(hypnograms_dir), TRANSITIONS, atol=1e-4)
    np.testing.assert_allclose(TRANSITIONS.sum(axis=1), 1.0, atol=1e-3)


def test_read_hypnogram_text_rejects_unknown_symbol(tmp_path):
    """An unknown stage symbol names the file, position and symbol."""
    p = tmp_path / "bad.hyp"
    p.write_text("W\r1\r2\rX\r")
    with pytest.raises(HypnogramError, match="bad.hyp.*'X'.*epoch 3"):
        read_hypnogram_text(p)
    p.write_text("W\r1\r2\r3\r4\rR\r?\r")
    assert read_hypnogram_text(p).tolist() == [0, 1, 2, 3, 3, 4, -1]


def test_trim_wake_keeps_thirty_minutes_around_sleep():
    """Trimming keeps 60 epochs of wake before the first and after the last sleep epoch."""
    stages = np.array([0] * 100 + [2, 3, 0, 4] + [0] * 100, dtype=np.int8)
    out = trim_wake(stages, 30.0)
    assert out.size == 60 + 4 + 60 and out[60] == 2 and out[63] == 4


def test_markov_chain_visits_every_stage_in_realistic_proportions():
    """A long Markov night starts awake, visits all stages, and N2 is the commonest sleep stage."""
    s = markov_stages(5000, seed=1)
    counts = np.bincount(s, minlength=5)
    assert s[0] == 0 and np.all(counts > 0)
    assert counts[2] == counts[1:].max()
