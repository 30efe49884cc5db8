"""LSL inlet on loopback: resolve, timestamps, clear not-found error, re-resolve after loss."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from sleepstream.errors import SourceError, UsageError
from sleepstream.sources import Backoff
from sleepstream.sources.lsl import LSLSource

pytestmark = pytest.mark.network


def test_lsl_reads_outlet_in_order_with_timestamps(lsl_outlet):
    """A real outlet's ramp arrives complete, in order, labelled, with ~1/fs timestamps."""
    outlet = lsl_outlet("ramp").start()

    async def run():
        got = []
        async with LSLSource(outlet.name, timeout=5.0) as src:
            async for chunk in src:
                got.append(chunk)
                if sum(c.n_samples for c in got) >= 150:
                    return src, got

    src, got = asyncio.run(asyncio.wait_for(run(), 30))
    assert src.fs == 100.0 and src.channels == ("Fpz-Cz", "Pz-Oz")
    assert src.stream_info["source_id"] == f"{outlet.name}-id"
    x = np.concatenate([c.samples for c in got], axis=1)
    ts = np.concatenate([c.timestamps for c in got])
    assert np.all(np.diff(x[0]) == 1.0)  # no sample lost or reordered
    assert np.all(x[1] - x[0] == 1000.0)
    assert np.all(np.diff(ts) > 0)
    assert np.median(np.diff(ts)) == pytest.approx(0.01, rel=0.05)
    assert src.received_samples >= 150 and src.dropped_samples == 0


def test_lsl_missing_stream_names_what_was_looked_for(lsl_loopback):
    """No matching outlet within the timeout is a SourceError naming the query."""
    src = LSLSource("no-such-stream", type="EEG", timeout=0.3)
    with pytest.raises(SourceError, match="name='no-such-stream', type='EEG'.*0.3 s"):
        asyncio.run(src.__aenter__())


def test_lsl_needs_a_query():
    """A source with neither name, type nor source id is a usage error."""
    with pytest.raises(UsageError):
        LSLSource()


@pytest.mark.slow
def test_lsl_vanished_outlet_is_reresolved_when_it_comes_back(lsl_outlet):
    """The outlet disappears and returns: the source re-resolves it and data resumes."""
    outlet = lsl_outlet("flaky").start()

    async def run():
        got, phase = [], "before"
        async with LSLSource(outlet.name, backoff=Backoff(0.1, 2.0, 0.4)) as src:
            async for chunk in src:
                got.append(chunk)
                n = sum(c.n_samples for c in got)
                if phase == "before" and n >= 50:
                    outlet.stop()  # the stream vanishes
                    phase = "down"
                    await asyncio.sleep(1.0)
                    outlet.start()  # and comes back (same name and source id)
                elif phase == "down" and src.reconnects:
                    phase, mark = "after", n
                elif phase == "after" and n >= mark + 50:
                    return src, got

    src, got = asyncio.run(asyncio.wait_for(run(), 60))
    assert src.reconnects == 1
    assert "vanished" in src.last_error
    x = np.concatenate([c.samples[0] for c in got])
    ts = np.concatenate([c.timestamps for c in got])
    assert x[-1] > x[49]  # the ramp continued from the new outlet
    assert np.diff(ts).max() > 0.5  # the outage shows as a timestamp jump


def test_loopback_config_file_matches_embedded_text():
    """The shipped lsl_loopback.cfg says what the embedded loopback config says."""
    from sleepstream.sources.lsl import LOOPBACK_CONFIG, LOOPBACK_CONFIG_TEXT

    lines = [
        ln.strip()
        for ln in LOOPBACK_CONFIG.read_text().splitlines()
        if ln.strip() and not ln.startswith(";")
    ]
    assert lines == [ln.strip() for ln in LOOPBACK_CONFIG_TEXT.splitlines() if ln.strip()]
