"""The sink registry: a kind's options reach its config, one factory per daemon, one sink
per device, and the lifecycle order the registry documents."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from sleepstream import settings as st
from sleepstream.config import DeviceConfig, MqttOptions, RunConfig, load_beds
from sleepstream.errors import UsageError
from sleepstream.settings import Setting
from sleepstream.sinks.base import BaseSink, Sink
from sleepstream.sinks.registry import (
    SINKS,
    BaseSinkFactory,
    DeliveryStats,
    SinkKind,
    register_sink,
    sink_kind,
    sink_kinds,
    unregister_sink,
)


@dataclass(frozen=True)
class ProbeConfig:
    tag: str = "off"
    level: int = 0


class ProbeSink(BaseSink):
    def __init__(self, log, name):
        self.log, self.name, self.causal, self.chunks = log, name, 0, 0

    async def __aenter__(self):
        self.log.append(("enter sink", self.name))
        return self

    async def __aexit__(self, *exc):
        self.log.append(("exit sink", self.name))

    async def write_chunk(self, chunk):
        self.chunks += chunk.n_samples

    async def publish(self, epoch, prediction):
        self.causal += 1


class ProbeFactory(BaseSinkFactory):
    """One shared 'resource' (a list) for every device."""

    instances: list[ProbeFactory] = []

    def __init__(self, config, ctx):
        self.config, self.ctx, self.log, self.sinks = config, ctx, [], {}
        ProbeFactory.instances.append(self)

    async def __aenter__(self):
        self.log.append(("enter factory", self.config.tag))
        return self

    async def __aexit__(self, *exc):
        self.log.append(("exit factory", self.config.tag))

    def sink_for(self, device):
        sink = self.sinks[device.name] = ProbeSink(self.log, device.name)
        return sink

    def delivery(self, device):
        return None


PROBE = SinkKind(
    "probe",
    "a sink kind for the tests",
    ProbeConfig,
    lambda config, ctx: ProbeFactory(config, ctx) if config.tag != "off" else None,
    options=(
        Setting("probe_tag", "tag", "probe tag", st.text),
        Setting("probe_level", "level", "probe level", st.integer(0), int),
    ),
)


@pytest.fixture
def probe_kind():
    register_sink("probe", PROBE)
    ProbeFactory.instances.clear()
    yield PROBE
    unregister_sink("probe")


def test_builtin_kinds_load_and_implement_the_protocols():
    """Every registered name imports to a SinkKind of that name; unknown names list the valid."""
    assert [k.name for k in sink_kinds()] == list(SINKS)
    with pytest.raises(UsageError, match="valid sinks: mqtt"):
        sink_kind("nope")


def test_sink_kind_option_must_target_a_config_field():
    """An option whose target is not a field of the kind's config is refused at import."""
    with pytest.raises(TypeError, match="not a field"):
        SinkKind("bad", "x", ProbeConfig, lambda c, x: None, (Setting("bad_x", "nope", "x"),))


def test_kind_options_are_flags_env_and_beds_keys(probe_kind, tmp_path, monkeypatch):
    """The kind's one mapping: --probe-tag, SLEEPSTREAM_PROBE_LEVEL, [daemon] probe_tag."""
    from sleepstream.clikit import _apply_env_defaults, _Parser
    from sleepstream.commands import run

    parser = _Parser(prog="run")
    run.add_arguments(parser)
    cfg = run.build_config(parser.parse_args(["--probe-tag", "t1", "--probe-level", "4"]))
    assert cfg.sinks["probe"] == ProbeConfig("t1", 4)
    monkeypatch.setenv("SLEEPSTREAM_PROBE_LEVEL", "5")
    parser = _Parser(prog="run")
    run.add_arguments(parser)
    _apply_env_defaults(parser, "SLEEPSTREAM")
    beds = tmp_path / "beds.toml"
    beds.write_text('[daemon]\nprobe_tag = "file"\nprobe_level = 2\n[[device]]\nname = "a"\n'
                    'source = "synthetic-night"\n')  # fmt: skip
    cfg = run.build_config(parser.parse_args(["--config", str(beds)]))
    assert cfg.sinks["probe"] == ProbeConfig("file", 5)  # env beats the file
    assert load_beds(beds).sinks["probe"] == ProbeConfig("file", 2)


@pytest.mark.network
@pytest.mark.slow
def test_daemon_enters_one_factory_and_one_sink_per_device(
    probe_kind, tiny_model, mosquitto, tmp_path
):
    """Two devices: one factory entered once, a sink per device entered after it and left
    before it; each sink got every raw sample and every epoch of its own device."""
    from sleepstream.daemon import Daemon

    opts = {"n_epochs": 3, "speed": "max", "trim_wake_minutes": None}
    cfg = RunConfig(
        devices=(
            DeviceConfig("a", "synthetic-night", None, dict(opts)),
            DeviceConfig("b", "synthetic-night", None, dict(opts, seed=1)),
        ),
        mqtt=MqttOptions(url=mosquitto.url),
        metrics_port=None,
        model=tiny_model,
        state_dir=tmp_path / "state",
        print_mode="none",
        sinks={"probe": ProbeConfig("on")},
    )
    result = asyncio.run(Daemon(cfg, install_signals=False).run())
    (factory,) = ProbeFactory.instances
    log = factory.log
    assert log[0] == ("enter factory", "on") and log[-1] == ("exit factory", "on")
    assert sorted(log[1:3]) == [("enter sink", "a"), ("enter sink", "b")]
    assert sorted(log[3:5]) == [("exit sink", "a"), ("exit sink", "b")]
    for name in ("a", "b"):
        sink = factory.sinks[name]
        assert isinstance(sink, Sink)
        assert sink.causal == result.devices[name].published == 3
        assert sink.chunks == 3 * 3000
    assert factory.ctx.mqtt_url == mosquitto.url and "mqtt" in factory.ctx.factories
    # the MQTT kind still reports delivery for the run's summary
    assert result.devices["a"].delivered == 3


def test_delivery_stats_defaults():
    """A kind that delivers nothing reports None; DeliveryStats defaults to zero."""
    assert BaseSinkFactory().delivery("x") is None
    assert DeliveryStats() == DeliveryStats(0, 0, ())


@pytest.mark.network
@pytest.mark.slow
def test_a_resource_that_dies_for_good_stops_the_daemon_loudly(tiny_model, mosquitto, tmp_path):
    """``ctx.fail(error)`` from a factory: the daemon shuts down gracefully (sinks and
    factories left) and ``run()`` raises that error (the CLI exits with its code)."""
    from sleepstream.daemon import Daemon
    from sleepstream.errors import BrokerError

    class Dying(ProbeFactory):
        async def __aenter__(self):
            await super().__aenter__()
            asyncio.get_running_loop().call_later(
                1.0, self.ctx.fail, BrokerError("link dead for good")
            )
            return self

    kind = SinkKind("dying", "x", ProbeConfig, lambda c, ctx: Dying(c, ctx))
    register_sink("dying", kind)
    ProbeFactory.instances.clear()
    try:
        cfg = RunConfig(
            devices=(DeviceConfig("a", "synthetic-night", None, {"speed": 30}),),
            mqtt=MqttOptions(url=mosquitto.url), metrics_port=None, model=tiny_model,
            state_dir=tmp_path / "state", print_mode="none",
        )  # fmt: skip
        with pytest.raises(BrokerError, match="link dead"):
            asyncio.run(Daemon(cfg, install_signals=False).run())
    finally:
        unregister_sink("dying")
    (factory,) = ProbeFactory.instances
    assert factory.log[-1][0] == "exit factory" and ("exit sink", "a") in factory.log
