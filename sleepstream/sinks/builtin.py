"""The sink kinds every daemon has: MQTT, stdout and the night recorder.

Their settings are daemon-wide (``RunConfig.mqtt``, ``print_mode``, ``record``), so
their kinds declare no options of their own. The MQTT kind here is the per-device
version (one connection and outbox per device); the mqtt helper replaces it with one
connection and one outbox per daemon in :mod:`sleepstream.sinks.mqtt` (issue 12).
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sleepstream.sinks.registry import (
    BaseSinkFactory,
    DaemonContext,
    DeliveryStats,
    DeviceContext,
    PerDeviceSinks,
    SinkFactory,
    SinkKind,
)

if TYPE_CHECKING:
    from sleepstream.config import RunConfig
    from sleepstream.sinks.base import Sink
    from sleepstream.sinks.mqtt import MqttSink


@dataclass(frozen=True)
class NoOptions:
    """The config of a kind whose settings are daemon-wide."""


# ---------------------------------------------------------------------------- MQTT


def _mqtt_sink_class() -> type[MqttSink]:
    from sleepstream.sinks.mqtt import MqttSink
    from sleepstream.types import Chunk

    class DeviceMqttSink(MqttSink):
        """MqttSink plus the raw-data call of the Sink protocol (MQTT carries no raw EEG)."""

        async def write_chunk(self, chunk: Chunk) -> None:
            return None

    return DeviceMqttSink


class PerDeviceMqtt(BaseSinkFactory):
    """One :class:`~sleepstream.sinks.mqtt.MqttSink` (connection + outbox) per device.

    With ``--mqtt-client-id ID`` each device connects as ``ID-<device>``: a broker
    disconnects the older of two clients with the same id, so beds sharing one id would
    throw each other off in a loop.
    """

    def __init__(self, ctx: DaemonContext) -> None:
        from sleepstream.sinks.mqtt import mqtt_settings, read_password

        m = ctx.config.mqtt
        self.ctx = ctx
        self.settings = mqtt_settings(
            ctx.mqtt_url,
            username=m.username,
            password=read_password(m.password_file),
            ca_file=m.ca_file,
            cert_file=m.cert_file,
            key_file=m.key_file,
            tls_insecure=m.tls_insecure,
            client_id=m.client_id,
            topic_prefix=m.topic_prefix,
        )
        self.sinks: dict[str, MqttSink] = {}

    def sink_for(self, device: DeviceContext) -> Sink:
        import dataclasses

        from sleepstream.daemon import outbox_path
        from sleepstream.sinks.outbox import Outbox

        cfg = self.ctx.config
        settings = self.settings
        if settings.client_id:
            settings = dataclasses.replace(
                settings, client_id=f"{settings.client_id}-{device.name}"
            )
        sink = _mqtt_sink_class()(
            settings,
            device=device.name,
            session=device.session,
            outbox=Outbox(
                outbox_path(self.ctx.state_dir, device.name), max_events=cfg.outbox_max_events
            ),
            metrics=self.ctx.metrics,
            flush_timeout=cfg.flush_timeout_s,
        )
        self.sinks[device.name] = sink
        return sink

    async def drained(self) -> None:
        # transitional: MqttSink has no "outbox empty" event yet (request to mqtt)
        while any(s.pending for s in self.sinks.values()):
            await asyncio.sleep(0.05)

    def delivery(self, device: str) -> DeliveryStats | None:
        sink = self.sinks.get(device)
        if sink is None:
            return None
        return DeliveryStats(sink.delivered, sink.pending, tuple(sink.latencies_s))


def _validate_mqtt(config: Any, run: RunConfig) -> None:
    from sleepstream.sinks.mqtt import mqtt_settings, read_password

    m = run.mqtt
    url = m.url or f"mqtt://{run.broker_host}:{run.broker_port or 1883}"
    mqtt_settings(
        url,
        username=m.username,
        password=read_password(m.password_file),
        ca_file=m.ca_file,
        cert_file=m.cert_file,
        key_file=m.key_file,
        tls_insecure=m.tls_insecure,
        client_id=m.client_id,
        topic_prefix=m.topic_prefix,
    )


def _mqtt(config: Any, ctx: DaemonContext) -> SinkFactory:
    return PerDeviceMqtt(ctx)


MQTT = SinkKind(
    "mqtt",
    "stage events over MQTT through a durable outbox",
    NoOptions,
    _mqtt,
    validate=_validate_mqtt,
)


# ---------------------------------------------------------------------------- stdout


class StdoutSinks(BaseSinkFactory):
    """Text or JSON lines on stdout; in text mode a header that says what runs where."""

    def __init__(self, ctx: DaemonContext) -> None:
        self.ctx = ctx
        self.json = ctx.config.print_mode == "json"
        self.banner = ctx.config.banner and not self.json

    async def __aenter__(self) -> StdoutSinks:
        if self.banner:
            cfg, ctx = self.ctx.config, self.ctx
            lines = [
                f"sleepstream {_version()}: model {ctx.stager.model_id}",
                f"stages also on MQTT {ctx.mqtt_url} as {cfg.mqtt.topic_prefix}/<device>/stage",
            ]
            if ctx.metrics.port is not None:
                lines.append(f"metrics on http://{cfg.metrics_addr}:{ctx.metrics.port}/metrics")
            lines.append(
                f"state in {ctx.state_dir}"
                + (" (nights recorded under nights/)" if cfg.record else "")
                + "; Ctrl-C stops"
            )
            out = ctx.stdout or sys.stdout
            out.write("".join(f"# {line}\n" for line in lines))
            out.flush()
        return self

    def sink_for(self, device: DeviceContext) -> Sink:
        from sleepstream.sinks.stdout import StdoutSink
        from sleepstream.sources.base import GroundTruth

        src, p = device.source, device.profile
        truth = src.stage_at if isinstance(src, GroundTruth) else None
        header = (
            f"{device.name}: {src.name}, profile {p.name} ({p.derivation}); "
            "columns: time, device, #epoch, stage, confidence, flags, latency"
            + ("; 'true X' is the synthetic night's own stage" if truth else "")
        )
        return StdoutSink(
            device=device.name,
            session=device.session,
            json=self.json,
            stream=self.ctx.stdout,
            header=header if self.banner else None,
            truth=truth,
        )


def _version() -> str:
    from sleepstream.cli import _version as version

    return version()


def _stdout(config: Any, ctx: DaemonContext) -> SinkFactory | None:
    return None if ctx.config.print_mode == "none" else StdoutSinks(ctx)


STDOUT = SinkKind("stdout", "one line (or JSON line) per verdict on stdout", NoOptions, _stdout)


# ---------------------------------------------------------------------------- recorder


def _recorder(config: Any, ctx: DaemonContext) -> SinkFactory | None:
    if not ctx.config.record:
        return None

    def make(d: DeviceContext) -> Sink:
        from sleepstream.sinks.recorder import Recorder

        start = d.device.options.get("start")
        return Recorder(
            ctx.state_dir,
            device=d.name,
            profile=d.profile.name,
            model_id=ctx.stager.model_id,
            card_sha256=str(getattr(ctx.stager.card, "sha256", "") or ""),
            scale_to_uv=abs(d.profile.scale_to_uv),
            staged_channel=d.profile.channel,
            source_offset_s=float(start) if start is not None else None,
        )

    return PerDeviceSinks(make)


RECORDER = SinkKind(
    "recorder", "the night on disk: raw EDF segments, stages, manifest", NoOptions, _recorder
)
