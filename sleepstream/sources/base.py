"""The ``Source`` protocol, the hand-over queue with counted drops, back-off, and the registry.

A source is an async context manager that is also an async iterator of
:class:`~sleepstream.types.Chunk`::

    async with open_source("board:synthetic") as src:
        async for chunk in src:
            ...

Blocking reads (BrainFlow, LSL) run in a reader thread and hand chunks over through
a bounded :class:`ChunkQueue`; when the consumer falls behind, the *oldest* chunk is
dropped and its samples are counted in ``dropped_samples`` (the timestamps then jump,
so the epoch buffer sees the gap). File and synthetic sources are paced by the
consumer and never drop.

Back-ends are imported lazily by import string, so ``edf:`` replay works without
BrainFlow or pylsl installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from sleepstream.errors import SourceError, UsageError
from sleepstream.types import Chunk

log = logging.getLogger(__name__)


@runtime_checkable
class Source(Protocol):
    """What the pipeline consumes.

    Attributes
    ----------
    name : str
        Human-readable description (board, stream or file).
    fs : float
        Nominal sampling rate in Hz (known once entered).
    channels : tuple of str
        Channel names, one per row of ``Chunk.samples``.
    received_samples : int
        Samples (per channel) read from the device/file so far.
    dropped_samples : int
        Samples (per channel) dropped because the consumer was too slow.
    reconnects : int
        Times the device/stream was lost and brought back.
    queue_depth : int
        Chunks read but not yet consumed (0 for consumer-paced sources).
    start_datetime : datetime or None
        Wall-clock time of stream time 0 as the recording states it (a naive datetime
        is the file's local time, zone unknown: EDF has none); None for live sources
        (the daemon then dates the stream by its own clock, UTC). Known once entered.
    from_file : bool
        True when the rate and the start come from a recording (EDF replay, synthetic
        night): the DSP runs at the source's own rate and the profile's ``fs`` only
        bounds it. False for live sources (the profile's ``fs`` is enforced).
    """

    name: str
    fs: float
    channels: tuple[str, ...]
    received_samples: int
    dropped_samples: int
    reconnects: int
    queue_depth: int
    start_datetime: datetime | None
    from_file: bool

    async def __aenter__(self) -> Source: ...

    async def __aexit__(self, *exc: object) -> bool | None: ...

    def __aiter__(self) -> AsyncIterator[Chunk]: ...

    async def __anext__(self) -> Chunk: ...


@runtime_checkable
class GroundTruth(Protocol):
    """A source that knows the true stage of what it streams (the synthetic night)."""

    def stage_at(self, t: float) -> int:
        """True stage code at stream time ``t`` s (``UNSCORED`` outside the night)."""
        ...


@dataclass(frozen=True)
class Backoff:
    """Jittered exponential back-off for reconnecting a lost board or stream.

    Attributes
    ----------
    initial_s : float
        First delay in seconds.
    factor : float
        Growth per attempt.
    max_s : float
        Ceiling of the delay in seconds.
    jitter : float
        Fraction of the delay drawn at random (0 = none, 0.5 = delay x U(0.5, 1.5)).
    max_attempts : int or None
        ``None`` retries forever (the daemon never exits because a source hiccupped).
    """

    initial_s: float = 0.5
    factor: float = 2.0
    max_s: float = 30.0
    jitter: float = 0.5
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if self.initial_s < 0 or self.max_s < self.initial_s or self.factor < 1:
            raise UsageError(f"invalid back-off {self}")
        if not 0 <= self.jitter <= 1:
            raise UsageError(f"back-off jitter must be in [0, 1], got {self.jitter}")

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """Yield successive delays in seconds (endless unless ``max_attempts``)."""
        rng = rng or random.Random()
        delay, attempt = self.initial_s, 0
        while self.max_attempts is None or attempt < self.max_attempts:
            yield delay * (1.0 + self.jitter * (2.0 * rng.random() - 1.0))
            delay = min(self.max_s, delay * self.factor)
            attempt += 1


class ChunkQueue:
    """Bounded hand-over from a reader thread to the event loop, dropping the oldest.

    Parameters
    ----------
    loop : asyncio.AbstractEventLoop
        The loop the consumer runs in.
    maxsize : int
        Chunks kept before the oldest is dropped.
    """

    _CLOSED = object()

    def __init__(self, loop: asyncio.AbstractEventLoop, maxsize: int = 256) -> None:
        if maxsize < 1:
            raise UsageError(f"queue size must be >= 1, got {maxsize}")
        self._loop = loop
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize)
        self.received_samples = 0
        self.dropped_samples = 0
        self._error: BaseException | None = None

    def qsize(self) -> int:
        """Chunks waiting for the consumer."""
        return self._queue.qsize()

    def _offer(self, item: Any) -> None:  # runs in the loop
        if self._queue.full():
            old = self._queue.get_nowait()
            if isinstance(old, Chunk):
                self.dropped_samples += old.n_samples
        self._queue.put_nowait(item)

    def put_threadsafe(self, chunk: Chunk) -> None:
        """Hand a chunk over from any thread (never blocks)."""
        self.received_samples += chunk.n_samples
        self._loop.call_soon_threadsafe(self._offer, chunk)

    def close_threadsafe(self, error: BaseException | None = None) -> None:
        """End the stream from any thread; ``error`` is raised to the consumer."""
        self._error = error
        with contextlib.suppress(RuntimeError):  # loop already closed
            self._loop.call_soon_threadsafe(self._offer, self._CLOSED)

    async def get(self) -> Chunk:
        """Next chunk; raises ``StopAsyncIteration`` (or the reader's error) at the end."""
        item = await self._queue.get()
        if item is self._CLOSED:
            self._queue.put_nowait(item)  # stay closed for later calls
            if self._error is not None:
                raise self._error
            raise StopAsyncIteration
        chunk: Chunk = item
        return chunk


#: Source kind -> ``module:Class`` (imported only when used).
SOURCES: dict[str, str] = {
    "board": "sleepstream.sources.brainflow:BrainFlowSource",
    "lsl": "sleepstream.sources.lsl:LSLSource",
    "edf": "sleepstream.sources.edf_replay:EDFReplaySource",
    "synthetic-night": "sleepstream.sources.synthetic_night:SyntheticNightSource",
}
#: ``file:PATH`` reads any recording format (EDF/BDF, MNE formats, OpenBCI/BrainFlow files).
_ALIASES = {"brainflow": "board", "edf-replay": "edf", "file": "edf"}
#: Which argument the part after ``kind:`` fills.
_SPEC_ARG = {"board": "board", "lsl": "name", "edf": "path", "synthetic-night": "hypnogram"}


def parse_source_spec(spec: str) -> tuple[str, str | None]:
    """Split ``"kind[:argument]"`` into its kind and argument.

    ``"board:openbci"``, ``"lsl:MyEEG"``, ``"edf:/data/night.edf"``, ``"synthetic-night"``
    or ``"synthetic-night:/path/SC4001E0-PSG.edf.csv"``.
    """
    kind, sep, arg = spec.partition(":")
    kind = _ALIASES.get(kind.strip().lower(), kind.strip().lower())
    if kind not in SOURCES:
        raise SourceError(
            f"unknown source {spec!r}; valid kinds: {', '.join(SOURCES)} "
            "(e.g. board:openbci, lsl:NAME, file:PATH (or edf:PATH), synthetic-night)"
        )
    return kind, (arg if sep and arg else None)


def source_class(kind: str) -> type:
    """Import and return the class registered for ``kind``."""
    kind = _ALIASES.get(kind, kind)
    if kind not in SOURCES:
        raise SourceError(f"unknown source kind {kind!r}; valid kinds: {', '.join(SOURCES)}")
    module_name, _, attr = SOURCES[kind].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SourceError(f"source {kind!r} needs a missing package: {exc}") from None
    cls: type = getattr(module, attr)
    return cls


def open_source(spec: str, **options: Any) -> Source:
    """Build (but do not enter) a source from a spec string and keyword options.

    Parameters
    ----------
    spec : str
        ``kind[:argument]``, see :func:`parse_source_spec`.
    **options
        Passed to the source's constructor (e.g. ``serial_port=``, ``speed=``).

    Raises
    ------
    SourceError
        Unknown kind or missing back-end package.
    UsageError
        An option the source does not accept.
    """
    kind, arg = parse_source_spec(spec)
    cls = source_class(kind)
    if arg is not None:
        key = _SPEC_ARG[kind]
        options[key] = Path(arg) if key in ("path", "hypnogram") else arg
    try:
        source: Source = cls(**options)
    except TypeError as exc:
        raise UsageError(f"source {kind!r}: {exc}") from None
    return source


class QueueCounters:
    """The :class:`Source` counters of a threaded source that hands over through ``self._queue``.

    A subclass sets ``self._queue`` (a :class:`ChunkQueue`, or ``None`` before it opens).
    """

    _queue: ChunkQueue | None

    @property
    def received_samples(self) -> int:
        return self._queue.received_samples if self._queue else 0

    @property
    def dropped_samples(self) -> int:
        return self._queue.dropped_samples if self._queue else 0

    @property
    def queue_depth(self) -> int:
        """Chunks waiting for the consumer."""
        return self._queue.qsize() if self._queue else 0
