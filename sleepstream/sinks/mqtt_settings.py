"""MQTT connection settings: URL parsing, secrets, TLS, and the aiomqtt client factory.

Everything here is validated before any I/O, at start-up, never inside a delivery task:
a malformed URL, a password in it, a bad topic prefix or client id is a
:class:`~sleepstream.errors.UsageError`; a TLS file that is missing, unreadable, not PEM,
an encrypted key without its passphrase, or a certificate and key that do not belong
together is a :class:`~sleepstream.errors.BrokerError` naming the flag and the file
(:func:`mqtt_settings` builds the TLS context once to find out). The password comes
from ``$SLEEPSTREAM_MQTT_PASSWORD`` or a file, never from argv; an encrypted client key's
passphrase from ``$SLEEPSTREAM_MQTT_KEY_PASSWORD``. Every client sets TCP_NODELAY
(without it the first messages after subscribing can wait ~40 ms for Nagle + delayed ACK).

:func:`classify_connect_error` sorts a failed connection into a :class:`ConnectFailure`:
wrong credentials, a TLS failure, a refused client id or protocol are *configuration*
faults (refused at start-up with one line, logged loudly and counted when they happen
mid-run); a broker that is down, unreachable or busy is *transient* (retried with
back-off while events wait in the outbox).
"""

from __future__ import annotations

import logging
import os
import random
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from sleepstream.errors import BrokerError, UsageError
from sleepstream.names import check_client_id, check_host, check_topic_prefix

if TYPE_CHECKING:
    from sleepstream.config import MqttOptions

#: Environment variable holding the MQTT password (never pass secrets on argv).
PASSWORD_ENV = "SLEEPSTREAM_MQTT_PASSWORD"
#: Environment variable holding the passphrase of an encrypted client key.
KEY_PASSWORD_ENV = "SLEEPSTREAM_MQTT_KEY_PASSWORD"
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
        MQTT client id of the daemon's one connection (default:
        ``sleepstream-<daemon id>-<pid>``).
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


def settings_of(options: MqttOptions, url: str) -> MqttSettings:
    """The validated :class:`MqttSettings` of :class:`~sleepstream.config.MqttOptions`
    (``RunConfig.mqtt``: flags, environment, beds file) for the broker ``url``.

    The one mapping of the MQTT options: the daemon (``run``, ``replay``) and the client
    commands (``watch``, ``ha-forget``: :func:`sleepstream.commands._daemon_args.
    client_settings`) all connect through it.
    """
    return mqtt_settings(
        url,
        username=options.username,
        password=read_password(options.password_file),
        ca_file=options.ca_file,
        cert_file=options.cert_file,
        key_file=options.key_file,
        tls_insecure=options.tls_insecure,
        client_id=options.client_id,
        topic_prefix=options.topic_prefix,
    )


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
    # the resolver would fail deep inside the delivery task (IDNA: 'a..b')
    check_host(parts.hostname, f"--mqtt {url!r}: host")
    tls = parts.scheme in ("mqtts", "ssl") or bool(ca_file) or bool(cert_file)
    files: dict[str, Path | None] = {}
    for name, value in (("ca", ca_file), ("cert", cert_file), ("key", key_file)):
        path = Path(value) if value else None
        if path is not None and not path.is_file():
            raise BrokerError(f"--mqtt-{name}-file {path}: no such file")
        files[name] = path
    if files["key"] and not files["cert"]:
        raise UsageError("--mqtt-key-file needs --mqtt-cert-file")
    prefix = check_topic_prefix(topic_prefix)
    if client_id is not None:
        check_client_id(client_id)
    settings = MqttSettings(
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
    tls_context(settings)  # every TLS file fault surfaces here, at start-up
    return settings


def tls_context(settings: MqttSettings) -> ssl.SSLContext | None:
    """An SSL context for the broker, or None without TLS.

    Raises
    ------
    BrokerError
        One line naming the flag and file: unreadable, not PEM, no certificate in the CA
        bundle, an encrypted key without (or with a wrong) ``$SLEEPSTREAM_MQTT_KEY_PASSWORD``,
        a key that does not belong to the certificate.
    """
    if not settings.tls:
        return None
    ctx = ssl.create_default_context()
    if settings.ca_file:
        _read_pem(settings.ca_file, "--mqtt-ca-file", "CERTIFICATE")
        try:
            ctx.load_verify_locations(cafile=str(settings.ca_file))
        except (ssl.SSLError, OSError) as exc:
            raise BrokerError(
                f"--mqtt-ca-file {settings.ca_file}: not a usable CA bundle ({_ssl_reason(exc)})"
            ) from None
    if settings.cert_file:
        _load_client_cert(ctx, settings.cert_file, settings.key_file)
    if settings.tls_insecure:
        ctx.check_hostname = False
    return ctx


def _read_pem(path: Path, flag: str, kind: str) -> str:
    """The file's text; a BrokerError if it cannot be read or holds no ``kind`` block."""
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise BrokerError(f"{flag} {path}: cannot read ({exc.strerror})") from None
    if f"-----BEGIN {kind}" not in text and not (
        kind == "PRIVATE KEY" and "PRIVATE KEY-----" in text
    ):
        what = "certificate" if kind == "CERTIFICATE" else "private key"
        raise BrokerError(f"{flag} {path}: no PEM {what} in it")
    return text


class _NeedsPassphrase(Exception):
    pass


def _load_client_cert(ctx: ssl.SSLContext, cert: Path, key: Path | None) -> None:
    """Load the client certificate and key, with a one-line error for each way it fails."""
    _read_pem(cert, "--mqtt-cert-file", "CERTIFICATE")
    key_text = _read_pem(key, "--mqtt-key-file", "PRIVATE KEY") if key else None
    if key is None:
        try:
            cert_text = cert.read_text(encoding="ascii", errors="replace")
        except OSError as exc:  # pragma: no cover - read just above
            raise BrokerError(f"--mqtt-cert-file {cert}: cannot read ({exc.strerror})") from None
        if "PRIVATE KEY-----" not in cert_text:
            raise BrokerError(
                f"--mqtt-cert-file {cert}: holds no private key; give it with --mqtt-key-file"
            )
        key_text = cert_text
    key_flag = f"--mqtt-key-file {key}" if key else f"--mqtt-cert-file {cert}"
    encrypted = "ENCRYPTED" in (key_text or "")
    passphrase = os.environ.get(KEY_PASSWORD_ENV)

    def ask() -> str:  # never let OpenSSL prompt on the terminal (it would block the loop)
        if passphrase is None:
            raise _NeedsPassphrase
        return passphrase

    try:
        ctx.load_cert_chain(str(cert), str(key) if key else None, password=ask)
    except _NeedsPassphrase:
        raise BrokerError(
            f"{key_flag}: the key is encrypted; set ${KEY_PASSWORD_ENV} to its passphrase "
            "or use an unencrypted key readable only by the daemon (mode 0600)"
        ) from None
    except (ssl.SSLError, OSError) as exc:
        reason = _ssl_reason(exc)
        if "KEY_VALUES_MISMATCH" in reason:
            raise BrokerError(
                f"--mqtt-cert-file {cert} and {key_flag}: the key does not belong to the "
                "certificate"
            ) from None
        if encrypted and passphrase is not None:
            raise BrokerError(
                f"{key_flag}: cannot decrypt the key with ${KEY_PASSWORD_ENV} (wrong passphrase?)"
            ) from None
        raise BrokerError(f"--mqtt-cert-file {cert} / {key_flag}: cannot load ({reason})") from None


def _ssl_reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason) if reason else str(exc)


def make_client(
    settings: MqttSettings,
    *,
    client_id: str | None = None,
    will: Any = None,
    logger: logging.Logger | None = None,
    max_inflight: int | None = None,
) -> Any:
    """An ``aiomqtt.Client`` with TCP_NODELAY, auth and TLS from ``settings``.

    ``logger`` receives paho's own log lines (socket and TLS errors that aiomqtt does not
    raise); ``max_inflight`` bounds unacknowledged QoS 1 publishes.
    """
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
        logger=logger,
        max_inflight_messages=max_inflight,
    )


def jittered_backoff(attempt: int, *, base: float = 0.25, cap: float = 10.0) -> float:
    """Seconds to wait before reconnect attempt ``attempt`` (0-based): full jitter."""
    return random.uniform(base / 2, min(cap, base * 2**attempt))


#: Why a connection failed; ``sleepstream_mqtt_connect_errors_total{reason}`` uses these.
CONNECT_REASONS = ("auth", "tls", "refused", "unavailable", "unreachable", "timeout", "lost")
#: Reasons that retrying will not fix: refused at start-up, loud (ERROR) when mid-run.
CONFIG_REASONS = frozenset({"auth", "tls", "refused"})

# CONNACK codes: MQTT 3.1.1 (1-5) and their MQTT 5 reason codes (paho maps 3.1.1 to these).
_AUTH_CODES = {4, 5, 134, 135, 138, 140}  # bad user/password, not authorised, banned, auth method
_REFUSED_CODES = {1, 2, 132, 133}  # protocol version, client identifier rejected
_BUSY_CODES = {3, 136, 137, 151, 159}  # server unavailable / busy, quota, connection rate


@dataclass(frozen=True)
class ConnectFailure:
    """A failed connection attempt, sorted.

    Attributes
    ----------
    reason : str
        One of :data:`CONNECT_REASONS`.
    detail : str
        What the broker or the network said.
    """

    reason: str
    detail: str

    @property
    def config(self) -> bool:
        """True when retrying cannot help: wrong credentials, TLS, refused client id."""
        return self.reason in CONFIG_REASONS

    def message(self, settings: MqttSettings) -> str:
        """One line for the log or the start-up error, with what to check."""
        url = settings.url()
        hint = {
            "auth": "check --mqtt-username and the password "
            f"(${PASSWORD_ENV} or --mqtt-password-file) and the broker's ACL",
            "tls": "check --mqtt-ca-file (does it sign the broker's certificate?), the broker's "
            "host name (--mqtt-tls-insecure skips only that check), --mqtt-cert-file/"
            "--mqtt-key-file, and that the port is a TLS listener (mqtts://)",
            "refused": "check --mqtt-client-id and that the broker speaks MQTT 3.1.1",
            "unavailable": "the broker is up but refuses connections for now; retrying",
            "unreachable": "is the broker running and reachable? retrying; events wait in "
            "the outbox",
            "timeout": "the broker did not answer in time; retrying",
            "lost": "connection lost; reconnecting",
        }[self.reason]
        return f"MQTT {url}: {self.detail} ({hint})"


def classify_connect_error(exc: BaseException, socket_error: str | None = None) -> ConnectFailure:
    """Sort an exception from connecting or publishing into a :class:`ConnectFailure`.

    Looks at aiomqtt's CONNACK code when there is one, else at the exception chain
    (``__cause__`` / ``__context__``, standard Python attributes) for the TLS or socket
    error that aiomqtt wraps into ``MqttError``. ``socket_error`` is the last error paho
    logged (a TLS alert after the handshake, e.g. "certificate required", only shows
    there: aiomqtt then reports a plain time-out).
    """
    from aiomqtt.exceptions import MqttConnectError

    rc = getattr(exc, "rc", None)
    if isinstance(exc, MqttConnectError):
        code = int(getattr(rc, "value", rc) or 0)
        detail = f"connection refused: {rc} (CONNACK {code})"
        if code in _AUTH_CODES:
            return ConnectFailure("auth", detail)
        if code in _REFUSED_CODES:
            return ConnectFailure("refused", detail)
        return ConnectFailure("unavailable", detail)
    if socket_error and ("SSL" in socket_error or "alert" in socket_error.lower()):
        return ConnectFailure("tls", f"TLS failed: {socket_error}")
    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and len(chain) < 8:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    for err in chain:
        if isinstance(err, ssl.SSLError) and not isinstance(
            err, ssl.SSLEOFError | ssl.SSLZeroReturnError | ssl.SSLSyscallError
        ):
            return ConnectFailure("tls", f"TLS handshake failed: {_ssl_reason(err)}")
    for err in chain:
        if isinstance(err, TimeoutError | socket.timeout):
            return ConnectFailure("timeout", str(err) or "timed out")
        if isinstance(err, OSError):
            return ConnectFailure("unreachable", err.strerror or str(err))
    text = str(exc)
    if "timed out" in text.lower():
        return ConnectFailure("timeout", text)
    if rc is not None or "isconnect" in text:
        return ConnectFailure("lost", text)
    return ConnectFailure("unreachable", text or type(exc).__name__)
