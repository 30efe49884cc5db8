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
