"""The ``night.json`` manifest skeleton and the timestamp bookkeeping behind it."""

from __future__ import annotations

from typing import Any

import numpy as np

#: ``night.json`` schema tag.
MANIFEST_SCHEMA = "sleepstream.night/2"
#: A timestamp jump at least this long (s) closes the open raw segment.
ROLL_GAP_S = 1.0


def new_manifest(
    *,
    device: str,
    profile: str,
    model_id: str,
    card_sha256: str,
    staged_channel: str | None,
    units: str,
    scale_to_uv: float,
    source_offset_s: float | None,
    segment_seconds: float,
) -> dict[str, Any]:
    """A fresh manifest; the recorder fills it in while the night goes on.

    Keys: ``status`` (``recording``/``closed``); the night's time
    (:mod:`sleepstream.record.clock`): ``start``/``end`` (ISO-8601; no zone designator
    when the recording's zone is unknown), ``start_utc``/``end_utc`` (the same in UTC,
    ``null`` when the zone is unknown), ``duration_s``, ``time_zone``, ``time_base``
    (``recording`` or ``system``), ``time_note``, ``edf_time``; ``created_utc`` and
    ``closed_utc`` (this machine's clock when the recorder opened and closed);
    ``recording`` (``path`` and ``name`` of the file a file source read, else null);
    ``channels``, ``fs`` (Hz), ``units``, ``scale_to_uv``, ``segments`` (one dict per
    written ``raw_NNNN.edf``: ``file``, ``start_s`` from the night start, ``start``,
    ``n_samples``, ``duration_s``, ``fs``, ``channels``, ``padding_samples``),
    ``pending_segments`` (held in memory, not written yet), ``lost_segments`` (never
    written, with ``reason``), ``gaps`` (``onset_s``, ``duration_s``,
    ``missing_samples``, ``clock_reset``), ``dropped_samples``, ``nonfinite_samples``
    (written as 0), ``off_scale_samples`` (beyond what an EDF header states, written
    clipped), ``samples_received``, ``n_epochs``,
    ``n_unscored``, ``n_revised``, ``epoch_grid_offset_s`` (stage onset = offset + 30 s
    x epoch index), ``storage_errors``, ``storage_errors_by_kind`` and
    ``last_storage_error``.
    """
    return {
        "schema": MANIFEST_SCHEMA,
        "status": "created",
        "device": device,
        "profile": profile,
        "model": {"id": model_id, "card_sha256": card_sha256},
        "start": None,
        "end": None,
        "start_utc": None,
        "end_utc": None,
        "duration_s": None,
        "time_zone": None,
        "time_base": None,
        "time_note": None,
        "created_utc": None,
        "closed_utc": None,
        "staged_channel": staged_channel,
        "channels": [],
        "units": units,
        "scale_to_uv": float(scale_to_uv),
        "fs": None,
        "recording": None,
        "source_offset_s": source_offset_s,
        "segment_seconds": float(segment_seconds),
        "segments": [],
        "pending_segments": [],
        "lost_segments": [],
        "gaps": [],
        "dropped_samples": 0,
        "nonfinite_samples": 0,
        "off_scale_samples": 0,
        "samples_received": 0,
        "n_epochs": 0,
        "n_unscored": 0,
        "n_revised": 0,
        "epoch_grid_offset_s": None,
        "storage_errors": 0,
        "storage_errors_by_kind": {},
        "last_storage_error": None,
        "files": {
            "stages": "stages.edf",
            "hypnogram": "hypnogram.csv",
            "hypnodensity": "hypnodensity.csv",
        },
    }


def find_gaps(
    prev: float | None, ts: np.ndarray, fs: float, t0: float
) -> tuple[list[dict[str, Any]], list[int]]:
    """Timestamp jumps before and inside a chunk.

    Parameters
    ----------
    prev : float or None
        Timestamp of the previous sample (s), None for the first chunk.
    ts : ndarray, shape (n_samples,)
        The chunk's timestamps (s).
    fs : float
        Nominal rate (Hz); a step above 1.5 sample periods is a gap.
    t0 : float
        Night start (s), the origin of ``onset_s``.

    Returns
    -------
    gaps : list of dict
        ``onset_s`` (first missing sample, from ``t0``), ``duration_s``,
        ``missing_samples``; a backwards step is a ``clock_reset`` with no missing samples.
    cuts : list of int
        Positions in ``ts`` where the open segment must end (gaps of at least
        :data:`ROLL_GAP_S` and clock resets); position 0 means before this chunk.
    """
    period = 1.0 / fs
    before = ts[0] - period if prev is None else prev
    d = np.diff(np.concatenate([[before], ts]))
    gaps: list[dict[str, Any]] = []
    cuts: list[int] = []
    for i in np.flatnonzero((d > 1.5 * period) | (d < -0.5 * period)):
        last = float(before if i == 0 else ts[i - 1])
        if d[i] > 0:
            gaps.append({
                "onset_s": round(last + period - t0, 3),
                "duration_s": round(float(d[i]) - period, 3),
                "missing_samples": int(round(d[i] * fs)) - 1,
            })  # fmt: skip
            if d[i] >= ROLL_GAP_S:
                cuts.append(int(i))
        else:
            gaps.append({
                "onset_s": round(float(ts[i]) - t0, 3),
                "duration_s": round(float(d[i]), 3),
                "missing_samples": 0,
                "clock_reset": True,
            })  # fmt: skip
            cuts.append(int(i))
    return gaps, cuts
