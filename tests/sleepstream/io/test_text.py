"""Text hypnograms: Sleep-EDF .hyp symbols, ISRUC codes and format detection."""

from __future__ import annotations

import numpy as np
import pytest

from sleepstream.errors import DataFileError, HypnogramError
from sleepstream.io import read_hyp_text, read_hypnogram, read_isruc_labels
from sleepstream.io.text import sniff_text_hypnogram
from sleepstream.types import UNSCORED


def test_read_hyp_text_maps_symbols(tmp_path):
    """W 1 2 3 4 R ? (\\r-separated) map to W N1 N2 N3 N3 REM unscored, 30 s apart."""
    path = tmp_path / "a.hyp"
    path.write_bytes(b"W\r1\r2\r3\r4\rR\r?\r")
    hyp = read_hyp_text(path)
    np.testing.assert_array_equal(hyp.stages, [0, 1, 2, 3, 3, 4, UNSCORED])
    np.testing.assert_array_equal(hyp.onsets, np.arange(7) * 30.0)
    assert hyp.source == str(path)


def test_read_hyp_text_unknown_label_names_line(tmp_path):
    """An unknown symbol is a HypnogramError with the file, symbol and line."""
    path = tmp_path / "b.hyp"
    path.write_bytes(b"W\r2\rX\r")
    with pytest.raises(HypnogramError, match=r"b.hyp: unknown stage label 'X' at line 3"):
        read_hyp_text(path)


def test_read_hyp_text_empty_and_binary(tmp_path):
    """Empty, blank-only and binary files are DataFileErrors."""
    for name, data, problem in [
        ("e.hyp", b"", "empty file"),
        ("blank.hyp", b"\r\r\n", "empty file"),
        ("bin.hyp", b"\x00\x01\x02", "not a text hypnogram"),
    ]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DataFileError, match=f"{name}: {problem}"):
            read_hyp_text(tmp_path / name)


def test_read_isruc_labels_codes(tmp_path):
    """ISRUC codes 0 1 2 3 5 map to W N1 N2 N3 REM; an unknown code is an error."""
    path = tmp_path / "1_1.txt"
    path.write_text("0\n1\n2\n3\n5\n")
    np.testing.assert_array_equal(read_isruc_labels(path).stages, [0, 1, 2, 3, 4])
    path.write_text("0\n9\n")
    with pytest.raises(HypnogramError, match=r"1_1.txt: unknown stage code 9 at line 2"):
        read_isruc_labels(path)


def test_read_hypnogram_detects_formats(tmp_path, sc4001_dir, dreams_dir):
    """EDF+, .hyp, ISRUC and DREAMS hypnograms are recognised without a hint."""
    isruc = tmp_path / "2_1.txt"
    isruc.write_text("0\n0\n2\n5\n")
    hyp = tmp_path / "x.csv"
    hyp.write_bytes(b"W\r2\r")
    assert sniff_text_hypnogram(isruc) == "isruc"
    assert sniff_text_hypnogram(hyp) == "hyp"
    assert sniff_text_hypnogram(dreams_dir / "Hypnogram_excerpt1.txt") == "dreams"
    assert len(read_hypnogram(sc4001_dir / "SC4001EC-Hypnogram.edf")) == 2880
    assert len(read_hypnogram(dreams_dir / "Hypnogram_excerpt1.txt")) == 60
    np.testing.assert_array_equal(read_hypnogram(isruc).stages, [0, 0, 2, 4])
