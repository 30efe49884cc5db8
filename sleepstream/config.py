"""Run-time configuration: frozen dataclasses validated once at start-up.

:class:`RunConfig` is what ``sleepstream run`` / ``replay`` hand to the daemon; it is
built either from command-line flags (each also read from ``SLEEPSTREAM_*``) or from a
``beds.toml`` file (several devices in one process)::

    # beds.toml
    [daemon]                        # every key optional; the same names as the flags
    mqtt = "mqtt://127.0.0.1:1883"  # omit for the embedded broker
    metrics_port = 9108
    model = "/opt/models/student.onnx"
    lookahead = 0
    state_dir = "/var/lib/sleepstream"
    outbox_max_events = 100000
    # ... every key of DAEMON_SETTINGS and of the registered sinks' options

    [[device]]
    name = "bed-1"
    source = "board:cyton"          # board:NAME | lsl:NAME | file:PATH | synthetic-night
    profile = "cyton"               # optional: the source kind's default profile
    serial_port = "/dev/ttyUSB0"    # any other key is a source option

Each ``[daemon]`` key is the flag without ``--`` (``--mqtt-username`` ->
``mqtt_username``) and the variable without ``SLEEPSTREAM_``; :data:`DAEMON_SETTINGS`
(and each sink kind's ``options``) is the one table that maps them onto fields. The
command line and the environment win over the file (see :mod:`sleepstream.settings`).

Errors raise :class:`~sleepstream.errors.ConfigError` naming the file, key and value.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sleepstream import names
from sleepstream import settings as st
from sleepstream.errors import ConfigError, UsageError
from sleepstream.settings import Setting
from sleepstream.sinks.mqtt_queue import RESEND_WINDOW_S

_DEVICE_KEYS = {"name": str, "source": str, "profile": str}


def default_state_dir() -> Path:
    """``$STATE_DIRECTORY`` under systemd, else ``$XDG_DATA_HOME/sleepstream``
    (``~/.local/share/sleepstream``)."""
    if os.environ.get("STATE_DIRECTORY"):
        # systemd may pass several colon-separated folders; the first is ours.
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "sleepstream"


def check_device_name(name: str, where: str = "--device") -> str:
    """Validate a device name (a topic level and a file name): :func:`sleepstream.names.check_device`."""
    return names.check_device(name, where)


@dataclass(frozen=True)
class DeviceConfig:
    """One device (bed): a source, its profile, and source-specific options.

    Attributes
    ----------
    name : str
        Device name: MQTT topic level, outbox file name, ``event_id`` prefix.
    source : str
        Source spec ``kind[:argument]`` (see :func:`sleepstream.sources.base.parse_source_spec`).
    profile : str or None
        Profile name or path; None = the source kind's default.
    options : dict
        Extra keyword arguments for the source constructor (``serial_port``, ``speed``...).
    where : str
        Where the device was described, for error messages: ``""`` (command-line flags)
        or ``"<beds.toml>: device[i]"`` (an option is then named as its key there).
    """

    name: str
    source: str
    profile: str | None = None
    options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    where: str = field(default="", compare=False)

    def option_name(self, key: str) -> str:
        """How the user wrote option ``key``: ``--serial-port`` or ``beds.toml: device[0].x``."""
        return f"{self.where}.{key}" if self.where else "--" + key.replace("_", "-")


@dataclass(frozen=True)
class MqttOptions:
    """How to reach an external broker (``url`` None = start the embedded one)."""

    url: str | None = None
    username: str | None = None
    password_file: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    tls_insecure: bool = False
    client_id: str | None = None
    topic_prefix: str = "sleepstream"


@dataclass(frozen=True)
class RunConfig:
    """Everything the daemon needs, validated.

    Attributes
    ----------
    devices : tuple of DeviceConfig
        One pipeline each, all in one event loop; inference is batched across them.
    mqtt : MqttOptions
    broker_host, broker_port : str, int
        Embedded broker address (used when ``mqtt.url`` is None).
    metrics_port : int or None
        Prometheus port (0 = any free port, None = no exporter).
    metrics_addr : str
    model : Path or None
        ONNX model (its card next to it); None = the shipped default.
    lookahead : int
        K >= 0: also publish a revised stage for epoch t when t+K arrives.
    state_dir : Path
        Holds the outbox (``outbox-<device>.sqlite``) and recordings.
    outbox_max_events : int
    print_mode : str
        ``"line"``, ``"json"`` or ``"none"``: what is printed to stdout per epoch
        (causal and revised verdicts).
    flush_timeout_s : float
        At shutdown, how long (s) to keep trying to deliver the outbox before leaving
        the rest for the next start.
    resend_window_s : float
        After a lost broker connection, the events acknowledged in the last this many
        seconds are published again (a crashed broker loses what it had not saved;
        0 = never). Cover the broker's save interval.
    record : bool
        Keep the night (raw EDF segments, stages, hypnogram) under
        ``<state_dir>/nights/<device>/`` with :class:`~sleepstream.sinks.recorder.Recorder`.
    stay : bool
        Keep running (broker, metrics, sinks) after every file source ended, until a
        stop is requested.
    shard : (int, int) or None
        ``(i, n)``: this daemon runs only the devices of shard ``i`` (1-based) of ``n``
        (:func:`sleepstream.names.shard_of`); None runs all of them.
    banner : bool
        In text mode, print ``#`` header lines first: what runs where, and per device
        its source, profile and columns (``run``; not ``replay``).
    sinks : mapping
        Sink kind name -> its config dataclass (see :mod:`sleepstream.sinks.registry`);
        a kind left out runs with its config's defaults.
    """

    devices: tuple[DeviceConfig, ...]
    mqtt: MqttOptions = MqttOptions()
    broker_host: str = "127.0.0.1"
    broker_port: int = 1883
    metrics_port: int | None = 9108
    metrics_addr: str = "127.0.0.1"
    model: Path | None = None
    lookahead: int = 0
    state_dir: Path = field(default_factory=default_state_dir)
    outbox_max_events: int = 100_000
    print_mode: str = "line"
    record: bool = False
    flush_timeout_s: float = 10.0
    resend_window_s: float = RESEND_WINDOW_S
    stay: bool = False
    banner: bool = False
    shard: tuple[int, int] | None = None
    sinks: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not self.devices:
            raise UsageError("no device configured")
        names.check_device_names([d.name for d in self.devices])
        if self.lookahead < 0:
            raise UsageError(f"--lookahead {self.lookahead}: must be >= 0")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise UsageError(f"--metrics-port {self.metrics_port}: must be in 0..65535")
        if not 0 <= self.broker_port <= 65535:
            raise UsageError(f"--broker-port {self.broker_port}: must be in 0..65535")
        if self.outbox_max_events < 1:
            raise UsageError(f"--outbox-max-events {self.outbox_max_events}: must be >= 1")
        if not self.flush_timeout_s >= 0:
            raise UsageError(f"--flush-timeout {self.flush_timeout_s}: must be >= 0 s")
        if not self.resend_window_s >= 0:
            raise UsageError(f"--resend-window {self.resend_window_s}: must be >= 0 s")
        if self.print_mode not in ("line", "json", "none"):
            raise UsageError(f"print mode {self.print_mode!r}: line, json or none")

    def with_(self, **changes: Any) -> RunConfig:
        return replace(self, **changes)


def _state_dir(raw: str) -> Path:
    """``--state-dir``: a folder path; ``""`` means the default location (said in help)."""
    if not raw.strip():
        return default_state_dir()
    return st.path(raw)


def _shard(raw: str) -> tuple[int, int]:
    """``i/n``: this daemon runs shard ``i`` (1-based) of ``n``."""
    try:
        i, n = (int(part) for part in raw.strip().split("/"))
    except ValueError:
        raise ValueError("expected i/n, e.g. 1/2 (shard 1 of 2)") from None
    if not 1 <= i <= n:
        raise ValueError("expected i/n with 1 <= i <= n, e.g. 1/2 (shard 1 of 2)")
    return i, n


def _url(raw: str) -> str:
    if not raw.strip():
        raise ValueError("must not be empty")
    if "://" not in raw:
        raise ValueError("expected mqtt://host[:port] or mqtts://host[:port]")
    return raw.strip()


#: Every daemon-wide setting: flag, environment variable, beds.toml key -> RunConfig field.
DAEMON_SETTINGS: tuple[Setting, ...] = (
    Setting("mqtt", "mqtt.url", "broker URL mqtt://host[:port] or mqtts://...; "
            "default: start an embedded broker on --broker-host", _url, metavar="URL"),
    Setting("mqtt_username", "mqtt.username", "MQTT user name", st.text, metavar="USER"),
    Setting("mqtt_password_file", "mqtt.password_file",
            "file holding the MQTT password (or $SLEEPSTREAM_MQTT_PASSWORD; never argv)",
            st.path_text, metavar="FILE"),
    Setting("mqtt_ca_file", "mqtt.ca_file", "CA bundle to verify the broker (TLS)",
            st.path_text, metavar="FILE"),
    Setting("mqtt_cert_file", "mqtt.cert_file", "client certificate (TLS)", st.path_text,
            metavar="FILE"),
    Setting("mqtt_key_file", "mqtt.key_file", "client key (TLS)", st.path_text,
            metavar="FILE"),
    Setting("mqtt_tls_insecure", "mqtt.tls_insecure", "do not check the broker's host name",
            switch=True),
    Setting("mqtt_client_id", "mqtt.client_id", "MQTT client id of the daemon's connection",
            st.named(names.check_client_id), metavar="ID"),
    Setting("topic_prefix", "mqtt.topic_prefix", "MQTT topic prefix",
            st.named(names.check_topic_prefix)),
    Setting("broker_host", "broker_host", "embedded broker address", st.host),
    Setting("broker_port", "broker_port", "embedded broker port (0 = any free port)", st.port,
            int),
    Setting("metrics_port", "metrics_port",
            "Prometheus port on --metrics-addr (0 = any free port)", st.port, int),
    Setting("metrics_addr", "metrics_addr", "Prometheus address", st.host),
    Setting("no_metrics", "metrics_port", "no Prometheus exporter", switch=True, const=None),
    Setting("model", "model", "ONNX model or its card; default: the shipped student", st.path,
            metavar="PATH"),
    Setting("state_dir", "state_dir",
            "outbox, locks and recordings (\"\" = the default: $STATE_DIRECTORY, else "
            "$XDG_DATA_HOME/sleepstream)", _state_dir, metavar="DIR"),
    Setting("lookahead", "lookahead",
            "also publish a revised stage for epoch t when epoch t+K arrives",
            st.integer(0), int, metavar="K"),
    Setting("outbox_max_events", "outbox_max_events",
            "outbox capacity; the oldest events are dropped beyond it", st.integer(1), int),
    Setting("flush_timeout", "flush_timeout_s",
            "seconds to keep delivering the outbox at shutdown", st.number(0.0),
            (int, float)),
    Setting("resend_window", "resend_window_s",
            "after a lost broker connection, publish again the events it acknowledged in "
            "the last S seconds (a crashed broker loses what it had not saved; 0 = never)",
            st.number(0.0), (int, float), metavar="S"),
    Setting("json", "print_mode", "print JSON lines instead of text", switch=True,
            const="json", commands=("run",)),
    Setting("quiet", "print_mode", "print nothing per epoch", switch=True, const="none",
            commands=("run",)),
    Setting("no_record", "record", "do not keep the night (raw EDF, stages) under "
            "STATE_DIR/nights/", switch=True, const=False, commands=("run",)),
    Setting("shard", "shard", "run only shard i of n of the beds file's devices (several "
            "daemons, one broker; every daemon reads the same beds file with the same n)",
            _shard, metavar="i/n"),
    Setting("stay", "stay", "keep running (broker, metrics) after a file source ends, "
            "until SIGTERM", switch=True, commands=("run",)),
)  # fmt: skip


def all_settings() -> tuple[Setting, ...]:
    """:data:`DAEMON_SETTINGS` followed by the options of every registered sink kind."""
    from sleepstream.sinks.registry import sink_settings

    return DAEMON_SETTINGS + sink_settings()


def run_config(
    devices: tuple[DeviceConfig, ...],
    values: Mapping[str, Any],
    *,
    base: RunConfig | None = None,
) -> RunConfig:
    """A :class:`RunConfig` from setting values (``key -> parsed value``).

    Parameters
    ----------
    devices : tuple of DeviceConfig
    values : mapping
        Setting keys (flag dests / beds.toml keys) to values, already parsed; switches
        that are off may be False. Unknown keys raise :class:`UsageError`.
    base : RunConfig, optional
        Defaults for fields no setting gives (a command's own defaults, e.g. ``replay``
        has no metrics exporter); default: the dataclass defaults.
    """
    from sleepstream.sinks.registry import sink_configs

    table = {s.key: s for s in DAEMON_SETTINGS}
    sink_values = {}
    tree: dict[str, Any] = {}
    # switches that turn something off are applied last (--no-metrics beats --metrics-port)
    for key in sorted(values, key=lambda k: table[k].switch if k in table else False):
        if key in table:
            st.assign(tree, table[key], values[key])
        else:
            sink_values[key] = values[key]
    kw: dict[str, Any] = {}
    base_mqtt = base.mqtt if base is not None else MqttOptions()
    mqtt_kw = tree.pop("mqtt", {})
    kw["mqtt"] = replace(base_mqtt, **mqtt_kw) if mqtt_kw else base_mqtt
    kw.update(tree)
    kw["sinks"] = sink_configs(sink_values, base.sinks if base is not None else None)
    shard = kw.get("shard", base.shard if base is not None else None)
    if shard is not None:
        devices = shard_devices(devices, shard)
    if base is not None:
        return replace(base, devices=devices, **kw)
    return RunConfig(devices=devices, **kw)


def shard_devices(
    devices: tuple[DeviceConfig, ...], shard: tuple[int, int]
) -> tuple[DeviceConfig, ...]:
    """The devices shard ``i`` of ``n`` owns (a stable hash of each name).

    Raises
    ------
    UsageError
        The shard owns no device.
    """
    i, n = shard
    mine = tuple(d for d in devices if names.shard_of(d.name, n) == i - 1)
    if not mine:
        raise UsageError(f"--shard {i}/{n}: this shard owns none of the {len(devices)} device(s)")
    return mine


def _device(path: Path, i: int, dev: Any) -> DeviceConfig:
    where = f"device[{i}]"
    if not isinstance(dev, dict):
        raise ConfigError(f"{path}: {where} = {dev!r}: expected a table [[device]]")
    for key in ("name", "source"):
        if key not in dev:
            raise ConfigError(f"{path}: {where}.{key} is missing")
    for key in _DEVICE_KEYS:
        if key in dev and not isinstance(dev[key], str):
            raise ConfigError(f"{path}: {where}.{key} = {dev[key]!r}: expected str")
    names.check_device(dev["name"], f"{path}: {where}.name", error=ConfigError)
    options = {k: v for k, v in dev.items() if k not in _DEVICE_KEYS}
    from sleepstream.wiring import SOURCE_SETTINGS

    known = {s.key: s for s in SOURCE_SETTINGS}
    for key, value in options.items():
        if key in known:  # the options run also takes as flags: the same checks
            try:
                options[key] = known[key].from_toml(value)
            except ValueError as exc:
                raise ConfigError(f"{path}: {where}.{key} = {value!r}: {exc}") from None
    return DeviceConfig(
        dev["name"], dev["source"], dev.get("profile"), options, where=f"{path}: {where}"
    )


def load_beds(
    path: str | os.PathLike[str], *, base: RunConfig | None = None, **overrides: Any
) -> RunConfig:
    """Read a ``beds.toml`` file into a :class:`RunConfig`.

    Parameters
    ----------
    path : path-like
    base : RunConfig, optional
        The command's defaults for fields neither the file nor ``overrides`` set.
    **overrides
        Setting values from the command line or the environment (keys as in
        :data:`DAEMON_SETTINGS`, e.g. ``mqtt_username="bob"``); they win over the file.

    Raises
    ------
    ConfigError
        Unreadable file, bad TOML, unknown key, wrong type or bad value (names all three).
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    unknown = set(data) - {"daemon", "device"}
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(f"{path}: unknown key {key!r} (valid: daemon, device)")
    daemon = data.get("daemon", {})
    if not isinstance(daemon, dict):
        raise ConfigError(f"{path}: daemon = {daemon!r}: expected a table [daemon]")
    table = {s.key: s for s in all_settings() if s.beds}
    values: dict[str, Any] = {}
    for key, value in daemon.items():
        if key not in table:
            hint = " (use mqtt_password_file)" if key == "mqtt_password" else ""
            raise ConfigError(
                f"{path}: unknown key daemon.{key} = {value!r}{hint} (valid: {', '.join(table)})"
            )
        try:
            values[key] = table[key].from_toml(value)
        except ValueError as exc:
            raise ConfigError(f"{path}: daemon.{key} = {value!r}: {exc}") from None
    devices_raw = data.get("device")
    if not isinstance(devices_raw, list) or not devices_raw:
        raise ConfigError(f"{path}: device = {devices_raw!r}: expected one or more [[device]]")
    devices = tuple(_device(path, i, dev) for i, dev in enumerate(devices_raw))
    bad = sorted(set(overrides) - {s.key for s in all_settings()})
    if bad:
        raise UsageError(f"load_beds: unknown setting(s) {', '.join(bad)}")
    values.update(overrides)
    try:
        return run_config(devices, values, base=base)
    except UsageError as exc:
        raise ConfigError(f"{path}: {exc}") from None
