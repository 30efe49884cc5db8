"""Sleep-stage sequences for the synthetic night: text hypnograms and a Markov chain.

A Sleep-EDF ``*.hyp``-style text hypnogram holds one R&K symbol per 30 s (``W 1 2 3 4 R
?``, separated by whitespace or ``\\r``). :data:`TRANSITIONS` is the epoch-to-epoch
transition matrix of the 39 Sleep-EDF-20 nights; :func:`estimate_transitions` recomputes
it from a folder of hypnograms.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sleepstream.errors import DataFileError, HypnogramError
from sleepstream.types import EPOCH_SECONDS, UNSCORED

#: Epoch-to-epoch stage transition probabilities (rows: from W, N1, N2, N3, REM; columns:
#: to), estimated by :func:`estimate_transitions` from the 39 Sleep-EDF-20 hypnograms in
#: ``shared/data/sleep_edf20_hypnograms`` (trimmed to 30 min of wake around sleep, S3+S4
#: = N3, transitions touching ``?``/movement skipped; 42,269 transitions).
TRANSITIONS = np.array(
    [
        [0.9362, 0.0536, 0.0058, 0.0005, 0.0039],
        [0.0631, 0.6494, 0.2454, 0.0007, 0.0414],
        [0.0123, 0.0193, 0.9088, 0.0458, 0.0138],
        [0.0065, 0.0053, 0.1319, 0.8557, 0.0007],
        [0.0121, 0.0216, 0.0176, 0.0001, 0.9486],
    ]
)
_RK = {"W": 0, "1": 1, "2": 2, "3": 3, "4": 3, "R": 4, "N1": 1, "N2": 2, "N3": 3, "REM": 4}
_UNSCORED_SYMBOLS = {"?", "M", "MT", "U"}


def read_hypnogram_text(path: Path | str) -> np.ndarray:
    """Read a Sleep-EDF ``.hyp``-style text hypnogram.

    Returns
    -------
    ndarray, shape (n_epochs,), int8
        0..4 = W, N1, N2, N3 (S3+S4), REM; -1 = unscored (``?``, movement).

    Raises
    ------
    DataFileError
        Missing or empty file.
    HypnogramError
        An unknown stage symbol (names the file, position and symbol).
    """
    p = Path(path)
    try:
        tokens = p.read_text(encoding="latin-1").replace(",", " ").split()
    except OSError as exc:
        raise DataFileError(f"{p}: cannot read hypnogram: {exc.strerror or exc}") from None
    if not tokens:
        raise DataFileError(f"{p}: empty hypnogram")
    out = np.empty(len(tokens), dtype=np.int8)
    for i, tok in enumerate(tokens):
        t = tok.strip().upper()
        if t in _RK:
            out[i] = _RK[t]
        elif t in _UNSCORED_SYMBOLS:
            out[i] = UNSCORED
        else:
            raise HypnogramError(f"{p}: unknown stage symbol {tok!r} at epoch {i}")
    return out


def trim_wake(stages: np.ndarray, minutes: float = 30.0) -> np.ndarray:
    """Keep ``minutes`` of epochs before the first and after the last sleep epoch."""
    sleep = np.flatnonzero(stages > 0)
    if sleep.size == 0:
        return stages
    pad = int(round(minutes * 60 / EPOCH_SECONDS))
    return stages[max(0, sleep[0] - pad) : sleep[-1] + pad + 1]


def estimate_transitions(folder: Path | str, trim_minutes: float = 30.0) -> np.ndarray:
    """Estimate the 5x5 stage transition matrix from a folder of text hypnograms.

    This is how :data:`TRANSITIONS` was computed (rounded to 4 decimals).

    Returns
    -------
    ndarray, shape (5, 5), float64
        Row-stochastic; rows without any transition are uniform.
    """
    files = sorted(p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith("."))
    hyps = [f for f in files if f.suffix in (".csv", ".hyp", ".txt")]
    if not hyps:
        raise DataFileError(f"{folder}: no hypnogram files (*.csv, *.hyp, *.txt)")
    counts = np.zeros((5, 5))
    for f in hyps:
        s = trim_wake(read_hypnogram_text(f), trim_minutes).astype(np.int64)
        a, b = s[:-1], s[1:]
        ok = (a >= 0) & (b >= 0)
        np.add.at(counts, (a[ok], b[ok]), 1)
    rows = counts.sum(axis=1, keepdims=True)
    return np.where(rows > 0, counts / np.maximum(rows, 1), 0.2)


def markov_stages(
    n_epochs: int, seed: int, transitions: np.ndarray = TRANSITIONS, start: int = 0
) -> np.ndarray:
    """A stage sequence from the Markov chain ``transitions`` (starts awake by default).

    Returns
    -------
    ndarray, shape (n_epochs,), int8
    """
    p = np.asarray(transitions, dtype=np.float64)
    cum = np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)
    u = np.random.default_rng([seed, 0]).random(n_epochs)
    out = np.empty(n_epochs, dtype=np.int8)
    state = start
    for i in range(n_epochs):
        out[i] = state
        state = min(4, int(np.searchsorted(cum[state], u[i], side="right")))
    return out


if __name__ == "__main__":  # python -m sleepstream.sources.stage_sequences HYPNOGRAM_DIR
    import sys

    np.set_printoptions(precision=4, suppress=True)
    print(estimate_transitions(sys.argv[1] if len(sys.argv) > 1 else "."))
