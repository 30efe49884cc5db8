"""``sleepstream inspect`` through the real entry point (``python -m sleepstream``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sleepstream.errors import (
    ChannelNotFoundError,
    EmptyFileError,
    HypnogramError,
    NotEdfError,
    TruncatedFileError,
    UnknownStageLabelError,
)
from sleepstream.io.edf import read_header


def _inspect(*args: object, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SLEEPSTREAM_CACHE_DIR=str(tmp_path / "cache"))
    return subprocess.run(
        [sys.executable, "-m", "sleepstream", "inspect", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_inspect_sc4001_json_counts(sc4001_dir, tmp_path):
    """--json on SC4001 Fpz-Cz prints 841 epochs: W 188, N1 58, N2 250, N3 220, REM 125."""
    proc = _inspect(
        sc4001_dir / "SC4001E0-PSG.edf",
        "--hypnogram",
        sc4001_dir / "SC4001EC-Hypnogram.edf",
        "--channel",
        "EEG Fpz-Cz",
        "--json",
        tmp_path=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["n_epochs"] == 841
    assert report["stage_counts"] == {"W": 188, "N1": 58, "N2": 250, "N3": 220, "REM": 125}
    assert report["fs"] == 100.0 and report["duration_s"] == 79500.0
    assert [c["name"] for c in report["channels"]][:2] == ["EEG Fpz-Cz", "EEG Pz-Oz"]
    assert not (tmp_path / "cache").exists()  # inspect only reads


def test_inspect_text_report_finds_sibling_hypnogram(sc4001_dir, tmp_path):
    """Without --hypnogram the Sleep-EDF hypnogram next to the PSG is used; text output."""
    proc = _inspect(sc4001_dir / "SC4001E0-PSG.edf", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "SC4001EC-Hypnogram.edf" in proc.stdout
    assert "841 of 2650" in proc.stdout and "W 188  N1 58  N2 250  N3 220  REM 125" in proc.stdout
    assert "Temp rectal" in proc.stdout


def test_inspect_dreams_excerpt(dreams_dir, tmp_path):
    """A DREAMS excerpt .txt reports its channel, implied rate and 60 labelled epochs."""
    proc = _inspect(dreams_dir / "excerpt3.txt", "--json", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["channel"] == "C3-A1" and report["fs"] == 50.0
    assert report["n_epochs"] == 60 and sum(report["stage_counts"].values()) == 60


def test_inspect_hyp_text_alone(hypnograms_dir, tmp_path):
    """A .hyp-style text hypnogram alone gives its trimmed counts (SC4002: 1127 epochs)."""
    proc = _inspect(hypnograms_dir / "SC4002E0-PSG.edf.csv", "--json", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["n_epochs"] == 1127
    assert report["stage_counts"] == {"W": 183, "N1": 59, "N2": 373, "N3": 297, "REM": 215}


def _truncated(tmp_path: Path, sc4001_dir: Path) -> list[object]:
    src = sc4001_dir / "SC4001E0-PSG.edf"
    header = read_header(src)
    with src.open("rb") as f:
        data = f.read(header.header_bytes + 5 * sum(header.samples_per_record) * 2 + 77)
    out = tmp_path / "truncated-PSG.edf"
    out.write_bytes(data)
    return [out, "--hypnogram", sc4001_dir / "SC4001EC-Hypnogram.edf"]


def _missing_channel(tmp_path: Path, sc4001_dir: Path) -> list[object]:
    return [sc4001_dir / "SC4001E0-PSG.edf", "--channel", "EEG C4-A1"]


def _small_psg(tmp_path: Path, seconds: int) -> Path:
    import edfio

    sig = edfio.EdfSignal(
        np.sin(np.arange(seconds * 100) / 5.0) * 40,
        100,
        label="EEG Fpz-Cz",
        physical_dimension="uV",
    )
    path = tmp_path / "small-PSG.edf"
    edfio.Edf([sig]).write(path)
    return path


def _hyp(tmp_path: Path, name: str, symbols: str) -> Path:
    path = tmp_path / name
    path.write_bytes("\r".join(symbols).encode() + b"\r")
    return path


def _longer(tmp_path: Path, sc4001_dir: Path) -> list[object]:
    return [_small_psg(tmp_path, 90), "--hypnogram", _hyp(tmp_path, "long.hyp", "W12222")]


def _shorter(tmp_path: Path, sc4001_dir: Path) -> list[object]:
    return [_small_psg(tmp_path, 300), "--hypnogram", _hyp(tmp_path, "short.hyp", "W12")]


def _unknown_label(tmp_path: Path, sc4001_dir: Path) -> list[object]:
    return [_small_psg(tmp_path, 90), "--hypnogram", _hyp(tmp_path, "odd.hyp", "W2Q")]


def _empty(tmp_path: Path, sc4001_dir: Path) -> list[object]:
    path = tmp_path / "empty-PSG.edf"
    path.write_bytes(b"")
    return [path]


def _not_edf(tmp_path: Path, sc4001_dir: Path) -> list[object]:
    path = tmp_path / "photo-PSG.edf"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    return [path]


@pytest.mark.parametrize(
    ("make_args", "error", "bad_file", "problem"),
    [
        (_truncated, TruncatedFileError, "truncated-PSG.edf", "truncated EDF"),
        (
            _missing_channel,
            ChannelNotFoundError,
            "SC4001E0-PSG.edf",
            "available channels: EEG Fpz-Cz",
        ),
        (_longer, HypnogramError, "long.hyp", "hypnogram is longer than the recording"),
        (_shorter, HypnogramError, "short.hyp", "hypnogram is shorter than the recording"),
        (_unknown_label, UnknownStageLabelError, "odd.hyp", "unknown stage label 'Q' at line 3"),
        (_empty, EmptyFileError, "empty-PSG.edf", "empty file"),
        (_not_edf, NotEdfError, "photo-PSG.edf", "not an EDF/BDF file"),
    ],
    ids=["truncated", "missing-channel", "longer", "shorter", "unknown-label", "empty", "non-edf"],
)
def test_inspect_bad_input_one_line_error(
    make_args, error, bad_file, problem, tmp_path, sc4001_dir
):
    """Bad input: one stderr line naming the file and problem, no traceback, typed exit code."""
    proc = _inspect(*make_args(tmp_path, sc4001_dir), tmp_path=tmp_path)
    assert proc.returncode == error.exit_code != 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert bad_file in lines[0] and problem in lines[0]
    assert proc.stdout == ""


def test_inspect_bad_input_exit_codes_are_distinct():
    """Each bad-input case of the issue maps to its own exit code."""
    codes = [
        TruncatedFileError.exit_code,
        ChannelNotFoundError.exit_code,
        HypnogramError.exit_code,
        UnknownStageLabelError.exit_code,
        EmptyFileError.exit_code,
        NotEdfError.exit_code,
    ]
    assert len(set(codes)) == len(codes)


def test_inspect_any_format_with_its_own_stages(tmp_path):
    """A FIF written by MNE with stage annotations: format, channels, start and the stages
    from its annotations (no samples read)."""
    import datetime as dt

    from sleepstream.io import writers as w

    x = np.random.default_rng(0).normal(0, 20, (1, 100 * 300))
    ann = [(0.0, 120.0, "Sleep stage W"), (120.0, 180.0, "Sleep stage 2")]
    path = w.write_fif(tmp_path / "n_raw.fif", x, 100.0, ["C3-M2"],
                       start=dt.datetime(2022, 2, 3, 23, 0), annotations=ann)  # fmt: skip
    proc = _inspect(path, "--json", "--no-trim", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["format"] == "fif" and r["channel"] == "C3-M2" and r["fs"] == 100.0
    assert r["start"] == "2022-02-03T23:00:00" and r["duration_s"] == 300.0
    assert r["hypnogram"] == str(path) and r["stage_counts"]["W"] == 4
    assert r["stage_counts"]["N2"] == 6


def test_inspect_edf_d_lists_its_gap_and_a_board_file_its_board(tmp_path):
    """EDF+D: the pause between records is listed; a BrainFlow file whose column count
    fits two boards needs --board, and then shows the board's electrodes."""
    from sleepstream.io import writers as w

    path = w.write_edf_d(tmp_path / "d.edf", np.zeros(6000), 100.0, [0.0, 30.0],
                         record_s=30.0)  # fmt: skip
    paused = w.write_edf_d(tmp_path / "p.edf", np.zeros(6000), 100.0, [0.0, 90.0],
                           record_s=30.0)  # fmt: skip
    r = json.loads(_inspect(paused, "--json", tmp_path=tmp_path).stdout)
    assert r["gaps"] == [{"onset_s": 30.0, "duration_s": 60.0}] and r["duration_s"] == 120.0
    assert json.loads(_inspect(path, "--json", tmp_path=tmp_path).stdout)["gaps"] == []
    arr = w.board_array("synthetic", np.zeros((16, 500)))
    csv_path = w.write_brainflow(tmp_path / "synthetic.csv", arr)
    proc = _inspect(csv_path, tmp_path=tmp_path)
    assert proc.returncode == 3 and "fits boards cyton-daisy, synthetic" in proc.stderr
    assert "inspect: --board cyton" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    r = json.loads(_inspect(csv_path, "--board", "synthetic", "--json", tmp_path=tmp_path).stdout)
    assert r["format"] == "brainflow" and [c["name"] for c in r["channels"]][:3] == [
        "Fz",
        "C3",
        "Cz",
    ]
