"""The stdout sink: readable lines and JSON lines."""

import asyncio
import io
import json

import numpy as np

from sleepstream.sinks.stdout import StdoutSink
from sleepstream.types import UNSCORED, Epoch, StagePrediction


def _epoch(i: int, reasons=()) -> Epoch:
    return Epoch(i, 30.0 * i, "2026-01-01T23:00:30Z", np.zeros(3000, np.float32),
                 unscored_reasons=reasons)  # fmt: skip


def test_stdout_sink_prints_one_readable_line_per_epoch():
    """A line names device, epoch, stage and confidence; unscored lines give the reasons."""
    out = io.StringIO()

    async def go():
        async with StdoutSink(device="bed1", session="s", stream=out) as sink:
            p = np.array([0.1, 0.1, 0.7, 0.05, 0.05])
            await sink.publish(_epoch(3), StagePrediction(3, 2, p, 0.7, "m"))
            await sink.publish(
                _epoch(4, ("gap",)),
                StagePrediction(4, UNSCORED, np.zeros(5), 0.0, "m", reasons=("gap",)),
            )

    asyncio.run(go())
    first, second = out.getvalue().splitlines()
    assert "bed1" in first and "#3" in first and "N2" in first and "0.70" in first
    assert "unscored" in second and "gap" in second


def test_stdout_sink_json_lines_parse_back():
    """With json=True every line is one stage event."""
    out = io.StringIO()

    async def go():
        async with StdoutSink(device="bed1", session="s", json=True, stream=out) as sink:
            p = np.array([0.6, 0.1, 0.1, 0.1, 0.1])
            await sink.publish(_epoch(0), StagePrediction(0, 0, p, 0.6, "m"))

    asyncio.run(go())
    event = json.loads(out.getvalue())
    assert event["stage"] == "W" and event["event_id"] == "bed1:s:0"
