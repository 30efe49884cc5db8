"""MQTT sink kind: one connection and one outbox per daemon, one sink per device.

The registered kind :data:`MQTT` makes a :class:`DaemonMqtt` factory per daemon: it
holds one :class:`~sleepstream.sinks.mqtt_link.MqttLink` (one connection, one outbox at
``<state_dir>/outbox/<daemon id>.sqlite``, one delivery task; see that module for the
topics, the status rule and the delivery guarantees) and hands each device an
:class:`MqttSink`. :meth:`MqttSink.publish` appends the device's event to the shared
outbox and returns; subscribers get every event at least once, in order per device,
with its original ``event_id`` (deduplicate on it for exactly-once).

An :class:`MqttSink` built without a link (``MqttSink(settings, device=..., session=...,
outbox=...)``) opens a private link for its one device: the same code path, for tools
and tests that stage one device.
"""

from __future__ import annotations

import dataclasses
import socket
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sleepstream.errors import BrokerError
from sleepstream.names import check_device, daemon_id
from sleepstream.sinks.base import BaseSink, EventContext, build_event
from sleepstream.sinks.mqtt_link import MqttLink
from sleepstream.sinks.mqtt_settings import (
    NODELAY,
    PASSWORD_ENV,
    MqttSettings,
    jittered_backoff,
    make_client,
    mqtt_settings,
    read_password,
    settings_of,
    tls_context,
)
from sleepstream.sinks.outbox import Outbox
from sleepstream.sinks.registry import (
    BaseSinkFactory,
    DaemonContext,
    DeliveryStats,
    DeviceContext,
    SinkKind,
)
from sleepstream.types import Epoch, StagePrediction

if TYPE_CHECKING:
    from sleepstream.config import RunConfig

__all__ = [
    "MQTT",
    "NODELAY",
    "DaemonMqtt",
    "PASSWORD_ENV",
    "MqttLink",
    "MqttSettings",
    "MqttSink",
    "jittered_backoff",
    "make_client",
    "mqtt_settings",
    "read_password",
    "tls_context",
]


class MqttSink(BaseSink):
    """Publishes the stage events of one device through the daemon's MQTT link.

    Parameters
    ----------
    settings : MqttSettings
    device : str
    session : str
        Session id used in ``event_id`` (see :func:`~sleepstream.sinks.base.event_id`).
    link : MqttLink, optional
        The daemon's shared link (entered and exited by its owner). Without it the sink
        opens a private link on ``outbox`` for this one device.
    outbox : Outbox, optional
        Only without ``link``: opened and closed by the private link.
    metrics : Metrics, optional
        Only without ``link``.
    flush_timeout : float
        Only without ``link``: seconds :meth:`__aexit__` keeps delivering.
    """

    def __init__(
        self,
        settings: MqttSettings,
        *,
        device: str,
        session: str,
        link: MqttLink | None = None,
        outbox: Outbox | None = None,
        metrics: Any = None,
        flush_timeout: float = 10.0,
    ) -> None:
        self.device = check_device(device)
        self.session = session
        self._own = link is None
        if link is None:
            if outbox is None:
                raise ValueError("MqttSink without a link needs an outbox")
            link = MqttLink(
                settings, outbox=outbox, devices=(device,), metrics=metrics,
                flush_timeout=flush_timeout,
            )  # fmt: skip
        elif device not in link.stats:
            raise ValueError(f"device {device!r} is not served by this MQTT link")
        self.link = link
        self.settings = link.settings
        self.stage_topic = self.settings.stage_topic(device)
        self.status_topic = self.settings.status_topic(device)

    # -- lifecycle ---------------------------------------------------------------------
    async def __aenter__(self) -> MqttSink:
        if self._own:
            await self.link.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._own:
            await self.link.__aexit__(*exc)

    # -- producer side -----------------------------------------------------------------
    async def publish(self, epoch: Epoch, prediction: StagePrediction) -> None:
        """Append the event to the outbox (durable) and wake the delivery task."""
        event = build_event(EventContext(self.device, self.session), epoch, prediction)
        self.enqueue(event, arrival=epoch.last_sample_at)

    async def publish_revised(
        self, epoch: Epoch, prediction: StagePrediction, lookahead: int
    ) -> None:
        """Queue a revised stage for an earlier epoch (``revised: true``)."""
        event = build_event(EventContext(self.device, self.session, lookahead), epoch, prediction)
        self.enqueue(event)

    def enqueue(self, event: dict[str, Any], *, arrival: float | None = None) -> None:
        """Store an already built event; ``arrival`` (perf_counter) feeds the histogram.

        Raises
        ------
        BrokerError
            After storing the event, when the link's delivery task has given up: every
            epoch then says so (the event waits in the outbox for the next start).
        """
        self.link.enqueue(self.device, event, arrival=arrival)
        if self.link.fatal is not None:
            raise BrokerError(
                f"MQTT delivery stopped ({type(self.link.fatal).__name__}: {self.link.fatal}); "
                f"{self.pending} event(s) of {self.device} wait in the outbox"
            )

    # -- figures -------------------------------------------------------------------------
    @property
    def delivered(self) -> int:
        """Events of this device acknowledged by the broker during this run."""
        return self.link.stats[self.device].delivered

    @property
    def latencies_s(self) -> deque[float]:
        """Acknowledged latencies (s) of this run's events, newest last."""
        return self.link.stats[self.device].latencies_s

    @property
    def pending(self) -> int:
        """Events of this device not yet acknowledged (outbox plus in-memory fallback)."""
        return self.link.pending_of(self.device)

    @property
    def connected(self) -> Any:
        """The link's ``asyncio.Event``, set while connected."""
        return self.link.connected

    @property
    def outbox(self) -> Outbox:
        return self.link.outbox


# ------------------------------------------------------------------ the registered kind


def outbox_file(state_dir: Path, daemon: str) -> Path:
    """The daemon's outbox: ``<state_dir>/outbox/<daemon id>.sqlite``."""
    return state_dir / "outbox" / f"{daemon}.sqlite"


class DaemonMqtt(BaseSinkFactory):
    """The daemon's MQTT resource: one :class:`MqttLink` for every device.

    ``--mqtt-client-id ID`` names the daemon's one connection; with ``--shard i/n`` it
    becomes ``ID-<i>of<n>``, so the daemons of one beds file never share an id.

    Attributes
    ----------
    link : MqttLink
    daemon_status_topic : str
        ``<prefix>/_daemon/<daemon id>/status``: retained ``online``/``offline`` and the
        connection's last will (Home Assistant discovery lists it beside each device's
        status, with ``availability_mode: all``).
    """

    def __init__(self, ctx: DaemonContext) -> None:
        cfg = ctx.config
        settings = settings_of(cfg.mqtt, ctx.mqtt_url)
        if settings.client_id and cfg.shard is not None:
            # every shard reads the same beds file: one shared id would make the broker
            # throw the daemons off in turn (a broker keeps one connection per client id)
            i, n = cfg.shard
            settings = dataclasses.replace(settings, client_id=f"{settings.client_id}-{i}of{n}")
        devices = [d.name for d in cfg.devices]
        daemon = daemon_id(socket.gethostname(), devices)
        self.link = MqttLink(
            settings,
            outbox=Outbox(outbox_file(ctx.state_dir, daemon), max_events=cfg.outbox_max_events),
            devices=devices,
            daemon=daemon,
            metrics=ctx.metrics,
            flush_timeout=cfg.flush_timeout_s,
            resend_window_s=cfg.resend_window_s,
            on_fatal=self._fatal,
        )
        self.ctx = ctx
        self.daemon_status_topic = self.link.status_topic

    def _fatal(self, exc: BaseException) -> None:
        """The delivery task keeps failing: stop the daemon with a typed, one-line error."""
        self.ctx.fail(
            BrokerError(
                f"MQTT delivery failed for good ({type(exc).__name__}: {exc}); "
                f"{self.link.pending} event(s) wait in the outbox for the next start"
            )
        )

    async def __aenter__(self) -> DaemonMqtt:
        await self.link.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> bool | None:
        await self.link.__aexit__(*exc)
        return None

    def sink_for(self, device: DeviceContext) -> MqttSink:
        return MqttSink(
            self.link.settings, device=device.name, session=device.session, link=self.link
        )

    async def drained(self) -> None:
        await self.link.drained()

    def delivery(self, device: str) -> DeliveryStats | None:
        stats = self.link.stats.get(device)
        if stats is None:
            return None
        return DeliveryStats(
            stats.delivered,
            self.link.pending_of(device),
            tuple(stats.latencies_s),
            resent=stats.resent,
        )


@dataclass(frozen=True)
class MqttKindConfig:
    """The kind's own settings: none yet (they are daemon-wide, ``RunConfig.mqtt``)."""


def _validate(config: MqttKindConfig, run: RunConfig) -> None:
    """Every MQTT setting, TLS file and name checked before anything starts."""
    settings_of(run.mqtt, run.mqtt.url or f"mqtt://{run.broker_host}:{run.broker_port or 1883}")


def _factory(config: MqttKindConfig, ctx: DaemonContext) -> DaemonMqtt:
    return DaemonMqtt(ctx)


MQTT = SinkKind(
    "mqtt",
    "stage events over MQTT: one connection and one durable outbox per daemon",
    MqttKindConfig,
    _factory,
    validate=_validate,
)
