"""Per-recording amplitude normalisation along training and test nights.

The normaliser itself lives in :mod:`sleepstream.dsp.normalise` (the daemon runs the same
code); this module only applies it to whole nights, the way the daemon would see them:

- :func:`night_scales` runs :class:`~sleepstream.dsp.normalise.RunningScale` causally
  along a night from a start epoch and returns the per-epoch ``input_scale`` (model input
  = µV × scale). Multiplying by these factors equals
  :func:`sleepstream.dsp.normalise.normalise_night` (tested), without materialising a
  normalised copy of the night.
- :func:`usable_epochs` decides which epochs may update the running state
  (:func:`sleepstream.dsp.normalise.usable_epochs`: ``nonfinite``, ``flat`` and
  ``amplitude`` judged on the 100-Hz epochs; a decoded night has no gaps).
- :func:`normalise_recording` normalises every derivation of a recording from its own
  start (epoch 0) with :func:`sleepstream.dsp.normalise.normalise_night`, as the daemon
  does for a new recording: used for validation and evaluation (each DREAMS excerpt from
  its own start).
- :meth:`NightNorm.pass_scales` cuts, once per training pass, every training night into
  sessions (one random cut, or sessions of a fixed length with a random phase), each
  normalised from its own start with a cold normaliser, so training sees the warm-up at
  the night start and elsewhere. Windows that cross a session start lose the positions
  before it (zero input, label ``-1``), exactly as a daemon started there has no history.

Specs travel as JSON dicts (``NormalisationSpec.to_card()``), ``{"kind": "none"}`` when off.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from distill.options import parse_value
from sleepstream.types import EPOCH_SAMPLES

#: The spec dict of "no normalisation" (what v1 cards and old checkpoints mean).
NONE: dict[str, Any] = {"kind": "none"}


def is_none(spec: Mapping[str, Any] | None) -> bool:
    """Whether a spec dict means no normalisation."""
    return spec is None or str(spec.get("kind", "none")) == "none"


def parse_spec(spec: Mapping[str, Any] | str | None):
    """A :class:`sleepstream.dsp.normalise.NormalisationSpec` from a card dict.

    ``None`` and a string (v1 cards: the graph normalises itself) mean kind ``"none"``.
    Raises :class:`~sleepstream.errors.ModelError` (from ``from_card``) for an unknown kind.
    """
    from sleepstream.dsp.normalise import NormalisationSpec

    if spec is None or isinstance(spec, str):
        return NormalisationSpec.from_card(dict(NONE))
    return NormalisationSpec.from_card(dict(spec))


def spec_from_cli(kind: str, params: list[str] | None = None) -> dict[str, Any]:
    """The spec dict for ``--normalise KIND [--normalise-param key=value ...]``.

    Values parse as int, float or bool where they can. The dict is validated by
    ``NormalisationSpec.from_card`` and returned in its canonical ``to_card()`` form.
    """
    from sleepstream.errors import ModelError, UsageError

    d: dict[str, Any] = {"kind": kind}
    for item in params or []:
        key, eq, raw = item.partition("=")
        if not eq or not key.strip():
            raise UsageError(f"--normalise-param {item!r}: expected key=value")
        d[key.strip()] = parse_value(raw.strip())
    if kind == "none" and len(d) == 1:
        return dict(NONE)
    try:
        spec = parse_spec(d)
    except ModelError as exc:  # unknown kind or parameter, value out of range
        raise UsageError(f"--normalise {kind}: {exc}") from None
    return dict(spec.to_card())


def usable_epochs(epochs: np.ndarray) -> np.ndarray:
    """Epochs that may update the running scale, shape ``(n,)`` bool.

    :func:`sleepstream.dsp.normalise.usable_epochs` with the DSP's default thresholds
    (``nonfinite``, ``flat``, ``amplitude`` judged on the 100-Hz epochs ``(n, 3000)`` µV).
    """
    from sleepstream.dsp.normalise import usable_epochs as judge

    return judge(np.asarray(epochs).reshape(-1, EPOCH_SAMPLES))


def night_scales(
    epochs: np.ndarray,
    usable: np.ndarray,
    spec: Mapping[str, Any],
    start: int = 0,
    prior_scale_uv: float | None = None,
) -> np.ndarray:
    """Per-epoch ``input_scale`` of a night run causally from epoch ``start``.

    Parameters
    ----------
    epochs : ndarray, shape (n, 3000), µV
    usable : ndarray, shape (n,), bool
        See :func:`usable_epochs`.
    spec : dict
        ``NormalisationSpec.to_card()`` form.
    start : int
        First epoch of the run (the "recording start").

    Returns
    -------
    ndarray, shape (n - start,), float32
        The factor of each epoch from ``start`` on: model input = µV × factor.
    """
    from sleepstream.dsp.normalise import input_scales

    x = np.asarray(epochs).reshape(-1, EPOCH_SAMPLES)
    return input_scales(x, usable, parse_spec(spec), start, prior_scale_uv).astype(np.float32)


def scales_from_stats(
    stats_uv: np.ndarray,
    usable: np.ndarray,
    spec: Mapping[str, Any],
    start: int = 0,
    prior_scale_uv: float | None = None,
) -> np.ndarray:
    """:func:`night_scales` from each epoch's robust std (``epoch_scale_uv``, µV, ``(n,)``).

    The per-epoch statistic does not depend on the spec, so a training set computes it once
    per night (:class:`NightNorm`) and every pass restarts the normaliser from it without
    reading the signal again. Runs the daemon's ``RunningScale`` update exactly as
    :func:`sleepstream.dsp.normalise.input_scales` does after its statistics (its
    per-statistic step ``_step``; a public statistics entry point is requested from its
    owner, /work/coord/requests/distill.md D4). Tested equal to ``normalise_night``.
    """
    from sleepstream.dsp.normalise import RunningScale

    n = len(stats_uv)
    if is_none(spec):
        return np.ones(n - start, np.float32)
    state = RunningScale(parse_spec(spec), prior_scale_uv=prior_scale_uv)
    return np.array(
        [
            state._step(float(s), bool(u))
            for s, u in zip(stats_uv[start:], usable[start:], strict=True)
        ],
        np.float32,
    )


def release(arr: np.ndarray) -> None:
    """Drop a memory-mapped array's pages from this process (they stay in the page cache):
    a sweep over every night then does not leave them all counted in the RSS."""
    import mmap

    base = arr
    while base is not None and not isinstance(base, np.memmap):
        base = getattr(base, "base", None)
    mm = getattr(base, "_mmap", None)
    if mm is not None and hasattr(mmap, "MADV_DONTNEED"):
        mm.madvise(mmap.MADV_DONTNEED)


def normalise_recording(rec, spec: Mapping[str, Any] | None, primary_only: bool = False):
    """A copy of ``rec`` with every derivation (or only the first, the one scored)
    normalised causally from epoch 0.

    Exactly what the daemon does to a new recording:
    ``normalise_night(x, usable_epochs(x), spec)`` per derivation, prior None. Returns
    ``rec`` itself when ``spec`` is kind ``"none"``.
    """
    from dataclasses import replace

    from sleepstream.dsp.normalise import normalise_night

    if is_none(spec):
        return rec
    parsed = parse_spec(spec)
    signals = {}
    for ch, flat in list(rec.signals.items())[: 1 if primary_only else None]:
        ep = flat.reshape(-1, EPOCH_SAMPLES)
        signals[ch] = normalise_night(ep, usable_epochs(ep), parsed).reshape(-1)
        release(flat)
    return replace(rec, signals=signals)


def session_starts(n: int, session_len: int, rng: np.random.Generator) -> np.ndarray:
    """Start epochs of one pass's sessions of an ``n``-epoch night, sorted, first 0.

    ``session_len == 0``: one random cut uniform in ``[0, n)`` (``[0]`` when it is 0).
    ``session_len > 0``: sessions of ``session_len`` epochs with a random phase
    ``o ~ U[0, session_len)``: starts ``0, o, o + L, o + 2L, ...``.
    """
    if n <= 1:
        return np.zeros(1, np.int64)
    if session_len <= 0:
        cut = int(rng.integers(n))
        return np.array([0, cut] if cut else [0], np.int64)
    o = int(rng.integers(session_len))
    starts = np.arange(o, n, session_len)
    return np.unique(np.concatenate([[0], starts])).astype(np.int64)


def segment_scales(
    stats_uv: np.ndarray, usable: np.ndarray, spec: Mapping[str, Any], starts: np.ndarray
) -> np.ndarray:
    """Factors ``(n,)`` from per-epoch robust stds ``(n,)``: the normaliser restarted
    (cold, prior None) at every start."""
    n = len(stats_uv)
    out = np.empty(n, np.float32)
    bounds = [*map(int, starts), n]
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        out[a:b] = scales_from_stats(stats_uv[:b], usable[:b], spec, a)
    return out


@dataclass(frozen=True)
class NightNorm:
    """Per-pass normalisation of a training set's nights.

    Each pass cuts every training night into *sessions* (:func:`session_starts`) and
    normalises each session causally from its own start with a cold normaliser, as a
    daemon started there would; windows never look back across a session start. The
    per-epoch usable flags and robust std are computed once (one sweep over the nights,
    memory-mapped pages released after each), so a pass reads no signal.

    Parameters
    ----------
    spec : dict
        ``NormalisationSpec.to_card()`` form (never kind ``"none"`` here).
    usable : list of dict of str to ndarray (n_epochs,), bool
        Per recording and derivation (see :func:`usable_epochs`).
    stats : list of dict of str to ndarray (n_epochs,), float
        Robust std (µV) of every epoch, per recording and derivation.
    """

    spec: dict
    usable: list
    stats: list

    @classmethod
    def build(cls, recs, spec: Mapping[str, Any], active=None) -> NightNorm:
        """Flags and statistics of the recordings flagged in ``active`` (default all;
        the others, never trained on, get none)."""
        from sleepstream.dsp.normalise import epoch_scale_uv

        usable, stats = [], []
        for i, rec in enumerate(recs):
            u, st = {}, {}
            if active is not None and not active[i]:
                usable.append(u)
                stats.append(st)
                continue
            for ch, flat in rec.signals.items():
                ep = flat.reshape(-1, EPOCH_SAMPLES)
                u[ch], st[ch] = usable_epochs(ep), epoch_scale_uv(ep)
                release(flat)
            usable.append(u)
            stats.append(st)
        return cls(dict(spec), usable, stats)

    def pass_scales(
        self,
        r: int,
        rec,
        rng: np.random.Generator,
        signals: dict | None = None,
        starts: np.ndarray | None = None,
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``(starts, {channel: factors (n_epochs,)})`` of recording ``r`` for one pass.

        ``starts`` are the session starts (one random cut, :func:`session_starts` with
        length 0, when None). ``signals`` (a night augmented for this pass) replaces the
        recording's own derivations; their flags and statistics are then computed afresh.
        """
        from sleepstream.dsp.normalise import epoch_scale_uv

        if starts is None:
            starts = session_starts(rec.n_epochs, 0, rng)
        scales = {}
        for ch in signals or rec.signals:
            if signals is None:
                usable, stats = self.usable[r][ch], self.stats[r][ch]
            else:
                ep = signals[ch].reshape(-1, EPOCH_SAMPLES)
                usable, stats = usable_epochs(ep), epoch_scale_uv(ep)
            scales[ch] = segment_scales(stats, usable, self.spec, starts)
        return starts, scales
