"""When a recorded night happened, as honestly as ``night.json`` can say it.

A night written by the current recorder has ``start``/``end`` on the recording's own
clock (:mod:`sleepstream.record.clock`): UTC (``...Z``) for a live night, or the
recording's local time with no zone for a replayed EDF (EDF states none). A night from
an older recorder (schema ``sleepstream.night/1``) only has ``start_utc``/``end_utc``,
the machine's clock while recording, which for a replay is when it was replayed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sleepstream.record.clock import parse_iso


@dataclass(frozen=True)
class NightTimes:
    """The night's start and end and what clock they are on.

    Attributes
    ----------
    start, end : datetime or None
        Naive (the recording's local time, zone unknown) or aware UTC.
    zone : str
        ``"UTC"``, ``"local time of the recording, time zone not stated"``, or
        ``"unknown"`` (no date at all).
    note : str
        One sentence for the report (empty when there is nothing to add).
    """

    start: dt.datetime | None
    end: dt.datetime | None
    zone: str
    note: str = ""

    def format(self, t: dt.datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
        return "—" if t is None else t.strftime(fmt)

    def span_text(self) -> str:
        """``1989-04-24 23:10:00 → 1989-04-25 07:12:30 (zone)`` for a header line."""
        if self.start is None:
            return "start unknown"
        end = self.end
        same_day = end is not None and end.date() == self.start.date()
        tail = self.format(end, "%H:%M:%S" if same_day else "%Y-%m-%d %H:%M:%S")
        return f"{self.format(self.start)} → {tail} ({self.zone})"

    def to_json(self) -> dict[str, Any]:
        return {
            "start": None if self.start is None else self.start.isoformat(),
            "end": None if self.end is None else self.end.isoformat(),
            "time_zone": self.zone,
            "note": self.note,
        }


ZONE_UNKNOWN = "local time of the recording, time zone not stated"


def night_times(manifest: dict[str, Any]) -> NightTimes:
    """The :class:`NightTimes` of a manifest (any schema version)."""
    start, end = parse_iso(manifest.get("start")), parse_iso(manifest.get("end"))
    if start is not None:
        if start.tzinfo is None:
            return NightTimes(
                start, end, ZONE_UNKNOWN,
                manifest.get("time_note") or "the recording states no time zone",
            )  # fmt: skip
        return NightTimes(_utc(start), _utc(end), "UTC")
    start, end = parse_iso(manifest.get("start_utc")), parse_iso(manifest.get("end_utc"))
    if start is None:
        return NightTimes(None, None, "unknown", "night.json gives no start time")
    return NightTimes(
        _utc(start), _utc(end), "UTC",
        "recorded by an older sleepstream: the times are the recording machine's clock "
        "(for a replay, when it was replayed)",
    )  # fmt: skip


def _utc(t: dt.datetime | None) -> dt.datetime | None:
    if t is None or t.tzinfo is None:
        return t
    return t.astimezone(dt.UTC)
