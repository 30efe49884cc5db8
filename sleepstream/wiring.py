"""Default wiring of a device: its profile, its source from the registry, its DSP chain.

The daemon uses these unless a command passes its own (``replay`` builds an EDF source
that starts and stops on the reference hypnogram's epochs).
"""

from __future__ import annotations

from typing import Any

from sleepstream.config import DeviceConfig


def resolve_profile(dev: DeviceConfig) -> Any:
    """The device's profile (explicit, or the source kind's default)."""
    from sleepstream.profiles import default_profile_name, load_profile
    from sleepstream.sources.base import parse_source_spec

    if dev.profile:
        return load_profile(dev.profile)
    kind, arg = parse_source_spec(dev.source)
    board = arg if kind == "board" else dev.options.get("board")
    return load_profile(default_profile_name(kind, board))


#: Command-line spelling of each source option, for error messages.
_FLAG = {k: "--" + k.replace("_", "-") for k in (
    "serial_port", "mac_address", "ip_address", "speed", "start", "loop", "channel", "timeout",
)}  # fmt: skip


def default_source(dev: DeviceConfig) -> tuple[Any, float | None]:
    """A source from the registry with the device's options.

    An option the source kind does not take is a :class:`UsageError` naming the flag;
    an EDF replay without ``--channel`` streams the profile's channel.
    """
    import inspect

    from sleepstream.errors import UsageError
    from sleepstream.sources.base import open_source, parse_source_spec, source_class

    kind, _arg = parse_source_spec(dev.source)
    options = dict(dev.options)
    until = options.pop("until", None)
    params = inspect.signature(source_class(kind).__init__).parameters
    for key in list(options):
        if key not in params:
            raise UsageError(
                f"{_FLAG.get(key, key)} does not apply to {kind} sources (device {dev.name})"
            )
    if kind == "edf" and "channel" not in options:
        options["channel"] = resolve_profile(dev).channel
    if kind == "board" and "timeout" in options:
        options["timeout"] = int(options["timeout"])
    return open_source(dev.source, **options), until


def default_dsp(dev: DeviceConfig, source: Any, seq_len: int, utc_origin: Any = None) -> Any:
    """The causal DSP chain (:class:`sleepstream.dsp.SignalChain`) of the device's profile.

    The 30-s grid starts at the first sample's stream time (epoch 0); ``utc_origin`` is
    the wall-clock time of stream time 0 (None: now minus the first timestamp).
    """
    return chain_from_profile(resolve_profile(dev), seq_len, utc_origin=utc_origin)


def chain_from_profile(profile: Any, seq_len: int, *, utc_origin: Any = None) -> Any:
    """Map a :class:`~sleepstream.profiles.Profile` onto the DSP chain's frozen configs."""
    from sleepstream.dsp import EpochConfig, FilterConfig, Montage, QualityConfig, SignalChain
    from sleepstream.errors import ConfigError

    if len(profile.reference) > 1:
        raise ConfigError(
            f"{profile.path}: signal.reference = {list(profile.reference)}: "
            "the DSP chain takes at most one reference channel"
        )
    q = profile.quality
    return SignalChain(
        Montage(
            profile.channel,
            profile.reference[0] if profile.reference else None,
            profile.scale_to_uv,
        ),
        filters=FilterConfig(notch_hz=profile.notch_hz, bandpass_hz=profile.bandpass_hz),
        quality=QualityConfig(
            gap_max_fraction=q.max_gap_fraction,
            flat_std_uv=q.flat_std_uv,
            clip_uv=q.clip_uv,
            clip_fraction=q.clip_fraction,
            amplitude_uv=q.amplitude_uv,
            line_hz=profile.notch_hz,
            line_ratio=q.line_noise_ratio,
        ),
        epochs=EpochConfig(seq_len=seq_len, utc_origin=utc_origin),
        expected_fs=profile.fs,
    )
