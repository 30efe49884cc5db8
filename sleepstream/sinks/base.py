"""The sink protocol and the stage event every sink publishes.

A sink is an async context manager that the pipeline calls, for one device, with

* ``write_chunk(chunk)`` for every raw chunk the source delivered (before the DSP);
* ``publish(epoch, prediction)`` once per epoch, in epoch order (the causal verdict);
* ``publish_revised(epoch, prediction, lookahead)`` for each revised verdict of an
  earlier epoch when the daemon runs with ``--lookahead K``;
* ``end_of_stream()`` once the device's source has ended and its last verdict has been
  handed over (a file replay, or one bed of a beds file that ends while others run); the
  sink is left (``__aexit__``) only at daemon shutdown.

:class:`Sink` declares all of them, so the pipeline never probes with ``getattr``;
:class:`BaseSink` gives no-op defaults for a sink that needs only some. Sinks are built
per device by the factories of :mod:`sleepstream.sinks.registry`. The stage event is a
plain JSON-able dict described by ``sleepstream/schemas/stage_event.schema.json``.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any, Protocol, Self, runtime_checkable

from sleepstream.record.clock import iso
from sleepstream.types import STAGE_NAMES, UNSCORED, Chunk, Epoch, StagePrediction

#: Value of the ``schema`` field; bump the suffix on an incompatible change. ``/2`` added
#: ``time_zone`` and a naive ``epoch_start`` for a recording whose zone is unknown.
EVENT_SCHEMA = "sleepstream.stage_event/2"


@runtime_checkable
class Sink(Protocol):
    """Everything the pipeline calls on a sink (one sink instance serves one device).

    Calls come from one task per device, so a sink never sees two calls at once for
    the same device; none of them may block the event loop for long (hand file or
    network work to a task or a thread).
    """

    async def __aenter__(self) -> Sink: ...

    async def __aexit__(self, *exc: object) -> bool | None: ...

    async def write_chunk(self, chunk: Chunk) -> None:
        """A raw chunk as the source delivered it (source units, before any DSP)."""

    async def publish(self, epoch: Epoch, prediction: StagePrediction) -> None:
        """One epoch's causal verdict (``prediction.epoch_index == epoch.index``)."""

    async def publish_revised(
        self, epoch: Epoch, prediction: StagePrediction, lookahead: int
    ) -> None:
        """A revised verdict of the earlier ``epoch``, made with ``lookahead`` later epochs."""

    async def end_of_stream(self) -> None:
        """The device's source ended and every verdict of it has been handed over."""


class BaseSink:
    """No-op implementations of every :class:`Sink` method; subclass and override.

    A subclass that only records causal stages overrides :meth:`publish`; one that
    keeps raw data overrides :meth:`write_chunk` too.
    """

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> bool | None:
        return None

    async def write_chunk(self, chunk: Chunk) -> None:
        return None

    async def publish(self, epoch: Epoch, prediction: StagePrediction) -> None:
        return None

    async def publish_revised(
        self, epoch: Epoch, prediction: StagePrediction, lookahead: int
    ) -> None:
        return None

    async def end_of_stream(self) -> None:
        return None


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


def event_clock(epoch_start: str) -> tuple[str, str | None]:
    """``epoch_start`` and ``time_zone`` of a stage event, from an epoch's start.

    The epoch says what its clock knows: an ISO-8601 time with an offset (a live source:
    this machine's clock; a recording that states its zone) is written in UTC with ``Z``
    and ``time_zone`` ``"UTC"``; a time without an offset (a recording whose file states no
    zone, like EDF) stays the recording's local wall-clock time, ``time_zone`` null. The
    night files write the same strings (:func:`sleepstream.record.clock.iso`).

    Parameters
    ----------
    epoch_start : str
        ``Epoch.start_clock``: ISO-8601 to the millisecond, with or without an offset.

    Returns
    -------
    tuple of (str, str or None)
    """
    t = dt.datetime.fromisoformat(epoch_start)
    if t.tzinfo is None:
        return iso(t), None
    return iso(t.astimezone(dt.UTC)), "UTC"


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
    epoch_start, time_zone = event_clock(epoch.start_clock)
    event: dict[str, Any] = {
        "schema": EVENT_SCHEMA,
        "device": ctx.device,
        "event_id": event_id(ctx.device, ctx.session, prediction.epoch_index, ctx.lookahead),
        "session": ctx.session,
        "epoch_index": int(prediction.epoch_index),
        "epoch_start": epoch_start,
        "time_zone": time_zone,
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
