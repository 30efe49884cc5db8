"""BrainFlow boards: the synthetic board for real, dongle discovery, clear start-up errors."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from sleepstream.errors import SourceError
from sleepstream.sources import Backoff, open_source
from sleepstream.sources.boards import BOARD_NAMES
from sleepstream.sources.brainflow import BrainFlowSource, resolve_serial_port

pytest.importorskip("brainflow")


async def _collect(src, n_samples: int, on_chunk=None):
    chunks = []
    async with src:
        async for chunk in src:
            chunks.append(chunk)
            if on_chunk is not None:
                on_chunk(src, chunks)
            if sum(c.n_samples for c in chunks) >= n_samples:
                break
    return chunks


def test_synthetic_board_delivers_chunks_with_channels_and_fs():
    """The synthetic board streams its 16 EEG rows at 250 Hz with increasing timestamps."""
    src = open_source("board:synthetic", poll_s=0.05)
    chunks = asyncio.run(asyncio.wait_for(_collect(src, 500), 30))
    assert src.fs == 250.0
    assert src.channels[:3] == ("Fz", "C3", "Cz") and len(src.channels) == 16
    assert all(c.samples.shape == (16, c.n_samples) for c in chunks)
    ts = np.concatenate([c.timestamps for c in chunks])
    assert np.all(np.diff(ts) > 0)
    assert np.median(np.diff(ts)) == pytest.approx(1 / 250, rel=0.2)
    assert src.received_samples >= 500 and src.dropped_samples == 0
    assert np.all(np.concatenate([c.samples for c in chunks], axis=1).std(axis=1) > 0)


def test_synthetic_board_is_reprepared_after_a_stall():
    """A board that stops delivering is released and re-prepared; data resumes after a gap."""
    src = BrainFlowSource(
        "synthetic", poll_s=0.05, stall_timeout_s=0.5, backoff=Backoff(0.1, 2.0, 0.5)
    )
    state = {"killed_at": None}

    def kill_once(s, chunks):
        n = sum(c.n_samples for c in chunks)
        if state["killed_at"] is None and n >= 100:
            state["killed_at"] = n
            s._board.stop_stream()  # the board goes silent, as when the dongle is pulled

    async def run():
        chunks = []
        async with src:
            async for chunk in src:
                chunks.append(chunk)
                kill_once(src, chunks)
                if src.reconnects and sum(c.n_samples for c in chunks) > state["killed_at"] + 100:
                    break
        return chunks

    chunks = asyncio.run(asyncio.wait_for(run(), 30))
    assert src.reconnects == 1
    assert "no data" in src.last_error
    ts = np.concatenate([c.timestamps for c in chunks])
    assert np.diff(ts).max() > 0.4  # the outage shows as a timestamp jump


def test_openbci_without_dongle_fails_fast_with_clear_message(tmp_path):
    """With no serial port present, `openbci` says so, lists the ports and names --serial-port."""
    patterns = (str(tmp_path / "ttyUSB*"), str(tmp_path / "ttyACM*"))
    src = BrainFlowSource("openbci", serial_patterns=patterns)
    with pytest.raises(SourceError) as info:
        asyncio.run(src.__aenter__())
    msg = str(info.value)
    assert "no OpenBCI dongle found" in msg
    assert patterns[0] in msg and patterns[1] in msg
    assert "--serial-port" in msg
    assert "Traceback" not in msg and "BrainFlowError" not in msg


def test_resolve_serial_port_picks_the_only_candidate(tmp_path):
    """Exactly one candidate is used; several are refused with the list (files stand in for
    the physical dongle's device nodes)."""
    (tmp_path / "ttyUSB0").touch()
    pats = (str(tmp_path / "ttyUSB*"), str(tmp_path / "ttyACM*"))
    assert resolve_serial_port("openbci", None, pats) == str(tmp_path / "ttyUSB0")
    assert resolve_serial_port("muse-s", None, pats) is None  # Bluetooth: no serial port
    (tmp_path / "ttyACM0").touch()
    with pytest.raises(SourceError, match="several serial ports.*ttyACM0.*ttyUSB0.*--serial-port"):
        resolve_serial_port("openbci", None, pats)
    with pytest.raises(SourceError, match="does not exist"):
        resolve_serial_port("cyton", str(tmp_path / "ttyUSB9"), pats)


def test_unknown_board_lists_valid_names():
    """An unknown board name is a SourceError that lists every valid board."""
    with pytest.raises(SourceError) as info:
        open_source("board:cyclone")
    for name in BOARD_NAMES:
        assert name in str(info.value)


def test_playback_needs_a_file():
    """The playback board is refused without --file before any BrainFlow call."""
    from sleepstream.errors import UsageError

    with pytest.raises(UsageError, match="--file"):
        BrainFlowSource("playback")


def test_playback_board_replays_a_brainflow_csv(tmp_path):
    """The playback board replays a DataFilter CSV in Cyton layout, samples in order."""
    import time

    from brainflow.data_filter import DataFilter

    n = 400
    data = np.zeros((24, n))
    data[1:9] = np.arange(n)[None, :] + 1000.0 * np.arange(8)[:, None]
    data[22] = time.time() + np.arange(n) / 250.0
    path = tmp_path / "night.csv"
    DataFilter.write_file(data, str(path), "w")
    src = BrainFlowSource("playback", file=path, master_board="cyton", poll_s=0.05)
    chunks = asyncio.run(asyncio.wait_for(_collect(src, 150), 30))
    x = np.concatenate([c.samples for c in chunks], axis=1)
    assert src.channels == ("Fp1", "Fp2", "C3", "C4", "P7", "P8", "O1", "O2")
    assert x[0, 0] == 0.0 and np.all(np.diff(x[0]) == 1.0)
    assert np.all(x[7] - x[0] == 7000.0)


def test_slow_consumer_drops_are_counted():
    """With a lagging consumer the oldest chunks are dropped; every sample is accounted for."""
    src = BrainFlowSource("synthetic", poll_s=0.02, queue_size=2)

    async def run():
        delivered = 0
        async with src:
            async for chunk in src:
                delivered += chunk.n_samples
                await asyncio.sleep(0.3)  # the pipeline is stuck for a while
                if src.dropped_samples:
                    break
            src._stop.set()  # stop the reader, then count what is still queued
            await asyncio.to_thread(src._thread.join, 10)
            await asyncio.sleep(0.05)  # let pending hand-overs land
            queued = 0
            while not src._queue._queue.empty():
                queued += src._queue._queue.get_nowait().n_samples
            return delivered, queued, src.received_samples, src.dropped_samples

    delivered, queued, received, dropped = asyncio.run(asyncio.wait_for(run(), 30))
    assert dropped > 0
    assert delivered + dropped + queued == received


def test_muse_s_without_bluetooth_does_not_mention_a_serial_port():
    """A real BrainFlow Muse S session with no headband (and here no adapter) fails with a
    Bluetooth hint; the serial-port hint of the dongle boards never appears."""
    src = BrainFlowSource("muse-s", timeout=1)
    with pytest.raises(SourceError) as info:
        asyncio.run(src.__aenter__())
    msg = str(info.value).lower()
    assert "muse-s" in msg and "bluetooth" in msg
    assert "serial" not in msg


@pytest.mark.parametrize("board", BOARD_NAMES)
def test_every_brainflow_error_hint_fits_the_board_transport(board):
    """For every board and every BrainFlow error code: serial hints only for dongle boards,
    Bluetooth hints only for BLE boards (a class, not just the Muse S example)."""
    from sleepstream.sources.boards import transport
    from sleepstream.sources.brainflow import _HINTS, _explain

    for code in _HINTS:
        msg = _explain(RuntimeError(f"{code}:2 unable to prepare streaming session"), board).lower()
        assert code.lower() in msg
        if transport(board) != "serial":
            assert "serial" not in msg, (board, code, msg)
        if transport(board) != "ble":
            assert "bluetooth" not in msg and "headband" not in msg, (board, code, msg)
