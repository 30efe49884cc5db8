"""The live view as a registered sink kind (``--web [ADDR:]PORT``, off by default).

The factory is the daemon-wide web server (:class:`~sleepstream.web.hub.LiveView`);
each device gets a :class:`~sleepstream.web.hub.LiveSink`. This module imports nothing
heavy: aiohttp loads only when a daemon actually serves the view.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sleepstream.settings import Setting
from sleepstream.sinks.registry import BaseSinkFactory, DaemonContext, DeviceContext, SinkKind

if TYPE_CHECKING:
    from sleepstream.config import RunConfig
    from sleepstream.sinks.base import Sink
    from sleepstream.web.hub import LiveView


@dataclass(frozen=True)
class WebOptions:
    """Settings of the live view.

    Attributes
    ----------
    address : str or None
        ``[ADDR:]PORT`` (ADDR defaults to 127.0.0.1); None = no live view.
    token_file : str or None
        File holding the access token (else ``$SLEEPSTREAM_WEB_TOKEN``); required when
        ADDR is not a loopback address.
    """

    address: str | None = None
    token_file: str | None = None


def _address(raw: str) -> str:
    from sleepstream.errors import UsageError
    from sleepstream.web.config import parse_web_address

    try:
        parse_web_address(str(raw))
    except UsageError as exc:
        raise ValueError(str(exc).split(": ", 1)[-1]) from None
    return str(raw).strip()


def _config(options: WebOptions) -> Any:
    from sleepstream.web.config import web_config

    assert options.address is not None
    return web_config(options.address, token_file=options.token_file)


def _validate(options: WebOptions, run: RunConfig) -> None:
    if options.address is not None:
        _config(options)  # a bad address, a missing token beyond loopback: one line


class WebFactory(BaseSinkFactory):
    """Holds the web server for the whole daemon and hands out each device's sink."""

    def __init__(self, view: LiveView) -> None:
        self.view = view

    async def __aenter__(self) -> WebFactory:
        await self.view.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.view.__aexit__(*exc)

    def sink_for(self, device: DeviceContext) -> Sink:
        return self.view.sink(device.name, device.session)


def _factory(options: WebOptions, ctx: DaemonContext) -> WebFactory | None:
    if options.address is None:
        return None
    from sleepstream.web.hub import LiveView

    devices = [d.name for d in ctx.config.devices]
    return WebFactory(LiveView(_config(options), devices, ctx.state_dir))


SINK = SinkKind(
    "web",
    "live web view (hypnogram, hypnodensity, signal) pushed to browsers",
    WebOptions,
    _factory,
    options=(
        Setting(
            "web",
            "address",
            "serve the live view on [ADDR:]PORT (ADDR default 127.0.0.1; beyond loopback "
            "a token is required)",
            _address,
            (str, int),
            check=lambda v: _address(str(v)),
            metavar="[ADDR:]PORT",
        ),
        Setting(
            "web_token_file",
            "token_file",
            "file holding the live view's access token (or set $SLEEPSTREAM_WEB_TOKEN)",
            metavar="FILE",
        ),
    ),
    validate=_validate,
)
