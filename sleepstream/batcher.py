"""Inference across devices: the :class:`Stager` seam and the :class:`InferenceBatcher`.

The batcher takes ``(device, epoch)`` items from every device's source reader, scores
what is ready in one call on its own inference thread (never the event loop, never the
default executor that file reads use) and hands each :class:`Scored` result to that
device's consumer (its prediction fan-out), in the order the device submitted them.

The seam is per ``(device, epoch)``: the stager keeps each device's context (a ring of
per-epoch states in split mode, of epochs in window mode:
:class:`~sleepstream.inference.context.ContextStager`) because it always knows whose
epoch it scores and gets each device's epochs in index order. One batch = one encoder
call over the new epochs of every device in it, then one head call over their windows;
the model's ONNX Runtime calls run on the stager's bounded thread pool. With
``lookahead K`` the revised verdict of epoch ``index - K`` comes from the same call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from sleepstream.inference.context import ContextStager, Scored
from sleepstream.types import Epoch

if TYPE_CHECKING:
    from sleepstream.dsp.normalise import NormalisationSpec
    from sleepstream.inference.card import ModelCard
    from sleepstream.inference.stager import Stager as LoadedModel
    from sleepstream.metrics import Metrics

__all__ = ["Consumer", "InferenceBatcher", "Model", "Scored", "Stager", "as_stager"]


@runtime_checkable
class Stager(Protocol):
    """What the daemon needs from a model: predictions per (device, epoch).

    Attributes
    ----------
    model_id : str
        Carried by every prediction and the recorder's manifest.
    card : ModelCard
        The validated card (sha256, input contract, normalisation).
    seq_len : int
        The model's context length in epochs (the stager's ring; the DSP ignores it).
    normalisation : NormalisationSpec
        The per-device input normalisation the model was trained with (the DSP's last
        stage computes each epoch's ``input_scale`` from it).
    """

    model_id: str
    card: ModelCard
    seq_len: int
    normalisation: NormalisationSpec

    def score(
        self, batch: Sequence[tuple[Hashable, Epoch]], lookahead: int | None = None
    ) -> list[Scored]:
        """Score a batch (blocking; the batcher runs it on its thread, one call at a time).

        Parameters
        ----------
        batch : sequence of (device, Epoch)
            Epochs of one or several devices; each device's epochs in index order,
            continuing its context (contiguous indices over its whole run).
        lookahead : int, optional
            K >= 0, see :attr:`Scored.revised`.

        Returns
        -------
        list of Scored
            One per item, in the same order.
        """
        ...

    def reset(self, device: Hashable) -> None:
        """Forget the device's context (its next epoch starts a new night)."""
        ...


class Model(Protocol):
    """A loaded model, window or split (:class:`sleepstream.inference.stager.Stager`):
    what :class:`~sleepstream.inference.context.ContextStager` builds on."""

    model_id: str
    card: ModelCard
    seq_len: int
    normalisation: NormalisationSpec
    state_dim: int
    pad_kind: str
    pad_state: np.ndarray

    def encode(self, epochs: np.ndarray) -> np.ndarray:
        """Model-input epochs (N, 3000) -> per-epoch states (N, state_dim)."""
        ...

    def head(self, states: np.ndarray) -> np.ndarray:
        """Windows of states (B, S, state_dim) -> logits (B, S, 5)."""
        ...


def as_stager(model: Stager | Model | LoadedModel, lookahead: int = 0) -> Stager:
    """A :class:`Stager` as is, or a loaded model (window or split) in a
    :class:`~sleepstream.inference.context.ContextStager` that survives a broken index
    sequence (``strict=False``: logged, counted, the device's context restarts)."""
    if isinstance(model, Stager):
        return model
    return ContextStager(model, lookahead=lookahead, strict=False)  # type: ignore[arg-type]


class Consumer(Protocol):
    """Where the batcher hands a device's results (its prediction fan-out)."""

    name: str

    def accept(self, scored: Scored) -> None:
        """One result, in submission order."""

    def finish(self) -> None:
        """The device's reader ended: no more results will come."""


_END: Any = object()


class InferenceBatcher:
    """Scores the epochs of all devices in batches, off the event loop.

    Parameters
    ----------
    stager : Stager or loaded model
        Wrapped with :func:`as_stager`.
    metrics : Metrics, optional
    lookahead : int
        K > 0 also produces a revised verdict for epoch ``t - K`` from epoch ``t``.
    max_batch : int
        Largest batch of epochs per call (across devices).
    max_pending : int
        Epochs waiting for inference before the readers are slowed down (each holds
        one 12-kB epoch).
    batch_window_s : float
        After the first epoch of a batch, wait this long (s) for epochs of other devices
        to join it (0 = score what is ready now; the daemon uses 5 ms with several devices).
    """

    def __init__(
        self,
        stager: Stager | Model | LoadedModel,
        *,
        metrics: Metrics | None = None,
        lookahead: int = 0,
        max_batch: int = 64,
        max_pending: int = 256,
        batch_window_s: float = 0.0,
    ) -> None:
        self.stager: Stager = as_stager(stager, lookahead)
        self.metrics = metrics
        self.lookahead = lookahead
        self.max_batch = max_batch
        self.batch_window_s = batch_window_s
        self._queue: asyncio.Queue[tuple[Consumer, Epoch]] = asyncio.Queue(max_pending)
        self._thread: ThreadPoolExecutor | None = None

    async def submit(self, consumer: Consumer, epoch: Epoch) -> None:
        """Queue one epoch of ``consumer``'s device (waits while the queue is full)."""
        await self._queue.put((consumer, epoch))

    async def end(self, consumer: Consumer) -> None:
        """The device's reader ended; its consumer is finished after its last result."""
        await self._queue.put((consumer, _END))

    async def run(self, consumers: Sequence[Consumer]) -> None:
        """Task ``inference``: until every consumer has ended."""
        active = set(map(id, consumers))
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="inference")
        try:
            while active:
                batch = [await self._queue.get()]
                if self.batch_window_s > 0 and len(active) > 1:
                    await asyncio.sleep(self.batch_window_s)
                while len(batch) < self.max_batch and not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                items = [(c, e) for c, e in batch if e is not _END]
                if items:
                    await self._score(items)
                for c, e in batch:
                    if e is _END:
                        self.stager.reset(c.name)
                        c.finish()
                        active.discard(id(c))
        finally:
            self._thread.shutdown(wait=False)
            self._thread = None

    async def _score(self, items: list[tuple[Consumer, Epoch]]) -> None:
        loop = asyncio.get_running_loop()
        batch = [(c.name, e) for c, e in items]
        t0 = time.perf_counter()
        results = await loop.run_in_executor(self._thread, self.stager.score, batch, self.lookahead)
        if self.metrics is not None:
            self.metrics.inference.observe(time.perf_counter() - t0)
            self.metrics.inference_batch.observe(len(items))
        for (consumer, _), scored in zip(items, results, strict=True):
            consumer.accept(scored)
