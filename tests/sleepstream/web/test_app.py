"""The live view's server: routes, push stream, token, host guard, headers, report link.

Every test runs the real aiohttp server on 127.0.0.1 (port 0) and talks HTTP to it.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sleepstream.errors import UsageError
from sleepstream.types import UNSCORED
from sleepstream.web import LiveView, WebConfig, parse_web_address, read_token, web_config
from sleepstream.web.app import static_dir

pytestmark = pytest.mark.network


def serve(
    scenario: Callable[[LiveView, aiohttp.ClientSession], Awaitable[Any]],
    config: WebConfig | None = None,
    devices: tuple[str, ...] = ("bed1", "bed2"),
    state_dir: Path | None = None,
) -> Any:
    async def main() -> Any:
        view = LiveView(config or WebConfig(port=0), devices, state_dir)
        jar = aiohttp.CookieJar(unsafe=True)  # keep cookies of an IP-address host
        async with view, aiohttp.ClientSession(base_url=view.url, cookie_jar=jar) as http:
            return await scenario(view, http)

    return asyncio.run(asyncio.wait_for(main(), 30))


async def read_frames(resp: aiohttp.ClientResponse, n: int) -> list[tuple[str, Any]]:
    """The next ``n`` SSE frames as ``(event, data)``."""
    out: list[tuple[str, Any]] = []
    event, data = "message", None
    while len(out) < n:
        line = (await resp.content.readline()).decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data = json.loads(line[6:])
        elif line == "" and data is not None:
            out.append((event, data))
            event, data = "message", None
    return out


# -- configuration --------------------------------------------------------------------
def test_web_address_defaults_to_loopback():
    """``--web 8088`` binds 127.0.0.1; an address may be given, IPv6 in brackets."""
    assert parse_web_address("8088") == ("127.0.0.1", 8088)
    assert parse_web_address("0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert parse_web_address("[::1]:9000") == ("::1", 9000)
    for bad in ("", "host:", "8088:host", "70000", "a b:1"):
        with pytest.raises(UsageError, match="--web"):
            parse_web_address(bad)


def test_beyond_loopback_needs_a_token(tmp_path, monkeypatch, web):
    """0.0.0.0 without a token is refused; a token file or the environment enables it."""
    TOKEN = web.TOKEN
    monkeypatch.delenv("SLEEPSTREAM_WEB_TOKEN", raising=False)
    with pytest.raises(UsageError, match="needs a token"):
        web_config("0.0.0.0:8088")
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    assert web_config("0.0.0.0:8088", token_file=str(token_file)).token == TOKEN
    monkeypatch.setenv("SLEEPSTREAM_WEB_TOKEN", TOKEN)
    assert read_token(None) == TOKEN
    with pytest.raises(UsageError, match="at least 16"):
        WebConfig(host="0.0.0.0", token="short")
    (tmp_path / "empty").write_text("")
    with pytest.raises(UsageError, match="empty"):
        read_token(str(tmp_path / "empty"))
    with pytest.raises(UsageError, match="no-such"):
        read_token(str(tmp_path / "no-such"))


def test_server_listens_on_loopback_only():
    """The default config binds 127.0.0.1 and nothing else."""

    async def scenario(view, http):
        return view._runner.addresses

    addresses = serve(scenario)
    assert [a[0] for a in addresses] == ["127.0.0.1"]


# -- content -------------------------------------------------------------------------
def test_snapshot_holds_every_published_epoch_and_revision(web):
    """Published epochs (and a revision) are in the device snapshot and the overview."""
    epoch = web.epoch

    async def scenario(view, http):
        sink = view.sink("bed1", session="s1")
        for i, stage in enumerate([0, 1, 2, UNSCORED, 4]):
            await sink.publish(*epoch(i, stage, ("gap",) if i == 2 else (), 0.2 * (i == 2)))
        await sink.publish_revised(*epoch(1, 2), 1)
        snap = await (await http.get("/api/d/bed1")).json()
        over = await (await http.get("/api/devices")).json()
        return snap, over

    snap, over = serve(scenario)
    assert [r["stage"] for r in snap["epochs"]] == ["W", "N1", "N2", "unscored", "REM"]
    assert snap["epochs"][1]["revised"]["stage"] == "N2"
    assert snap["epochs"][2]["quality"] == ["gap"]
    assert snap["epochs"][2]["gap_fraction"] == pytest.approx(0.2)
    assert snap["epochs"][3]["reasons"] == ["flat"]
    assert len(snap["signal"]["uv"]) == 3000
    assert max(snap["signal"]["uv"]) == pytest.approx(20, abs=0.1)
    bed1, bed2 = over["devices"]
    assert (bed1["status"], bed2["status"]) == ("live", "waiting")
    assert [s[1] for s in bed1["stages"]] == ["W", "N2", "N2", "unscored", "REM"]


def test_stream_pushes_snapshot_then_each_change(web):
    """SSE: a snapshot first, then epoch, signal, revision and status frames, in order."""
    epoch = web.epoch

    async def scenario(view, http):
        sink = view.sink("bed1", session="s1")
        await sink.publish(*epoch(0, 2))
        resp = await http.get("/api/d/bed1/stream")
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        first = await read_frames(resp, 1)
        await sink.publish(*epoch(1, 3))
        await sink.publish_revised(*epoch(0, 1), 1)
        await sink.end_of_stream()
        more = await read_frames(resp, 4)
        other = await http.get("/api/stream")
        over = await read_frames(other, 1)
        resp.close()
        other.close()
        return first + more, over

    frames, over = serve(scenario)
    assert [f[0] for f in frames] == ["snapshot", "epoch", "signal", "revision", "status"]
    assert [r["stage"] for r in frames[0][1]["epochs"]] == ["N2"]
    assert frames[1][1]["stage"] == "N3" and frames[1][1]["epoch_index"] == 1
    assert frames[3][1] == {"device": "bed1", "epoch_index": 0, "stage": "N1",
                            "confidence": 0.8, "probabilities": [0.05, 0.8, 0.05, 0.05, 0.05],
                            "lookahead": 1}  # fmt: skip
    assert frames[4][1]["status"] == "ended"
    assert frames[4][1]["report_url"] == "/d/bed1/report"
    assert over[0][0] == "snapshot" and len(over[0][1]["devices"]) == 2


def test_a_browser_that_goes_away_ends_its_stream_quietly(web, caplog):
    """A push client that closes its connection (tab closed) is unsubscribed at the next
    frame, with no error and no traceback in the daemon's log."""
    import logging
    import socket

    epoch = web.epoch
    caplog.set_level(logging.DEBUG)

    async def scenario(view, http):
        sink = view.sink("bed1", session="s1")
        reader, writer = await asyncio.open_connection("127.0.0.1", view.port)
        writer.write(b"GET /api/d/bed1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        assert b"200" in await reader.readline()
        while len(view.subscribers) != 1:
            await asyncio.sleep(0.01)
        # an abortive close (RST), as a browser killed mid-stream does
        writer.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
        )
        writer.close()
        for i in range(200):  # frames until the server has noticed
            await sink.publish(*epoch(i, 2))
            await asyncio.sleep(0.02)
            if not view.subscribers:
                return i
        return None

    assert serve(scenario) is not None
    bad = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert bad == []


def test_unknown_device_is_404_and_pages_are_html():
    """Pages and assets are served; an unknown device is 404 everywhere."""

    async def scenario(view, http):
        codes = {}
        for path in ("/", "/d/bed1", "/d/nope", "/api/d/nope", "/api/d/nope/stream",
                     "/static/common.js", "/static/style.css", "/static/../hub.py"):  # fmt: skip
            async with http.get(path) as r:
                codes[path] = (r.status, r.content_type)
        return codes

    codes = serve(scenario)
    assert codes["/"] == (200, "text/html")
    assert codes["/d/bed1"] == (200, "text/html")
    assert codes["/static/common.js"][0] == 200
    assert codes["/static/style.css"] == (200, "text/css")
    for path in ("/d/nope", "/api/d/nope", "/api/d/nope/stream", "/static/../hub.py"):
        assert codes[path][0] == 404, path


# -- security ------------------------------------------------------------------------
def test_read_only_no_cors_strict_headers():
    """Only GET/HEAD; no CORS header even for a foreign Origin; CSP allows only 'self'."""

    async def scenario(view, http):
        out = {}
        for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
            async with http.request(method, "/api/devices") as r:
                out[method] = r.status
        async with http.get("/api/devices", headers={"Origin": "http://evil.example"}) as r:
            out["headers"] = dict(r.headers)
        return out

    out = serve(scenario)
    assert all(out[m] == 405 for m in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"))
    headers = out["headers"]
    assert not any(h.lower().startswith("access-control-") for h in headers)
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-store"


def test_loopback_view_refuses_foreign_host_names():
    """Without a token, a request naming another host (DNS rebinding) is refused."""

    async def scenario(view, http):
        out = {}
        for host in ("evil.example", f"evil.example:{view.port}", f"localhost:{view.port}",
                     f"127.0.0.1:{view.port}", f"[::1]:{view.port}"):  # fmt: skip
            async with http.get("/api/devices", headers={"Host": host}) as r:
                out[host] = r.status
        return out, view.port

    out, port = serve(scenario)
    assert out["evil.example"] == 403 and out[f"evil.example:{port}"] == 403
    assert out[f"localhost:{port}"] == out[f"127.0.0.1:{port}"] == out[f"[::1]:{port}"] == 200


def test_token_is_required_on_every_route_but_health(web):
    """No token: 401; Bearer works; ?token= sets an HttpOnly SameSite cookie and redirects."""
    TOKEN = web.TOKEN

    async def scenario(view, http):
        out = {}
        for path in ("/", "/d/bed1", "/api/devices", "/api/stream", "/static/common.js"):
            async with http.get(path) as r:
                out[path] = r.status
        async with http.get("/healthz") as r:
            out["health"] = r.status
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        async with http.get("/api/devices", headers=bearer) as r:
            out["bearer"] = r.status
        async with http.get("/api/devices", headers={"Authorization": "Bearer wrong"}) as r:
            out["wrong"] = r.status
        async with http.get(f"/d/bed1?token={TOKEN}", allow_redirects=False) as r:
            out["login"] = (r.status, r.headers["Location"], r.headers["Set-Cookie"])
        async with http.get("/api/devices") as r:  # the session now holds the cookie
            out["cookie"] = r.status
        return out

    out = serve(scenario, WebConfig(port=0, token=TOKEN))
    for path in ("/", "/d/bed1", "/api/devices", "/api/stream", "/static/common.js"):
        assert out[path] == 401, path
    assert (out["health"], out["bearer"], out["wrong"], out["cookie"]) == (200, 200, 401, 200)
    status, location, cookie = out["login"]
    assert status == 303 and location == "/d/bed1"
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie


def test_push_connections_are_bounded():
    """Beyond max_clients a stream is refused (503); a client that falls behind is dropped."""

    async def scenario(view, http):
        sub = view.subscribe("device", "bed1")
        for i in range(3):  # queue of 2: the third frame drops the subscriber
            view.broadcast("bed1", "epoch", {"i": i})
        first = await http.get("/api/stream")
        second = await http.get("/api/stream")
        statuses = first.status, second.status
        first.close()
        second.close()
        return statuses, sub.dropped, sub.queue.get_nowait()

    statuses, dropped, last = serve(scenario, WebConfig(port=0, max_clients=2, client_queue=2))
    assert statuses == (200, 503)
    assert dropped and last is None


# -- report link ------------------------------------------------------------------------
def test_report_link_serves_the_night_report_once_ended(tmp_path, web):
    """409 while the night runs; once ended, the last night's report page and figure."""
    epoch = web.epoch
    night = tmp_path / "nights" / "bed1" / "20260101T220000Z"
    night.mkdir(parents=True)
    (night / "night.json").write_text("{}")
    png = b"\x89PNG\r\n\x1a\nfake"
    (night / "report.png").write_bytes(png)

    async def scenario(view, http):
        sink = view.sink("bed1", session="s1")
        await sink.publish(*epoch(0, 2))
        running = (await http.get("/d/bed1/report")).status
        await sink.end_of_stream()
        page = await http.get("/d/bed1/report")
        figure = await http.get("/d/bed1/report.png")
        return running, page.status, await page.text(), figure.status, await figure.read()

    running, status, html, fig_status, body = serve(scenario, state_dir=tmp_path)
    assert running == 409
    assert status == 200 and 'src="/d/bed1/report.png"' in html
    assert fig_status == 200 and body == png


def test_report_page_may_use_its_inline_styles_but_no_script(tmp_path, web):
    """The self-contained report.html keeps its inline CSS and figures under the view's
    CSP; scripts and requests elsewhere stay blocked."""
    night = tmp_path / "nights" / "bed1" / "20260101T220000Z"
    night.mkdir(parents=True)
    (night / "night.json").write_text("{}")
    (night / "report.html").write_text("<!doctype html><style>h1{color:red}</style><h1>r</h1>")

    async def scenario(view, http):
        sink = view.sink("bed1", session="s1")
        await sink.end_of_stream()
        page = await http.get("/d/bed1/report")
        return page.status, page.headers["Content-Security-Policy"], await page.text()

    status, csp, html = serve(scenario, state_dir=tmp_path)
    assert status == 200 and "<h1>r</h1>" in html
    rules = dict(r.strip().split(" ", 1) for r in csp.split(";"))
    assert rules["default-src"] == "'none'" and "script-src" not in rules
    assert "'unsafe-inline'" in rules["style-src"] and "data:" in rules["img-src"]
    assert rules["frame-ancestors"] == "'none'"


def test_assets_ship_in_the_package_without_external_urls():
    """Every script and stylesheet a page names is in static/; no CDN, no external URL."""
    folder = Path(str(static_dir()))
    for page in ("overview.html", "device.html"):
        html = (folder / page).read_text()
        refs = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
        assert refs, page
        for ref in refs:
            assert (folder / ref.removeprefix("/static/")).is_file(), ref
    for path in folder.iterdir():
        text = path.read_text()
        urls = set(re.findall(r"https?://[^\s\"')]+", text)) - {"http://www.w3.org/2000/svg"}
        assert not urls, f"{path.name}: {urls}"
