"""The sink protocol and the stage event every sink publishes.

A sink is an async context manager with ``publish(epoch, prediction)``; raw-data sinks
(the night recorder) also implement ``write_chunk(chunk)``. The stage event is a plain
JSON-able dict described by ``sleepstream/schemas/stage_event.schema.json``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from sleepstream.types import STAGE_NAMES, UNSCORED, Chunk, Epoch, StagePrediction

#: Value of the ``schema`` field; bump the suffix on an incompatible change.
EVENT_SCHEMA = "sleepstream.stage_event/1"


@runtime_checkable
class Sink(Protocol):
    """An async context manager that receives one call per scored (or unscored) epoch."""

    async def __aenter__(self) -> Sink: ...

    async def __aexit__(self, *exc: object) -> bool | None: ...

    async def publish(self, epoch: Epoch, prediction: StagePrediction) -> None:
        """Hand over one epoch's verdict; must not block the event loop for long."""


@dataclass(frozen=True, slots=True)
class EventContext:
    """What a stage event needs besides the epoch and its prediction.

    Attributes
    ----------
    device : str
        Device name (MQTT topic level and first part of ``event_id``).
    session : str
        Session id: one per daemon start per device, so event ids stay unique across
        restarts while being stable for one epoch of one session.
    lookahead : int
        ``K`` of a revised event (0 for the causal, first verdict).
    """

    device: str
    session: str
    lookahead: int = 0


def event_id(device: str, session: str, epoch_index: int, lookahead: int = 0) -> str:
    """Unique, stable id: ``<device>:<session>:<epoch_index>`` (``:r<K>`` when revised)."""
    base = f"{device}:{session}:{epoch_index}"
    return f"{base}:r{lookahead}" if lookahead else base


def build_event(
    ctx: EventContext,
    epoch: Epoch,
    prediction: StagePrediction,
    *,
    now: float | None = None,
) -> dict[str, Any]:
    """The JSON stage event of one epoch.

    Parameters
    ----------
    ctx : EventContext
    epoch : Epoch
        The epoch that was scored (for a revised event: the revised epoch).
    prediction : StagePrediction
    now : float, optional
        ``time.perf_counter()`` to measure ``latency_ms`` against
        ``epoch.last_sample_at`` (the time the event is built, i.e. just before it is
        queued for publishing; the acknowledged latency is in the Prometheus histogram).

    Returns
    -------
    dict
        Fields as in ``stage_event.schema.json``.
    """
    now = time.perf_counter() if now is None else now
    latency_ms = max(0.0, (now - epoch.last_sample_at) * 1e3) if epoch.last_sample_at else 0.0
    scored = prediction.stage != UNSCORED
    probs = [float(p) for p in prediction.probabilities] if scored else [0.0] * len(STAGE_NAMES)
    event: dict[str, Any] = {
        "schema": EVENT_SCHEMA,
        "device": ctx.device,
        "event_id": event_id(ctx.device, ctx.session, prediction.epoch_index, ctx.lookahead),
        "session": ctx.session,
        "epoch_index": int(prediction.epoch_index),
        "epoch_start": epoch.start_utc,
        "stage": prediction.stage_name,
        "probabilities": dict(zip(STAGE_NAMES, probs, strict=True)),
        "confidence": float(prediction.confidence) if scored else 0.0,
        "quality": sorted(set(prediction.quality) | set(epoch.quality)),
        "model": prediction.model_id,
        "latency_ms": round(latency_ms, 3),
        "revised": bool(ctx.lookahead),
        "lookahead": int(ctx.lookahead),
    }
    if not scored:
        event["reasons"] = list(prediction.reasons or epoch.unscored_reasons or ("unscorable",))
    return event


def format_line(event: dict[str, Any]) -> str:
    """One readable line for a terminal: time, device, epoch, stage, confidence, flags."""
    start = str(event.get("epoch_start", ""))
    clock = start[11:19] if len(start) >= 19 else start
    stage = event.get("stage", "?")
    parts = [
        f"{clock:>8}",
        f"{event.get('device', '?')}",
        f"#{event.get('epoch_index', 0):<5}",
        f"{stage:<8}",
    ]
    if stage != "unscored":
        parts.append(f"conf {float(event.get('confidence', 0.0)):.2f}")
    else:
        parts.append("reasons " + ",".join(event.get("reasons", [])))
    if event.get("revised"):
        parts.append(f"(revised, +{event.get('lookahead')} epochs)")
    if event.get("quality"):
        parts.append("flags " + ",".join(event["quality"]))
    parts.append(f"{float(event.get('latency_ms', 0.0)):.1f} ms")
    return "  ".join(parts)


async def write_chunk_if_supported(sink: object, chunk: Chunk) -> None:
    """Forward a raw chunk to sinks that record raw data (``write_chunk``)."""
    write = getattr(sink, "write_chunk", None)
    if write is not None:
        await write(chunk)
