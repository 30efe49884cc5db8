"""Default wiring: every profile key reaches the object that uses it; device options
(``--channel``) reach both the source and the DSP; a recording runs at its own rate."""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import fields
from typing import Any

import numpy as np
import pytest

from sleepstream import wiring
from sleepstream.config import DeviceConfig, MqttOptions, RunConfig
from sleepstream.dsp import SignalChain
from sleepstream.errors import ChannelNotFoundError, SourceError
from sleepstream.profiles import Profile, QualityThresholds, load_profile
from sleepstream.sinks.base import BaseSink

#: Profile fields that only describe it (``profiles list``, error messages).
DESCRIPTIVE = {"name", "description", "source", "path"}
#: Profile fields the source (not the DSP) takes, each checked below.
FOR_THE_SOURCE = {"board", "master_board", "stream_type"}
#: Profile fields the normaliser (the chain's last stage, built with the model's spec) takes.
FOR_THE_NORMALISER = {"prior_scale_uv"}


def _perturbed(value: Any, name: str) -> Any:
    if name == "reference":
        return ("A1", "A2")
    if name == "bandpass_hz":
        return (0.5, 30.0)
    if name == "notch_hz":
        return 60.0 if value == 50.0 else 50.0
    if isinstance(value, float):
        return value * 0.5
    if isinstance(value, str):
        return value + "-x"
    raise AssertionError(f"no perturbation for {name}={value!r}")


def _fingerprint(chain: SignalChain) -> tuple[Any, ...]:
    return (
        chain.montage,
        chain.filter_config,
        chain.quality_config,
        chain.expected_fs,
        chain.fs_tolerance,
    )


def test_every_profile_field_is_mapped_somewhere():
    """A new Profile field must be added to the DSP mapping, the source, or DESCRIPTIVE."""
    names = {f.name for f in fields(Profile)}
    dsp = names - DESCRIPTIVE - FOR_THE_SOURCE - FOR_THE_NORMALISER
    assert dsp == {
        "channel", "reference", "scale_to_uv", "fs", "fs_tolerance", "notch_hz",
        "bandpass_hz", "quality",
    }  # fmt: skip


@pytest.mark.parametrize(
    "name",
    sorted(
        {f.name for f in fields(Profile)}
        - DESCRIPTIVE
        - FOR_THE_SOURCE
        - FOR_THE_NORMALISER
        - {"quality"}
    )
    + [f"quality.{f.name}" for f in fields(QualityThresholds)],
)
def test_every_signal_and_quality_key_changes_the_dsp_chain(name):
    """Changing any signal or quality key of a profile changes the chain built from it."""
    base = load_profile("openbci")
    if name.startswith("quality."):
        leaf = name.split(".", 1)[1]
        q = base.quality
        changed = dataclasses.replace(
            base, quality=dataclasses.replace(q, **{leaf: _perturbed(getattr(q, leaf), leaf)})
        )
    else:
        changed = dataclasses.replace(base, **{name: _perturbed(getattr(base, name), name)})
    a = _fingerprint(SignalChain.from_profile(base))
    b = _fingerprint(SignalChain.from_profile(changed))
    assert a != b, f"profile key {name} does not reach the DSP chain"


def _with_profile(monkeypatch, profile: Profile) -> None:
    monkeypatch.setattr(wiring, "load_profile", lambda name: profile)


def test_profile_stream_type_reaches_the_lsl_source(monkeypatch):
    """``source.stream_type`` is the LSL type the inlet resolves (with the name)."""
    _with_profile(monkeypatch, dataclasses.replace(load_profile("lsl-generic"), stream_type="EXG"))
    src, _ = wiring.default_source(DeviceConfig("a", "lsl:MyEEG", "p"))
    assert "type='EXG'" in src.predicate and "name='MyEEG'" in src.predicate


def test_profile_board_and_master_board_reach_the_brainflow_source(monkeypatch, tmp_path):
    """``board:`` without a name opens the profile's board; playback uses its master board."""
    _with_profile(monkeypatch, load_profile("playback"))
    csv = tmp_path / "rec.csv"
    csv.write_text("")
    src, _ = wiring.default_source(DeviceConfig("a", "board", "p", {"file": csv}))
    assert src.board == "playback" and src.master_board == load_profile("playback").master_board
    changed = dataclasses.replace(load_profile("playback"), master_board="cyton-daisy")
    _with_profile(monkeypatch, changed)
    src, _ = wiring.default_source(DeviceConfig("a", "board", "p", {"file": csv}))
    assert src.master_board == "cyton-daisy"


def test_channel_option_overrides_profile_channel_and_reference():
    """``--channel X`` stages X alone; ``--reference`` adds its own reference(s)."""
    dev = DeviceConfig("a", "board:openbci", None, {"channel": "C4"})
    assert (wiring.device_profile(dev).channel, wiring.device_profile(dev).reference) == ("C4", ())
    dev = DeviceConfig("a", "board:openbci", None, {"channel": "C4", "reference": ("O1", "O2")})
    chain = SignalChain.from_profile(wiring.device_profile(dev))
    assert chain.montage.name == "C4-mean(O1,O2)"


def test_unknown_board_lists_the_valid_boards():
    """An unknown board name is a SourceError naming it, before any profile lookup."""
    with pytest.raises(SourceError, match="'toaster'.*openbci"):
        wiring.device_profile(DeviceConfig("a", "board:toaster"))


def _write_edf(path, label: str, fs: float, n_epochs: int, record_s: float = 1.0) -> None:
    import edfio

    rng = np.random.default_rng(0)
    n = int(round(fs * 30 * n_epochs))
    x = 20.0 * rng.standard_normal(n)
    sig = edfio.EdfSignal(x, sampling_frequency=fs, label=label, physical_range=(-500, 500))
    edfio.Edf([sig], data_record_duration=record_s).write(path)


class _Collect(BaseSink):
    def __init__(self) -> None:
        self.epochs: list[Any] = []

    async def publish(self, epoch, prediction):
        self.epochs.append((epoch, prediction))


@pytest.mark.network
@pytest.mark.slow
@pytest.mark.parametrize(("fs", "record_s"), [(128.0, 1.0), (100.5, 2.0), (256.0, 1.0)])
def test_edf_without_fpz_cz_and_not_100_hz_replays_with_channel_option(
    fs, record_s, tmp_path, tiny_model, mosquitto
):
    """An EDF whose only channel is 'C3-A1', at 128 / 100.5 / 256 Hz, replays with
    ``--channel C3-A1`` and the stock edf-replay profile (100 Hz): the rate comes from
    the file, the channel from the option; every epoch is scored."""
    from sleepstream.daemon import Daemon

    path = tmp_path / "night.edf"
    _write_edf(path, "C3-A1", fs, 4, record_s)
    sink = _Collect()
    cfg = RunConfig(
        devices=(DeviceConfig("e", f"edf:{path}", None, {"channel": "C3-A1", "speed": "max"}),),
        mqtt=MqttOptions(url=mosquitto.url),
        metrics_port=None,
        model=tiny_model,
        state_dir=tmp_path / "state",
        print_mode="none",
    )
    asyncio.run(Daemon(cfg, install_signals=False, extra_sinks=lambda n: [sink]).run())
    assert [e.index for e, _ in sink.epochs] == [0, 1, 2, 3]
    assert all(e.scorable and p.stage >= 0 for e, p in sink.epochs), [
        e.quality for e, _ in sink.epochs
    ]


@pytest.mark.network
def test_missing_channel_fails_before_anything_listens(tmp_path, tiny_model, helpers):
    """A channel the file lacks is reported at start-up: no broker, no night folder."""
    from sleepstream.daemon import Daemon
    from sleepstream.errors import DataFileError

    path = tmp_path / "night.edf"
    _write_edf(path, "C3-A1", 100.0, 2)
    port = helpers.free_port()
    cfg = RunConfig(
        devices=(DeviceConfig("e", f"edf:{path}", None, {"channel": "Fpz-Cz"}),),
        broker_port=port,
        metrics_port=None,
        model=tiny_model,
        state_dir=tmp_path / "state",
        print_mode="none",
        record=True,
    )
    with pytest.raises((ChannelNotFoundError, DataFileError, SourceError), match="Fpz-Cz"):
        asyncio.run(Daemon(cfg, install_signals=False).run())
    assert not (tmp_path / "state" / "nights").exists()


def test_profile_prior_scale_reaches_the_normaliser(tmp_path):
    """``signal.prior_scale_uv`` is the RunningScale's prior; a model without normalisation
    gets no normaliser (input_scale 1.0)."""
    from sleepstream.dsp.normalise import NormalisationSpec

    profile = dataclasses.replace(load_profile("openbci"), prior_scale_uv=42.0)
    norm = wiring.make_normaliser(NormalisationSpec(), profile)
    assert norm is not None and norm.prior_scale_uv == 42.0
    assert wiring.make_normaliser(NormalisationSpec.none(), profile) is None


def test_normaliser_state_survives_a_restart_within_the_night(tmp_path, monkeypatch):
    """Saved under the state dir; restored when young and of the same spec; otherwise the
    device re-warms from its prior (an old file, another spec, a corrupt file)."""
    import os
    import time

    from sleepstream.dsp.normalise import NormalisationSpec

    profile = load_profile("openbci")
    path = wiring.normaliser_path(tmp_path, "bed1")
    first = wiring.make_normaliser(NormalisationSpec(), profile, path)
    assert isinstance(first, wiring.PersistentScale) and not first.restored
    rng = np.random.default_rng(0)
    factors = [first.apply(40.0 * rng.standard_normal(3000), True) for _ in range(12)]
    first.save()
    assert path.is_file()
    again = wiring.make_normaliser(NormalisationSpec(), profile, path)
    assert again.restored and again.scale.state_dict() == first.scale.state_dict()
    fresh = wiring.make_normaliser(NormalisationSpec(), profile)
    x = 40.0 * rng.standard_normal(3000)
    assert again.apply(x, True) == pytest.approx(factors[-1], rel=0.2)
    assert fresh.apply(x, True) != pytest.approx(again.scale.input_scale, rel=1e-3)
    # another spec, an old file, a corrupt file: not restored
    assert not wiring.make_normaliser(NormalisationSpec(window_epochs=10), profile, path).restored
    old = time.time() - wiring.NORMALISER_MAX_AGE_S - 60
    os.utime(path, (old, old))
    assert not wiring.make_normaliser(NormalisationSpec(), profile, path).restored
    path.write_text("{not json")
    assert not wiring.make_normaliser(NormalisationSpec(), profile, path).restored


def test_file_source_with_a_board_profile_reads_that_board_layout(tmp_path):
    """``file:rec.csv --profile cyton``: the file source gets the board (a BrainFlow CSV has
    no channel names); ``file:`` is the same source kind as ``edf:``."""
    src, _ = wiring.default_source(DeviceConfig("a", f"file:{tmp_path / 'rec.csv'}", "cyton"))
    assert src.board == "cyton" and src.from_file
    src, _ = wiring.default_source(DeviceConfig("a", f"file:{tmp_path / 'r.csv'}", "playback"))
    assert src.board == load_profile("playback").master_board


@pytest.mark.parametrize(
    "key", [s.key for s in wiring.SOURCE_SETTINGS if s.key not in wiring.MONTAGE_OPTIONS]
)
def test_every_source_option_reaches_the_source_object(key, tmp_path):
    """Each per-device source flag of `run` ends up on the source it was given for (the
    first source kind whose constructor takes it), with the value the flag parsed."""
    import inspect

    from sleepstream.sources.base import SOURCES, source_class

    setting = next(s for s in wiring.SOURCE_SETTINGS if s.key == key)
    specs = {"board": "board:playback", "lsl": "lsl:X", "edf": f"edf:{tmp_path / 'x.edf'}",
             "synthetic-night": "synthetic-night"}  # fmt: skip
    kind = next(k for k in SOURCES if key in inspect.signature(source_class(k)).parameters)
    raw = {"loop": None, "file": str(tmp_path / "rec.csv"), "speed": "7", "start": "5"}.get(
        key, "2"
    )
    value = True if setting.switch else setting.parse(raw)
    options = {key: value}
    if kind == "board" and key != "file":
        options["file"] = tmp_path / "rec.csv"  # the playback board needs one
    src, _ = wiring.default_source(DeviceConfig("a", specs[kind], None, options))
    got = getattr(src, key)
    if key == "speed":
        assert got == 7.0
    elif key == "timeout" and kind == "board":
        assert got == int(value)
    else:
        assert got == value, (kind, key, got, value)
