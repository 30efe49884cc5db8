"""Stdout sink: one readable line per epoch, or JSON lines (``json=True``).

Revised verdicts (``--lookahead K``) are printed too, marked ``(revised, +K epochs)``
(or ``"revised": true`` in JSON), right after the causal line of the epoch that made
them.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from sleepstream.sinks.base import BaseSink, EventContext, build_event, format_line
from sleepstream.types import Epoch, StagePrediction


class StdoutSink(BaseSink):
    """Prints each stage event as it comes.

    Parameters
    ----------
    device, session : str
        Used to build the event (same fields as the MQTT event).
    json : bool
        JSON lines instead of readable lines.
    stream : text file, optional
        Defaults to ``sys.stdout`` (looked up at print time).
    """

    def __init__(
        self, *, device: str, session: str, json: bool = False, stream: TextIO | None = None
    ) -> None:
        self.device = device
        self.session = session
        self.json = json
        self.stream = stream
        self.count = 0

    async def __aenter__(self) -> StdoutSink:
        return self

    async def __aexit__(self, *exc: object) -> None:
        out = self.stream or sys.stdout
        out.flush()

    async def publish(self, epoch: Epoch, prediction: StagePrediction) -> None:
        self.emit(build_event(EventContext(self.device, self.session), epoch, prediction))

    async def publish_revised(
        self, epoch: Epoch, prediction: StagePrediction, lookahead: int
    ) -> None:
        self.emit(
            build_event(EventContext(self.device, self.session, lookahead), epoch, prediction)
        )

    def emit(self, event: dict[str, Any]) -> None:
        out = self.stream or sys.stdout
        text = json.dumps(event, separators=(",", ":")) if self.json else format_line(event)
        out.write(text + "\n")
        out.flush()
        self.count += 1
