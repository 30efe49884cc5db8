"""Stdout sink: one readable line per epoch, or JSON lines (``json=True``).

Revised verdicts (``--lookahead K``) are printed too, marked ``(revised, +K epochs)``
(or ``"revised": true`` in JSON), right after the causal line of the epoch that made
them. In text mode a sink may print a ``#`` header line for its device when it opens,
and, for a source that knows its ground truth (the synthetic night), the true stage
beside the scored one (``true N2``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TextIO

from sleepstream.sinks.base import BaseSink, EventContext, build_event, format_line
from sleepstream.types import Epoch, StagePrediction, stage_name


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
    header : str, optional
        Printed (text mode) as ``# <header>`` when the sink opens.
    truth : callable, optional
        ``truth(stream_time_s) -> stage code``: the true stage of the epoch starting then
        (a synthetic source's ground truth), printed as ``true <stage>`` in text mode.
    """

    def __init__(
        self,
        *,
        device: str,
        session: str,
        json: bool = False,
        stream: TextIO | None = None,
        header: str | None = None,
        truth: Callable[[float], int] | None = None,
    ) -> None:
        self.device = device
        self.session = session
        self.json = json
        self.stream = stream
        self.header = header
        self.truth = truth
        self.count = 0

    async def __aenter__(self) -> StdoutSink:
        if self.header and not self.json:
            self.write(f"# {self.header}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        out = self.stream or sys.stdout
        out.flush()

    async def publish(self, epoch: Epoch, prediction: StagePrediction) -> None:
        event = build_event(EventContext(self.device, self.session), epoch, prediction)
        self.emit(event, epoch)

    async def publish_revised(
        self, epoch: Epoch, prediction: StagePrediction, lookahead: int
    ) -> None:
        event = build_event(EventContext(self.device, self.session, lookahead), epoch, prediction)
        self.emit(event, epoch)

    def emit(self, event: dict[str, Any], epoch: Epoch | None = None) -> None:
        if self.json:
            self.write(json.dumps(event, separators=(",", ":")))
        else:
            line = format_line(event)
            if self.truth is not None and epoch is not None:
                line += f"  true {stage_name(self.truth(epoch.start_time))}"
            self.write(line)
        self.count += 1

    def write(self, line: str) -> None:
        out = self.stream or sys.stdout
        out.write(line + "\n")
        out.flush()
