"""Options shared by ``run``, ``replay`` and ``watch``: MQTT, broker, metrics, model, state,
and every registered sink's options.

The flags come from the one table of settings (:data:`sleepstream.config.DAEMON_SETTINGS`
and each sink kind's ``options``); each also reads ``SLEEPSTREAM_<KEY>`` (through
:mod:`sleepstream.clikit`). Every default is None (a switch: False), meaning "not
given": :func:`daemon_values` returns only what the user set, and the dataclass defaults
(or a command's own, e.g. ``replay`` has no exporter) fill the rest, so there is no
second copy of the defaults to drift. The MQTT password only comes from
``$SLEEPSTREAM_MQTT_PASSWORD`` or ``--mqtt-password-file``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from sleepstream import settings as st
from sleepstream.config import (
    DAEMON_SETTINGS,
    DeviceConfig,
    MqttOptions,
    RunConfig,
    all_settings,
    run_config,
)
from sleepstream.settings import Setting

if TYPE_CHECKING:
    from sleepstream.sinks.mqtt_settings import MqttSettings

#: Settings shown in the "MQTT" group (and the only ones ``watch`` takes).
MQTT_KEYS = (
    "mqtt", "mqtt_username", "mqtt_password_file", "mqtt_ca_file", "mqtt_cert_file",
    "mqtt_key_file", "mqtt_tls_insecure", "mqtt_client_id", "topic_prefix",
)  # fmt: skip
_BROKER_KEYS = ("broker_host", "broker_port")
_OUTPUT_KEYS = ("json", "quiet", "no_record", "stay")
#: RunConfig fields a command sets itself (not from the shared settings).
_COMMAND_FIELDS = ("devices", "print_mode", "record", "stay", "banner")


def _table() -> dict[str, Setting]:
    return {s.key: s for s in DAEMON_SETTINGS}


def _shown_defaults(base: RunConfig | None = None) -> dict[str, Any]:
    """Defaults for the help text, read from the dataclasses (never retyped)."""
    mqtt = MqttOptions()
    out: dict[str, Any] = {}
    for s in DAEMON_SETTINGS:
        head, _, leaf = s.target.partition(".")
        if s.switch:
            continue
        if head == "mqtt":
            out[s.key] = getattr(mqtt, leaf)
        elif base is not None and hasattr(base, head):
            out[s.key] = getattr(base, head)
        else:
            defaults = {f.name: f.default for f in fields(RunConfig)}
            value = defaults.get(head)
            out[s.key] = value if isinstance(value, int | float | str) else None
    return out


def _add(
    parser: argparse.ArgumentParser | Any,
    settings: list[Setting],
    command: str,
    *,
    none_defaults: bool,
    shown: dict[str, Any],
) -> None:
    for s in settings:
        if command not in s.commands and command != "watch":
            continue
        help_text = s.help
        if shown.get(s.key) is not None:
            help_text += f" (default: {shown[s.key]})"
        help_text = help_text.replace("%", "%%") + f" [env {s.env}]"
        if s.switch:
            parser.add_argument(s.flag, dest=s.key, action="store_true", help=help_text)
        elif s.takes_optional_value:
            parser.add_argument(
                s.flag,
                dest=s.key,
                nargs="?",
                const=s.optional,
                type=st.argtype(s),
                default=None,
                metavar=s.metavar,
                help=help_text,
            )
        else:
            parser.add_argument(
                s.flag,
                dest=s.key,
                type=st.argtype(s),
                default=None if none_defaults else shown.get(s.key),
                metavar=s.metavar,
                help=help_text,
            )


def add_mqtt_arguments(parser: argparse.ArgumentParser, *, embedded: bool = True) -> None:
    """The MQTT flags (and, with ``embedded``, the embedded broker's address)."""
    table = _table()
    g = parser.add_argument_group("MQTT")
    keys = MQTT_KEYS + (_BROKER_KEYS if embedded else ())
    command = "run" if embedded else "watch"
    # watch has no config file to merge with: its namespace carries the real defaults
    _add(g, [table[k] for k in keys], command, none_defaults=embedded, shown=_shown_defaults())


def mqtt_options(args: argparse.Namespace) -> MqttOptions:
    """The MQTT options given in ``args`` over the dataclass defaults (``watch``)."""
    values = {k: v for k, v in daemon_values(args).items() if k in MQTT_KEYS}
    return run_config((DeviceConfig("x", "synthetic-night"),), values).mqtt


#: Broker of the client commands when ``--mqtt`` is not given.
CLIENT_DEFAULT_URL = "mqtt://127.0.0.1:1883"


def client_settings(args: argparse.Namespace) -> MqttSettings:
    """The connection of a client command (``watch``, ``ha-forget``) from its MQTT flags
    and ``SLEEPSTREAM_*`` variables, through the daemon's one mapping
    (:func:`~sleepstream.sinks.mqtt_settings.settings_of`); ``--mqtt`` defaults to
    :data:`CLIENT_DEFAULT_URL`."""
    from sleepstream.sinks.mqtt_settings import settings_of

    options = mqtt_options(args)
    return settings_of(options, options.url or CLIENT_DEFAULT_URL)


def add_daemon_arguments(
    parser: argparse.ArgumentParser,
    *,
    metrics_default: int | None,
    flush_default: float = 10.0,
    command: str = "replay",
) -> None:
    """Daemon, output and sink flags of ``command`` (``run`` or ``replay``).

    ``metrics_default`` and ``flush_default`` are the command's own defaults for
    ``--metrics-port`` and ``--flush-timeout`` (``replay``: no exporter, 60 s).
    """
    base = RunConfig(
        devices=(DeviceConfig("x", "synthetic-night"),),
        metrics_port=metrics_default,
        flush_timeout_s=flush_default,
        record=command == "run",  # run keeps the night unless --no-record
        banner=command == "run",
    )
    parser.set_defaults(_command_base=base)
    table = _table()
    shown = _shown_defaults(base)
    skip = set(MQTT_KEYS + _BROKER_KEYS)
    if command == "run":
        out = parser.add_argument_group("output")
        _add(out, [table[k] for k in _OUTPUT_KEYS], command, none_defaults=True, shown=shown)
    skip |= set(_OUTPUT_KEYS)
    g = parser.add_argument_group("daemon")
    rest = [s for s in DAEMON_SETTINGS if s.key not in skip]
    _add(g, rest, command, none_defaults=True, shown=shown)
    g.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="log level on stderr (%(default)s) [env SLEEPSTREAM_LOG_LEVEL]",
    )
    from sleepstream.sinks.registry import sink_kinds

    for kind in sink_kinds():
        if kind.options:
            kg = parser.add_argument_group(f"{kind.name}: {kind.help}")
            _add(kg, list(kind.options), command, none_defaults=True, shown={})


def daemon_values(args: argparse.Namespace) -> dict[str, Any]:
    """``setting key -> value`` of every daemon or sink setting given (flag or env)."""
    ns = vars(args)
    return {
        s.key: ns[s.key]
        for s in all_settings()
        if s.key in ns and ns[s.key] is not None and ns[s.key] is not False
    }


def command_base(args: argparse.Namespace) -> RunConfig:
    """The command's defaults (set by :func:`add_daemon_arguments`)."""
    base = getattr(args, "_command_base", None)
    return (
        base
        if isinstance(base, RunConfig)
        else RunConfig(devices=(DeviceConfig("x", "synthetic-night"),))
    )


def daemon_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`~sleepstream.config.RunConfig` fields that ``run`` and ``replay`` share,
    from the flags and the environment over the command's defaults."""
    values = {k: v for k, v in daemon_values(args).items() if k not in _OUTPUT_KEYS}
    cfg = run_config(command_base(args).devices, values, base=command_base(args))
    return {
        f.name: getattr(cfg, f.name) for f in fields(RunConfig) if f.name not in _COMMAND_FIELDS
    }


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of the record (a handler that kept
    the stream of its first call would write to a closed file after a redirect)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def setup_logging(level: str) -> None:
    """Log to stderr (stdout carries the stages)."""
    root = logging.getLogger()
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    for noisy in ("amqtt", "transitions", "aiomqtt"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
