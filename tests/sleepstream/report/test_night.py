"""Reading a recorded night directory back, and its one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sleepstream.errors import DataFileError
from sleepstream.report.night import load_night, read_channel
from sleepstream.types import UNSCORED


def test_load_night_reads_stages_probabilities_and_onsets(make_night):
    """The CSVs come back as stage codes, hypnodensity rows and 30-s onsets."""
    stages = [0, 1, 2, UNSCORED, 3, 4]
    night = load_night(make_night(stages))
    np.testing.assert_array_equal(night.stages, stages)
    np.testing.assert_allclose(night.onsets, 30.0 * np.arange(6))
    assert night.probabilities.shape == (6, 5)
    assert night.probabilities[2, 2] == pytest.approx(0.8)
    assert np.all(night.probabilities[3] == 0)
    assert night.manifest["device"] == "bed1"


def test_load_night_last_row_wins_and_missing_epochs_are_unscored(make_night):
    """A revised row replaces the earlier one; an index never written is unscored."""
    path = make_night([0, 1, 2])
    csv = path / "hypnogram.csv"
    csv.write_text(csv.read_text() + "1,x,30.000,N3,0.5,\n4,x,120.000,REM,0.6,\n")
    night = load_night(path)
    np.testing.assert_array_equal(night.stages, [0, 3, 2, UNSCORED, 4])


def test_load_night_without_manifest_is_a_one_line_error(tmp_path):
    """A directory without night.json is a DataFileError naming it."""
    with pytest.raises(DataFileError, match="no night.json") as err:
        load_night(tmp_path)
    assert "\n" not in str(err.value) and str(tmp_path) in str(err.value)


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("zz,x,0,W,0.5,", "line 5: bad epoch_index value 'zz'"),
        ("3,x,90,N5,0.5,", "line 5: unknown stage 'N5'"),
        ("3,x,90,W,abc,", "line 5: bad confidence value 'abc'"),
    ],
)
def test_load_night_corrupt_csv_names_file_and_line(make_night, line, match):
    """A corrupt hypnogram.csv row is a DataFileError naming the file, line and value."""
    path = make_night([0, 1, 2])
    csv = path / "hypnogram.csv"
    csv.write_text(csv.read_text() + line + "\n")
    with pytest.raises(DataFileError, match=match) as err:
        load_night(path)
    assert "hypnogram.csv" in str(err.value) and "\n" not in str(err.value)


def test_load_night_corrupt_manifest_and_missing_columns(make_night):
    """Invalid JSON and a CSV without its columns are DataFileErrors."""
    path = make_night([0, 1])
    (path / "hypnogram.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataFileError, match="missing column"):
        load_night(path)
    (path / "night.json").write_text("{not json")
    with pytest.raises(DataFileError, match="not valid JSON"):
        load_night(path)


def test_read_channel_places_segments_on_the_timeline_in_microvolts(make_night):
    """Raw segments come back in µV (scale_to_uv applied) at their onsets; lost ones are NaN."""
    rng = np.random.default_rng(0)
    eeg = rng.normal(0, 20e-6, (2, 4 * 3000))  # volts
    path = make_night(
        [0, 1, 2, 2],
        eeg=eeg,
        units="V",
        scale_to_uv=1e6,
        segment_seconds=30,
        staged_channel="EEG 1",
    )
    m = json.loads((path / "night.json").read_text())
    m["segments"] = [s for s in m["segments"] if s["file"] != "raw_0002.edf"]
    (path / "night.json").write_text(json.dumps(m))
    signal, fs, name = read_channel(load_night(path))
    assert (fs, name) == (100.0, "EEG 1")
    expected = eeg[1] * 1e6
    ok = np.r_[0:6000, 9000:12000]
    np.testing.assert_allclose(signal[ok], expected[ok], atol=0.01)
    assert np.all(np.isnan(signal[6000:9000]))
    with pytest.raises(DataFileError, match="'EEG 7' not recorded"):
        read_channel(load_night(path), "EEG 7")
