"""The one reading API: every format written by its own writer reads back in µV, lazily,
with its time base (EDF+D onsets, board timestamps), start time and stage annotations;
bad files get one-line errors naming the file."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from sleepstream.errors import ChannelNotFoundError, DataFileError, TruncatedFileError
from sleepstream.io import (
    open_recording,
    pick_channel,
    pick_channels,
    read_channels,
    read_hypnogram,
    read_recording,
    sniff_format,
)
from sleepstream.io import writers as w
from sleepstream.io.readers import own_hypnogram
from sleepstream.types import UNSCORED

FS = 100.0
START = dt.datetime(2021, 3, 4, 22, 15, 7)
STAGES = [
    (0.0, 30.0, "Sleep stage W"),
    (30.0, 60.0, "Sleep stage 2"),
    (90.0, 30.0, "Sleep stage R"),
]
NAMES = ["EEG Fpz-Cz", "EEG Pz-Oz"]


@pytest.fixture(scope="module")
def signal() -> np.ndarray:
    """Two channels, 2 min at 100 Hz, in µV."""
    return np.random.default_rng(7).normal(0, 30, (2, int(120 * FS)))


def _write(fmt: str, folder: Path, x: np.ndarray) -> Path:
    if fmt == "fif":
        return w.write_fif(folder / "night_raw.fif", x, FS, NAMES, start=START, annotations=STAGES)
    if fmt == "brainvision":
        return w.write_brainvision(folder / "night.vhdr", x, FS, NAMES, start=START,
                                   annotations=STAGES)  # fmt: skip
    if fmt == "eeglab":
        return w.write_eeglab(folder / "night.set", x, FS, NAMES, annotations=STAGES)
    return w.write_edf(folder / "night.edf", x, FS, NAMES, start=START, annotations=STAGES)


@pytest.mark.parametrize(
    ("fmt", "atol", "start"),
    [("fif", 1e-4, START), ("brainvision", 1e-4, START), ("eeglab", 1e-4, None),
     ("edf", 5e-3, START)],
)  # fmt: skip
def test_each_format_reads_back_its_own_writer(fmt, atol, start, signal, tmp_path):
    """FIF, BrainVision, EEGLAB and EDF written by their own writers read back in µV,
    with the start time and the stage annotations as a hypnogram."""
    rec = open_recording(_write(fmt, tmp_path, signal))
    assert rec.format == fmt and [c.name for c in rec.channels] == NAMES
    picks, fs = pick_channels(rec, ["EEG Pz-Oz"])
    x, ts = read_channels(rec, picks)
    np.testing.assert_allclose(x[0], signal[1], atol=atol)
    np.testing.assert_allclose(ts, np.arange(signal.shape[1]) / FS)
    assert fs == FS and rec.duration_s == pytest.approx(120.0)
    assert rec.start_datetime == start
    hyp = own_hypnogram(rec)
    assert hyp is not None and hyp.stages.tolist() == [0, 2, 2, 4]


def test_blocks_are_lazy_chunks_from_a_start_offset(signal, tmp_path):
    """Blocks are ~block_s long, start at start_s and cover the rest exactly once."""
    rec = open_recording(_write("fif", tmp_path, signal))
    blocks = list(rec.blocks([0], start_s=45.0, block_s=30.0))
    assert [b.n_samples for b in blocks] == [3000, 3000, 1500]
    ts = np.concatenate([b.timestamps for b in blocks])
    np.testing.assert_allclose(ts, 45.0 + np.arange(7500) / FS)
    np.testing.assert_allclose(blocks[0].samples[0], signal[0, 4500:7500], atol=1e-4)


def test_edf_d_record_onsets_become_timestamp_gaps(make_edf_d, tmp_path):
    """EDF+D: records after a pause carry their own onset; the gap is listed and the
    epochs it touches are unscored by read_recording."""
    x = np.random.default_rng(1).normal(0, 20, 120 * 100)
    onsets = [float(k) for k in range(60)] + [float(k) for k in range(90, 150)]
    path = make_edf_d(tmp_path / "d.edf", x, 100.0, onsets,
                      annotations=[(0.0, 150.0, "Sleep stage 2")])  # fmt: skip
    rec = open_recording(path)
    assert rec.format == "edf" and rec.duration_s == 150.0
    assert rec.gaps == [(60.0, 30.0)]
    x_read, ts = read_channels(rec, [0])
    np.testing.assert_allclose(x_read[0], x, atol=0.02)
    assert ts[5999] == pytest.approx(59.99) and ts[6000] == pytest.approx(90.0)
    night = read_recording(path, fs=100.0)
    assert night.signal.size == 15000 and np.all(night.signal[6000:9000] == 0)
    assert night.stages.tolist() == [2, 2, UNSCORED, 2, 2] and night.meta["gaps_s"] == 30.0


def test_edf_d_overlapping_records_are_refused(make_edf_d, tmp_path):
    """A record that starts before the previous one ends is a one-line error."""
    x = np.zeros(300)
    path = make_edf_d(tmp_path / "bad.edf", x, 100.0, [0.0, 0.5, 2.0])
    with pytest.raises(DataFileError, match=r"bad\.edf: EDF\+D data record 1 starts at 0.5 s"):
        read_channels(open_recording(path), [0])


def test_edf_units_any_case_are_microvolts(make_edf, tmp_path):
    """'mV' is x1000, 'UV' (as DREAMS writes it) is µV."""
    x = np.sin(np.arange(1000) / 10.0)
    for unit, factor in (("mV", 1e3), ("UV", 1.0), ("V", 1e6)):
        path = make_edf(tmp_path / f"{unit}.edf", {"EEG A": x}, 100.0, unit=unit)
        y, _ = read_channels(open_recording(path), [0])
        np.testing.assert_allclose(y[0], x * factor, rtol=1e-3, atol=1e-3 * factor)


def test_dreams_excerpt3_edf_unit_uv_is_read_in_microvolts(dreams_dir):
    """DREAMS excerpt3.edf writes 'UV' (MNE reads it as volts): its C3-A1 has the text
    file's amplitude, std ~20.7 µV."""
    rec = open_recording(dreams_dir / "excerpt3.edf")
    i = pick_channel(rec, "C3-A1")
    assert rec.channels[i].unit == "UV" and rec.channels[i].fs == 50.0
    x, _ = read_channels(rec, [i])
    assert 20.0 < float(np.std(x)) < 21.5


def test_bdf_24_bit_reads_like_edfio(make_edf, tmp_path):
    """24-bit BDF samples (negative ones included) equal edfio's reading."""
    import edfio

    x = np.random.default_rng(3).normal(0, 200, 2000)
    path = make_edf(tmp_path / "a.bdf", {"EEG A": x}, 200.0, bdf=True)
    y, _ = read_channels(open_recording(path), [0])
    np.testing.assert_allclose(y[0], edfio.read_bdf(path).signals[0].data, atol=1e-9)


def test_brainflow_file_layout_timestamps_and_gap(tmp_path):
    """A BrainFlow file (DataFilter.write_file) of a Cyton: electrodes named as BrainFlow
    names them, µV values, Unix start, a 10-s pause as a timestamp jump."""
    x = np.random.default_rng(0).normal(0, 30, (8, 250 * 40))
    arr = w.board_array("cyton", x, t0=1.7e9)
    arr = np.delete(arr, np.s_[250 * 20 : 250 * 30], axis=1)
    rec = open_recording(w.write_brainflow(tmp_path / "BrainFlow-RAW.csv", arr))
    assert rec.format == "brainflow" and rec.board == "cyton"
    assert [c.name for c in rec.channels] == ["Fp1", "Fp2", "C3", "C4", "P7", "P8", "O1", "O2"]
    assert rec.start_datetime == dt.datetime.fromtimestamp(1.7e9, dt.UTC)
    picks, fs = pick_channels(rec, ["Fp1", "C3"])
    y, ts = read_channels(rec, picks)
    keep = np.delete(x, np.s_[250 * 20 : 250 * 30], axis=1)
    np.testing.assert_allclose(y, keep[[0, 2]], atol=1e-5)
    assert fs == 250.0 and np.max(np.diff(ts)) == pytest.approx(10.004, abs=1e-3)
    assert rec.duration_s == pytest.approx(40.0, abs=1e-3)


def test_brainflow_synthetic_board_file_needs_its_board_named(tmp_path):
    """A real synthetic-board session written by BrainFlow: 32 columns fit the synthetic
    board and the Cyton+Daisy, so the board must be named; named, it reads its layout."""
    pytest.importorskip("brainflow")
    import time
    import warnings

    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    from brainflow.board_shim import BoardShim, BrainFlowInputParams

    BoardShim.disable_board_logger()
    board = BoardShim(-1, BrainFlowInputParams())
    board.prepare_session()
    try:
        board.start_stream()
        time.sleep(1.2)
        data = board.get_board_data()
        board.stop_stream()
    finally:
        board.release_session()
    path = w.write_brainflow(tmp_path / "synthetic.csv", data)
    assert sniff_format(path) == "brainflow"
    with pytest.raises(DataFileError, match="32 columns fits boards cyton-daisy, synthetic"):
        open_recording(path)
    rec = open_recording(path, board="synthetic")
    picks, _ = pick_channels(rec, ["Fz", "Cz"])
    y, ts = read_channels(rec, picks)
    np.testing.assert_allclose(y, data[[1, 3]], atol=1e-5)
    np.testing.assert_allclose(ts, data[30] - data[30, 0], atol=1e-5)


def test_openbci_gui_file_reads_its_header(tmp_path):
    """An OpenBCI GUI recording: board from '%Board', rate from '%Sample Rate', EXG
    columns named by the board's electrodes, the Timestamp column honoured."""
    x = np.random.default_rng(2).normal(0, 30, (8, 250 * 6))
    arr = w.board_array("cyton", x, t0=1.6e9)
    path = w.write_openbci(tmp_path / "OpenBCI-RAW-2021.txt", "cyton", arr)
    rec = open_recording(path)
    assert rec.format == "openbci" and rec.board == "cyton"
    assert [c.name for c in rec.channels][:3] == ["Fp1", "Fp2", "C3"]
    y, ts = read_channels(rec, [0, 2])
    np.testing.assert_allclose(y, x[[0, 2]], atol=1e-9)
    np.testing.assert_allclose(ts, np.arange(x.shape[1]) / 250.0, atol=1e-6)


def test_openbci_gui_v3_file_uses_its_clock_column(tmp_path):
    """The GUI v3 layout (no column line, time of day last) reads; a pause in the clock
    is a jump, and midnight does not send time backwards."""
    lines = ["%OpenBCI Raw EEG Data", "%Number of channels = 2", "%Sample Rate = 250.0 Hz",
             "%First Column = SampleIndex", "%Last Column = Timestamp"]  # fmt: skip
    t = np.r_[np.arange(500), np.arange(1000, 1500)] / 250.0 + (86400 - 3.0)
    for k, s in enumerate(t):
        s %= 86400
        clock = f"{int(s // 3600):02d}:{int(s % 3600 // 60):02d}:{s % 60:06.3f}"
        lines.append(f"{k % 256}, {k}.0, {-k}.0, 0.0, 0.0, 0.0, {clock}")
    path = tmp_path / "OpenBCI-RAW-v3.txt"
    path.write_text("\n".join(lines) + "\n")
    rec = open_recording(path)
    assert [c.name for c in rec.channels] == ["EEG1", "EEG2"] and rec.start_datetime is None
    y, ts = read_channels(rec, [0, 1])
    np.testing.assert_allclose(y[1], -np.arange(1000))
    assert np.all(np.diff(ts) > 0) and ts[500] - ts[499] == pytest.approx(2.004, abs=1e-3)


def test_board_file_with_a_cut_last_line_loses_only_that_line(tmp_path):
    """A recording cut mid-line by a crash: the partial last row is dropped; a bad row
    elsewhere is a one-line error naming the line."""
    arr = w.board_array("cyton", np.ones((8, 500)))
    path = w.write_brainflow(tmp_path / "cut.csv", arr)
    text = path.read_text()
    path.write_text(text[: len(text) - 40])
    y, _ = read_channels(open_recording(path), [0])
    assert y.shape[1] == 499
    lines = text.splitlines()
    lines[100] = "garbage\tline"
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFileError, match=r"bad\.csv: line 101: not a brainflow data row"):
        read_channels(open_recording(bad, board="cyton"), [0])


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("notes.xyz", b"hello world\n" * 50, "unsupported recording format '.xyz'"),
        ("broken_raw.fif", b"\x00" * 2000, "cannot read fif file"),
        ("broken.vhdr", b"not a header\n", "cannot read brainvision file"),
        ("broken.set", b"MATLAB 5.0 junk" * 10, "cannot read eeglab file"),
        ("photo.edf", b"\x89PNG\r\n" + bytes(300), "not an EDF/BDF file"),
        ("empty.fif", b"", "empty file"),
    ],
)
def test_unsupported_and_corrupt_files_give_one_line_errors(name, content, problem, tmp_path):
    """Each bad file raises a DataFileError naming the file and the problem in one line."""
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataFileError) as info:
        open_recording(path)
    msg = str(info.value)
    assert name in msg and problem in msg and "\n" not in msg


def test_truncated_edf_and_missing_channel(make_edf, tmp_path):
    """A cut EDF and a wrong channel name keep their typed errors."""
    path = make_edf(tmp_path / "a.edf", {"EEG A": np.zeros(1000)}, 100.0)
    cut = tmp_path / "cut.edf"
    cut.write_bytes(path.read_bytes()[:-300])
    with pytest.raises(TruncatedFileError, match="cut.edf: truncated EDF"):
        open_recording(cut)
    with pytest.raises(ChannelNotFoundError, match="'C3'.*available channels: EEG A"):
        pick_channel(open_recording(path), "C3")


def test_read_recording_any_format_with_a_bids_events_hypnogram(signal, tmp_path):
    """read_recording takes a FIF recording and a BIDS events.tsv as its hypnogram."""
    events = tmp_path / "sub-1_task-sleep_events.tsv"
    events.write_text("onset\tduration\ttrial_type\n0\t30\tSleep stage N2\n30\t30\t"
                      "Sleep stage N3\n60\t30\tSleep stage ?\n90\t30\tSleep stage W\n")  # fmt: skip
    assert read_hypnogram(events).stages.tolist() == [2, 3, UNSCORED, 0]
    night = read_recording(_write("fif", tmp_path, signal), "EEG Fpz-Cz", events, fs=100.0)
    assert night.stages.tolist() == [2, 3, UNSCORED, 0] and night.meta["format"] == "fif"
    np.testing.assert_allclose(night.signal, signal[0], atol=1e-4)


def test_read_hypnogram_from_a_recordings_own_annotations(signal, tmp_path):
    """A BrainVision file whose markers are stages is a hypnogram too."""
    path = _write("brainvision", tmp_path, signal)
    assert read_hypnogram(path).stages.tolist() == [0, 2, 2, 4]


def test_training_pairs_of_any_format_and_bids_trees(signal, tmp_path):
    """distill's path: RecordingPair of a BrainVision file + a .hyp text hypnogram, and a
    BIDS tree's (eeg, events.tsv) pairs, all through iter_nights at 100 Hz."""
    from sleepstream.io import RecordingPair, find_bids_pairs, iter_nights

    vhdr = _write("brainvision", tmp_path, signal)
    hyp = tmp_path / "night.hyp"
    hyp.write_text("W\r2\r3\rR\r")
    eeg_dir = tmp_path / "bids" / "sub-07" / "ses-2" / "eeg"
    eeg_dir.mkdir(parents=True)
    w.write_edf(eeg_dir / "sub-07_ses-2_task-sleep_eeg.edf", signal, FS, NAMES)
    (eeg_dir / "sub-07_ses-2_task-sleep_events.tsv").write_text(
        "onset\tduration\ttrial_type\n0\t60\tSleep stage N2\n60\t60\tSleep stage R\n"
    )
    (eeg_dir / "sub-07_ses-2_task-rest_events.tsv").write_text("onset\tduration\ttrial_type\n")
    bids = find_bids_pairs(tmp_path / "bids")
    assert [(p.dataset, p.subject, p.psg.name) for p in bids] == [
        ("bids", "07_ses-2", "sub-07_ses-2_task-sleep_eeg.edf")
    ]
    pairs = [RecordingPair(vhdr, hyp, "mylab", "s1"), *bids]
    nights = list(iter_nights(pairs, "EEG Pz-Oz", trim=False))
    assert [n.stages.tolist() for n in nights] == [[0, 2, 3, 4], [2, 2, 4, 4]]
    assert all(n.fs == 100.0 and n.channel == "EEG Pz-Oz" for n in nights)
    np.testing.assert_allclose(nights[0].signal, signal[1], atol=1e-4)


def test_fuzzed_edf_headers_and_annotations_never_escape_as_tracebacks(tmp_path_factory):
    """Random byte changes in an EDF+D file's header, signal headers and TALs: every
    outcome is a result or a DataFileError (one line naming the file), never another
    exception."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as hs

    folder = tmp_path_factory.mktemp("fuzz")
    base = w.write_edf_d(
        folder / "base.edf", np.linspace(-100, 100, 400), 100.0, [0.0, 1.0, 5.0, 6.0],
        annotations=[(0.0, 30.0, "Sleep stage W")],
    ).read_bytes()  # fmt: skip
    target = folder / "fuzzed.edf"

    @settings(max_examples=150, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
    @given(hs.lists(hs.tuples(hs.integers(0, len(base) - 1), hs.integers(0, 255)),
                    min_size=1, max_size=8))  # fmt: skip
    def check(changes):
        data = bytearray(base)
        for pos, value in changes:
            data[pos] = value
        target.write_bytes(bytes(data))
        try:
            rec = open_recording(target)
            if rec.channels:
                read_channels(rec, [0])
            own_hypnogram(rec)
        except DataFileError as exc:
            assert "fuzzed.edf" in str(exc) and "\n" not in str(exc)

    check()


@pytest.mark.parametrize("field", ["digital_min", "physical_max"])
@pytest.mark.parametrize("value", [b"inf     ", b"-inf    ", b"nan     "])
def test_non_finite_signal_header_fields_are_not_edf(make_edf, tmp_path, field, value):
    """A digital or physical limit written as inf/nan is 'not an EDF' in one line (faults R13)."""
    path = make_edf(tmp_path / "a.edf", {"EEG A": np.zeros(300), "EEG B": np.zeros(300)}, 100.0)
    data = bytearray(path.read_bytes())
    ns, offset = 2, {"digital_min": 120, "physical_max": 112}[field]
    pos = 256 + offset * ns + 8  # the second signal's field
    data[pos : pos + 8] = value
    path.write_bytes(bytes(data))
    with pytest.raises(DataFileError, match=r"a\.edf: not an EDF/BDF file"):
        open_recording(path)


def test_paths_that_cannot_be_probed_are_one_line_errors(tmp_path):
    """A file name too long for the file system is 'cannot open', not an OSError (faults R9)."""
    path = tmp_path / ("x" * 300 + ".edf")
    with pytest.raises(DataFileError, match="cannot open: File name too long"):
        open_recording(path)
    with pytest.raises(DataFileError, match="cannot open: File name too long"):
        read_hypnogram(tmp_path / ("y" * 300 + ".hyp"))
