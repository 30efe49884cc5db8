"""AASM sleep statistics of a 30-s hypnogram.

Definitions (the hypnogram is taken as the time in bed: the recording runs from
"lights out" to "lights on"; ``-1`` = unscored):

- **TIB** (time in bed): number of epochs x 30 s, unscored epochs included.
- **Sleep onset**: the first epoch of any sleep stage (N1, N2, N3 or REM).
  **SOL** (sleep onset latency): time from the first epoch to sleep onset.
- **SPT** (sleep period time): sleep onset to the end of the last sleep epoch.
- **TST** (total sleep time): N1 + N2 + N3 + REM epochs (all of them lie in the SPT).
- **SE** (sleep efficiency) = TST / TIB x 100; **SME** (sleep maintenance efficiency)
  = TST / SPT x 100.
- **WASO** (wake after sleep onset): W epochs inside the SPT (the final awakening after
  the last sleep epoch is not WASO; unscored epochs are not W).
- **REM latency** (AASM): sleep onset to the first REM epoch. ``stage_latency_min``
  gives each stage's first epoch from the start of the record (YASA's ``Lat_*``).
- **Stage minutes** per stage; **stage % of TST** for N1, N2, N3, REM (and NREM); W is
  given as % of TIB.
- **Awakenings**: runs of one or more consecutive W epochs that begin after sleep onset
  and end before the last sleep epoch (each such wake bout is one awakening; the final
  awakening is not counted).
- **Stage transitions**: pairs of consecutive scored epochs with different stages
  (unscored epochs break the chain); ``transition_counts[a][b]`` counts ``a -> b``.

Latencies and sleep-period figures are ``None`` when the night has no sleep.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sleepstream.types import EPOCH_SECONDS, STAGE_NAMES, UNSCORED

SLEEP_STAGES = ("N1", "N2", "N3", "REM")


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` of each run of True in ``mask``."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist(), strict=True))


def sleep_statistics(stages: np.ndarray, epoch_s: float = EPOCH_SECONDS) -> dict[str, Any]:
    """Sleep statistics of one night.

    Parameters
    ----------
    stages : array-like of int, shape (n_epochs,)
        Stage codes 0..4 (W, N1, N2, N3, REM) or -1 (unscored).
    epoch_s : float
        Epoch length in s.

    Returns
    -------
    dict
        Durations in minutes, percentages in %, counts as int (see the module docstring).
    """
    s = np.asarray(stages, dtype=np.int64).ravel()
    if np.any((s < UNSCORED) | (s > 4)):
        raise ValueError(f"stage codes must be -1..4, got {sorted(set(s.tolist()))}")
    to_min = epoch_s / 60.0
    n = s.size
    sleep_idx = np.flatnonzero(s >= 1)
    has_sleep = sleep_idx.size > 0
    counts = {name: int(np.count_nonzero(s == k)) for k, name in enumerate(STAGE_NAMES)}
    tst = sum(counts[k] for k in SLEEP_STAGES)
    out: dict[str, Any] = {
        "n_epochs": int(n),
        "epoch_seconds": float(epoch_s),
        "time_in_bed_min": n * to_min,
        "unscored_min": int(np.count_nonzero(s == UNSCORED)) * to_min,
        "total_sleep_time_min": tst * to_min,
        "sleep_efficiency_pct": 100.0 * tst / n if n else None,
    }
    if has_sleep:
        onset, last = int(sleep_idx[0]), int(sleep_idx[-1])
        spt = s[onset : last + 1]
        rem = np.flatnonzero(s == 4)
        out |= {
            "sleep_period_time_min": spt.size * to_min,
            "sleep_maintenance_efficiency_pct": 100.0 * tst / spt.size,
            "sleep_onset_latency_min": onset * to_min,
            "waso_min": int(np.count_nonzero(spt == 0)) * to_min,
            "rem_latency_min": (int(rem[0]) - onset) * to_min if rem.size else None,
            "n_awakenings": len(_runs(spt == 0)),
        }
    else:
        out |= dict.fromkeys(
            (
                "sleep_period_time_min",
                "sleep_maintenance_efficiency_pct",
                "sleep_onset_latency_min",
                "waso_min",
                "rem_latency_min",
            ),
            None,
        ) | {"n_awakenings": 0}
    out["stage_min"] = {name: counts[name] * to_min for name in STAGE_NAMES}
    out["stage_min"]["NREM"] = (counts["N1"] + counts["N2"] + counts["N3"]) * to_min
    pct: dict[str, float | None] = {
        k: (100.0 * counts[k] / tst if tst else None) for k in SLEEP_STAGES
    }
    pct["NREM"] = 100.0 * (counts["N1"] + counts["N2"] + counts["N3"]) / tst if tst else None
    out["stage_pct_of_tst"] = pct
    out["wake_pct_of_tib"] = 100.0 * counts["W"] / n if n else None
    out["stage_latency_min"] = {
        name: (int(np.flatnonzero(s == k)[0]) * to_min if counts[name] else None)
        for k, name in enumerate(STAGE_NAMES)
    }
    a, b = s[:-1], s[1:]
    keep = (a != UNSCORED) & (b != UNSCORED)
    trans = np.zeros((5, 5), dtype=np.int64)
    np.add.at(trans, (a[keep], b[keep]), 1)
    out["n_stage_transitions"] = int(trans.sum() - np.trace(trans))
    out["transition_counts"] = trans.tolist()
    return out


def statistics_text(st: dict[str, Any]) -> str:
    """A few readable lines of the statistics."""

    def m(key: str) -> str:
        v = st[key]
        return "—" if v is None else f"{v:.1f} min"

    def p(v: float | None) -> str:
        return "—" if v is None else f"{v:.1f} %"

    lines = [
        f"time in bed {m('time_in_bed_min')} · total sleep {m('total_sleep_time_min')} · "
        f"efficiency {p(st['sleep_efficiency_pct'])}",
        f"sleep onset latency {m('sleep_onset_latency_min')} · WASO {m('waso_min')} · "
        f"REM latency {m('rem_latency_min')} (from sleep onset)",
        f"awakenings {st['n_awakenings']} · stage transitions {st['n_stage_transitions']} · "
        f"unscored {m('unscored_min')}",
        "stage   minutes   % of TST",
    ]
    for name in STAGE_NAMES:
        share = (
            p(st["wake_pct_of_tib"]) + " of TIB" if name == "W" else p(st["stage_pct_of_tst"][name])
        )
        lines.append(f"{name:<6} {st['stage_min'][name]:8.1f}   {share}")
    return "\n".join(lines)


#: The statistics set beside each other with a reference: (key, label, unit). A key with
#: a dot reads a nested value (``stage_min.REM``).
COMPARED = (
    ("time_in_bed_min", "time in bed", "min"),
    ("total_sleep_time_min", "total sleep time, TST", "min"),
    ("sleep_efficiency_pct", "sleep efficiency, SE", "%"),
    ("sleep_onset_latency_min", "sleep onset latency, SOL", "min"),
    ("waso_min", "wake after sleep onset, WASO", "min"),
    ("rem_latency_min", "REM latency from sleep onset", "min"),
    ("n_awakenings", "awakenings", ""),
    *((f"stage_min.{s}", f"time in {s}", "min") for s in STAGE_NAMES),
)


def _get(st: dict[str, Any], key: str) -> float | None:
    value: Any = st
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return None if value is None else float(value)


def flags_difference(unit: str, model: float | None, reference: float | None) -> bool:
    """Whether a model-reference difference deserves the reader's eye.

    Minutes: at least 15 min and a quarter of the reference; percentages: at least 10
    points; counts: at least 3 and half the reference; one defined and not the other
    (e.g. no REM at all on one side): always.
    """
    if model is None or reference is None:
        return (model is None) != (reference is None)
    diff = abs(model - reference)
    if unit == "min":
        return diff >= max(15.0, 0.25 * abs(reference))
    if unit == "%":
        return diff >= 10.0
    return diff >= max(3.0, 0.5 * abs(reference))


def compare_statistics(model: dict[str, Any], reference: dict[str, Any]) -> list[dict[str, Any]]:
    """The model's and the reference's statistics side by side.

    Returns
    -------
    list of dict
        One per :data:`COMPARED` entry: ``key``, ``label``, ``unit``, ``model``,
        ``reference``, ``difference`` (model - reference, None when either is None) and
        ``flag`` (:func:`flags_difference`).
    """
    rows = []
    for key, label, unit in COMPARED:
        a, b = _get(model, key), _get(reference, key)
        rows.append({
            "key": key, "label": label, "unit": unit, "model": a, "reference": b,
            "difference": None if a is None or b is None else a - b,
            "flag": flags_difference(unit, a, b),
        })  # fmt: skip
    return rows


def comparison_text(rows: list[dict[str, Any]]) -> str:
    """A table of :func:`compare_statistics` with the flagged rows marked, and a summary."""

    def f(v: float | None, unit: str, signed: bool = False) -> str:
        digits = 1 if unit else 0
        return "—" if v is None else f"{v:{'+' if signed else ''}.{digits}f}"

    lines = [f"{'':36}{'model':>9}{'reference':>11}{'difference':>12}"]
    for r in rows:
        u = r["unit"]
        name = f"{r['label']} ({u})" if u else r["label"]
        mark = "  <-- check" if r["flag"] else ""
        lines.append(
            f"{name:<36}{f(r['model'], u):>9}{f(r['reference'], u):>11}"
            f"{f(r['difference'], u, True):>12}{mark}"
        )
    flagged = largest_differences(rows)
    if flagged:
        worst = ", ".join(
            f"{r['label']} {f(r['model'], r['unit'])} vs {f(r['reference'], r['unit'])}"
            + (f" {r['unit']}" if r["unit"] else "")
            for r in flagged
        )
        lines.append(f"the model and the reference differ most in: {worst}")
    return "\n".join(lines)


def largest_differences(rows: list[dict[str, Any]], n_minutes: int = 3) -> list[dict[str, Any]]:
    """The flagged rows worth a summary line: the ``n_minutes`` flagged durations with the
    largest differences in minutes, then the other flagged rows (%, counts, one side
    missing)."""
    flagged = [r for r in rows if r["flag"]]
    minutes = [r for r in flagged if r["unit"] == "min" and r["difference"] is not None]
    minutes.sort(key=lambda r: -abs(r["difference"]))
    return minutes[:n_minutes] + [r for r in flagged if r not in minutes]
