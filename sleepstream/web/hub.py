"""The live view: one web server per daemon, one :class:`LiveSink` per device.

:class:`LiveView` is the daemon-wide resource (an async context manager): it holds a
:class:`~sleepstream.web.state.DeviceView` per device, serves the pages with aiohttp
from the daemon's own event loop, and pushes every change to the connected browsers
with Server-Sent Events. :meth:`LiveView.sink` hands out the per-device sink the
pipeline publishes to::

    async with LiveView(WebConfig(port=8088), devices=["bed1"]) as view:
        sink = view.sink("bed1", session="1a2b3c4d")
        await sink.publish(epoch, prediction)       # -> every page showing bed1

Nothing a browser sends changes the daemon: the server answers GET and HEAD only.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sleepstream.sinks.base import BaseSink, EventContext, build_event
from sleepstream.types import MODEL_FS, Epoch, StagePrediction
from sleepstream.web.config import WebConfig
from sleepstream.web.state import ENDED, DeviceView, epoch_record, epoch_signal_uv, revision_record

log = logging.getLogger(__name__)

#: Push stream kinds: the overview gets every device without the signal traces.
OVERVIEW, DEVICE = "overview", "device"


@dataclass(eq=False)
class Subscriber:
    """One open push connection: what it wants and its bounded queue of SSE frames."""

    kind: str
    device: str | None
    queue: asyncio.Queue[bytes | None]
    dropped: bool = False

    def wants(self, device: str, event: str) -> bool:
        if self.kind == OVERVIEW:
            return event != "signal"
        return device == self.device


def sse_frame(event: str, data: Any, seq: int | None = None) -> bytes:
    """One Server-Sent Events frame (``id``, ``event``, one ``data`` line of JSON)."""
    head = f"id: {seq}\n" if seq is not None else ""
    body = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return f"{head}event: {event}\ndata: {body}\n\n".encode()


@dataclass(eq=False)
class LiveView:
    """The live web view of one daemon.

    Parameters
    ----------
    config : WebConfig
    devices : sequence of str
        Every device (bed) of the run, in the order the overview shows them.
    state_dir : Path, optional
        The daemon's state directory; the morning report of a device is looked up under
        ``<state_dir>/nights/<device>/`` (see :mod:`sleepstream.web.report`).
    """

    config: WebConfig
    devices: Sequence[str]
    state_dir: Path | None = None
    views: dict[str, DeviceView] = field(init=False)
    subscribers: set[Subscriber] = field(init=False, default_factory=set)
    port: int | None = field(init=False, default=None)
    _seq: int = field(init=False, default=0)
    _runner: Any = field(init=False, default=None)
    _closing: asyncio.Event = field(init=False, default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.views = {d: DeviceView(d, max_epochs=self.config.max_epochs) for d in self.devices}

    # -- lifecycle -------------------------------------------------------------------
    async def __aenter__(self) -> LiveView:
        from aiohttp import web

        from sleepstream.errors import UsageError
        from sleepstream.web.app import make_app

        cfg = self.config
        self._runner = web.AppRunner(make_app(self), access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, cfg.host, cfg.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise UsageError(
                f"--web {cfg.host}:{cfg.port}: cannot listen: {exc.strerror}"
            ) from None
        addresses = self._runner.addresses  # the bound sockets' names (port 0: the real one)
        self.port = int(addresses[0][1]) if addresses else cfg.port
        log.info("live view on %s", self.url)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing.set()
        for sub in list(self.subscribers):
            self._close(sub)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        host = self.config.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/"

    @property
    def closing(self) -> asyncio.Event:
        return self._closing

    # -- per-device sinks --------------------------------------------------------------
    def sink(self, device: str, session: str = "") -> LiveSink:
        """The sink of one device (a device of ``devices``)."""
        if device not in self.views:
            raise KeyError(f"device {device!r} is not one of {list(self.views)}")
        self.views[device].session = session
        return LiveSink(self, device, session)

    # -- push --------------------------------------------------------------------------
    def subscribe(self, kind: str, device: str | None) -> Subscriber | None:
        """Register a push connection; None when ``max_clients`` are already open."""
        if len(self.subscribers) >= self.config.max_clients:
            return None
        sub = Subscriber(kind, device, asyncio.Queue(self.config.client_queue))
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def broadcast(self, device: str, event: str, data: Any) -> None:
        """Queue one frame for every connection that wants it (never blocks).

        ``data`` may be a zero-argument callable: it is then called (and the frame
        encoded) only when some connection wants the frame.
        """
        self._seq += 1
        targets = [s for s in self.subscribers if s.wants(device, event) and not s.dropped]
        if not targets:
            return
        frame = sse_frame(event, data() if callable(data) else data, self._seq)
        for sub in targets:
            try:
                sub.queue.put_nowait(frame)
            except asyncio.QueueFull:
                log.warning("live view: a %s client fell behind; disconnecting it", sub.kind)
                self._close(sub)

    def _close(self, sub: Subscriber) -> None:
        """End a connection: its handler sees ``None`` and returns."""
        sub.dropped = True
        while not sub.queue.empty():
            sub.queue.get_nowait()
        sub.queue.put_nowait(None)

    # -- read side (the HTTP handlers) -------------------------------------------------
    def overview(self) -> dict[str, Any]:
        return {"devices": [v.summary() for v in self.views.values()]}

    def snapshot(self, device: str) -> dict[str, Any]:
        return self.views[device].snapshot()

    def device_names(self) -> Iterable[str]:
        return self.views.keys()


class LiveSink(BaseSink):
    """The live view's sink for one device (from :meth:`LiveView.sink`).

    It builds the same stage event the MQTT sink publishes, keeps it in the device's
    :class:`~sleepstream.web.state.DeviceView` and pushes it to the browsers.
    """

    def __init__(self, view: LiveView, device: str, session: str = "") -> None:
        self.view = view
        self.device = device
        self.session = session
        self.state = view.views[device]

    async def __aexit__(self, *exc: object) -> None:
        await self.end_of_stream()

    async def publish(self, epoch: Epoch, prediction: StagePrediction) -> None:
        """Show one epoch's verdict and its filtered signal."""
        event = build_event(EventContext(self.device, self.session), epoch, prediction)
        rec = epoch_record(event, epoch.gap_fraction)
        first = self.state.status != "live"
        self.state.add(rec)
        if first:
            self.view.broadcast(self.device, "status", self._status())
        self.view.broadcast(self.device, "epoch", {"device": self.device, **rec})
        self.state.set_signal(epoch.index, epoch_signal_uv(epoch), MODEL_FS)
        self.view.broadcast(self.device, "signal", self.state.signal_message)

    async def publish_revised(
        self, epoch: Epoch, prediction: StagePrediction, lookahead: int
    ) -> None:
        """Show a revised stage for an earlier epoch (``--lookahead K``)."""
        event = build_event(EventContext(self.device, self.session, lookahead), epoch, prediction)
        rev = revision_record(event)
        if self.state.revise(rev):
            self.view.broadcast(self.device, "revision", {"device": self.device, **rev})

    async def end_of_stream(self) -> None:
        """The device's source ended: the night is over; offer the morning report."""
        if self.state.status == ENDED:
            return
        self.state.status = ENDED
        self.state.report_url = f"/d/{self.device}/report"
        self.view.broadcast(self.device, "status", self._status())

    def _status(self) -> dict[str, Any]:
        s = self.state
        return {"device": self.device, "status": s.status, "report_url": s.report_url}
