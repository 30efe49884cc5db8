"""Run-time configuration: frozen dataclasses validated once at start-up.

:class:`RunConfig` is what ``sleepstream run`` / ``replay`` hand to the daemon; it is
built either from command-line flags (each also read from ``SLEEPSTREAM_*``) or from a
``beds.toml`` file (several devices in one process)::

    # beds.toml
    [daemon]                        # every key optional
    mqtt = "mqtt://127.0.0.1:1883"  # omit for the embedded broker
    metrics_port = 9108
    model = "/opt/models/student.onnx"
    lookahead = 0
    state_dir = "/var/lib/sleepstream"
    outbox_max_events = 100000

    [[device]]
    name = "bed-1"
    source = "board:cyton"          # board:NAME | lsl:NAME | edf:PATH | synthetic-night
    profile = "cyton"               # optional: the source kind's default profile
    serial_port = "/dev/ttyUSB0"    # any other key is a source option

Errors raise :class:`~sleepstream.errors.ConfigError` naming the file, key and value.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sleepstream.errors import ConfigError, UsageError

#: Device names become MQTT topic levels and file names.
_DEVICE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_DAEMON_KEYS = {
    "mqtt": str,
    "metrics_port": int,
    "metrics_addr": str,
    "broker_host": str,
    "broker_port": int,
    "model": str,
    "lookahead": int,
    "state_dir": str,
    "outbox_max_events": int,
    "topic_prefix": str,
    "mqtt_username": str,
    "mqtt_password_file": str,
    "mqtt_ca_file": str,
    "mqtt_cert_file": str,
    "mqtt_key_file": str,
}
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
    """Validate a device name (it becomes a topic level and a file name)."""
    if not _DEVICE_RE.match(name or ""):
        raise UsageError(
            f"{where} {name!r}: use 1-64 letters, digits, '.', '_' or '-' (no '/', '+', '#')"
        )
    return name


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
    """

    name: str
    source: str
    profile: str | None = None
    options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


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
        ``"line"``, ``"json"`` or ``"none"``: what is printed to stdout per epoch.
    flush_timeout_s : float
        At shutdown, how long (s) to keep trying to deliver the outbox before leaving
        the rest for the next start.
    record : bool
        Keep the night (raw EDF segments, stages, hypnogram) under
        ``<state_dir>/nights/<device>/`` with :class:`~sleepstream.sinks.recorder.Recorder`.
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

    def __post_init__(self) -> None:
        if not self.devices:
            raise UsageError("no device configured")
        names = [d.name for d in self.devices]
        for n in names:
            check_device_name(n)
        if len(set(names)) != len(names):
            raise UsageError(f"device names must be unique, got {names}")
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
        if self.print_mode not in ("line", "json", "none"):
            raise UsageError(f"print mode {self.print_mode!r}: line, json or none")

    def with_(self, **changes: Any) -> RunConfig:
        return replace(self, **changes)


def _typed(path: Path, key: str, value: Any, typ: type) -> Any:
    if typ is int and isinstance(value, bool) or not isinstance(value, typ):
        raise ConfigError(f"{path}: {key} = {value!r}: expected {typ.__name__}")
    return value


def load_beds(path: str | os.PathLike[str], **overrides: Any) -> RunConfig:
    """Read a ``beds.toml`` file into a :class:`RunConfig`.

    Parameters
    ----------
    path : path-like
    **overrides
        RunConfig fields set from the command line (they win over the file).

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
    kw: dict[str, Any] = {}
    mqtt: dict[str, Any] = {}
    for key, value in daemon.items():
        if key not in _DAEMON_KEYS:
            raise ConfigError(
                f"{path}: unknown key daemon.{key} = {value!r} (valid: {', '.join(_DAEMON_KEYS)})"
            )
        _typed(path, f"daemon.{key}", value, _DAEMON_KEYS[key])
        if key == "mqtt":
            mqtt["url"] = value
        elif key == "topic_prefix":
            mqtt["topic_prefix"] = value
        elif key.startswith("mqtt_"):
            mqtt[key[5:]] = value
        elif key in ("model", "state_dir"):
            kw[key] = Path(value).expanduser()
        else:
            kw[key] = value
    if "mqtt_password" in daemon:  # pragma: no cover - rejected above as unknown
        raise ConfigError(f"{path}: daemon.mqtt_password: use mqtt_password_file")
    devices_raw = data.get("device")
    if not isinstance(devices_raw, list) or not devices_raw:
        raise ConfigError(f"{path}: device = {devices_raw!r}: expected one or more [[device]]")
    devices = []
    for i, dev in enumerate(devices_raw):
        where = f"device[{i}]"
        for key in ("name", "source"):
            if key not in dev:
                raise ConfigError(f"{path}: {where}.{key} is missing")
        for key, typ in _DEVICE_KEYS.items():
            if key in dev:
                _typed(path, f"{where}.{key}", dev[key], typ)
        if not _DEVICE_RE.match(dev["name"]):
            raise ConfigError(
                f"{path}: {where}.name = {dev['name']!r}: use letters, digits, '.', '_' or '-'"
            )
        options = {k: v for k, v in dev.items() if k not in _DEVICE_KEYS}
        devices.append(DeviceConfig(dev["name"], dev["source"], dev.get("profile"), options))
    try:
        cfg = RunConfig(devices=tuple(devices), mqtt=MqttOptions(**mqtt), **kw)
    except UsageError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return cfg.with_(**{k: v for k, v in overrides.items() if v is not None}) if overrides else cfg
