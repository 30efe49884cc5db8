"""The morning report behind the live view's link, once a device's night has ended.

The night recorder keeps each night under ``<state_dir>/nights/<device>/<UTC stamp>/``
(see :mod:`sleepstream.sinks.recorder`). The link serves that folder's ``report.html``
when it exists (the self-contained report), else its ``report.png`` in a small page;
when neither exists yet it writes them once with ``sleepstream report``'s own code, in a
thread, then serves them. Nothing here is reachable before the night has ended.
"""

from __future__ import annotations

import asyncio
import html
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from sleepstream.web.state import ENDED

if TYPE_CHECKING:
    from sleepstream.web.hub import LiveView

log = logging.getLogger(__name__)
_locks: dict[str, asyncio.Lock] = {}


def latest_night_dir(state_dir: Path, device: str) -> Path | None:
    """The newest night folder of ``device`` (holding ``night.json``), or None."""
    base = Path(state_dir) / "nights" / device.replace("/", "_").replace("\\", "_")
    if not base.is_dir():
        return None
    nights = [p for p in base.iterdir() if (p / "night.json").is_file()]
    return max(nights, key=lambda p: p.name) if nights else None


def _write_report(night: Path) -> None:
    """Write the night's morning report (``report.png`` and ``report.html``)."""
    from sleepstream.report.build import write_morning_report

    write_morning_report(night)


async def report_response(view: LiveView, device: str) -> web.StreamResponse:
    """The report of ``device``'s last night (HTTP 409 while it is still running)."""
    state = view.views[device]
    if state.status != ENDED:
        raise web.HTTPConflict(text=f"{device}: the night is still running; no report yet")
    if view.state_dir is None:
        raise web.HTTPNotFound(text=f"{device}: this run keeps no nights (no state directory)")
    night = latest_night_dir(view.state_dir, device)
    if night is None:
        raise web.HTTPNotFound(text=f"{device}: no recorded night (was --no-record given?)")
    lock = _locks.setdefault(str(night), asyncio.Lock())
    async with lock:
        if not (night / "report.html").is_file() and not (night / "report.png").is_file():
            try:
                await asyncio.to_thread(_write_report, night)
            except Exception as exc:  # the report code raises typed errors; show any of them
                log.error("%s: cannot write the morning report of %s: %s", device, night, exc)
                raise web.HTTPInternalServerError(text=f"{device}: report failed: {exc}") from None
    if (night / "report.html").is_file():
        return web.FileResponse(night / "report.html")
    title = html.escape(f"{device}: morning report")
    page = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f'<title>{title}</title><link rel=stylesheet href="/static/style.css"></head>'
        f'<body><main class=report><h1>{title}</h1><p><a href="/d/{html.escape(device)}">'
        "back to the live view</a></p>"
        f'<img alt="{title}" src="/d/{html.escape(device)}/report.png"></main></body></html>'
    )
    return web.Response(text=page, content_type="text/html")


async def report_png(view: LiveView, device: str) -> web.StreamResponse:
    """The ``report.png`` of the device's last night, once written."""
    night = latest_night_dir(view.state_dir, device) if view.state_dir else None
    if view.views[device].status != ENDED or night is None or not (night / "report.png").is_file():
        raise web.HTTPNotFound(text=f"{device}: no report figure yet")
    return web.FileResponse(night / "report.png")
