"""MQTT connection settings: URL parsing, secrets, TLS, and the aiomqtt client factory.

Everything here is validated before any I/O: a malformed URL or a password in it is a
:class:`~sleepstream.errors.UsageError`, missing TLS files a
:class:`~sleepstream.errors.BrokerError`. The password comes from
``$SLEEPSTREAM_MQTT_PASSWORD`` or a file, never from argv. Every client sets TCP_NODELAY
(without it the first messages after subscribing can wait ~40 ms for Nagle + delayed ACK).
"""

from __future__ import annotations

import os
import random
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from sleepstream.errors import BrokerError, UsageError

#: Environment variable holding the MQTT password (never pass secrets on argv).
PASSWORD_ENV = "SLEEPSTREAM_MQTT_PASSWORD"
NODELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)


@dataclass(frozen=True)
class MqttSettings:
    """Where and how to connect. Validated by :func:`mqtt_settings` before any I/O.

    Attributes
    ----------
    host, port : str, int
    username, password : str or None
        The password comes from ``$SLEEPSTREAM_MQTT_PASSWORD`` or a file, never argv.
    tls : bool
        ``mqtts://`` URLs or a CA file turn TLS on.
    ca_file, cert_file, key_file : Path or None
        CA bundle to verify the broker, and the client certificate and key.
    tls_insecure : bool
        Skip the broker host name check (certificate still verified against the CA).
    client_id : str or None
        MQTT client id (default: ``sleepstream-<device>-<pid>``).
    topic_prefix : str
    keepalive : float
        Seconds; a hung broker is detected after about 1.5 x this.
    publish_timeout : float
        Seconds to wait for one PUBACK before the connection is treated as broken.
    """

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls_insecure: bool = False
    client_id: str | None = None
    topic_prefix: str = "sleepstream"
    keepalive: int = 10
    publish_timeout: float = 5.0

    def url(self) -> str:
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"

    def stage_topic(self, device: str) -> str:
        return f"{self.topic_prefix}/{device}/stage"

    def status_topic(self, device: str) -> str:
        return f"{self.topic_prefix}/{device}/status"


def read_password(password_file: str | os.PathLike[str] | None) -> str | None:
    """The MQTT password from ``--mqtt-password-file`` or ``$SLEEPSTREAM_MQTT_PASSWORD``."""
    if password_file:
        try:
            return Path(password_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UsageError(f"--mqtt-password-file {password_file}: {exc.strerror}") from None
    return os.environ.get(PASSWORD_ENV) or None


def mqtt_settings(
    url: str,
    *,
    username: str | None = None,
    password: str | None = None,
    ca_file: str | os.PathLike[str] | None = None,
    cert_file: str | os.PathLike[str] | None = None,
    key_file: str | os.PathLike[str] | None = None,
    tls_insecure: bool = False,
    client_id: str | None = None,
    topic_prefix: str = "sleepstream",
) -> MqttSettings:
    """Parse ``mqtt://[user@]host[:port]`` or ``mqtts://...`` and check the TLS files.

    Raises :class:`UsageError` for a malformed URL or a password in the URL and
    :class:`BrokerError` for missing TLS files.
    """
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise UsageError(f"--mqtt {url!r}: scheme must be mqtt:// or mqtts://")
    if parts.password is not None:
        raise UsageError(
            f"--mqtt {parts.scheme}://...: do not put the password in the URL "
            f"(it would show in the process list); use ${PASSWORD_ENV} or --mqtt-password-file"
        )
    try:
        port = parts.port
    except ValueError:
        raise UsageError(f"--mqtt {url!r}: bad port") from None
    if not parts.hostname:
        raise UsageError(f"--mqtt {url!r}: no host name")
    tls = parts.scheme in ("mqtts", "ssl") or bool(ca_file) or bool(cert_file)
    files: dict[str, Path | None] = {}
    for name, value in (("ca", ca_file), ("cert", cert_file), ("key", key_file)):
        path = Path(value) if value else None
        if path is not None and not path.is_file():
            raise BrokerError(f"--mqtt-{name}-file {path}: no such file")
        files[name] = path
    if files["key"] and not files["cert"]:
        raise UsageError("--mqtt-key-file needs --mqtt-cert-file")
    prefix = topic_prefix.strip("/")
    if not prefix or any(c in prefix for c in "#+"):
        raise UsageError(f"--topic-prefix {topic_prefix!r}: must be non-empty, without # or +")
    return MqttSettings(
        host=parts.hostname,
        port=port or (8883 if tls else 1883),
        username=username or (unquote(parts.username) if parts.username else None),
        password=password,
        tls=tls,
        ca_file=files["ca"],
        cert_file=files["cert"],
        key_file=files["key"],
        tls_insecure=tls_insecure,
        client_id=client_id,
        topic_prefix=prefix,
    )


def tls_context(settings: MqttSettings) -> ssl.SSLContext | None:
    """An SSL context for the broker, or None without TLS."""
    if not settings.tls:
        return None
    try:
        ctx = ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)
        if settings.cert_file:
            ctx.load_cert_chain(
                str(settings.cert_file), str(settings.key_file) if settings.key_file else None
            )
    except (ssl.SSLError, OSError) as exc:
        raise BrokerError(f"MQTT TLS files: {exc}") from None
    if settings.tls_insecure:
        ctx.check_hostname = False
    return ctx


def make_client(settings: MqttSettings, *, client_id: str | None = None, will: Any = None):
    """An ``aiomqtt.Client`` with TCP_NODELAY, auth and TLS from ``settings``."""
    import aiomqtt

    return aiomqtt.Client(
        settings.host,
        settings.port,
        username=settings.username,
        password=settings.password,
        identifier=client_id or settings.client_id,
        will=will,
        keepalive=settings.keepalive,
        tls_context=tls_context(settings),
        socket_options=NODELAY,
        timeout=settings.publish_timeout,
    )


def jittered_backoff(attempt: int, *, base: float = 0.25, cap: float = 10.0) -> float:
    """Seconds to wait before reconnect attempt ``attempt`` (0-based): full jitter."""
    return random.uniform(base / 2, min(cap, base * 2**attempt))
