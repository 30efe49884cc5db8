"""Which nights a dataset holds: pairs files, BIDS trees, Sleep-EDF/ISRUC, content keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from distill.datasets import NightSource, find_sources, read_pairs_tsv, source_files
from sleepstream.errors import DataFileError, UsageError


def _touch(*paths: Path) -> None:
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x" + p.name.encode())


def test_pairs_file_paths_subjects_nights_and_names(tmp_path):
    """Paths are relative to the file; subject defaults to the stem; a subject's nights
    count 1, 2...; a night is named by its path (folders joined by '-'); channels and
    board per row, the command's board otherwise; comments and blank lines are skipped."""
    (tmp_path / "pairs.tsv").write_text(
        "# my lab\n"
        "Recording\tHypnogram\tSubject\tchannels\tboard\n"
        "a/night.vhdr\ta/night.hyp\tp1\t\t\n"
        "\n"
        "b/night.edf\t\tp1\tC3-M2, C4-M1\n"
        "/abs/x.csv\t/abs/x.txt\t\tEEG1\tcyton\n"
        "c/y_raw.fif\n"
    )
    got = find_sources(tmp_path, "pairs", board="synthetic")
    assert [s.psg for s in got] == [tmp_path / "a/night.vhdr", tmp_path / "b/night.edf",
                                    Path("/abs/x.csv"), tmp_path / "c/y_raw.fif"]  # fmt: skip
    assert [s.hypnogram for s in got] == [tmp_path / "a/night.hyp", None, Path("/abs/x.txt"), None]
    assert [(s.subject, s.night) for s in got] == [("p1", 1), ("p1", 2), ("x", 1), ("y", 1)]
    assert [s.name for s in got] == ["a-night", "b-night", "abs-x", "c-y"]
    assert [(s.channels, s.board) for s in got] == [
        (None, "synthetic"), (("C3-M2", "C4-M1"), "synthetic"), (("EEG1",), "cyton"),
        (None, "synthetic")]  # fmt: skip


def test_pairs_file_names_repeat_and_errors_name_file_and_line(tmp_path):
    """A night name that repeats, a missing 'recording' column, an unknown column and an
    empty recording cell are one-line errors naming the file and the line."""
    p = tmp_path / "pairs.tsv"
    p.write_text("recording\tname\na.edf\tn1\nb.edf\tn1\n")
    with pytest.raises(DataFileError, match=r"pairs.tsv: line 3: night name 'n1' repeats line 2"):
        read_pairs_tsv(p)
    p.write_text("psg\thypnogram\na.edf\ta.hyp\n")
    with pytest.raises(DataFileError, match=r"line 1: unknown column 'psg'; columns: recording"):
        read_pairs_tsv(p)
    p.write_text("hypnogram\n")
    with pytest.raises(DataFileError, match=r"line 1: no 'recording' column"):
        read_pairs_tsv(p)
    p.write_text("recording\tsubject\n\ts1\n")
    with pytest.raises(DataFileError, match=r"line 2: empty 'recording'"):
        read_pairs_tsv(p)
    p.write_text("# nothing\n")
    with pytest.raises(DataFileError, match="empty pairs file"):
        read_pairs_tsv(p)
    with pytest.raises(DataFileError, match="no such pairs file"):
        find_sources(tmp_path / "none.tsv", "pairs")
    with pytest.raises(UsageError, match="valid: sleep-edf-20, sleep-edf-78, isruc, bids, pairs"):
        find_sources(tmp_path, "shhs")


def test_bids_subjects_keep_their_sessions_together(tmp_path):
    """sub-01's two sessions are nights 1 and 2 of subject sub-01; a recording without
    events.tsv is not a night; names are the BIDS stems."""
    eeg = "sub-{s}/ses-{n}/eeg/sub-{s}_ses-{n}_task-sleep_{k}"
    for s, n in (("01", "1"), ("01", "2"), ("02", "1")):
        _touch(tmp_path / eeg.format(s=s, n=n, k="eeg.edf"),
               tmp_path / eeg.format(s=s, n=n, k="events.tsv"))  # fmt: skip
    _touch(tmp_path / eeg.format(s="03", n="1", k="eeg.vhdr"))  # no stages
    got = find_sources(tmp_path, "bids")
    assert [(s.subject, s.night, s.name) for s in got] == [
        ("sub-01", 1, "sub-01_ses-1_task-sleep"),
        ("sub-01", 2, "sub-01_ses-2_task-sleep"),
        ("sub-02", 1, "sub-02_ses-1_task-sleep"),
    ]
    assert all(s.hypnogram.name.endswith("_events.tsv") for s in got)


def test_sleep_edf_subjects_and_nights(tmp_path):
    """SC4ssN: subject SC4ss, night N; sleep-edf-20 keeps subjects 0-19; telemetry (ST)
    nights are not Sleep Cassette."""
    for name in ("SC4001", "SC4002", "SC4191", "SC4201", "ST7011"):
        _touch(tmp_path / f"{name}E0-PSG.edf", tmp_path / f"{name}EC-Hypnogram.edf")
    s20 = find_sources(tmp_path, "sleep-edf-20")
    assert [(s.name, s.subject, s.night) for s in s20] == [
        ("SC4001", "SC400", 1), ("SC4002", "SC400", 2), ("SC4191", "SC419", 1)]  # fmt: skip
    assert [s.name for s in find_sources(tmp_path, "sleep-edf-78")][-1] == "SC4201"


def test_night_key_follows_companion_files_and_keeps_legacy_keys(tmp_path):
    """A BrainVision night's key changes when its .eeg data file changes; a Sleep-EDF
    night's key is the first release's (prepared folders stay valid)."""
    from distill.prepared import FORMAT, night_key
    from sleepstream.io.cache import CacheSpec

    vhdr, eeg, hyp = tmp_path / "n.vhdr", tmp_path / "n.eeg", tmp_path / "n.hyp"
    _touch(vhdr, eeg, tmp_path / "n.vmrk", hyp, tmp_path / "other.eeg")
    src = NightSource(vhdr, hyp, "pairs", "p", 1, "n")
    assert [f.name for f in source_files(src)] == ["n.vhdr", "n.eeg", "n.vmrk", "n.hyp"]
    key = night_key(src, ["C3"])
    eeg.write_bytes(b"other samples")
    assert night_key(src, ["C3"]) != key
    assert night_key(NightSource(vhdr, None, "pairs", "p", 1, "n"), ["C3"]) != night_key(
        src, ["C3"]
    )
    psg, h = tmp_path / "SC4001E0-PSG.edf", tmp_path / "SC4001EC-Hypnogram.edf"
    _touch(psg, h)
    legacy = NightSource(psg, h, "sleep-edf", "SC400", 1, "SC4001")
    params = {"format": FORMAT, "channels": ["EEG Fpz-Cz"], "fs": 100.0, "trim": True,
              "dataset": "sleep-edf"}  # fmt: skip
    assert (
        night_key(legacy, ["EEG Fpz-Cz"]) == CacheSpec("distill.prepared", [psg, h], params).key()
    )
