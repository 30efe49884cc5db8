"""The sink registry: which sinks a daemon runs, their settings, and daemon-wide resources.

A sink *kind* is registered under a name, like sources and KD methods are::

    SINKS["web"] = "sleepstream.web.sink:SINK"     # module:attribute of a SinkKind

and is imported only when the daemon (or ``--help``, or ``load_beds``) needs it, so the
module that holds the :class:`SinkKind` must import cheaply (import aiohttp, aiomqtt...
inside functions).

A :class:`SinkKind` declares

* ``config``: a frozen dataclass whose fields are the kind's settings (all defaulted);
* ``options``: one :class:`~sleepstream.settings.Setting` per field: its flag
  (``--web``), its environment variable (``SLEEPSTREAM_WEB``), its beds.toml key
  (``[daemon] web = ...``) and the field it fills. This is the only flag -> config
  mapping of the kind; ``run`` and ``replay`` add the flags, :func:`load_beds` reads the
  keys, and ``RunConfig.sinks[name]`` carries the config to the daemon;
* ``validate(config, run_config)``: called at start-up before anything listens or loads
  (bad TLS files, unreadable token file...): raise a
  :class:`~sleepstream.errors.SleepstreamError` with one line;
* ``factory(config, ctx)``: returns a :class:`SinkFactory` (or None: this kind is off).

The daemon enters every factory (in registry order) in its exit stack *once*, after the
model, the Prometheus exporter and the embedded broker; a factory holds the daemon-wide
resource (one MQTT connection and outbox for all devices, one web server). Then, per
device, it calls ``factory.sink_for(device_ctx)`` and enters the returned
:class:`~sleepstream.sinks.base.Sink`. At shutdown the per-device sinks leave first, then
the factories (reverse order), so a factory can flush what its sinks queued.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Self, TextIO, runtime_checkable

from sleepstream.errors import UsageError
from sleepstream.settings import Setting, assign

if TYPE_CHECKING:
    from sleepstream.batcher import Model, Stager
    from sleepstream.config import DeviceConfig, RunConfig
    from sleepstream.metrics import Metrics
    from sleepstream.profiles import Profile
    from sleepstream.sinks.base import Sink
    from sleepstream.sources.base import Source


def _raise(error: BaseException) -> None:
    """``DaemonContext.fail`` outside a daemon: there is nothing to stop, so raise."""
    raise error


@dataclass(frozen=True)
class DaemonContext:
    """What a factory may use; built once per daemon start.

    Attributes
    ----------
    config : RunConfig
    state_dir : Path
        Created (mode 0700) and locked by this daemon.
    metrics : Metrics
        The daemon's Prometheus series (create label sets at start: zero is a value).
    stager : Stager
        The loaded model (``model_id``, ``card``).
    mqtt_url : str
        The broker in use: ``config.mqtt.url`` or the embedded broker's URL.
    stdout : text stream or None
        Where per-epoch lines go (None = ``sys.stdout`` at print time).
    factories : mapping
        Kind name -> the factories already entered (registry order), e.g. the HA
        discovery kind publishes through ``factories["mqtt"]``.
    fail : callable
        ``fail(error)``: a daemon-wide resource that died for good stops the daemon
        loudly: the error is logged at CRITICAL, the daemon shuts down as on SIGTERM
        and :meth:`Daemon.run` raises it (the CLI exits with its exit code).
    """

    config: RunConfig
    state_dir: Path
    metrics: Metrics
    stager: Stager | Model
    mqtt_url: str = ""
    stdout: TextIO | None = None
    factories: Mapping[str, SinkFactory] = field(default_factory=dict)
    fail: Callable[[BaseException], None] = field(default=_raise)


@dataclass(frozen=True)
class DeviceContext:
    """One device as a factory sees it when it makes the device's sink.

    Attributes
    ----------
    device : DeviceConfig
    session : str
        This start's session id (part of every ``event_id``).
    profile : Profile
        The device's effective profile (``--channel`` and other overrides applied).
    source : Source
        Not yet entered: ``start_datetime``, ``fs`` and ``channels`` are known only
        once the first chunk reaches ``write_chunk``.
    """

    device: DeviceConfig
    session: str
    profile: Profile
    source: Source

    @property
    def name(self) -> str:
        return self.device.name


@dataclass(frozen=True)
class DeliveryStats:
    """What a delivering factory reports per device at the end of a run.

    Attributes
    ----------
    delivered : int
        Events acknowledged by the far side during this run.
    pending : int
        Events handed over but not acknowledged (kept for the next start).
    latencies_s : sequence of float
        Acknowledged latency of each of this session's events (last sample -> ack), s.
    resent : int
        Acknowledged events delivered again after a lost connection (at least once).
    """

    delivered: int = 0
    pending: int = 0
    latencies_s: Sequence[float] = ()
    resent: int = 0


@runtime_checkable
class SinkFactory(Protocol):
    """A daemon-wide provider of per-device sinks (an async context manager)."""

    async def __aenter__(self) -> SinkFactory: ...

    async def __aexit__(self, *exc: object) -> bool | None: ...

    def sink_for(self, device: DeviceContext) -> Sink | None:
        """The (not yet entered) sink of one device, or None to skip this device."""

    async def drained(self) -> None:
        """Return once everything handed to its sinks is delivered (at once if it keeps
        nothing). The daemon awaits it with ``--stay`` before it reports idle; it must
        wait on an event, never poll."""

    def delivery(self, device: str) -> DeliveryStats | None:
        """Delivery counters of one device (None: this kind does not deliver anywhere)."""


class BaseSinkFactory:
    """Defaults for a :class:`SinkFactory`: no shared resource, nothing to drain."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> bool | None:
        return None

    def sink_for(self, device: DeviceContext) -> Sink | None:
        return None

    async def drained(self) -> None:
        return None

    def delivery(self, device: str) -> DeliveryStats | None:
        return None


class PerDeviceSinks(BaseSinkFactory):
    """A factory without a shared resource: ``make(device_ctx)`` builds each sink."""

    def __init__(self, make: Callable[[DeviceContext], Sink | None]) -> None:
        self._make = make

    def sink_for(self, device: DeviceContext) -> Sink | None:
        return self._make(device)


@dataclass(frozen=True)
class SinkKind:
    """A registered sink kind: its settings and how to build its factory.

    Attributes
    ----------
    name : str
        Registry key, and the key of its config in ``RunConfig.sinks``.
    help : str
        One line (the title of its group in ``--help``).
    config : type
        Frozen dataclass, every field defaulted; ``config()`` is "as if no flag given".
    factory : callable
        ``factory(config, ctx: DaemonContext) -> SinkFactory | None``.
    options : tuple of Setting
        Each ``target`` is a field name of ``config``.
    validate : callable, optional
        ``validate(config, run_config) -> None``; raise a SleepstreamError (one line).
    """

    name: str
    help: str
    config: type
    factory: Callable[[Any, DaemonContext], SinkFactory | None]
    options: tuple[Setting, ...] = ()
    validate: Callable[[Any, RunConfig], None] | None = None

    def __post_init__(self) -> None:
        if not is_dataclass(self.config):
            raise TypeError(f"sink {self.name!r}: config must be a dataclass")
        names = {f.name for f in fields(self.config)}
        for opt in self.options:
            if opt.target not in names:
                raise TypeError(
                    f"sink {self.name!r}: option {opt.flag} targets {opt.target!r}, "
                    f"not a field of {self.config.__name__}"
                )

    def config_of(self, run_config: RunConfig) -> Any:
        """This kind's config in ``run_config`` (its defaults when absent)."""
        return run_config.sinks.get(self.name) or self.config()


#: Sink kind -> ``module:attribute`` of its :class:`SinkKind`, in delivery order (the
#: pipeline hands each verdict to the sinks in this order: MQTT first, for latency).
SINKS: dict[str, str] = {
    "mqtt": "sleepstream.sinks.mqtt:MQTT",
    "stdout": "sleepstream.sinks.builtin:STDOUT",
    "recorder": "sleepstream.sinks.builtin:RECORDER",
    "web": "sleepstream.web.sink:SINK",
    "ha_discovery": "sleepstream.sinks.ha_discovery.kind:SINK",
}

_loaded: dict[str, SinkKind] = {}


def register_sink(name: str, target: str | SinkKind) -> None:
    """Add (or replace) a sink kind: an import string ``module:attr`` or the kind itself."""
    if isinstance(target, SinkKind):
        if target.name != name:
            raise ValueError(f"sink kind {target.name!r} registered as {name!r}")
        _loaded[name] = target
        SINKS[name] = f"<registered {name}>"
    else:
        _loaded.pop(name, None)
        SINKS[name] = target


def unregister_sink(name: str) -> None:
    """Remove a kind (tests that register their own)."""
    SINKS.pop(name, None)
    _loaded.pop(name, None)


def sink_kind(name: str) -> SinkKind:
    """The kind registered as ``name`` (imported on first use).

    Raises
    ------
    UsageError
        Unknown name (lists the valid ones), or a target that is not a SinkKind.
    """
    if name in _loaded:
        return _loaded[name]
    if name not in SINKS:
        raise UsageError(f"unknown sink {name!r}; valid sinks: {', '.join(SINKS)}")
    module_name, _, attr = SINKS[name].partition(":")
    try:
        kind = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"sink {name!r} ({SINKS[name]}) cannot be loaded: {exc}") from None
    if not isinstance(kind, SinkKind) or kind.name != name:
        raise UsageError(f"sink {name!r}: {SINKS[name]} is not a SinkKind named {name!r}")
    _loaded[name] = kind
    return kind


def sink_kinds() -> tuple[SinkKind, ...]:
    """Every registered kind, in delivery order."""
    return tuple(sink_kind(name) for name in SINKS)


def sink_settings() -> tuple[Setting, ...]:
    """The options of every registered kind (flags, env variables, beds.toml keys)."""
    return tuple(opt for kind in sink_kinds() for opt in kind.options)


def sink_configs(
    values: Mapping[str, Any], base: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """``kind name -> config`` from setting values (``option key -> parsed value``).

    Raises
    ------
    UsageError
        A key that is no registered kind's option.
    """
    out: dict[str, Any] = dict(base or {})
    left = dict(values)
    for kind in sink_kinds():
        tree: dict[str, Any] = {}
        for opt in kind.options:
            if opt.key in left:
                assign(tree, opt, left.pop(opt.key))
        if tree:
            current = out.get(kind.name) or kind.config()
            out[kind.name] = replace(current, **tree)
    if left:
        raise UsageError(f"unknown setting(s): {', '.join(sorted(left))}")
    return out
