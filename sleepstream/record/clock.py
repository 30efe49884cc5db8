"""The night's own clock: stream seconds -> the recording's date and time, zone honest.

A night is dated by the recording, not by the machine that replays it:

- a **file** source states the wall-clock time of its stream time 0
  (``Source.start_datetime``). EDF headers hold a *local* date and time with no time
  zone, so the datetime is naive and every time the recorder writes stays naive: ISO
  8601 without a zone designator (``1989-04-24T16:13:00.000``), with ``time_zone: null``
  and a ``time_note`` in ``night.json`` that says the zone is unknown;
- a **live** source has no start of its own (``None``): the night is dated by this
  machine's clock, in UTC (``...Z``), at the first sample;
- an aware datetime (a format that states its zone) is kept as UTC.

EDF headers (the raw segments and ``stages.edf``) hold local time by the EDF
specification: a naive start is written as is; a UTC start is written in this
machine's local time, and ``night.json`` says which (``edf_time``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

NOTE_UNKNOWN_ZONE = (
    "times are the recording's local clock time as its file states it; the file does not "
    "state a time zone (EDF has none), so no UTC offset is given"
)
NOTE_UTC = "times are UTC"


@dataclass(frozen=True)
class NightClock:
    """Dates stream time.

    Attributes
    ----------
    start : datetime
        Wall-clock time of the night's first sample: naive (recording's local time,
        zone unknown) or aware UTC.
    base : str
        ``"recording"`` (the source stated its start) or ``"system"`` (this machine's
        clock at the first sample).
    """

    start: dt.datetime
    base: str

    @classmethod
    def for_night(
        cls,
        source_start: dt.datetime | None,
        first_sample_s: float,
        now: dt.datetime,
    ) -> NightClock:
        """The clock of a night whose first sample is at stream time ``first_sample_s``.

        Parameters
        ----------
        source_start : datetime or None
            The source's ``start_datetime`` (time of stream time 0); None for live.
        first_sample_s : float
            Stream time of the first sample, s (file sources: seconds into the file).
        now : datetime
            This machine's clock (aware) when the first sample arrived.
        """
        if source_start is None:
            return cls(now.astimezone(dt.UTC), "system")
        start = source_start + dt.timedelta(seconds=first_sample_s)
        if start.tzinfo is not None:
            start = start.astimezone(dt.UTC)
        return cls(start, "recording")

    @property
    def zone_known(self) -> bool:
        return self.start.tzinfo is not None

    def at(self, seconds: float) -> dt.datetime:
        """The datetime ``seconds`` after the night's first sample."""
        return self.start + dt.timedelta(seconds=seconds)

    def iso(self, seconds: float = 0.0) -> str:
        """ISO-8601 of :meth:`at` (ms): ``...Z`` in UTC, no designator when the zone is unknown."""
        return iso(self.at(seconds))

    def edf_start(self, seconds: float = 0.0) -> dt.datetime:
        """Naive local datetime for an EDF header (EDF stores local time)."""
        t = self.at(seconds)
        return t if t.tzinfo is None else t.astimezone().replace(tzinfo=None)

    def manifest_fields(self) -> dict[str, Any]:
        """``start``, ``start_utc``, ``time_zone``, ``time_base``, ``time_note``, ``edf_time``."""
        edf_time = (
            "the recording's local time as its file states it (zone unknown)"
            if not self.zone_known
            else "local time of the recording machine, UTC"
            + dt.datetime.now().astimezone().strftime("%z")
        )
        return {
            "start": self.iso(),
            "start_utc": self.iso() if self.zone_known else None,
            "time_zone": "UTC" if self.zone_known else None,
            "time_base": self.base,
            "time_note": NOTE_UTC if self.zone_known else NOTE_UNKNOWN_ZONE,
            "edf_time": edf_time,
        }


def iso(t: dt.datetime) -> str:
    """ISO-8601 with milliseconds; UTC as ``Z``; naive stays naive."""
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: Any) -> dt.datetime | None:
    """A datetime written by :func:`iso` (``Z`` accepted); None if absent or unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
