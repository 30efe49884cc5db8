"""The stdout and night-recorder sink kinds (the MQTT kind is :data:`sleepstream.sinks.mqtt.MQTT`).

Their settings are daemon-wide (``print_mode``, ``banner``, ``record``), so their kinds
declare no options of their own.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sleepstream.sinks.registry import (
    BaseSinkFactory,
    DaemonContext,
    DeviceContext,
    PerDeviceSinks,
    SinkFactory,
    SinkKind,
)

if TYPE_CHECKING:
    from sleepstream.sinks.base import Sink


@dataclass(frozen=True)
class NoOptions:
    """The config of a kind whose settings are daemon-wide."""


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
        from sleepstream.sources.base import parse_source_spec

        start = d.device.options.get("start")
        source = d.source
        kind, arg = parse_source_spec(d.device.source)
        path = arg if kind == "edf" else None  # the recording a file source reads
        return Recorder(
            ctx.state_dir,
            device=d.name,
            profile=d.profile.name,
            model_id=ctx.stager.model_id,
            card_sha256=str(getattr(ctx.stager.card, "sha256", "") or ""),
            scale_to_uv=abs(d.profile.scale_to_uv),
            staged_channel=d.profile.channel,
            source_offset_s=float(start) if start is not None else None,
            # read when the first chunk arrives: a file source knows its start once open
            start_datetime=lambda: source.start_datetime,
            recording=path,
            metrics=ctx.metrics,
        )

    return PerDeviceSinks(make)


RECORDER = SinkKind(
    "recorder", "the night on disk: raw EDF segments, stages, manifest", NoOptions, _recorder
)
