"""Default wiring of a device: its effective profile, its source, its DSP chain.

One mapping each:

* **device options -> profile**: :func:`device_profile` loads the device's profile and
  applies the montage options (``channel``, ``reference``); nothing else reads the
  profile's channel.
* **profile -> source**: :func:`default_source` passes what the source needs from the
  profile (the channels an EDF replay reads, the LSL stream type, the playback board's
  layout, the board name) plus the device's source options, checked against the source
  constructor's parameters.
* **profile -> DSP**: :meth:`sleepstream.dsp.SignalChain.from_profile` (every signal
  and quality key); :func:`default_dsp` adds what the open source knows: its rate
  (a recording's own rate is used, the profile bounding it) and its start time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sleepstream import settings as st
from sleepstream.config import DeviceConfig
from sleepstream.dsp import SignalChain
from sleepstream.dsp.chain import EpochNormaliser
from sleepstream.errors import SourceError, UsageError
from sleepstream.profiles import Profile, default_profile_name, load_profile
from sleepstream.settings import Setting
from sleepstream.sources.base import Source, open_source, parse_source_spec, source_class
from sleepstream.sources.boards import BOARD_NAMES

if TYPE_CHECKING:
    from sleepstream.dsp.normalise import NormalisationSpec, RunningScale

log = logging.getLogger(__name__)

#: Device options that choose the derivation (they change the profile, not the source).
MONTAGE_OPTIONS = ("channel", "reference")


def _speed(raw: str) -> str:
    from sleepstream.sources.edf_replay import parse_speed

    try:
        parse_speed(raw)
    except Exception as exc:  # UsageError naming --speed: say only why
        raise ValueError("expected 'max' or a positive number") from exc
    return raw


def _channels(raw: str) -> tuple[str, ...]:
    names = tuple(c.strip() for c in raw.split(",") if c.strip())
    if not names:
        raise ValueError("expected one or more channel names, comma-separated")
    return names


def _channel_list(value: str | list[object]) -> tuple[str, ...]:
    """A beds.toml ``reference``: a name, comma-separated names, or a list of names."""
    if isinstance(value, str):
        return _channels(value)
    if not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError("expected a list of channel names")
    return tuple(str(v).strip() for v in value)


#: Per-device source and montage options of ``sleepstream run`` (beds.toml: the same keys
#: in a ``[[device]]`` table, checked the same way by ``load_beds``). Each reaches the
#: source constructor's keyword of the same name, except ``channel`` / ``reference``,
#: which reach the profile (:func:`device_profile`).
SOURCE_SETTINGS: tuple[Setting, ...] = (
    Setting("serial_port", "serial_port", "board serial port (OpenBCI dongle)", st.text,
            commands=("run",), beds=False),
    Setting("mac_address", "mac_address", "board Bluetooth MAC address (Muse)", st.text,
            commands=("run",), beds=False),
    Setting("ip_address", "ip_address", "board IP address (WiFi shield)", st.text,
            commands=("run",), beds=False),
    Setting("ip_port", "ip_port", "board IP port", st.port, int, commands=("run",),
            beds=False),
    Setting("serial_number", "serial_number", "board serial number (BLE boards)", st.text,
            commands=("run",), beds=False),
    Setting("file", "file", "board playback: the BrainFlow CSV recording", st.path,
            commands=("run",), beds=False),
    Setting("speed", "speed", "replay speed of edf / synthetic-night: 1 = real time, max",
            _speed, (str, int, float), commands=("run",), beds=False),
    Setting("start", "start", "edf: start offset in seconds", st.number(0.0), (int, float),
            commands=("run",), beds=False),
    Setting("loop", "loop", "edf: start over at the end", switch=True, commands=("run",),
            beds=False),
    Setting("timeout", "timeout", "seconds to find the board / resolve the LSL stream",
            st.number(0.001), (int, float), commands=("run",), beds=False),
    Setting("channel", "channel", "channel to stage (overrides the profile's; edf: the "
            "label to read)", st.text, commands=("run",), beds=False),
    Setting("reference", "reference", "reference channel(s) subtracted from --channel, "
            "comma-separated (their mean)", _channels, (str, list), check=_channel_list,
            commands=("run",), beds=False),
)  # fmt: skip


def device_profile(dev: DeviceConfig) -> Profile:
    """The device's effective profile: explicit or the source kind's default, with the
    device's montage options applied (``channel`` alone clears the profile's reference).

    Raises
    ------
    ConfigError
        Unknown profile or an invalid file.
    """
    kind, arg = parse_source_spec(dev.source)
    board = arg if kind == "board" else None
    if board is not None and board.strip().lower() not in BOARD_NAMES:
        raise SourceError(f"unknown board {board!r}; valid boards: {', '.join(BOARD_NAMES)}")
    if dev.profile:
        profile = load_profile(dev.profile)
    else:
        profile = load_profile(default_profile_name(kind, board and board.strip().lower()))
    channel = dev.options.get("channel")
    reference = dev.options.get("reference")
    if channel is None and reference is None:
        return profile
    if isinstance(reference, str):
        reference = (reference,)
    refs = tuple(reference) if reference is not None else ()
    if channel is None:
        channel = profile.channel
    if channel in refs:
        raise UsageError(
            f"device {dev.name}: --reference {list(refs)} contains --channel {channel!r}"
        )
    return dataclasses.replace(profile, channel=str(channel), reference=refs)


def default_source(dev: DeviceConfig) -> tuple[Source, float | None]:
    """The device's source from the registry, and the stream time to stop at (or None).

    The profile supplies what the source kind takes from it (EDF: the channels of the
    derivation; LSL: ``stream_type``; board playback: ``master_board``; ``board:`` with
    no name: the profile's board). An option the source kind does not take is a
    :class:`UsageError` naming the flag.
    """
    profile = device_profile(dev)
    kind, arg = parse_source_spec(dev.source)
    options = {k: v for k, v in dev.options.items() if k not in MONTAGE_OPTIONS}
    until = options.pop("until", None)
    params = inspect.signature(source_class(kind)).parameters
    for key in options:
        if key not in params:
            raise UsageError(
                f"{dev.option_name(key)} does not apply to {kind} sources (device {dev.name})"
            )
    from_profile: dict[str, Any] = {}
    if kind == "edf":
        channels = (profile.channel, *profile.reference)
        from_profile["channel"] = channels[0] if len(channels) == 1 else list(channels)
        if profile.board:  # a board's own file (BrainFlow CSV) is read with its layout
            board = profile.master_board if profile.board == "playback" else profile.board
            from_profile["board"] = board
    elif kind == "lsl" and profile.stream_type:
        from_profile["type"] = profile.stream_type
    elif kind == "board":
        if arg is None and profile.board:
            from_profile["board"] = profile.board
        if profile.master_board:
            from_profile["master_board"] = profile.master_board
    for key, value in from_profile.items():
        if key in params:
            options.setdefault(key, value)
    if kind == "board" and options.get("timeout") is not None:
        options["timeout"] = int(options["timeout"])
    return open_source(dev.source, **options), until


def source_start(source: Source) -> dt.datetime | None:
    """The source's ``start_datetime``: the wall-clock time of the epoch grid's stream time 0.

    A naive time (EDF: the recording's local time, zone unknown) stays naive: its epochs
    and stage events carry that local time without an offset (``time_zone: null``), like
    the night files; said once in the log. None for live sources (the grid then uses this
    machine's clock, UTC).
    """
    start = source.start_datetime
    if start is not None and start.tzinfo is None:
        log.info(
            "%s: the recording's start %s states no time zone; epoch times are its local "
            "clock time, without an offset (time_zone null)",
            source.name, start.isoformat(),
        )  # fmt: skip
    return start


def default_dsp(
    dev: DeviceConfig,
    source: Source,
    *,
    clock_origin: dt.datetime | None = None,
    normaliser: EpochNormaliser | None = None,
) -> SignalChain:
    """The causal DSP chain of the device's effective profile, for an open source.

    A recording (``source.from_file``) is filtered and resampled at its own rate: the
    profile's ``fs`` does not have to match, the filters only have to fit below its
    Nyquist frequency. A live source must deliver the profile's ``fs`` within
    ``fs_tolerance``. The 30-s grid starts at the first sample; its wall-clock time is
    ``clock_origin`` if given, else the recording's start (:func:`source_start`; naive
    when the file states no zone) or, for a live source, now (UTC). ``normaliser`` is the chain's last stage (:func:`make_normaliser`).
    """
    from_file = source.from_file
    chain = SignalChain.from_profile(
        device_profile(dev),
        clock_origin=clock_origin or source_start(source),
        rate_from_source=from_file,
        normaliser=normaliser,
    )
    if source.channels:  # a missing channel is a start-up error, not the first chunk's
        chain.montage.rows(source.channels)
    return chain


#: How old a saved normaliser state may be to be restored after a restart (s): the same
#: night. An older one is ignored and the device re-warms from its prior.
NORMALISER_MAX_AGE_S = 12 * 3600.0


def normaliser_path(state_dir: Path, device: str) -> Path:
    """``<state_dir>/state/<device>.normaliser.json``."""
    return state_dir / "state" / f"{device}.normaliser.json"


class PersistentScale:
    """A :class:`~sleepstream.dsp.normalise.RunningScale` saved under the state dir.

    Restored at start when the file is younger than :data:`NORMALISER_MAX_AGE_S` and was
    saved for the same normalisation spec (a daemon restarted within the night keeps its
    scale); otherwise the device re-warms from its prior (logged). Saved at most every
    ``save_every_s`` seconds of wall time and at :meth:`close`, atomically.
    """

    def __init__(self, scale: RunningScale, path: Path, *, save_every_s: float = 60.0) -> None:
        self.scale = scale
        self.path = path
        self.save_every_s = save_every_s
        self._saved_at = time.monotonic()
        self.restored = self._restore()

    def _restore(self) -> bool:
        from sleepstream.errors import ConfigError

        try:
            age = time.time() - self.path.stat().st_mtime
            if age > NORMALISER_MAX_AGE_S:
                log.info("%s: older than %.0f h; re-warming", self.path, age / 3600)
                return False
            self.scale.load_state(json.loads(self.path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return False
        except (OSError, ValueError, ConfigError) as exc:
            log.warning("%s: not restored (%s); re-warming from the prior", self.path, exc)
            return False
        log.info("%s: normaliser state restored", self.path)
        return True

    def apply(self, samples_uv: np.ndarray, usable: bool) -> float:
        factor = self.scale.apply(samples_uv, usable)
        if time.monotonic() - self._saved_at >= self.save_every_s:
            self.save()
        return factor

    def save(self) -> None:
        """Write the state now (atomically); a failure is logged, never raised."""
        self._saved_at = time.monotonic()
        tmp = self.path.with_suffix(".tmp")
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp.write_text(json.dumps(self.scale.state_dict()), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("%s: normaliser state not saved (%s)", self.path, exc)


def make_normaliser(
    spec: NormalisationSpec, profile: Profile, state_file: Path | None = None
) -> EpochNormaliser | None:
    """The device's normaliser: the model's spec, the profile's prior, restored state.

    None when the model declares no normalisation (``input_scale`` stays 1.0).
    """
    from sleepstream.dsp.normalise import NONE, RunningScale

    if spec.kind == NONE:
        return None
    scale = RunningScale(spec, profile.prior_scale_uv)
    return scale if state_file is None else PersistentScale(scale, state_file)
