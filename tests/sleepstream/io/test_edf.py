"""EDF/EDF+/BDF reading: channels, units, annotations and the bad-file errors."""

from __future__ import annotations

import numpy as np
import pytest

from sleepstream.errors import ChannelNotFoundError, DataFileError, HypnogramError
from sleepstream.io import read_edf, read_edf_hypnogram, read_sleep_edf
from sleepstream.io.edf import read_header
from sleepstream.types import UNSCORED

STAGES = [(0, 60, "Sleep stage W"), (60, 90, "Sleep stage 2"), (150, 30, "Sleep stage 4")]


@pytest.fixture
def truncated_psg(tmp_path, sc4001_dir):
    """The first 10.5 data records of the real SC4001 PSG."""
    src = sc4001_dir / "SC4001E0-PSG.edf"
    header = read_header(src)
    record = sum(header.samples_per_record) * 2
    with src.open("rb") as f:
        data = f.read(header.header_bytes + 10 * record + record // 2)
    out = tmp_path / "SC4001E0-PSG.edf"
    out.write_bytes(data)
    return out


def test_read_header_rejects_truncated_edf(truncated_psg):
    """A cut EDF says how many records the header declares and how many the file holds."""
    with pytest.raises(DataFileError, match=r"truncated EDF: header declares 2650 data records"):
        read_header(truncated_psg)
    with pytest.raises(DataFileError, match=str(truncated_psg)):
        read_edf(truncated_psg, "EEG Fpz-Cz")


def test_read_header_rejects_cut_header(tmp_path, sc4001_dir):
    """A file that ends inside the signal headers is truncated too."""
    cut = tmp_path / "cut.edf"
    cut.write_bytes((sc4001_dir / "SC4001E0-PSG.edf").read_bytes()[:700])
    with pytest.raises(DataFileError, match="cut.edf: truncated EDF"):
        read_header(cut)


def test_read_edf_rejects_empty_and_non_edf(tmp_path):
    """An empty file and a non-EDF file each get their own message."""
    empty = tmp_path / "empty.edf"
    empty.write_bytes(b"")
    with pytest.raises(DataFileError, match="empty.edf: empty file"):
        read_edf(empty)
    text = tmp_path / "notes.edf"
    text.write_text("this is not an EDF file\n" * 20)
    with pytest.raises(DataFileError, match="notes.edf: not an EDF/BDF file"):
        read_edf(text)
    with pytest.raises(DataFileError, match="missing.edf: file not found"):
        read_edf(tmp_path / "missing.edf")


def test_read_edf_missing_channel_lists_available(sc4001_dir):
    """Asking for an absent channel lists the channels the file has."""
    with pytest.raises(ChannelNotFoundError) as err:
        read_edf(sc4001_dir / "SC4001E0-PSG.edf", "EEG C3-A2")
    msg = str(err.value)
    assert "SC4001E0-PSG.edf" in msg and "'EEG C3-A2' not found" in msg
    assert "EEG Fpz-Cz, EEG Pz-Oz, EOG horizontal" in msg


def test_read_sleep_edf_other_channel(sc4001_dir, tmp_path):
    """Any channel by name: Pz-Oz at 100 Hz, 2650 whole epochs before the trim."""
    night = read_sleep_edf(
        sc4001_dir / "SC4001E0-PSG.edf",
        sc4001_dir / "SC4001EC-Hypnogram.edf",
        "EEG Pz-Oz",
        cache=tmp_path,
    )
    assert night.channel == "EEG Pz-Oz" and night.fs == 100.0
    assert night.n_epochs == 2650
    assert night.hypnogram.stage_counts()["N3"] == 220
    assert 5 < float(np.std(night.signal)) < 100  # µV, not V


def test_read_edf_hypnogram_maps_rk_to_aasm(sc4001_dir):
    """The EDF+ hypnogram covers 24 h; S3+S4 -> N3 (220) and '?' -> unscored."""
    hyp = read_edf_hypnogram(sc4001_dir / "SC4001EC-Hypnogram.edf")
    assert len(hyp) == 2880
    assert hyp.stage_counts() == {"W": 1997, "N1": 58, "N2": 250, "N3": 220, "REM": 125}
    assert int((hyp.stages == UNSCORED).sum()) == 230


def test_read_edf_uses_own_annotations_and_channel_aliases(tmp_path, make_edf, make_sine):
    """EDF+ stage annotations inside the file become the hypnogram; C3-M2 matches C3-A2."""
    path = make_edf(
        tmp_path / "rec.edf",
        {"C3-A2": make_sine(200, 180), "ECG": make_sine(200, 180)},
        200,
        annotations=[*STAGES, (10, 0, "Lights off")],
    )
    night = read_edf(path, "c3-m2", fs=100)
    assert night.channel == "C3-A2" and night.fs == 100.0
    np.testing.assert_array_equal(night.stages, [0, 0, 2, 2, 2, 3])
    assert night.epochs().shape == (6, 3000)


def test_read_edf_without_stages_is_unscored(tmp_path, make_edf, make_sine):
    """Without any hypnogram every whole 30-s epoch is unscored; default channel is EEG."""
    path = make_edf(
        tmp_path / "plain.edf", {"ECG": make_sine(100, 95), "EEG Cz": make_sine(100, 95)}, 100
    )
    night = read_edf(path)
    assert night.channel == "EEG Cz"
    assert night.n_epochs == 3 and (night.stages == UNSCORED).all()


def test_read_edf_scales_units_to_microvolts(tmp_path, make_edf, make_sine):
    """A BDF+ signal stored in mV is returned in µV, with its BDF+ stage annotations."""
    path = make_edf(
        tmp_path / "mv.bdf",
        {"EEG": make_sine(256, 60, amp=0.05)},
        256,
        unit="mV",
        bdf=True,
        annotations=[(0, 30, "Sleep stage N2"), (30, 30, "Sleep stage REM")],
    )
    night = read_edf(path, fs=100)
    assert night.meta["unit"] == "mV"
    assert 45 < float(np.max(night.signal)) < 55
    np.testing.assert_array_equal(night.stages, [2, 4])


def test_read_edf_unknown_stage_annotation(tmp_path, make_edf, make_sine):
    """An unknown 'Sleep stage' label is a HypnogramError naming the file and label."""
    path = make_edf(
        tmp_path / "odd.edf",
        {"EEG": make_sine(100, 90)},
        100,
        annotations=[(0, 90, "Sleep stage X")],
    )
    with pytest.raises(HypnogramError, match=r"odd.edf: unknown stage label 'Sleep stage X'"):
        read_edf(path)


def test_read_edf_off_grid_annotation(tmp_path, make_edf, make_sine):
    """A stage annotation that does not start on the 30-s grid is rejected."""
    path = make_edf(
        tmp_path / "grid.edf",
        {"EEG": make_sine(100, 90)},
        100,
        annotations=[(15, 30, "Sleep stage 2")],
    )
    with pytest.raises(HypnogramError, match="not on the 30-s epoch grid"):
        read_edf(path)


def test_read_sleep_edf_hypnogram_longer_than_psg(tmp_path, make_edf, make_sine):
    """A hypnogram that scores epochs past the PSG end is rejected with both lengths."""
    psg = make_edf(tmp_path / "short-PSG.edf", {"EEG Fpz-Cz": make_sine(100, 120)}, 100)
    hyp = tmp_path / "long.hyp"
    hyp.write_bytes(b"W\r1\r2\r2\r2\r2\r")
    with pytest.raises(HypnogramError, match=r"long.hyp: hypnogram is longer than the recording"):
        read_sleep_edf(psg, hyp, cache=False)


def test_read_sleep_edf_hypnogram_shorter_than_psg(tmp_path, make_edf, make_sine):
    """A hypnogram that stops before the PSG's last epoch is rejected."""
    psg = make_edf(tmp_path / "x-PSG.edf", {"EEG Fpz-Cz": make_sine(100, 300)}, 100)
    hyp = tmp_path / "short.hyp"
    hyp.write_bytes(b"W\r1\r2\r")
    with pytest.raises(HypnogramError, match=r"short.hyp: hypnogram is shorter than the recording"):
        read_sleep_edf(psg, hyp, cache=False)


def test_read_edf_dreams_excerpt3_matches_text(dreams_dir):
    """Real DREAMS excerpt3.edf ('UV' units): the default channel is C3-A1 and equals the
    text excerpt in µV."""
    from sleepstream.io.dreams import read_dreams_signal

    night = read_edf(dreams_dir / "excerpt3.edf")
    text, fs, channel = read_dreams_signal(dreams_dir / "excerpt3.txt")
    assert night.channel == channel == "C3-A1" and night.fs == fs == 50.0
    np.testing.assert_allclose(night.signal[: text.size], text, rtol=0, atol=1e-3)
