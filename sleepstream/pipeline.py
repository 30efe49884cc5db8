"""One device's pipeline, top to bottom: source -> DSP chain -> epochs -> inference -> sinks.

::

    source (async iterator of Chunk)             task "<device>:source"
      -> DSP chain: derivation, filters, resampling, 30-s epochs with causal context
      -> InferenceBatcher (shared by all devices, asyncio.to_thread)   task "inference"
      -> sinks (MQTT through the outbox, stdout, recorder)              task "<device>:sinks"

All tasks live in one :class:`asyncio.TaskGroup` (see :func:`run_pipelines`). The
source task only reads, the inference task batches the epochs that are ready across
all devices into one ONNX Runtime call, and the sinks task publishes in epoch order.
Stopping a pipeline (:meth:`DevicePipeline.stop`) ends its source; the epochs already
read are still scored and published (graceful drain).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from sleepstream.types import Chunk, Epoch, StagePrediction

log = logging.getLogger(__name__)

_END = object()


class _SourceFailed(Exception):
    """A source error raised while iterating an already open source (not the DSP's)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class DevicePipeline:
    """Source -> DSP -> epochs for one device, and the delivery of its predictions.

    Parameters
    ----------
    name : str
        Device name.
    source : Source
        Not yet entered; the pipeline enters and leaves it.
    make_dsp : callable
        ``make_dsp(source) -> chain`` is called once the source is open (its ``fs``
        and ``channels`` are known); ``chain.push(chunk) -> list[Epoch]``.
    sinks : sequence
        Entered sinks; each gets ``publish(epoch, prediction)`` in epoch order, and
        ``publish_revised(epoch, prediction, lookahead)`` for revised stages if it has it.
    metrics : Metrics, optional
    until : float, optional
        Stop after this stream time in seconds (samples at or past it are not used).
    lookahead : int
        K > 0: also hand revised predictions for epoch ``t - K`` to the sinks.
    reopen_backoff : Backoff, optional
        Delays (s) between attempts to re-enter a source that failed mid-stream
        (default: 1 s doubling to 30 s, jittered, forever).
    """

    def __init__(
        self,
        name: str,
        source: Any,
        make_dsp: Callable[[Any], Any],
        sinks: Sequence[Any],
        *,
        metrics: Any = None,
        until: float | None = None,
        lookahead: int = 0,
        reopen_backoff: Any = None,
    ) -> None:
        self.name = name
        self.source = source
        self.make_dsp = make_dsp
        self.sinks = list(sinks)
        self.metrics = metrics
        self.until = until
        self.lookahead = lookahead
        self.n_epochs = 0
        self.n_published = 0
        self.sink_errors = 0
        self.opened = asyncio.Event()
        self.error: BaseException | None = None
        self._predictions: asyncio.Queue[Any] = asyncio.Queue()
        self._recent: deque[Epoch] = deque(maxlen=max(1, lookahead + 1))
        self._reader: asyncio.Task[None] | None = None
        self._seen_received = 0
        self._seen_dropped = 0
        #: Times the source was re-entered after failing mid-stream, and why it last failed.
        self.source_reopens = 0
        self.last_source_error = ""
        #: Schedule for re-entering a failed source (forever by default).
        self.reopen_backoff = reopen_backoff or _default_reopen_backoff()
        self._fresh = False

    # -- tasks ----------------------------------------------------------------------
    async def read(self, batcher: InferenceBatcher) -> None:
        """Task ``<device>:source``: read chunks, make epochs, hand them to inference.

        A :class:`~sleepstream.errors.SourceError` raised by the source *after* it was
        first opened (a reader that gave up, a stream that cannot be re-resolved yet) does
        not end the pipeline: the source is left, re-entered with jittered back-off
        (``reopen_backoff``) until it delivers again, and the same DSP chain continues, so
        the lost stream time becomes ``gap`` epochs on the same grid. Errors at the first
        open, and errors of the DSP chain (e.g. a changed sample rate), still end it.
        """
        from sleepstream.errors import SourceError

        self._reader = asyncio.current_task()
        dsp: Any = None
        delays = None
        try:
            while True:
                entered = False
                try:
                    async with self.source as src:
                        entered = True
                        if dsp is None:
                            dsp = self.make_dsp(src)
                            self.opened.set()
                        else:
                            self.source_reopens += 1
                            log.warning("%s: source reopened after a failure", self.name)
                        self._fresh = False
                        await self._consume(src, dsp, batcher)
                        break
                except _SourceFailed as failed:
                    why = failed.error
                except SourceError as exc:
                    if dsp is None or entered:  # first open, or the DSP chain's own error
                        raise
                    why = exc
                if self._fresh or delays is None:  # it delivered since it was opened
                    delays = self.reopen_backoff.delays()
                delay = next(delays, None)
                if delay is None:
                    raise why
                self.last_source_error = str(why)
                log.warning(
                    "%s: source failed mid-stream (%s); reopening in %.1f s", self.name, why, delay
                )
                await asyncio.sleep(delay)
            for epoch in dsp.flush():
                await self._submit(batcher, epoch)
        except asyncio.CancelledError:
            if not self.opened.is_set():
                raise
            log.info("%s: source stopped", self.name)
        finally:
            await batcher.end(self)

    async def _consume(self, src: Any, dsp: Any, batcher: InferenceBatcher) -> bool:
        """Read ``src`` to its end (or ``until``); a source error becomes ``_SourceFailed``."""
        from sleepstream.errors import SourceError

        it = src.__aiter__()
        while True:
            try:
                chunk = await it.__anext__()
            except StopAsyncIteration:
                return True
            except SourceError as exc:
                raise _SourceFailed(exc) from None
            self._fresh = True
            chunk = self._clip(chunk)
            if chunk is None:
                return True
            self._count_samples(src, chunk)
            for sink in self.sinks:
                write = getattr(sink, "write_chunk", None)
                if write is not None:
                    await write(chunk)
            for epoch in dsp.push(chunk):
                await self._submit(batcher, epoch)
            if self.until is not None and chunk.timestamps[-1] + 0.5 / chunk.fs >= self.until:
                return True

    async def deliver(self) -> None:
        """Task ``<device>:sinks``: publish predictions to every sink, in order."""
        while True:
            item = await self._predictions.get()
            if item is _END:
                return
            epoch, prediction, lookahead = item
            for sink in self.sinks:
                try:
                    if lookahead:
                        revised = getattr(sink, "publish_revised", None)
                        if revised is not None:
                            await revised(epoch, prediction, lookahead)
                    else:
                        await sink.publish(epoch, prediction)
                except Exception as exc:  # one failing sink must not stop the others
                    self.sink_errors += 1
                    if self.sink_errors <= 10 or self.sink_errors % 100 == 0:
                        log.error(
                            "%s: sink %s failed on epoch %d (%d errors so far): %s",
                            self.name, type(sink).__name__, epoch.index, self.sink_errors, exc,
                        )  # fmt: skip
            if not lookahead:
                self.n_published += 1

    def stop(self) -> None:
        """End the source; epochs already read are still scored and published."""
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()

    # -- helpers --------------------------------------------------------------------
    async def _submit(self, batcher: InferenceBatcher, epoch: Epoch) -> None:
        self.n_epochs += 1
        if self.metrics is not None and epoch.gap_fraction > 0:
            self.metrics.gaps.labels(self.name).inc()
        await batcher.submit(self, epoch)

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

    def _count_samples(self, src: Any, chunk: Chunk) -> None:
        if self.metrics is None:
            return
        m = self.metrics
        m.samples_received.labels(self.name).inc(chunk.n_samples)
        dropped = int(getattr(src, "dropped_samples", 0) or 0)
        if dropped > self._seen_dropped:
            m.samples_dropped.labels(self.name).inc(dropped - self._seen_dropped)
            self._seen_dropped = dropped
        depth = getattr(src, "queue_depth", None)  # Source protocol: chunks waiting
        if isinstance(depth, int | float):
            m.queue_depth.labels(self.name, "source").set(depth)

    def accept(self, epoch: Epoch, prediction: StagePrediction) -> None:
        """Called by the batcher with each causal prediction (in order)."""
        self._recent.append(epoch)
        if prediction.stage >= 0 and epoch.quality:
            from sleepstream.dsp.quality import confidence_factor

            prediction = dataclasses.replace(
                prediction, confidence=prediction.confidence * confidence_factor(epoch.quality)
            )
        if self.metrics is not None:
            self.metrics.epochs.labels(self.name, prediction.stage_name).inc()
        self._predictions.put_nowait((epoch, prediction, 0))

    def accept_revised(self, prediction: StagePrediction, lookahead: int) -> None:
        """A revised prediction for an earlier epoch (``prediction.epoch_index``)."""
        for old in self._recent:
            if old.index == prediction.epoch_index:
                fixed = dataclasses.replace(prediction, quality=tuple(old.quality))
                self._predictions.put_nowait((old, fixed, lookahead))
                return

    def finish(self) -> None:
        self._predictions.put_nowait(_END)


class InferenceBatcher:
    """Scores the epochs of all devices in batches, off the event loop.

    Parameters
    ----------
    stager : Stager
        ``predict(epochs, lookahead=0) -> list[StagePrediction]`` (thread-safe for
        one caller at a time).
    metrics : Metrics, optional
    lookahead : int
        K > 0 also produces a revised prediction for epoch ``t - K`` from epoch ``t``.
    max_batch : int
        Largest batch of epochs per call.
    max_pending : int
        Epochs waiting for inference before the sources are slowed down.
    batch_window_s : float
        After the first epoch of a batch, wait this long (s) for epochs of other devices
        to join it (0 = score what is ready now; the daemon uses 5 ms with several devices).
    """

    def __init__(
        self,
        stager: Any,
        *,
        metrics: Any = None,
        lookahead: int = 0,
        max_batch: int = 64,
        max_pending: int = 256,
        batch_window_s: float = 0.0,
    ) -> None:
        self.stager = stager
        self.metrics = metrics
        self.lookahead = lookahead
        self.max_batch = max_batch
        self._queue: asyncio.Queue[Any] = asyncio.Queue(max_pending)
        self.batch_window_s = batch_window_s

    async def submit(self, pipeline: DevicePipeline, epoch: Epoch) -> None:
        await self._queue.put((pipeline, epoch))

    async def end(self, pipeline: DevicePipeline) -> None:
        await self._queue.put((pipeline, _END))

    async def run(self, pipelines: Sequence[DevicePipeline]) -> None:
        """Task ``inference``: until every pipeline has ended."""
        active = set(map(id, pipelines))
        while active:
            batch = [await self._queue.get()]
            if self.batch_window_s > 0 and len(active) > 1:
                await asyncio.sleep(self.batch_window_s)
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            epochs = [(p, e) for p, e in batch if e is not _END]
            if epochs:
                await self._score(epochs)
            for p, e in batch:
                if e is _END:
                    p.finish()
                    active.discard(id(p))

    async def _score(self, items: list[tuple[DevicePipeline, Epoch]]) -> None:
        epochs = [e for _, e in items]
        t0 = time.perf_counter()
        preds = await asyncio.to_thread(self.stager.predict, epochs)
        if self.metrics is not None:
            self.metrics.inference.observe(time.perf_counter() - t0)
            self.metrics.inference_batch.observe(len(epochs))
        k = self.lookahead
        later = [e for _, e in items if e.index >= k and e.scorable] if k else []
        revised = await asyncio.to_thread(self.stager.predict, later, k) if later else []
        by_epoch = {id(e): pred for e, pred in zip(later, revised, strict=True)}
        # Hand each revision over right after the epoch that made it: the device keeps only
        # its last K + 1 epochs, so a batch of several epochs of one device must not push
        # epoch t out before its revision (computed from t + K) arrives.
        for (p, e), pred in zip(items, preds, strict=True):
            p.accept(e, pred)
            if id(e) in by_epoch:
                p.accept_revised(by_epoch[id(e)], k)


def _default_reopen_backoff() -> Any:
    from sleepstream.sources.base import Backoff

    return Backoff(initial_s=1.0, max_s=30.0)


async def run_pipelines(pipelines: Sequence[DevicePipeline], batcher: InferenceBatcher) -> None:
    """Run all pipelines in one TaskGroup: one source and one sinks task per device,
    one shared inference task. Returns when every source has ended and every
    prediction has been handed to the sinks."""
    async with asyncio.TaskGroup() as tg:
        tg.create_task(batcher.run(pipelines), name="inference")
        for p in pipelines:
            tg.create_task(p.read(batcher), name=f"{p.name}:source")
            tg.create_task(p.deliver(), name=f"{p.name}:sinks")


async def wait_opened(pipelines: Sequence[DevicePipeline], task: asyncio.Task[Any]) -> None:
    """Wait until every source is open (or the pipeline task ended, e.g. with an error)."""
    opened = asyncio.ensure_future(asyncio.gather(*(p.opened.wait() for p in pipelines)))
    await asyncio.wait([opened, task], return_when=asyncio.FIRST_COMPLETED)
    if not opened.done():
        opened.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await opened
