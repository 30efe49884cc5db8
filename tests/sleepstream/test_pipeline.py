"""The pipeline with real parts: synthetic-night source, the DSP chain, the tiny ONNX
student, in-memory collecting sinks."""

import asyncio

import numpy as np
import pytest

from sleepstream.batcher import InferenceBatcher
from sleepstream.dsp import SignalChain
from sleepstream.pipeline import DevicePipeline, run_pipelines
from sleepstream.profiles import load_profile
from sleepstream.sinks.base import BaseSink
from sleepstream.types import UNSCORED


class Collect(BaseSink):
    """A sink that keeps what it is given (raw chunks, causal and revised verdicts)."""

    def __init__(self):
        self.causal, self.revised, self.chunks = [], [], []

    async def write_chunk(self, chunk):
        self.chunks.append(chunk)

    async def publish(self, epoch, prediction):
        self.causal.append((epoch, prediction))

    async def publish_revised(self, epoch, prediction, lookahead):
        self.revised.append((epoch, prediction, lookahead))


def _source(n_epochs=10, seed=0):
    from sleepstream.sources.synthetic_night import SyntheticNightSource

    return SyntheticNightSource(n_epochs=n_epochs, seed=seed, speed="max", trim_wake_minutes=None)


@pytest.fixture(scope="module")
def stager(tiny_model):
    from sleepstream.inference import load_stager

    return load_stager(tiny_model)


def _pipeline(name, stager, sink, **kw):
    profile = load_profile("synthetic")
    return DevicePipeline(
        name, _source(**kw.pop("source", {})),
        lambda src: SignalChain.from_profile(profile), [sink], **kw,
    )  # fmt: skip


def window_path(stager, epochs):
    """Reference: each epoch's zero-padded causal window through the whole model, as the
    DSP built windows before the stager kept the context; (n, seq, 5) probabilities."""
    from sleepstream.inference import softmax

    s = stager.seq_len
    x = np.concatenate(
        [np.zeros((s - 1, 3000), np.float32),
         np.stack([e.samples * np.float32(e.input_scale) for e in epochs])]
    )  # fmt: skip
    return softmax(stager.logits(np.stack([x[i : i + s] for i in range(len(epochs))])))


def test_pipeline_scores_every_epoch_in_order_like_the_stager(stager):
    """Each epoch is published once, in order, with the stager's own verdict on its window."""
    sink = Collect()
    pipe = _pipeline("bed1", stager, sink)
    asyncio.run(run_pipelines([pipe], InferenceBatcher(stager)))
    assert [e.index for e, _ in sink.causal] == list(range(10))
    assert sum(c.n_samples for c in sink.chunks) == 10 * 30 * 100  # every raw sample too
    want = window_path(stager, [e for e, _ in sink.causal])[:, -1]
    for i, (epoch, got) in enumerate(sink.causal):
        np.testing.assert_allclose(got.probabilities, want[i], atol=1e-5)
        assert got.stage == int(np.argmax(want[i]))
        if not epoch.quality:
            assert got.confidence == pytest.approx(float(want[i].max()), abs=1e-5)
    assert pipe.n_published == 10


def test_pipeline_lookahead_publishes_revised_stage_when_t_plus_k_arrives(stager):
    """--lookahead K: epoch t gets a revised verdict computed from epoch t+K's window."""
    k = 2
    sink = Collect()
    pipe = _pipeline("bed1", stager, sink)
    asyncio.run(run_pipelines([pipe], InferenceBatcher(stager, lookahead=k)))
    probs = window_path(stager, [e for e, _ in sink.causal])
    revised_idx = [p.epoch_index for _, p, _ in sink.revised]
    assert revised_idx == list(range(0, 10 - k))
    for epoch, pred, look in sink.revised:
        assert look == k and epoch.index == pred.epoch_index
        want = probs[pred.epoch_index + k, -1 - k]
        assert pred.stage == int(np.argmax(want))
        np.testing.assert_allclose(pred.probabilities, want, atol=1e-5)


def test_batcher_revises_every_epoch_when_one_batch_holds_many_epochs_of_a_device(stager):
    """A batch of 10 epochs of one device still yields the revision of every epoch t < 10 - K."""
    k = 2
    first = Collect()
    asyncio.run(run_pipelines([_pipeline("bed1", stager, first)], InferenceBatcher(stager)))
    epochs = [e for e, _ in first.causal]
    pipe = _pipeline("bed1", stager, Collect())

    async def one_batch():
        await InferenceBatcher(stager, lookahead=k)._score([(pipe.fanout, e) for e in epochs])
        pipe.fanout.finish()
        await pipe.fanout.run()

    asyncio.run(one_batch())
    sink = pipe.fanout.sinks[0]
    assert [e.index for e, _ in sink.causal] == list(range(len(epochs)))
    assert [p.epoch_index for _, p, look in sink.revised] == list(range(0, len(epochs) - k))


def test_pipeline_until_stops_at_the_given_stream_time(stager):
    """``until`` ends the stream at that time: only the epochs before it are scored."""
    sink = Collect()
    pipe = _pipeline("bed1", stager, sink, until=4 * 30.0, source={"n_epochs": 10})
    asyncio.run(run_pipelines([pipe], InferenceBatcher(stager)))
    assert [e.index for e, _ in sink.causal] == [0, 1, 2, 3]


def test_pipeline_batches_epochs_of_several_devices(stager, tiny_model):
    """Two devices in one loop: every epoch of each is delivered to its own sinks."""
    sinks = [Collect(), Collect()]
    pipes = [
        _pipeline(f"bed{i}", stager, sinks[i], source={"n_epochs": 6, "seed": i}) for i in range(2)
    ]
    asyncio.run(run_pipelines(pipes, InferenceBatcher(stager, batch_window_s=0.005)))
    for s in sinks:
        assert [e.index for e, _ in s.causal] == list(range(6))
    a = [e.samples for e, _ in sinks[0].causal]
    b = [e.samples for e, _ in sinks[1].causal]
    assert not np.array_equal(a[-1], b[-1])  # each device got its own signal back


def test_pipeline_stop_drains_epochs_already_read(stager):
    """stop() ends the source; everything read so far is still scored and published."""
    sink = Collect()
    pipe = _pipeline("bed1", stager, sink, source={"n_epochs": 400})

    async def go():
        task = asyncio.create_task(run_pipelines([pipe], InferenceBatcher(stager)))
        while pipe.n_epochs < 3:
            await asyncio.sleep(0.01)
        pipe.stop()
        await task

    asyncio.run(go())
    assert 3 <= pipe.n_published == pipe.n_epochs < 400
    assert [e.index for e, _ in sink.causal] == list(range(pipe.n_epochs))
    assert all(p.stage != UNSCORED or p.reasons for _, p in sink.causal)


class Failing(Collect):
    """A raw-data sink whose every call fails (a full disk, a bug)."""

    def __init__(self):
        super().__init__()
        self.ended = 0

    async def write_chunk(self, chunk):
        raise OSError("disk full")

    async def publish(self, epoch, prediction):
        raise RuntimeError("broken")

    async def end_of_stream(self):
        self.ended += 1


def test_failing_sink_never_stops_the_others_or_live_staging(stager):
    """write_chunk and publish failures are counted and logged; the other sink still gets
    every epoch, and every sink is told once that the stream ended."""
    good, bad = Collect(), Failing()
    ended = []

    async def good_end():
        ended.append(len(good.causal))

    good.end_of_stream = good_end
    pipe = _pipeline("bed1", stager, good, source={"n_epochs": 4})
    pipe.set_sinks([bad, good])
    asyncio.run(run_pipelines([pipe], InferenceBatcher(stager)))
    assert [e.index for e, _ in good.causal] == [0, 1, 2, 3]
    assert ended == [4] and bad.ended == 1  # after the last verdict, once
    assert pipe.fanout.sink_errors == 4 + 4 * 30  # 4 verdicts + 120 one-second chunks
