"""The stage event: its clock fields (schema /2) and their agreement with the JSON schema."""

from __future__ import annotations

import jsonschema
import numpy as np
import pytest

from sleepstream.sinks.base import EVENT_SCHEMA, EventContext, build_event, event_clock
from sleepstream.types import Epoch, StagePrediction


def _event(start: str) -> dict:
    probs = np.array([0.1, 0.1, 0.6, 0.1, 0.1])
    epoch = Epoch(4, 120.0, start, np.zeros(3000, np.float32))
    return build_event(EventContext("bed1", "s1"), epoch, StagePrediction(4, 2, probs, 0.6, "m"))


@pytest.mark.parametrize(
    ("start", "epoch_start", "zone"),
    [
        ("1989-04-24T16:15:00.000", "1989-04-24T16:15:00.000", None),  # EDF: zone unknown
        ("2026-03-01T22:00:00.000+00:00", "2026-03-01T22:00:00.000Z", "UTC"),  # live
        ("2026-03-01T23:00:00.000+01:00", "2026-03-01T22:00:00.000Z", "UTC"),  # a known zone
    ],
)
def test_event_says_utc_or_that_the_zone_is_unknown(start, epoch_start, zone, stage_schema):
    """R18: the event's epoch_start is UTC with Z (time_zone "UTC"), or the recording's
    local time without an offset (time_zone null), as hypnogram.csv writes it; never a
    made-up +00:00; every form passes the JSON schema."""
    event = _event(start)
    assert event["schema"] == EVENT_SCHEMA == "sleepstream.stage_event/2"
    assert (event["epoch_start"], event["time_zone"]) == (epoch_start, zone)
    assert event_clock(start) == (epoch_start, zone)
    jsonschema.Draft202012Validator(stage_schema).validate(event)


def test_schema_refuses_an_offset_the_time_zone_contradicts(stage_schema):
    """The schema ties epoch_start to time_zone: null with an offset, or "UTC" without
    one, is invalid; time_zone is required in /2 and is "UTC" or null."""
    v = jsonschema.Draft202012Validator(stage_schema)
    local, utc = _event("1989-04-24T16:15:00.000"), _event("2026-03-01T22:00:00+00:00")
    assert v.is_valid(local) and v.is_valid(utc)
    for bad in (
        {**local, "epoch_start": "1989-04-24T16:15:00.000Z"},
        {**local, "epoch_start": "1989-04-24T16:15:00.000+00:00"},
        {**utc, "epoch_start": "2026-03-01T22:00:00.000"},
        {**utc, "epoch_start": "2026-03-01T23:00:00.000+01:00"},
        {**utc, "time_zone": "Europe/Paris"},
        {k: val for k, val in utc.items() if k != "time_zone"},
    ):
        assert not v.is_valid(bad), bad
