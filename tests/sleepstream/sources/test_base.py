"""The source registry, the counted-drop hand-over queue and the back-off schedule."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys

import numpy as np
import pytest

from sleepstream.errors import SourceError, UsageError
from sleepstream.sources import Backoff, ChunkQueue, Source, open_source, parse_source_spec
from sleepstream.types import Chunk


def _chunk(n: int, t0: float = 0.0) -> Chunk:
    return Chunk(np.zeros((1, n)), t0 + np.arange(n) / 100.0, 100.0, ("x",), 0.0)


def test_backoff_grows_to_ceiling_with_bounded_jitter():
    """Delays grow by the factor up to max_s, each within the jitter band."""
    b = Backoff(initial_s=1.0, factor=2.0, max_s=8.0, jitter=0.25, max_attempts=6)
    delays = list(b.delays(random.Random(1)))
    nominal = [1, 2, 4, 8, 8, 8]
    assert len(delays) == 6
    for d, n in zip(delays, nominal, strict=True):
        assert 0.75 * n <= d <= 1.25 * n


def test_backoff_rejects_bad_jitter():
    """A jitter outside [0, 1] is a usage error."""
    with pytest.raises(UsageError):
        Backoff(jitter=2.0)


def test_chunk_queue_drops_oldest_and_counts():
    """When the consumer lags, the oldest chunks go and their samples are counted."""

    async def scenario():
        q = ChunkQueue(asyncio.get_running_loop(), maxsize=2)
        for i in range(5):
            q.put_threadsafe(_chunk(10, t0=i))
        await asyncio.sleep(0.01)  # let call_soon_threadsafe callbacks run
        got = [await q.get(), await q.get()]
        q.close_threadsafe()
        with pytest.raises(StopAsyncIteration):
            await q.get()
        return q, got

    q, got = asyncio.run(scenario())
    assert q.received_samples == 50
    assert q.dropped_samples == 30
    assert [c.timestamps[0] for c in got] == [3.0, 4.0]


def test_chunk_queue_raises_reader_error():
    """A reader's fatal error reaches the consumer."""

    async def scenario():
        q = ChunkQueue(asyncio.get_running_loop(), maxsize=2)
        q.close_threadsafe(SourceError("gone"))
        await q.get()

    with pytest.raises(SourceError, match="gone"):
        asyncio.run(scenario())


def test_parse_source_spec_kinds_and_unknown():
    """Specs split into kind and argument; an unknown kind lists the valid ones."""
    assert parse_source_spec("board:openbci") == ("board", "openbci")
    assert parse_source_spec("edf:/a/b:c.edf") == ("edf", "/a/b:c.edf")
    assert parse_source_spec("synthetic-night") == ("synthetic-night", None)
    with pytest.raises(SourceError, match="valid kinds: board, lsl, edf, synthetic-night"):
        parse_source_spec("serial:/dev/x")


@pytest.mark.slow
def test_open_source_is_lazy_and_checks_options(tmp_path):
    """Building an EDF source imports neither BrainFlow nor pylsl; bad options are usage errors."""
    src = open_source(f"edf:{tmp_path / 'x.edf'}", speed="max")
    assert isinstance(src, Source)
    code = (
        "import sys; from sleepstream.sources import open_source; open_source('edf:x.edf'); "
        "print(sorted(m for m in ('brainflow', 'pylsl', 'mne') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    with pytest.raises(UsageError, match="edf"):
        open_source("edf:x.edf", bogus=1)
    with pytest.raises(UsageError, match="speed"):
        open_source("edf:x.edf", speed="fast")
