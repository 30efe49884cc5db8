"""ISRUC-III reader on a tiny fixture written in that format (.rec = EDF, N_1.txt)."""

from __future__ import annotations

import numpy as np
import pytest

from sleepstream.errors import ChannelNotFoundError, HypnogramError
from sleepstream.io import find_isruc_pairs, load_pairs, read_isruc

CHANNELS = ("LOC-A2", "ROC-A1", "F3-A2", "C3-A2", "O1-A2", "F4-A1", "C4-A1", "O2-A1")


@pytest.fixture
def isruc_subject(tmp_path, make_edf, make_sine):
    """Subject 1 of a fake ISRUC-III folder: 1/1.rec at 200 Hz, 10 epochs, 1_1.txt."""
    folder = tmp_path / "ISRUC_S3" / "1"
    folder.mkdir(parents=True)
    seconds = 10 * 30
    signals = {ch: make_sine(200, seconds, freq=2 + i) for i, ch in enumerate(CHANNELS)}
    make_edf(folder / "1.edf", signals, 200)
    (folder / "1.edf").rename(folder / "1.rec")
    (folder / "1_1.txt").write_text(
        "\n".join(["0", "0", "1", "2", "2", "3", "3", "5", "5", "0"]) + "\n"
    )
    (folder / "1_2.txt").write_text("\n".join(["0"] * 10) + "\n")
    return folder


def test_read_isruc_rec_and_labels(isruc_subject, tmp_path):
    """The .rec (EDF) and scorer 1 labels give 10 epochs at 100 Hz with AASM stages."""
    night = read_isruc(isruc_subject / "1.rec", fs=100, cache=tmp_path / "cache")
    assert night.channel == "C3-A2" and night.fs == 100.0
    np.testing.assert_array_equal(night.stages, [0, 0, 1, 2, 2, 3, 3, 4, 4, 0])
    assert night.epochs().shape == (10, 3000)
    assert night.meta["dataset"] == "isruc" and night.meta["source_fs"] == 200.0
    # the C3-A2 channel is a 5-Hz sine: check it is that channel, resampled intact
    spectrum = np.abs(np.fft.rfft(night.signal))
    assert np.argmax(spectrum) * 100.0 / night.signal.size == pytest.approx(5.0, abs=0.05)


def test_read_isruc_second_scorer_and_m2_alias(isruc_subject):
    """An explicit scorer file and an M1/M2 channel spelling both work."""
    night = read_isruc(isruc_subject / "1.rec", isruc_subject / "1_2.txt", "C4-M1", cache=False)
    assert night.channel == "C4-A1" and (night.stages == 0).all()


def test_read_isruc_errors(isruc_subject):
    """Missing channel lists the ISRUC channels; a label file too long is rejected."""
    with pytest.raises(ChannelNotFoundError, match="available channels: LOC-A2, ROC-A1"):
        read_isruc(isruc_subject / "1.rec", channel="Fpz-Cz", cache=False)
    (isruc_subject / "1_1.txt").write_text("\n".join(["2"] * 12) + "\n")
    with pytest.raises(HypnogramError, match="1_1.txt: hypnogram is longer"):
        read_isruc(isruc_subject / "1.rec", cache=False)


def test_find_isruc_pairs_then_load(isruc_subject):
    """A subgroup folder is discovered and loaded as trimmed 100-Hz nights."""
    pairs = find_isruc_pairs(isruc_subject.parent)
    assert len(pairs) == 1 and pairs[0].psg.name == "1.rec"
    nights = load_pairs(pairs, cache=False)
    assert nights[0].fs == 100.0 and nights[0].n_epochs == 10
