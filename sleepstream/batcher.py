"""Inference across devices: the :class:`Stager` seam and the :class:`InferenceBatcher`.

The batcher takes ``(device, epoch)`` items from every device's source reader, scores
what is ready in one call off the event loop (``asyncio.to_thread``) and hands each
:class:`Scored` result to that device's consumer (its prediction fan-out), in the order
the device submitted them.

The seam is per ``(device, epoch)``: a stager may keep per-device state (a ring of
per-epoch encodings in split mode, issue 12) because it always knows whose epoch it
scores, gets each device's epochs in index order, and returns the causal verdict and,
with ``lookahead K``, the revised verdict of epoch ``index - K`` from the same call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from sleepstream.types import Epoch, StagePrediction

if TYPE_CHECKING:
    from sleepstream.dsp.normalise import NormalisationSpec
    from sleepstream.inference.card import ModelCard
    from sleepstream.metrics import Metrics


@dataclass(frozen=True, slots=True)
class Scored:
    """The stager's output for one submitted ``(device, epoch)``.

    Attributes
    ----------
    device : str
    epoch : Epoch
        The submitted epoch.
    prediction : StagePrediction
        Its causal verdict (``prediction.epoch_index == epoch.index``).
    revised : StagePrediction or None
        With ``lookahead K > 0``: the verdict of epoch ``epoch.index - K`` made with this
        epoch as the newest context (None when ``K == 0``, or ``epoch.index < K``, or
        this epoch is unscorable).
    """

    device: str
    epoch: Epoch
    prediction: StagePrediction
    revised: StagePrediction | None = None


@runtime_checkable
class Stager(Protocol):
    """What the daemon needs from a loaded model.

    Attributes
    ----------
    model_id : str
        Carried by every prediction and the recorder's manifest.
    card : ModelCard
        The validated card (sha256, input contract, normalisation).
    seq_len : int
        Epochs of context the DSP puts in ``Epoch.window`` (window mode; this goes
        away when ``Epoch`` carries one epoch and the stager keeps the context).
    normalisation : NormalisationSpec
        The per-device input normalisation the model was trained with (the DSP's last
        stage computes each epoch's ``input_scale`` from it).
    """

    model_id: str
    card: ModelCard
    seq_len: int
    normalisation: NormalisationSpec

    def score(self, batch: Sequence[tuple[str, Epoch]], lookahead: int = 0) -> list[Scored]:
        """Score a batch (blocking; the batcher runs it in a thread, one call at a time).

        Parameters
        ----------
        batch : sequence of (device, Epoch)
            Epochs of one or several devices; each device's epochs in index order, each
            index once (a device's indices are contiguous over its whole run).
        lookahead : int
            K >= 0, see :attr:`Scored.revised`.

        Returns
        -------
        list of Scored
            One per item, in the same order.
        """
        ...


class WindowModel(Protocol):
    """A window-mode model (:class:`sleepstream.inference.stager.Stager`): each epoch's
    ``window`` holds its whole causal context."""

    model_id: str
    card: ModelCard
    seq_len: int
    normalisation: NormalisationSpec

    def predict(self, epochs: Sequence[Epoch], lookahead: int = 0) -> list[StagePrediction]:
        """One verdict per epoch, of row ``seq - 1 - lookahead`` of its window."""
        ...


class WindowStager:
    """:class:`Stager` over a window-mode model with ``predict(epochs, lookahead)``.

    Each epoch carries its whole causal window; the model input is each row times the
    ``input_scale`` of the epoch it holds (kept per device: a past row keeps the factor
    it was emitted with). A revised verdict reruns the newest window at ``seq - 1 - K``.
    """

    def __init__(self, model: WindowModel) -> None:
        self.model = model
        self.model_id = model.model_id
        self.card = model.card
        self.seq_len = int(model.seq_len)
        self.normalisation = model.normalisation
        self._scales: dict[str, deque[float]] = {}

    def _model_input(self, device: str, epoch: Epoch) -> Epoch:
        past = self._scales.setdefault(device, deque(maxlen=max(0, self.seq_len - 1)))
        factors = [1.0] * (self.seq_len - 1 - len(past)) + list(past) + [epoch.input_scale]
        past.append(epoch.input_scale)
        if all(f == 1.0 for f in factors):
            return epoch
        scale = np.asarray(factors, dtype=np.float32)[-epoch.window.shape[0] :, None]
        return dataclasses.replace(epoch, window=epoch.window * scale)

    def score(self, batch: Sequence[tuple[str, Epoch]], lookahead: int = 0) -> list[Scored]:
        epochs = [self._model_input(dev, e) for dev, e in batch]
        preds = self.model.predict(epochs)
        k = lookahead
        later = [i for i, e in enumerate(epochs) if k and e.index >= k and e.scorable]
        revised = self.model.predict([epochs[i] for i in later], k) if later else []
        by_item = dict(zip(later, revised, strict=True))
        return [
            Scored(dev, e, p, by_item.get(i))
            for i, ((dev, e), p) in enumerate(zip(batch, preds, strict=True))
        ]  # the submitted epochs (µV), not the scaled model input


def as_stager(model: Stager | WindowModel) -> Stager:
    """A :class:`Stager` as is, or a window-mode model wrapped in :class:`WindowStager`."""
    if isinstance(model, Stager):
        return model
    return WindowStager(model)


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
    stager : Stager or window-mode model
        Wrapped with :func:`as_stager`.
    metrics : Metrics, optional
    lookahead : int
        K > 0 also produces a revised verdict for epoch ``t - K`` from epoch ``t``.
    max_batch : int
        Largest batch of epochs per call.
    max_pending : int
        Epochs waiting for inference before the readers are slowed down.
    batch_window_s : float
        After the first epoch of a batch, wait this long (s) for epochs of other devices
        to join it (0 = score what is ready now; the daemon uses 5 ms with several devices).
    """

    def __init__(
        self,
        stager: Stager | WindowModel,
        *,
        metrics: Metrics | None = None,
        lookahead: int = 0,
        max_batch: int = 64,
        max_pending: int = 256,
        batch_window_s: float = 0.0,
    ) -> None:
        self.stager: Stager = as_stager(stager)
        self.metrics = metrics
        self.lookahead = lookahead
        self.max_batch = max_batch
        self.batch_window_s = batch_window_s
        self._queue: asyncio.Queue[tuple[Consumer, Epoch]] = asyncio.Queue(max_pending)

    async def submit(self, consumer: Consumer, epoch: Epoch) -> None:
        """Queue one epoch of ``consumer``'s device (waits while the queue is full)."""
        await self._queue.put((consumer, epoch))

    async def end(self, consumer: Consumer) -> None:
        """The device's reader ended; its consumer is finished after its last result."""
        await self._queue.put((consumer, _END))

    async def run(self, consumers: Sequence[Consumer]) -> None:
        """Task ``inference``: until every consumer has ended."""
        active = set(map(id, consumers))
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
                    c.finish()
                    active.discard(id(c))

    async def _score(self, items: list[tuple[Consumer, Epoch]]) -> None:
        t0 = time.perf_counter()
        results = await asyncio.to_thread(
            self.stager.score, [(c.name, e) for c, e in items], self.lookahead
        )
        if self.metrics is not None:
            self.metrics.inference.observe(time.perf_counter() - t0)
            self.metrics.inference_batch.observe(len(items))
        for (consumer, _), scored in zip(items, results, strict=True):
            consumer.accept(scored)
