"""EDF replay: exact samples of the real SC4001 night, start/loop/speed, and bad files."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from sleepstream.errors import ChannelNotFoundError, DataFileError, UsageError
from sleepstream.sources.edf_replay import EDFReplaySource, parse_speed


def _write_edf(path: Path, seconds: int = 10, fs: float = 100.0) -> np.ndarray:
    """A small real EDF file with two channels; returns the written EEG A samples."""
    import edfio

    rng = np.random.default_rng(0)
    a = rng.normal(0, 20, int(seconds * fs))
    b = rng.normal(0, 5, int(seconds * fs))
    sigs = [
        edfio.EdfSignal(a, fs, label="EEG A", physical_dimension="uV", physical_range=(-200, 200)),
        edfio.EdfSignal(b, fs, label="EEG B", physical_dimension="uV", physical_range=(-200, 200)),
    ]
    edfio.Edf(sigs).write(path)
    return edfio.read_edf(path).signals[0].data


async def _drain(src: EDFReplaySource, limit: int | None = None) -> list:
    out = []
    async with src:
        async for chunk in src:
            out.append(chunk)
            if limit is not None and len(out) >= limit:
                break
    return out


def test_edf_replay_sc4001_max_speed_yields_the_file_samples(sc4001_dir):
    """At max speed the replay of SC4001 Fpz-Cz is exactly the file's samples, timed by index."""
    import warnings

    import edfio

    path = sc4001_dir / "SC4001E0-PSG.edf"
    src = EDFReplaySource(path, "EEG Fpz-Cz", speed="max", chunk_seconds=30.0)
    chunks = asyncio.run(_drain(src))
    x = np.concatenate([c.samples[0] for c in chunks])
    with warnings.catch_warnings():  # the file's last data record is incomplete
        warnings.simplefilter("ignore", UserWarning)
        ref = next(s for s in edfio.read_edf(path).signals if s.label == "EEG Fpz-Cz").data
    assert x.shape == ref.shape == (7_950_000,)
    np.testing.assert_allclose(x, ref, rtol=0, atol=1e-9)
    ts = np.concatenate([c.timestamps for c in chunks])
    np.testing.assert_allclose(ts, np.arange(ref.size) / 100.0)
    assert src.fs == 100.0 and src.channels == ("EEG Fpz-Cz",)
    assert src.received_samples == ref.size and src.dropped_samples == 0


def test_edf_replay_start_offset_and_loop_keep_time_increasing(tmp_path):
    """`start` skips into the file; `loop` starts over with timestamps still increasing."""
    path = tmp_path / "small.edf"
    ref = _write_edf(path, seconds=10)
    src = EDFReplaySource(path, "EEG A", start=4.0, loop=True, chunk_seconds=1.0)
    chunks = asyncio.run(_drain(src, limit=14))  # 6 s to the end, 6 s again, then 2 s
    x = np.concatenate([c.samples[0] for c in chunks])
    ts = np.concatenate([c.timestamps for c in chunks])
    np.testing.assert_allclose(x[:600], ref[400:], atol=1e-3)
    np.testing.assert_allclose(x[600:1200], ref[400:], atol=1e-3)
    np.testing.assert_allclose(x[1200:1400], ref[400:600], atol=1e-3)
    np.testing.assert_allclose(ts, 4.0 + np.arange(1400) / 100.0)


def test_edf_replay_two_channels_in_rows(tmp_path):
    """Several channels come as rows in the order asked."""
    path = tmp_path / "small.edf"
    _write_edf(path, seconds=3)
    chunks = asyncio.run(_drain(EDFReplaySource(path, ["EEG B", "EEG A"])))
    assert chunks[0].channels == ("EEG B", "EEG A")
    assert sum(c.n_samples for c in chunks) == 300 and chunks[0].samples.shape[0] == 2


def test_edf_replay_wrong_channel_lists_available(tmp_path):
    """A wrong channel name raises ChannelNotFoundError listing the file's channels."""
    path = tmp_path / "small.edf"
    _write_edf(path)
    with pytest.raises(ChannelNotFoundError, match="'EEG C3'.*EEG A, EEG B"):
        asyncio.run(_drain(EDFReplaySource(path, "EEG C3")))


def test_edf_replay_missing_and_truncated_files(tmp_path):
    """A missing file and a truncated EDF are DataFileErrors naming the file."""
    with pytest.raises(DataFileError, match="nothing.edf"):
        asyncio.run(_drain(EDFReplaySource(tmp_path / "nothing.edf")))
    path = tmp_path / "small.edf"
    _write_edf(path)
    cut = tmp_path / "cut.edf"
    cut.write_bytes(path.read_bytes()[:900])
    with pytest.raises(DataFileError, match="cut.edf.*truncated"):
        asyncio.run(_drain(EDFReplaySource(cut)))
    junk = tmp_path / "junk.edf"
    junk.write_bytes(b"this is not an EDF file" * 20)
    with pytest.raises(DataFileError, match="junk.edf"):
        asyncio.run(_drain(EDFReplaySource(junk)))


def test_edf_replay_start_past_end_is_usage_error(tmp_path):
    """A start offset beyond the recording is refused with its length."""
    path = tmp_path / "small.edf"
    _write_edf(path, seconds=10)
    with pytest.raises(UsageError, match="past the end"):
        asyncio.run(_drain(EDFReplaySource(path, start=11.0)))


@pytest.mark.parametrize("value", ["0", "-2", "fast", "nan", "1e-9", "1e-300", "1e7"])
def test_parse_speed_rejects_bad_values(value):
    """Speed is 'max' or a positive finite factor."""
    with pytest.raises(UsageError):
        parse_speed(value)


def test_parse_speed_accepts_max_and_factors():
    """'max' means unpaced; numbers are factors."""
    assert parse_speed("max") is None and parse_speed("30") == 30.0 and parse_speed(1) == 1.0


def test_file_replay_chunks_are_300_s_at_max_speed_and_1_s_when_paced(tmp_path):
    """At --speed max a chunk is ten 30-s epochs (issue 12: >= 30 s; ten reach inference as
    one batch); paced replays hand over 1 s."""
    path = tmp_path / "small.edf"
    _write_edf(path, seconds=700)
    fast = asyncio.run(_drain(EDFReplaySource(path, "EEG A", speed="max")))
    assert [c.n_samples for c in fast] == [30000, 30000, 10000]
    paced = EDFReplaySource(path, "EEG A", speed=1000.0)
    assert paced.chunk_seconds == 1.0
    assert {c.n_samples for c in asyncio.run(_drain(paced, limit=5))} == {100}


def test_file_replay_edf_d_keeps_record_onsets_and_the_start(tmp_path):
    """An EDF+D pause is a jump in the chunk timestamps; start_datetime is the header's."""
    import datetime as dt

    from sleepstream.io.writers import write_edf_d

    x = np.random.default_rng(0).normal(0, 20, 90 * 100)
    onsets = [30.0 * k for k in range(2)] + [120.0]  # records 0-30, 30-60, then 120-150
    path = write_edf_d(tmp_path / "d.edf", x, 100.0, onsets, record_s=30.0,
                       start=dt.datetime(2020, 5, 6, 23, 1, 2))  # fmt: skip
    src = EDFReplaySource(path, "EEG Fpz-Cz", speed="max")
    chunks = asyncio.run(_drain(src))
    ts = np.concatenate([c.timestamps for c in chunks])
    assert ts[5999] == pytest.approx(59.99) and ts[6000] == pytest.approx(120.0)
    assert src.start_datetime == dt.datetime(2020, 5, 6, 23, 1, 2) and src.from_file


def test_file_replay_of_a_brainflow_file_streams_the_boards_eeg(tmp_path):
    """A BrainFlow CSV of a Cyton replays every EEG row under its electrode name; with the
    profile's channels it streams those; its Unix start is the aware start_datetime."""
    import datetime as dt

    from sleepstream.io import writers as w

    x = np.random.default_rng(1).normal(0, 30, (8, 250 * 40))
    path = w.write_brainflow(tmp_path / "cyton.csv", w.board_array("cyton", x, t0=1.6e9))
    src = EDFReplaySource(path, speed="max", board="cyton")
    chunks = asyncio.run(_drain(src))
    assert src.channels == ("Fp1", "Fp2", "C3", "C4", "P7", "P8", "O1", "O2") and src.fs == 250.0
    np.testing.assert_allclose(np.concatenate([c.samples for c in chunks], axis=1), x, atol=1e-5)
    assert src.start_datetime == dt.datetime.fromtimestamp(1.6e9, dt.UTC)
    pair = EDFReplaySource(path, ["Fp1", "C3"], speed="max")  # the board from the columns
    assert asyncio.run(_drain(pair))[0].channels == ("Fp1", "C3")
