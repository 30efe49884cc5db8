"""The batcher: batches cross devices, results go to each device in order, contexts end
with their device; a broken index sequence restarts only that device's context."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from sleepstream.batcher import InferenceBatcher, Scored, Stager, as_stager
from sleepstream.inference import ContextError, ContextStager, load_stager, softmax
from sleepstream.types import Epoch


def _epoch(i: int, seed: int, scale: float = 1.0) -> Epoch:
    x = (np.random.default_rng(seed * 1000 + i).standard_normal(3000) * 30).astype(np.float32)
    return Epoch(i, 30.0 * i, "", x, input_scale=scale)


class Consumer:
    def __init__(self, name: str) -> None:
        self.name, self.got, self.done = name, [], False

    def accept(self, scored: Scored) -> None:
        self.got.append(scored)

    def finish(self) -> None:
        self.done = True


class CountingStager:
    """A real ContextStager that records the devices of each call (spy, no fake model)."""

    def __init__(self, inner: ContextStager) -> None:
        self.inner = inner
        self.model_id, self.card = inner.model_id, inner.card
        self.seq_len, self.normalisation = inner.seq_len, inner.normalisation
        self.calls: list[list[str]] = []
        self.resets: list[str] = []

    def score(self, batch, lookahead=None):
        self.calls.append([d for d, _ in batch])
        return self.inner.score(batch, lookahead)

    def reset(self, device) -> None:
        self.resets.append(device)
        self.inner.reset(device)


@pytest.fixture(scope="module")
def model(tiny_model: Path):
    return load_stager(tiny_model)


def _run(batcher: InferenceBatcher, consumers: dict[str, Consumer], n: int) -> None:
    async def go() -> None:
        task = asyncio.create_task(batcher.run(list(consumers.values())))
        for i in range(n):
            for k, c in enumerate(consumers.values()):
                await batcher.submit(c, _epoch(i, k))
        for c in consumers.values():
            await batcher.end(c)
        await task

    asyncio.run(go())


def test_batcher_batches_cross_devices_and_route_in_order(model) -> None:
    """Epochs of all devices share stager calls; each consumer gets its own results in
    order (equal to scoring that device alone), then finish(); its context is freed."""
    spy = CountingStager(ContextStager(model))
    assert isinstance(spy, Stager) and as_stager(spy) is spy
    consumers = {name: Consumer(name) for name in ("a", "b", "c")}
    _run(InferenceBatcher(spy, max_batch=64), consumers, 6)
    assert any(len(set(call)) > 1 for call in spy.calls)  # a batch crossed devices
    assert sorted(spy.resets) == ["a", "b", "c"] and spy.inner.devices == []
    for k, (name, c) in enumerate(consumers.items()):
        assert c.done and [s.epoch.index for s in c.got] == list(range(6))
        alone = ContextStager(model).score([(name, _epoch(i, k)) for i in range(6)])
        for got, ref in zip(c.got, alone, strict=True):
            np.testing.assert_allclose(got.prediction.probabilities, ref.prediction.probabilities)


def test_batcher_lookahead_revisions_carry_their_epoch(model) -> None:
    """With lookahead 1 every epoch but the first brings the revision of the one before,
    together with that epoch, from the same stager call."""
    spy = CountingStager(as_stager(model, lookahead=1))
    c = Consumer("a")
    _run(InferenceBatcher(spy, lookahead=1), {"a": c}, 4)
    revised = [(s.epoch.index, s.revised_epoch.index) for s in c.got if s.revised is not None]
    assert revised == [(1, 0), (2, 1), (3, 2)]
    assert all(s.revised.epoch_index == s.revised_epoch.index for s in c.got if s.revised)
    assert len(spy.calls) <= 4  # one call per batch, no second pass for the revisions


def test_daemon_stager_survives_a_broken_index_sequence(model) -> None:
    """The daemon's stager (as_stager) logs, counts and restarts only the device whose
    index jumps; strict stagers raise ContextError naming it."""
    strict = ContextStager(model)
    strict.score([("a", _epoch(0, 0))])
    with pytest.raises(ContextError, match="'a': epoch 5 follows epoch 0") as info:
        strict.score([("b", _epoch(0, 1)), ("a", _epoch(5, 0))])
    assert (info.value.device, info.value.position) == ("a", 1)
    lenient = as_stager(model)
    assert isinstance(lenient, ContextStager) and not lenient.strict
    lenient.score([("a", _epoch(0, 0)), ("b", _epoch(0, 1))])
    out = lenient.score([("b", _epoch(1, 1)), ("a", _epoch(5, 0)), ("a", _epoch(6, 0))])
    assert [s.epoch.index for s in out] == [1, 5, 6] and lenient.context_resets == {"a": 1}
    fresh = ContextStager(model).score([("a", _epoch(5, 0)), ("a", _epoch(6, 0))])
    np.testing.assert_allclose(out[2].prediction.probabilities, fresh[1].prediction.probabilities)
    b_alone = ContextStager(model).score([("b", _epoch(0, 1)), ("b", _epoch(1, 1))])
    np.testing.assert_allclose(out[0].prediction.probabilities, b_alone[1].prediction.probabilities)


def test_batcher_applies_each_epochs_input_scale(model) -> None:
    """The model input is samples x the epoch's own input_scale (µV stays in the epoch)."""
    ctx = ContextStager(model)
    e = _epoch(0, 3, scale=2.5)
    (got,) = ctx.score([("a", e)])
    x = np.zeros((1, model.seq_len, 3000), np.float32)
    x[0, -1] = (e.samples.astype(np.float64) * 2.5).astype(np.float32)
    np.testing.assert_allclose(
        got.prediction.probabilities, softmax(model.logits(x)[0, -1]), atol=1e-6
    )
    assert got.epoch is e and float(got.epoch.samples[0]) == float(e.samples[0])


class Outage:
    """A real synthetic-night source that drops off once mid-stream (SourceError, as a
    board that disconnects) and loses ``lost`` chunks before it delivers again: the DSP
    turns the lost time into gap epochs on the same grid (fault injection around a real
    source; no hardware here)."""

    def __init__(self, inner, fail_after: int, lost: int) -> None:
        self.inner, self.fail_after, self.lost = inner, fail_after, lost
        self.n, self.failed, self.entries = 0, False, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def __aenter__(self):
        await self.inner.__aenter__()
        self.entries += 1
        if self.failed and self.entries == 2:
            for _ in range(self.lost):
                await self.inner.__anext__()
        return self

    async def __aexit__(self, *exc):
        return await self.inner.__aexit__(*exc)

    def __aiter__(self):
        return self

    async def __anext__(self):
        self.n += 1
        if self.n == self.fail_after and not self.failed:
            from sleepstream.errors import SourceError

            self.failed = True
            raise SourceError("synthetic board dropped off")
        return await self.inner.__anext__()


def test_pipelines_keep_rings_contiguous_through_a_source_outage(model) -> None:
    """Two interleaved devices through the real pipeline; one source drops off and is
    re-opened after losing 95 s: every index is published once, in order, the lost time
    is gap epochs (unscored, still context), no context was restarted, and every verdict
    equals the zero-padded window path over the published epochs."""
    from sleepstream.dsp import SignalChain
    from sleepstream.pipeline import DevicePipeline, run_pipelines
    from sleepstream.profiles import load_profile
    from sleepstream.sinks.base import BaseSink
    from sleepstream.sources.base import Backoff
    from sleepstream.sources.synthetic_night import SyntheticNightSource

    class Collect(BaseSink):
        def __init__(self) -> None:
            self.causal: list = []

        async def publish(self, epoch, prediction) -> None:
            self.causal.append((epoch, prediction))

    profile = load_profile("synthetic")
    sinks = {"a": Collect(), "b": Collect()}
    sources = {
        "a": Outage(SyntheticNightSource(n_epochs=12, seed=1, speed="max", trim_wake_minutes=None),
                    fail_after=100, lost=95),
        "b": SyntheticNightSource(n_epochs=9, seed=2, speed="max", trim_wake_minutes=None),
    }  # fmt: skip
    pipes = [
        DevicePipeline(name, src, lambda s: SignalChain.from_profile(profile), [sinks[name]],
                       reopen_backoff=Backoff(initial_s=0.01, max_s=0.01))
        for name, src in sources.items()
    ]  # fmt: skip
    batcher = InferenceBatcher(model, batch_window_s=0.005)
    asyncio.run(run_pipelines(pipes, batcher))
    assert pipes[0].source_reopens == 1 and batcher.stager.context_resets == {}
    for name, n in (("a", 12), ("b", 9)):
        got = sinks[name].causal
        assert [e.index for e, _ in got] == list(range(n))
        eps = [e for e, _ in got]
        s = model.seq_len
        x = np.concatenate(
            [
                np.zeros((s - 1, 3000), np.float32),
                np.stack([(e.samples * np.float32(e.input_scale)) for e in eps]),
            ]
        )
        ref = softmax(model.logits(np.stack([x[i : i + s] for i in range(n)]))[:, -1])
        for (e, p), r in zip(got, ref, strict=True):
            if e.scorable:
                np.testing.assert_allclose(p.probabilities, r, atol=1e-5)
            else:
                assert p.stage < 0
    gaps = [e.index for e, _ in sinks["a"].causal if "gap" in e.unscored_reasons]
    assert len(gaps) >= 2 and gaps == list(range(gaps[0], gaps[-1] + 1))
