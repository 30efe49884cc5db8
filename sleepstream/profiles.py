"""Device profiles: which derivation to stage, scaling, filters, fs and quality thresholds.

A profile is a TOML file (``profiles/<name>.toml``) mapped onto the frozen
:class:`Profile`, validated once by :func:`load_profile`. Any error (bad TOML, unknown
key, wrong type, bad value) raises :class:`~sleepstream.errors.ConfigError` naming the
file, the key and the value.

Profiles are searched, in order, in ``$SLEEPSTREAM_PROFILES`` (``os.pathsep``-separated
folders), ``~/.config/sleepstream/profiles``, the repository's ``profiles/`` folder
(next to the package in a checkout) and ``<prefix>/share/sleepstream/profiles`` (an
installed package).
"""

from __future__ import annotations

import math
import os
import sys
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from sleepstream.errors import ChannelNotFoundError, ConfigError
from sleepstream.sources.boards import BOARD_NAMES
from sleepstream.types import Chunk

SOURCE_KINDS = ("board", "lsl", "edf", "synthetic-night")


@dataclass(frozen=True)
class QualityThresholds:
    """Per-epoch signal-quality limits (applied to the derivation in µV).

    Attributes
    ----------
    flat_std_uv : float
        An epoch whose standard deviation is below this (µV) is a flat line.
    clip_uv : float
        Raw absolute values at or above this (µV) mean clipping / ADC saturation.
    clip_fraction : float
        Fraction of clipped samples above which the epoch is flagged ``clipping``.
    amplitude_uv : float
        Physiological bound: filtered absolute amplitude above this (µV) is an artefact.
    line_noise_ratio : float
        Power within ±1 Hz of the notch frequency divided by the 0.3–35 Hz power
        (measured before the notch) above which ``line_noise`` is flagged.
    max_gap_fraction : float
        Epochs with more missing (filled) samples than this fraction are unscored.
    max_nonfinite_fraction : float
        Epochs with more NaN/inf samples than this fraction are unscored.
    max_electrode_off_fraction : float
        Epochs with more lead-off samples (boards that report it) are unscored.
    """

    flat_std_uv: float = 0.5
    clip_uv: float = 1000.0
    clip_fraction: float = 0.01
    amplitude_uv: float = 500.0
    line_noise_ratio: float = 1.0
    max_gap_fraction: float = 0.1
    max_nonfinite_fraction: float = 0.1
    max_electrode_off_fraction: float = 0.1


@dataclass(frozen=True)
class Profile:
    """A validated device profile.

    Attributes
    ----------
    name : str
        Profile name (the file stem).
    description : str
        One line for ``sleepstream profiles list``.
    source : str
        Source kind: ``board``, ``lsl``, ``edf`` or ``synthetic-night``.
    board : str or None
        BrainFlow board name for ``source = "board"``.
    master_board : str or None
        Board whose layout a ``playback`` file follows.
    stream_type : str or None
        LSL stream type to resolve when no name is given (e.g. ``"EEG"``).
    channel : str
        Channel to stage (name in ``Chunk.channels``).
    reference : tuple of str
        Channels whose mean is subtracted (empty = use ``channel`` as is).
    scale_to_uv : float
        Factor from source units to µV.
    fs : float
        Expected sampling rate in Hz.
    fs_tolerance : float
        Relative deviation of the stream's fs accepted (0.01 = 1 %).
    notch_hz : float or None
        Mains frequency to notch (50 or 60 Hz); ``None`` = no notch.
    bandpass_hz : tuple of float or None
        ``(low, high)`` band-pass in Hz; ``None`` = no band-pass.
    prior_scale_uv : float or None
        Expected robust std of the staged derivation in µV: the per-device normaliser's
        prior until enough clean signal has arrived (None: the model's reference).
    quality : QualityThresholds
    path : str
        File the profile was read from.
    """

    name: str
    description: str
    source: str
    channel: str
    scale_to_uv: float
    fs: float
    quality: QualityThresholds
    board: str | None = None
    master_board: str | None = None
    stream_type: str | None = None
    reference: tuple[str, ...] = ()
    fs_tolerance: float = 0.01
    notch_hz: float | None = None
    bandpass_hz: tuple[float, float] | None = None
    prior_scale_uv: float | None = None
    path: str = ""

    @property
    def derivation(self) -> str:
        """Readable derivation, e.g. ``"AF7 - TP9"``."""
        if not self.reference:
            return self.channel
        ref = (
            self.reference[0] if len(self.reference) == 1 else f"mean({', '.join(self.reference)})"
        )
        return f"{self.channel} - {ref}"

    def fs_matches(self, fs: float) -> bool:
        """Whether a stream's nominal ``fs`` (Hz) is the profile's within tolerance."""
        return abs(fs - self.fs) <= self.fs_tolerance * self.fs

    def derive(self, chunk: Chunk) -> np.ndarray:
        """The staged derivation of a chunk in µV.

        Returns
        -------
        ndarray, shape (n_samples,), float64, µV

        Raises
        ------
        ChannelNotFoundError
            A channel of the derivation is not in the chunk (message lists them).
        """
        idx = {name: i for i, name in enumerate(chunk.channels)}
        missing = [c for c in (self.channel, *self.reference) if c not in idx]
        if missing:
            raise ChannelNotFoundError(
                f"profile {self.name!r}: channel {missing[0]!r} not in the stream; "
                f"available: {', '.join(chunk.channels)}"
            )
        x = np.asarray(chunk.samples[idx[self.channel]], dtype=np.float64)
        if self.reference:
            x = x - np.mean(chunk.samples[[idx[c] for c in self.reference]], axis=0)
        return x * self.scale_to_uv


# ----------------------------------------------------------------------------- loading


def profile_dirs() -> list[Path]:
    """Folders searched for ``<name>.toml``, in priority order."""
    dirs = [Path(p) for p in os.environ.get("SLEEPSTREAM_PROFILES", "").split(os.pathsep) if p]
    dirs.append(Path.home() / ".config" / "sleepstream" / "profiles")
    dirs.append(Path(__file__).resolve().parents[1] / "profiles")
    dirs.append(Path(sys.prefix) / "share" / "sleepstream" / "profiles")
    return dirs


def available_profiles() -> dict[str, Path]:
    """Profile name -> file, the first found in :func:`profile_dirs` winning."""
    found: dict[str, Path] = {}
    for d in profile_dirs():
        if d.is_dir():
            for p in sorted(d.glob("*.toml")):
                found.setdefault(p.stem, p)
    return dict(sorted(found.items()))


def find_profile(name_or_path: str | Path) -> Path:
    """Resolve a profile name or a path to a TOML file."""
    text = str(name_or_path)
    if text.endswith(".toml") or os.sep in text or "/" in text:
        path = Path(text).expanduser()
        if not path.is_file():
            raise ConfigError(f"{path}: profile file not found")
        return path
    profiles = available_profiles()
    if text not in profiles:
        raise ConfigError(
            f"unknown profile {text!r}; available: {', '.join(profiles) or '(none)'} "
            f"(searched {', '.join(str(d) for d in profile_dirs())})"
        )
    return profiles[text]


def load_profile(name_or_path: str | Path) -> Profile:
    """Read and validate a profile by name or path.

    Raises
    ------
    ConfigError
        Not found, bad TOML, unknown key, wrong type or bad value (names file, key, value).
    """
    path = find_profile(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read profile: {exc}") from None
    return _build(data, path)


_TOP = {"name", "description", "source", "signal", "quality"}
_SOURCE = {"kind", "board", "master_board", "stream_type"}
_SIGNAL = {
    "channel",
    "reference",
    "scale_to_uv",
    "fs",
    "fs_tolerance",
    "notch_hz",
    "bandpass_hz",
    "prior_scale_uv",
}


class _Reader:
    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, value: Any, why: str) -> ConfigError:
        return ConfigError(f"{self.path}: key {key!r} = {value!r}: {why}")

    def table(
        self, data: dict[str, Any], key: str, allowed: set[str], required: bool = True
    ) -> dict[str, Any]:
        value = data.get(key, None if required else {})
        if not isinstance(value, dict):
            raise self.fail(key, value, "missing table" if value is None else "must be a table")
        for k in value:
            if k not in allowed:
                raise self.fail(
                    f"{key}.{k}", value[k], f"unknown key; valid: {', '.join(sorted(allowed))}"
                )
        return value

    def string(self, data: dict[str, Any], key: str, full: str, default: Any = ...) -> Any:
        if key not in data:
            if default is ...:
                raise self.fail(full, None, "required key is missing")
            return default
        v = data[key]
        if not isinstance(v, str) or not v.strip():
            raise self.fail(full, v, "must be a non-empty string")
        return v

    def number(
        self,
        data: dict[str, Any],
        key: str,
        full: str,
        default: Any = ...,
        *,
        lo: float = 0.0,
        hi: float = math.inf,
        open_lo: bool = True,
    ) -> float:
        if key not in data:
            if default is ...:
                raise self.fail(full, None, "required key is missing")
            fallback: float = default
            return fallback
        v = data[key]
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise self.fail(full, v, "must be a number")
        v = float(v)
        below = v <= lo if open_lo else v < lo
        if not math.isfinite(v) or below or v > hi:
            bracket = "(" if open_lo else "["
            raise self.fail(full, v, f"must be in {bracket}{lo:g}, {hi:g}]")
        return v


def _build(data: dict[str, Any], path: Path) -> Profile:
    r = _Reader(path)
    for k in data:
        if k not in _TOP:
            raise r.fail(k, data[k], f"unknown key; valid: {', '.join(sorted(_TOP))}")
    src = r.table(data, "source", _SOURCE)
    sig = r.table(data, "signal", _SIGNAL)
    qual = r.table(data, "quality", {f.name for f in fields(QualityThresholds)}, required=False)

    kind = r.string(src, "kind", "source.kind")
    if kind not in SOURCE_KINDS:
        raise r.fail("source.kind", kind, f"valid: {', '.join(SOURCE_KINDS)}")
    board = r.string(src, "board", "source.board", None)
    if kind == "board":
        if board is None or board not in BOARD_NAMES:
            raise r.fail("source.board", board, f"valid boards: {', '.join(BOARD_NAMES)}")
    elif board is not None:
        raise r.fail("source.board", board, f"only for kind = 'board', not {kind!r}")
    master = r.string(src, "master_board", "source.master_board", None)
    if master is not None and (board != "playback" or master not in BOARD_NAMES):
        raise r.fail("source.master_board", master, "only for board 'playback', naming a board")

    ref = sig.get("reference", [])
    if isinstance(ref, str):
        ref = [ref]
    if not isinstance(ref, list) or not all(isinstance(c, str) and c for c in ref):
        raise r.fail("signal.reference", ref, "must be a channel name or a list of names")
    channel = r.string(sig, "channel", "signal.channel")
    if channel in ref:
        raise r.fail("signal.reference", ref, f"contains the staged channel {channel!r}")

    fs = r.number(sig, "fs", "signal.fs", hi=100_000.0)
    notch = r.number(sig, "notch_hz", "signal.notch_hz", 0.0, lo=0.0, open_lo=False)
    if notch not in (0.0, 50.0, 60.0):
        raise r.fail("signal.notch_hz", notch, "must be 50, 60 or 0 (off)")
    if notch and notch >= fs / 2:
        raise r.fail("signal.notch_hz", notch, f"must be below Nyquist ({fs / 2:g} Hz)")
    band = sig.get("bandpass_hz", [])
    if (
        not isinstance(band, list)
        or len(band) not in (0, 2)
        or not all(isinstance(b, int | float) and not isinstance(b, bool) for b in band)
    ):
        raise r.fail("signal.bandpass_hz", band, "must be [low, high] in Hz or [] (off)")
    if band and not 0 < band[0] < band[1] < fs / 2:
        raise r.fail("signal.bandpass_hz", band, f"need 0 < low < high < {fs / 2:g} Hz (Nyquist)")
    if band:
        from sleepstream.dsp.filters import design_bandpass

        try:  # a design that cannot run (edge too close to 0 Hz) fails here, not in the DSP
            design_bandpass(fs, float(band[0]), float(band[1]))
        except ConfigError as exc:
            raise r.fail("signal.bandpass_hz", band, str(exc)) from None

    q = QualityThresholds(
        **{
            f.name: r.number(
                qual,
                f.name,
                f"quality.{f.name}",
                f.default,
                hi=1.0 if f.name.endswith("fraction") else math.inf,
            )
            for f in fields(QualityThresholds)
        }
    )
    if q.clip_uv <= q.flat_std_uv:
        raise r.fail("quality.clip_uv", q.clip_uv, "must exceed quality.flat_std_uv")

    return Profile(
        name=r.string(data, "name", "name", path.stem),
        description=r.string(data, "description", "description", ""),
        source=kind,
        board=board,
        master_board=master,
        stream_type=r.string(src, "stream_type", "source.stream_type", None),
        channel=channel,
        reference=tuple(ref),
        scale_to_uv=r.number(sig, "scale_to_uv", "signal.scale_to_uv", 1.0, hi=1e12),
        fs=fs,
        fs_tolerance=r.number(
            sig, "fs_tolerance", "signal.fs_tolerance", 0.01, lo=0.0, hi=0.5, open_lo=False
        ),
        notch_hz=notch or None,
        bandpass_hz=(float(band[0]), float(band[1])) if band else None,
        prior_scale_uv=r.number(sig, "prior_scale_uv", "signal.prior_scale_uv", None, hi=1e6),
        quality=q,
        path=str(path),
    )


#: Default profile for each source kind / board name.
_DEFAULTS = {"lsl": "lsl-generic", "edf": "edf-replay", "synthetic-night": "synthetic"}


def default_profile_name(kind: str, board: str | None = None) -> str:
    """Profile used when none is given: the board's own, else the kind's."""
    if kind == "board" and board:
        return "synthetic-board" if board == "synthetic" else board
    return _DEFAULTS.get(kind, kind)
