"""The stager seam: predictions per (device, epoch); the window stager's model input is
each row times the factor of the epoch it holds, per device."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from sleepstream.batcher import InferenceBatcher, Scored, Stager, WindowStager, as_stager
from sleepstream.dsp.normalise import NormalisationSpec
from sleepstream.types import Epoch, StagePrediction


@dataclass
class _Card:
    sha256: str = "x"


class FakeWindowModel:
    """A window-mode model stand-in that records the windows it is given (no ONNX)."""

    model_id = "fake"
    card = _Card()
    seq_len = 3
    normalisation = NormalisationSpec()

    def __init__(self) -> None:
        self.seen: list[np.ndarray] = []

    def predict(self, epochs, lookahead=0):
        out = []
        for e in epochs:
            self.seen.append(np.array(e.window))
            p = np.array([1.0, 0, 0, 0, 0])
            out.append(StagePrediction(e.index - lookahead, 0, p, 1.0, "fake"))
        return out


def _epoch(i: int, scale: float, value: float) -> Epoch:
    window = np.full((3, 3000), value, np.float32)
    window[: max(0, 2 - i)] = 0.0  # zero padding before the first epoch
    return Epoch(i, 30.0 * i, "", window, input_scale=scale)


def test_window_stager_scales_each_row_by_its_own_epoch_factor_per_device():
    """Row j of epoch t's window is multiplied by the factor epoch t-2+j was emitted with,
    each device with its own history; interleaved devices do not mix."""
    model = FakeWindowModel()
    stager = WindowStager(model)
    assert isinstance(stager, Stager) and as_stager(stager) is stager
    batch = [("a", _epoch(0, 2.0, 1.0)), ("b", _epoch(0, 5.0, 1.0))]
    batch += [("a", _epoch(1, 3.0, 1.0)), ("b", _epoch(1, 7.0, 1.0)), ("a", _epoch(2, 4.0, 1.0))]
    results = stager.score(batch)
    assert [(r.device, r.epoch.index) for r in results] == [(d, e.index) for d, e in batch]
    rows = [w[:, 0].tolist() for w in model.seen]
    assert rows[0] == [0.0, 0.0, 2.0] and rows[1] == [0.0, 0.0, 5.0]
    assert rows[2] == [0.0, 2.0, 3.0] and rows[3] == [0.0, 5.0, 7.0]
    assert rows[4] == [2.0, 3.0, 4.0]
    assert results[0].epoch.window[-1, 0] == 1.0  # the submitted epoch stays in µV


def test_batcher_routes_results_to_each_device_in_order():
    """Each consumer gets its own device's results, in submission order, then finish()."""

    class Consumer:
        def __init__(self, name):
            self.name, self.got, self.done = name, [], False

        def accept(self, scored: Scored):
            self.got.append((scored.device, scored.epoch.index))

        def finish(self):
            self.done = True

    a, b = Consumer("a"), Consumer("b")
    batcher = InferenceBatcher(FakeWindowModel(), lookahead=1)

    async def go():
        task = asyncio.create_task(batcher.run([a, b]))
        for i in range(3):
            await batcher.submit(a, _epoch(i, 1.0, 1.0))
            await batcher.submit(b, _epoch(i, 1.0, 1.0))
        await batcher.end(a)
        await batcher.end(b)
        await task

    asyncio.run(go())
    assert a.got == [("a", 0), ("a", 1), ("a", 2)] and a.done
    assert b.got == [("b", 0), ("b", 1), ("b", 2)] and b.done
