"""The aiohttp application of the live view: pages, JSON, Server-Sent Events, report.

Routes (GET and HEAD only; anything else is 405):

=============================  ==============================================================
``/``                          overview page: every bed of the run
``/d/<device>``                device page: hypnogram, hypnodensity, stage, flags, signal
``/d/<device>/report``         the morning report of the device's last night (once it ended)
``/d/<device>/report.png``     its figure
``/api/devices``               JSON: every device's summary
``/api/d/<device>``            JSON: one device's snapshot
``/api/stream``                SSE: overview stream (``snapshot``, ``epoch``, ``revision``,
                               ``status``)
``/api/d/<device>/stream``     SSE: device stream (the same plus ``signal``)
``/static/...``                the page's own CSS and JavaScript (shipped in the package)
``/healthz``                   ``ok`` (no token needed; tells nothing about the night)
=============================  ==============================================================

Security: a token (when configured) is required on every other route, as
``Authorization: Bearer <token>`` or the ``HttpOnly; SameSite=Strict`` cookie that a
``?token=<token>`` link sets (the link then redirects to itself without the token). On
loopback without a token, requests must name a loopback host (or the bound address) in
``Host``, so a web page cannot reach the view through DNS rebinding. No CORS headers are
ever sent (same-origin only); a strict Content-Security-Policy allows only the page's own
files.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from sleepstream.web.hub import LiveView

#: An aiohttp request handler (what a middleware wraps and a route calls).
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

log = logging.getLogger(__name__)
VIEW_KEY: web.AppKey[LiveView] = web.AppKey("live_view")
COOKIE = "sleepstream_web"
_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
_PUBLIC = {"/healthz"}
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}

#: The morning report (``report.html``, self-contained): inline CSS and SVG figures
#: allowed, still no script, no request to anywhere but this server.
_REPORT_CSP = (
    "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def static_dir() -> Any:
    """The package folder of the page assets (HTML, CSS, JavaScript)."""
    return resources.files("sleepstream.web") / "static"


def make_app(view: LiveView) -> web.Application:
    """The aiohttp application serving ``view``."""
    app = web.Application(middlewares=[_guard])
    app[VIEW_KEY] = view
    app.on_response_prepare.append(_add_headers)
    r = app.router
    r.add_get("/", _page("overview.html"))
    r.add_get("/d/{device}", _device_page)
    r.add_get("/d/{device}/report", _report)
    r.add_get("/d/{device}/report.png", _report_png)
    r.add_get("/api/devices", _devices)
    r.add_get("/api/d/{device}", _snapshot)
    r.add_get("/api/stream", _stream)
    r.add_get("/api/d/{device}/stream", _stream)
    r.add_get("/healthz", _health)
    r.add_static("/static/", str(static_dir()), show_index=False, follow_symlinks=False)
    return app


# -- middleware -------------------------------------------------------------------------
def _host_allowed(request: web.Request, view: LiveView) -> bool:
    host = (request.host or "").strip()
    if host.startswith("["):  # [::1]:8088
        name = host[1 : host.find("]")] if "]" in host else host
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name in _LOOPBACK_NAMES or name == view.config.host


def _same(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a.encode(), b.encode())


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    view: LiveView = request.app[VIEW_KEY]
    token = view.config.token
    if request.path in _PUBLIC:
        return await handler(request)
    if token is None:
        if not _host_allowed(request, view):
            raise web.HTTPForbidden(text="unexpected Host header (the view answers loopback names)")
        return await handler(request)
    auth = request.headers.get("Authorization", "")
    bearer = auth[7:].strip() if auth.lower().startswith("bearer ") else None
    if _same(bearer, token) or _same(request.cookies.get(COOKIE), token):
        return await handler(request)
    if _same(request.query.get("token"), token):
        clean = request.rel_url.with_query(
            [(k, v) for k, v in request.query.items() if k != "token"]
        )
        response = web.HTTPSeeOther(str(clean))
        response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/")
        raise response
    raise web.HTTPUnauthorized(
        text="sleepstream live view: a token is required (open the link with ?token=...)",
        headers={"WWW-Authenticate": 'Bearer realm="sleepstream"'},
    )


async def _add_headers(request: web.Request, response: web.StreamResponse) -> None:
    for key, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(key, value)
    if request.path.startswith("/api/") or request.path.startswith("/d/"):
        response.headers.setdefault("Cache-Control", "no-store")


# -- handlers ----------------------------------------------------------------------------
def _device(request: web.Request) -> str:
    name = request.match_info["device"]
    if name not in request.app[VIEW_KEY].views:
        raise web.HTTPNotFound(text=f"no device {name!r} in this run")
    return name


def _page(name: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        html = (static_dir() / name).read_text(encoding="utf-8")
        return web.Response(text=html, content_type="text/html")

    return handler


async def _device_page(request: web.Request) -> web.StreamResponse:
    _device(request)
    return await _page("device.html")(request)


def _json(data: Any) -> web.Response:
    return web.Response(
        text=json.dumps(data, separators=(",", ":"), allow_nan=False),
        content_type="application/json",
    )


async def _devices(request: web.Request) -> web.StreamResponse:
    return _json(request.app[VIEW_KEY].overview())


async def _snapshot(request: web.Request) -> web.StreamResponse:
    return _json(request.app[VIEW_KEY].snapshot(_device(request)))


async def _health(request: web.Request) -> web.StreamResponse:
    return web.Response(text="ok\n")


async def _report(request: web.Request) -> web.StreamResponse:
    from sleepstream.web.report import report_response

    view = request.app[VIEW_KEY]
    response = await report_response(view, _device(request))
    # the morning report is one self-contained file: its CSS and figures are inline
    response.headers["Content-Security-Policy"] = _REPORT_CSP
    return response


async def _report_png(request: web.Request) -> web.StreamResponse:
    from sleepstream.web.report import report_png

    return await report_png(request.app[VIEW_KEY], _device(request))


async def _stream(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: a ``snapshot`` first, then every change until disconnect."""
    from sleepstream.web.hub import DEVICE, OVERVIEW, sse_frame

    view: LiveView = request.app[VIEW_KEY]
    device = _device(request) if "device" in request.match_info else None
    sub = view.subscribe(DEVICE if device else OVERVIEW, device)
    if sub is None:
        raise web.HTTPServiceUnavailable(
            text="too many live connections", headers={"Retry-After": "10"}
        )
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
    )
    try:
        await resp.prepare(request)
        first = view.snapshot(device) if device else view.overview()
        await resp.write(b"retry: 2000\n" + sse_frame("snapshot", first))
        heartbeat = view.config.heartbeat_s
        while not view.closing.is_set():
            try:
                frame = await asyncio.wait_for(sub.queue.get(), heartbeat)
            except TimeoutError:
                frame = b": keep-alive\n\n"
            if frame is None:
                break
            await resp.write(frame)
    except ConnectionResetError:  # the browser went away (tab closed, network): normal
        log.debug("live view: a %s push client disconnected", sub.kind)
    finally:
        view.unsubscribe(sub)
    return resp
