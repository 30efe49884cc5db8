"""What the live view knows about one device: the night so far, as plain JSON-able dicts.

Each published stage event (the same dict MQTT publishes, built by
:func:`sleepstream.sinks.base.build_event`) becomes one *epoch record*; a revised event
(``--lookahead K``) attaches a ``revised`` part to the record of its epoch. The last
epoch's filtered signal (µV, 100 Hz) is kept for the signal trace.

Epoch record (one per epoch, keys as sent to the browser)::

    {"epoch_index": 12, "epoch_start": "2026-...Z", "time_zone": "UTC",  # or a naive
     "stage": "N2", "confidence": 0.87,               # start and null: see the event schema
     "probabilities": [0.01, 0.05, 0.87, 0.05, 0.02],     # W N1 N2 N3 REM
     "quality": ["gap"], "gap_fraction": 0.1, "reasons": [...],   # reasons: unscored only
     "revised": {"stage": "N3", "confidence": 0.7, "probabilities": [...], "lookahead": 2}}
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sleepstream.types import STAGE_NAMES, Epoch

#: Device status as the page shows it.
WAITING, LIVE, ENDED = "waiting", "live", "ended"


def epoch_signal_uv(epoch: Epoch) -> np.ndarray:
    """The scored epoch's filtered signal in µV at 100 Hz, shape ``(3000,)``
    (``Epoch.samples``, before the model's input scaling)."""
    return np.asarray(epoch.samples, dtype=np.float32).reshape(-1)


def _probs(event: dict[str, Any]) -> list[float]:
    p = event.get("probabilities") or {}
    return [round(float(p.get(name, 0.0)), 4) for name in STAGE_NAMES]


def epoch_record(event: dict[str, Any], gap_fraction: float) -> dict[str, Any]:
    """The record of a causal stage event (see the module docstring)."""
    rec: dict[str, Any] = {
        "epoch_index": int(event["epoch_index"]),
        "epoch_start": event.get("epoch_start", ""),
        "time_zone": event.get("time_zone", "UTC"),  # a /1 event: always an offset
        "stage": event["stage"],
        "confidence": round(float(event.get("confidence", 0.0)), 4),
        "probabilities": _probs(event),
        "quality": list(event.get("quality", [])),
        "gap_fraction": round(float(gap_fraction), 4),
        "revised": None,
    }
    if "reasons" in event:
        rec["reasons"] = list(event["reasons"])
    return rec


def revision_record(event: dict[str, Any]) -> dict[str, Any]:
    """The ``revised`` part of a record, from a revised stage event."""
    return {
        "epoch_index": int(event["epoch_index"]),
        "stage": event["stage"],
        "confidence": round(float(event.get("confidence", 0.0)), 4),
        "probabilities": _probs(event),
        "lookahead": int(event.get("lookahead", 0)),
    }


@dataclass
class DeviceView:
    """The night of one device as the live view shows it.

    Parameters
    ----------
    device : str
    max_epochs : int
        Records kept; the oldest are dropped beyond it.
    """

    device: str
    max_epochs: int = 2880
    session: str = ""
    status: str = WAITING
    epochs: OrderedDict[int, dict[str, Any]] = field(default_factory=OrderedDict)
    _signal: tuple[int, float, np.ndarray] | None = field(default=None, repr=False)
    report_url: str | None = None
    n_events: int = 0

    def add(self, rec: dict[str, Any]) -> None:
        """Store a causal record (replacing one of the same index)."""
        self.status = LIVE
        self.n_events += 1
        self.epochs[rec["epoch_index"]] = rec
        self.epochs.move_to_end(rec["epoch_index"])
        while len(self.epochs) > self.max_epochs:
            self.epochs.popitem(last=False)

    def revise(self, rev: dict[str, Any]) -> bool:
        """Attach a revision to its epoch; False when the epoch is no longer kept."""
        rec = self.epochs.get(rev["epoch_index"])
        if rec is None:
            return False
        rec["revised"] = {k: v for k, v in rev.items() if k != "epoch_index"}
        return True

    def set_signal(self, epoch_index: int, samples_uv: np.ndarray, fs: float = 100.0) -> None:
        """Keep the last epoch's filtered signal (µV, shape ``(n,)``); encoded on demand."""
        x = np.nan_to_num(np.asarray(samples_uv, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        self._signal = (int(epoch_index), float(fs), x)

    def signal_message(self) -> dict[str, Any] | None:
        """The last signal as sent to the browser (rounded to 0.1 µV), or None."""
        if self._signal is None:
            return None
        index, fs, x = self._signal
        return {
            "device": self.device,
            "epoch_index": index,
            "fs": fs,
            "uv": np.round(x.astype(np.float64), 1).tolist(),
        }

    @property
    def current(self) -> dict[str, Any] | None:
        """The newest record (None before the first epoch)."""
        return next(reversed(self.epochs.values()), None) if self.epochs else None

    def summary(self) -> dict[str, Any]:
        """What the overview needs: status, current record and ``[index, stage]`` pairs."""
        cur = self.current
        return {
            "device": self.device,
            "session": self.session,
            "status": self.status,
            "report_url": self.report_url,
            "current": cur,
            "stages": [
                [i, (r["revised"] or r)["stage"], bool(r["quality"])]
                for i, r in self.epochs.items()
            ],
        }

    def snapshot(self) -> dict[str, Any]:
        """Everything the device page draws: all records and the last signal."""
        return {
            "device": self.device,
            "session": self.session,
            "status": self.status,
            "report_url": self.report_url,
            "stage_names": list(STAGE_NAMES),
            "epochs": list(self.epochs.values()),
            "signal": self.signal_message(),
        }
