"""Device profiles: every shipped profile loads and fits its board; bad files are named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sleepstream.errors import ChannelNotFoundError, ConfigError
from sleepstream.profiles import (
    Profile,
    available_profiles,
    default_profile_name,
    load_profile,
)
from sleepstream.sources.boards import BOARD_NAMES
from sleepstream.types import Chunk

EXPECTED = {
    "openbci",
    "cyton",
    "cyton-daisy",
    "ganglion",
    "muse-s",
    "muse-2",
    "synthetic-board",
    "playback",
    "lsl-generic",
    "edf-replay",
    "synthetic",
}

GOOD = """
name = "mine"
description = "test profile"
[source]
kind = "board"
board = "muse-s"
[signal]
channel = "AF7"
reference = ["TP9"]
scale_to_uv = 1.0
fs = 256.0
notch_hz = 60
bandpass_hz = [0.3, 35.0]
[quality]
flat_std_uv = 0.5
"""


def test_profiles_shipped_for_every_board_and_source():
    """One profile per supported board plus lsl-generic, edf-replay and synthetic; all valid."""
    names = set(available_profiles())
    assert names >= EXPECTED
    for name in EXPECTED:
        p = load_profile(name)
        assert isinstance(p, Profile) and p.name == name and p.path.endswith(f"{name}.toml")
        if p.source == "board":
            assert p.board in BOARD_NAMES
        assert p.bandpass_hz is None or p.bandpass_hz[1] < p.fs / 2


def test_board_profiles_match_brainflow_layout():
    """Each board profile's fs and derivation channels exist on the BrainFlow board."""
    pytest.importorskip("brainflow")
    from sleepstream.sources.brainflow import BrainFlowSource, _brainflow

    for name, path in available_profiles().items():
        p = load_profile(path)
        if p.source != "board":
            continue
        kw = {"file": "x.csv", "master_board": p.master_board} if p.board == "playback" else {}
        src = BrainFlowSource(p.board, **kw)
        src._shim = _brainflow()
        _, _, _, channels, fs = src._layout()
        assert fs == p.fs, name
        assert {p.channel, *p.reference} <= set(channels), name


def test_default_profile_names_exist():
    """The default profile of every board and source kind is shipped."""
    for board in BOARD_NAMES:
        assert default_profile_name("board", board) in available_profiles()
    for kind in ("lsl", "edf", "synthetic-night"):
        assert default_profile_name(kind) in available_profiles()


def test_load_profile_by_path_and_derive(tmp_path):
    """A profile file loads by path; derive() subtracts the reference and scales to µV."""
    path = tmp_path / "mine.toml"
    path.write_text(GOOD.replace("scale_to_uv = 1.0", "scale_to_uv = 2.0"))
    p = load_profile(path)
    assert p.derivation == "AF7 - TP9" and p.notch_hz == 60.0 and p.quality.flat_std_uv == 0.5
    assert p.quality.max_gap_fraction == 0.1  # default
    chunk = Chunk(
        np.array([[1.0, 2.0], [5.0, 7.0], [0.0, 0.0]]),
        np.zeros(2),
        256.0,
        ("TP9", "AF7", "AF8"),
        0.0,
    )
    np.testing.assert_array_equal(p.derive(chunk), [8.0, 10.0])
    assert p.fs_matches(256.0) and not p.fs_matches(250.0)
    bad = Chunk(np.zeros((1, 2)), np.zeros(2), 256.0, ("Fp1",), 0.0)
    with pytest.raises(ChannelNotFoundError, match="'AF7'.*available: Fp1"):
        p.derive(bad)


@pytest.mark.parametrize(
    ("old", "new", "key", "value"),
    [
        ("fs = 256.0", 'fs = "fast"', "signal.fs", "'fast'"),
        ("notch_hz = 60", "notch_hz = 55", "signal.notch_hz", "55"),
        ("bandpass_hz = [0.3, 35.0]", "bandpass_hz = [0.3, 200.0]", "signal.bandpass_hz", "200"),
        ('board = "muse-s"', 'board = "muse-9"', "source.board", "'muse-9'"),
        ("flat_std_uv = 0.5", "flat_std_uv = 0.5\nflat_std = 1", "quality.flat_std", "1"),
        ("flat_std_uv = 0.5", "flat_std_uv = -1", "quality.flat_std_uv", "-1"),
        ('reference = ["TP9"]', 'reference = ["AF7"]', "signal.reference", "AF7"),
        ('name = "mine"', 'name = "mine"\ncolour = "red"', "colour", "'red'"),
        ('kind = "board"', 'kind = "usb"', "source.kind", "'usb'"),
    ],
)
def test_bad_profile_names_file_key_and_value(tmp_path, old, new, key, value):
    """Unknown keys, wrong types and bad values raise ConfigError naming file, key and value."""
    path = tmp_path / "bad.toml"
    assert old in GOOD
    path.write_text(GOOD.replace(old, new))
    with pytest.raises(ConfigError) as info:
        load_profile(path)
    msg = str(info.value)
    assert str(path) in msg and f"'{key}'" in msg and value in msg


def test_malformed_toml_and_unknown_profile(tmp_path):
    """Broken TOML names the file; an unknown profile name lists the available ones."""
    path = tmp_path / "broken.toml"
    path.write_text("[signal\nfs = 1")
    with pytest.raises(ConfigError, match="broken.toml: invalid TOML"):
        load_profile(path)
    with pytest.raises(ConfigError, match="unknown profile 'nope'; available: .*openbci"):
        load_profile("nope")
    with pytest.raises(ConfigError, match="not found"):
        load_profile(tmp_path / "absent.toml")


def test_profiles_dir_from_environment(tmp_path, monkeypatch):
    """$SLEEPSTREAM_PROFILES folders are searched first."""
    (tmp_path / "openbci.toml").write_text(GOOD.replace('name = "mine"', 'name = "openbci"'))
    monkeypatch.setenv("SLEEPSTREAM_PROFILES", str(tmp_path))
    assert Path(load_profile("openbci").path) == tmp_path / "openbci.toml"


@pytest.mark.parametrize("low", [1e-12, 1e-8, 1e-5, 1e-3, 0.01, 0.1, 0.3, 1.0])
@pytest.mark.parametrize("fs", [100.0, 250.0, 256.0, 1000.0])
def test_any_bandpass_edge_loads_or_is_a_config_error(tmp_path, low, fs):
    """``bandpass_hz = [1e-8, 20]`` was a LinAlgError deep in the DSP; every low edge now
    either loads into a chain that filters, or is a ConfigError naming the key."""
    from sleepstream.dsp import SignalChain

    text = (
        GOOD.replace("bandpass_hz = [0.3, 35.0]", f"bandpass_hz = [{low!r}, 20.0]")
        .replace("fs = 256.0", f"fs = {fs!r}")
        .replace("notch_hz = 60", "notch_hz = 0")
    )
    path = tmp_path / "p.toml"
    path.write_text(text)
    try:
        profile = load_profile(path)
    except ConfigError as exc:
        assert "signal.bandpass_hz" in str(exc) and str(path) in str(exc)
        return
    assert profile.bandpass_hz == (low, 20.0) and profile.fs == fs
    chain = SignalChain.from_profile(profile)
    n = int(fs * 31)
    chunk = Chunk(np.random.default_rng(0).standard_normal((4, n)), np.arange(n) / fs, fs,
                  ("TP9", "AF7", "AF8", "TP10"), 0.0)  # fmt: skip
    (epoch,) = chain.push(chunk)
    assert np.isfinite(epoch.samples).all()
