"""One device's pipeline, top to bottom: source -> DSP chain -> inference -> sinks.

::

    SourceReader       task "<device>:source"
      source (async iterator of Chunk)
      -> every sink's write_chunk (raw data: the recorder)
      -> DSP chain: derivation, filters, resampling, 30-s epochs
      -> InferenceBatcher.submit                     (shared by all devices)
    InferenceBatcher   task "inference"             (sleepstream.batcher)
      -> one stager call per batch, across devices, in a thread
    PredictionFanout   task "<device>:sinks"
      -> every sink's publish (causal) / publish_revised (--lookahead), in epoch order

All tasks live in one :class:`asyncio.TaskGroup` (:func:`run_pipelines`). Stopping a
pipeline (:meth:`DevicePipeline.stop`) ends its reader; the epochs already read are
still scored and published (graceful drain).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from sleepstream.batcher import InferenceBatcher, Scored
from sleepstream.dsp.chain import EpochNormaliser
from sleepstream.dsp.quality import confidence_factor
from sleepstream.errors import SourceError
from sleepstream.sinks.base import Sink
from sleepstream.sources.base import Backoff, Source
from sleepstream.types import Chunk, Epoch, StagePrediction

if TYPE_CHECKING:
    from sleepstream.metrics import Metrics

__all__ = [
    "DevicePipeline",
    "EpochChain",
    "InferenceBatcher",
    "PredictionFanout",
    "SourceReader",
    "run_pipelines",
    "wait_opened",
]

log = logging.getLogger(__name__)


class EpochChain(Protocol):
    """The DSP as the reader uses it (:class:`sleepstream.dsp.SignalChain`).

    ``normaliser`` is its last stage (set by the daemon: its kind comes from the model).
    """

    normaliser: EpochNormaliser | None

    def push(self, chunk: Chunk) -> list[Epoch]:
        """Epochs completed by this chunk, in index order."""
        ...

    def flush(self) -> list[Epoch]:
        """End of stream: the complete epochs still held back."""
        ...


class _SourceFailed(Exception):
    """A source error raised while iterating an already open source (not the DSP's)."""

    def __init__(self, error: SourceError) -> None:
        super().__init__(str(error))
        self.error = error


def default_reopen_backoff() -> Backoff:
    """Re-entering a source that failed mid-stream: 1 s doubling to 30 s, jittered, forever."""
    return Backoff(initial_s=1.0, max_s=30.0)


class PredictionFanout:
    """Hands one device's verdicts to its sinks, in order (task ``<device>:sinks``).

    A failing sink is logged (rate-limited) and counted; it never stops the others.
    """

    def __init__(
        self,
        name: str,
        sinks: Sequence[Sink],
        *,
        metrics: Metrics | None = None,
    ) -> None:
        self.name = name
        self.sinks = list(sinks)
        self.metrics = metrics
        self.n_published = 0
        self.sink_errors = 0
        self._queue: asyncio.Queue[tuple[Epoch, StagePrediction, int] | None] = asyncio.Queue()

    # -- called by the batcher (Consumer protocol) -----------------------------------
    def accept(self, scored: Scored) -> None:
        """A causal verdict, then the revision it carries (if any), queued in order."""
        epoch, prediction = scored.epoch, scored.prediction
        if prediction.stage >= 0 and epoch.quality:
            prediction = dataclasses.replace(
                prediction, confidence=prediction.confidence * confidence_factor(epoch.quality)
            )
        if self.metrics is not None:
            self.metrics.epochs.labels(self.name, prediction.stage_name).inc()
        self._queue.put_nowait((epoch, prediction, 0))
        old = scored.revised_epoch
        if scored.revised is not None and old is not None:
            revised = dataclasses.replace(scored.revised, quality=tuple(old.quality))
            self._queue.put_nowait((old, revised, epoch.index - old.index))

    def finish(self) -> None:
        self._queue.put_nowait(None)

    # -- task ------------------------------------------------------------------------
    async def run(self) -> None:
        """Publish to every sink until the reader and the batcher are done, then tell
        every sink the stream ended."""
        while (item := await self._queue.get()) is not None:
            epoch, prediction, lookahead = item
            for sink in self.sinks:
                try:
                    if lookahead:
                        await sink.publish_revised(epoch, prediction, lookahead)
                    else:
                        await sink.publish(epoch, prediction)
                except Exception as exc:  # one failing sink must not stop the others
                    self.sink_failed(sink, f"epoch {epoch.index}", exc)
            if not lookahead:
                self.n_published += 1
        for sink in self.sinks:
            try:
                await sink.end_of_stream()
            except Exception as exc:
                self.sink_failed(sink, "the end of the stream", exc)

    def sink_failed(self, sink: Sink, what: str, exc: Exception) -> None:
        """Count and log (rate-limited) a sink's failure; the other sinks go on."""
        self.sink_errors += 1
        if self.sink_errors <= 10 or self.sink_errors % 100 == 0:
            log.error(
                "%s: sink %s failed on %s (%d errors so far): %s",
                self.name, type(sink).__name__, what, self.sink_errors, exc,
            )  # fmt: skip


class SourceReader:
    """Reads one device's source into the DSP and the batcher (task ``<device>:source``).

    A :class:`~sleepstream.errors.SourceError` raised by the source *after* it was
    first opened (a reader that gave up, a stream that cannot be re-resolved yet) does
    not end the reader: the source is left, re-entered with jittered back-off until it
    delivers again, and the same DSP chain continues, so the lost stream time becomes
    ``gap`` epochs on the same grid. Errors at the first open, and errors of the DSP
    chain (e.g. a changed sample rate), end it.
    """

    def __init__(
        self,
        name: str,
        source: Source,
        make_dsp: Callable[[Source], EpochChain],
        sinks: Sequence[Sink],
        fanout: PredictionFanout,
        *,
        metrics: Metrics | None = None,
        until: float | None = None,
        reopen_backoff: Backoff | None = None,
    ) -> None:
        self.name = name
        self.source = source
        self.make_dsp = make_dsp
        self.sinks = list(sinks)
        self.fanout = fanout
        self.metrics = metrics
        self.until = until
        self.reopen_backoff = reopen_backoff or default_reopen_backoff()
        self.opened = asyncio.Event()
        self.n_epochs = 0
        #: Times the source was re-entered after failing mid-stream, and why it last failed.
        self.source_reopens = 0
        self.last_source_error = ""
        self._task: asyncio.Task[None] | None = None
        self._src: Source | None = None
        self._dsp: EpochChain | None = None
        self._fresh = False
        self._seen_dropped = 0
        self._chunk_metrics: tuple[Any, Any] | None = None  # this device's labelled children

    async def open(self) -> None:
        """Enter the source and build its DSP chain (the first open: errors propagate).

        The daemon calls it at start-up, before anything listens, so a missing board,
        file or channel is reported before the broker starts; :meth:`run` opens it
        itself when nobody did.
        """
        src = await self.source.__aenter__()
        try:
            self._dsp = self.make_dsp(src)
        except BaseException:
            await self.source.__aexit__(None, None, None)
            raise
        self._src = src
        self.opened.set()

    async def close(self) -> None:
        """Leave the source if it is entered (idempotent)."""
        if self._src is not None:
            self._src = None
            await self.source.__aexit__(None, None, None)

    async def run(self, batcher: InferenceBatcher) -> None:
        """Read until the source ends (or ``until``, or :meth:`stop`)."""
        self._task = asyncio.current_task()
        try:
            if self._dsp is None:
                await self.open()
            dsp = self._dsp
            assert dsp is not None
            delays: Iterator[float] | None = None
            while True:
                try:
                    await self._read_open_source(dsp, batcher)
                    break
                except _SourceFailed as failed:
                    why = failed.error
                if self._fresh or delays is None:  # it delivered since it was opened
                    delays = self.reopen_backoff.delays()
                while self._src is None:
                    delay = next(delays, None)
                    if delay is None:
                        raise why
                    self.last_source_error = str(why)
                    log.warning(
                        "%s: source failed (%s); reopening in %.1f s", self.name, why, delay
                    )
                    await asyncio.sleep(delay)
                    try:
                        self._src = await self.source.__aenter__()
                    except SourceError as exc:
                        why = exc
                        continue
                    self.source_reopens += 1
                    log.warning("%s: source reopened after a failure", self.name)
            for epoch in dsp.flush():
                await self._submit(batcher, epoch)
        except asyncio.CancelledError:
            if not self.opened.is_set():
                raise
            log.info("%s: source stopped", self.name)
        finally:
            await self.close()
            await batcher.end(self.fanout)

    async def _read_open_source(self, dsp: EpochChain, batcher: InferenceBatcher) -> None:
        """Consume the entered source; leave it on the way out (also on failure)."""
        src = self._src
        assert src is not None
        self._fresh = False
        try:
            await self._consume(src, dsp, batcher)
        finally:
            await self.close()

    def stop(self) -> None:
        """End the source; epochs already read are still scored and published."""
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def _consume(self, src: Source, dsp: EpochChain, batcher: InferenceBatcher) -> None:
        """Read ``src`` to its end (or ``until``); a source error becomes ``_SourceFailed``."""
        it = src.__aiter__()
        while True:
            try:
                chunk = await it.__anext__()
            except StopAsyncIteration:
                return
            except SourceError as exc:
                raise _SourceFailed(exc) from None
            self._fresh = True
            clipped = self._clip(chunk)
            if clipped is None:
                return
            self._count_samples(src, clipped)
            for sink in self.sinks:
                try:
                    await sink.write_chunk(clipped)
                except Exception as exc:  # a raw-data sink must not end live staging
                    self.fanout.sink_failed(sink, "a raw chunk", exc)
            for epoch in dsp.push(clipped):
                await self._submit(batcher, epoch)
            if self.until is not None and clipped.timestamps[-1] + 0.5 / clipped.fs >= self.until:
                return

    async def _submit(self, batcher: InferenceBatcher, epoch: Epoch) -> None:
        self.n_epochs += 1
        if self.metrics is not None and epoch.gap_fraction > 0:
            self.metrics.gaps.labels(self.name).inc()
        await batcher.submit(self.fanout, epoch)

    def _clip(self, chunk: Chunk) -> Chunk | None:
        if self.until is None or chunk.timestamps[-1] < self.until:
            return chunk
        keep = int((chunk.timestamps < self.until).sum())
        if keep == 0:
            return None
        off = chunk.electrode_off[:keep] if chunk.electrode_off is not None else None
        return dataclasses.replace(
            chunk, samples=chunk.samples[:, :keep], timestamps=chunk.timestamps[:keep],
            electrode_off=off,
        )  # fmt: skip

    def _count_samples(self, src: Source, chunk: Chunk) -> None:
        if self.metrics is None:
            return
        m = self.metrics
        if self._chunk_metrics is None:  # labels() is a locked dict lookup: once per device
            self._chunk_metrics = (
                m.samples_received.labels(self.name),
                m.queue_depth.labels(self.name, "source"),
            )
        received, depth = self._chunk_metrics
        received.inc(chunk.n_samples)
        dropped = int(src.dropped_samples)
        if dropped > self._seen_dropped:
            m.samples_dropped.labels(self.name).inc(dropped - self._seen_dropped)
            self._seen_dropped = dropped
        depth.set(src.queue_depth)


class DevicePipeline:
    """One device: its :class:`SourceReader` and its :class:`PredictionFanout`.

    Parameters
    ----------
    name : str
        Device name.
    source : Source
        Not yet entered; the reader enters and leaves it.
    make_dsp : callable
        ``make_dsp(source) -> EpochChain``, called once the source is open (its ``fs``,
        ``channels`` and ``start_datetime`` are known).
    sinks : sequence of Sink
        Entered sinks, in delivery order.
    metrics : Metrics, optional
    until : float, optional
        Stop after this stream time in seconds (samples at or past it are not used).
    reopen_backoff : Backoff, optional
        Delays (s) between attempts to re-enter a source that failed mid-stream.
    """

    def __init__(
        self,
        name: str,
        source: Source,
        make_dsp: Callable[[Source], EpochChain],
        sinks: Sequence[Sink],
        *,
        metrics: Metrics | None = None,
        until: float | None = None,
        reopen_backoff: Backoff | None = None,
    ) -> None:
        self.name = name
        self.fanout = PredictionFanout(name, sinks, metrics=metrics)
        self.reader = SourceReader(
            name, source, make_dsp, sinks, self.fanout, metrics=metrics, until=until,
            reopen_backoff=reopen_backoff,
        )  # fmt: skip

    def set_sinks(self, sinks: Sequence[Sink]) -> None:
        """Replace the sinks before the pipeline runs (the daemon makes them after the
        sources are open)."""
        self.reader.sinks = list(sinks)
        self.fanout.sinks = list(sinks)

    @property
    def opened(self) -> asyncio.Event:
        """Set once the source is open and its DSP chain built."""
        return self.reader.opened

    @property
    def source(self) -> Source:
        return self.reader.source

    @property
    def source_reopens(self) -> int:
        """Times the source was re-entered after failing mid-stream."""
        return self.reader.source_reopens

    @property
    def last_source_error(self) -> str:
        return self.reader.last_source_error

    @property
    def n_epochs(self) -> int:
        return self.reader.n_epochs

    @property
    def n_published(self) -> int:
        return self.fanout.n_published

    def stop(self) -> None:
        """End the source; epochs already read are still scored and published."""
        self.reader.stop()


async def run_pipelines(pipelines: Sequence[DevicePipeline], batcher: InferenceBatcher) -> None:
    """Run every device in one TaskGroup: a reader and a fan-out per device, one shared
    inference task. Returns when every source has ended and every verdict has been
    handed to the sinks."""
    async with asyncio.TaskGroup() as tg:
        tg.create_task(batcher.run([p.fanout for p in pipelines]), name="inference")
        for p in pipelines:
            tg.create_task(p.reader.run(batcher), name=f"{p.name}:source")
            tg.create_task(p.fanout.run(), name=f"{p.name}:sinks")


async def wait_opened(pipelines: Sequence[DevicePipeline], task: asyncio.Task[Any]) -> None:
    """Wait until every source is open (or ``task`` ended, e.g. with an error)."""
    opened = asyncio.ensure_future(asyncio.gather(*(p.opened.wait() for p in pipelines)))
    await asyncio.wait([opened, task], return_when=asyncio.FIRST_COMPLETED)
    if not opened.done():
        opened.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await opened
