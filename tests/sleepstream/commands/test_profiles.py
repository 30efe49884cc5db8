"""`sleepstream profiles list|show NAME`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sleepstream.cli import main


def test_profiles_list_prints_every_profile(capsys):
    """`profiles list` prints one line per profile with its derivation and fs."""
    assert main(["profiles", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("openbci", "muse-s", "lsl-generic", "edf-replay", "synthetic"):
        assert name in out
    assert "AF7 - TP9" in out and "250 Hz" in out


def test_profiles_show_prints_documented_file(capsys):
    """`profiles show muse-s` prints the derivation summary and the commented TOML."""
    assert main(["profiles", "show", "muse-s"]) == 0
    out = capsys.readouterr().out
    assert "derivation AF7 - TP9" in out and "flat_std_uv" in out and "# " in out


def test_profiles_show_json_round_trips(capsys):
    """`--json` prints the validated profile as JSON."""
    assert main(["profiles", "show", "openbci", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["board"] == "openbci" and data["fs"] == 250.0 and data["reference"] == ["C3"]


@pytest.mark.slow
def test_profiles_show_unknown_exits_with_config_error():
    """An unknown profile is a one-line error with the ConfigError exit code, no traceback."""
    r = subprocess.run(
        [sys.executable, "-m", "sleepstream", "profiles", "show", "nope"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 6
    assert "unknown profile 'nope'" in r.stderr and "Traceback" not in r.stderr


def test_profiles_show_needs_a_name(capsys):
    """`profiles show` without NAME is a usage error."""
    assert main(["profiles", "show"]) == 2


def test_profiles_list_reports_a_broken_user_profile(tmp_path, monkeypatch, capsys):
    """A broken profile in $SLEEPSTREAM_PROFILES is named on stderr; the good ones still list."""
    (tmp_path / "mine.toml").write_text('name = "mine"\n[signal]\nfs = "x"\n')
    monkeypatch.setenv("SLEEPSTREAM_PROFILES", str(tmp_path))
    assert main(["profiles", "list"]) == 6
    captured = capsys.readouterr()
    assert "mine.toml" in captured.err and "openbci" in captured.out
