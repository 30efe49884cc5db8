"""Options shared by ``run``, ``replay`` and ``watch``: MQTT, broker, metrics, model, state.

Each option also reads ``SLEEPSTREAM_<DEST>`` (e.g. ``SLEEPSTREAM_MQTT``); the MQTT
password only comes from ``$SLEEPSTREAM_MQTT_PASSWORD`` or ``--mqtt-password-file``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from sleepstream.config import MqttOptions, default_state_dir


def add_mqtt_arguments(parser: argparse.ArgumentParser, *, embedded: bool = True) -> None:
    g = parser.add_argument_group("MQTT")
    g.add_argument(
        "--mqtt",
        metavar="URL",
        help="broker URL mqtt://[user@]host[:port] or mqtts://...; "
        + ("default: start an embedded broker on 127.0.0.1" if embedded else ""),
    )
    g.add_argument("--mqtt-username", metavar="USER", help="MQTT user name")
    g.add_argument(
        "--mqtt-password-file",
        metavar="FILE",
        help="file holding the MQTT password (or set $SLEEPSTREAM_MQTT_PASSWORD; never argv)",
    )
    g.add_argument("--mqtt-ca-file", metavar="FILE", help="CA bundle to verify the broker (TLS)")
    g.add_argument("--mqtt-cert-file", metavar="FILE", help="client certificate (TLS)")
    g.add_argument("--mqtt-key-file", metavar="FILE", help="client key (TLS)")
    g.add_argument(
        "--mqtt-tls-insecure", action="store_true", help="do not check the broker's host name"
    )
    g.add_argument("--mqtt-client-id", metavar="ID", help="MQTT client id")
    g.add_argument(
        "--topic-prefix", default="sleepstream", help="topic prefix (default: %(default)s)"
    )
    if embedded:
        g.add_argument(
            "--broker-host", default="127.0.0.1", help="embedded broker address (%(default)s)"
        )
        g.add_argument(
            "--broker-port", type=int, default=1883, help="embedded broker port (%(default)s)"
        )


def mqtt_options(args: argparse.Namespace) -> MqttOptions:
    return MqttOptions(
        url=args.mqtt or None,
        username=args.mqtt_username,
        password_file=args.mqtt_password_file,
        ca_file=args.mqtt_ca_file,
        cert_file=args.mqtt_cert_file,
        key_file=args.mqtt_key_file,
        tls_insecure=bool(args.mqtt_tls_insecure),
        client_id=args.mqtt_client_id,
        topic_prefix=args.topic_prefix,
    )


def daemon_settings(args: argparse.Namespace) -> dict:
    """The :class:`~sleepstream.config.RunConfig` fields that ``run`` and ``replay`` share."""
    return dict(
        mqtt=mqtt_options(args),
        broker_host=args.broker_host,
        broker_port=args.broker_port,
        metrics_port=None if args.no_metrics else args.metrics_port,
        metrics_addr=args.metrics_addr,
        model=args.model,
        lookahead=args.lookahead,
        state_dir=args.state_dir or default_state_dir(),
        outbox_max_events=args.outbox_max_events,
        flush_timeout_s=args.flush_timeout,
    )


def add_daemon_arguments(
    parser: argparse.ArgumentParser, *, metrics_default: int | None, flush_default: float = 10.0
) -> None:
    g = parser.add_argument_group("daemon")
    g.add_argument(
        "--metrics-port",
        type=int,
        default=metrics_default,
        help="Prometheus port on --metrics-addr (0 = any free port; default: %(default)s)",
    )
    g.add_argument("--metrics-addr", default="127.0.0.1", help="Prometheus address (%(default)s)")
    g.add_argument("--no-metrics", action="store_true", help="no Prometheus exporter")
    g.add_argument(
        "--model", type=Path, help="ONNX model (card next to it); default: the shipped student"
    )
    g.add_argument(
        "--state-dir",
        type=Path,
        help=f"outbox and recordings (default: $STATE_DIRECTORY, else {default_state_dir()})",
    )
    g.add_argument(
        "--lookahead",
        type=int,
        default=0,
        metavar="K",
        help="also publish a revised stage for epoch t when epoch t+K arrives",
    )
    g.add_argument(
        "--outbox-max-events",
        type=int,
        default=100_000,
        help="outbox capacity; the oldest events are dropped beyond it (%(default)s)",
    )
    g.add_argument(
        "--flush-timeout",
        type=float,
        default=flush_default,
        help="seconds to keep delivering the outbox at shutdown (%(default)s)",
    )
    g.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="log level on stderr (%(default)s)",
    )


def setup_logging(level: str) -> None:
    """Log to stderr (stdout carries the stages)."""
    root = logging.getLogger()
    if not any(getattr(h, "_sleepstream", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler._sleepstream = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    for noisy in ("amqtt", "transitions", "aiomqtt"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
