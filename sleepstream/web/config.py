"""Settings of the live web view: where it listens and how it checks a token.

``--web [ADDR:]PORT`` binds 127.0.0.1 unless an address is given. Bound beyond loopback
the view requires a token, read from ``--web-token-file`` or ``$SLEEPSTREAM_WEB_TOKEN``
(never from argv, where the process list would show it). Everything is validated here,
before any socket is opened.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from sleepstream.errors import UsageError

#: Environment variable holding the web token (the token never goes on argv).
TOKEN_ENV = "SLEEPSTREAM_WEB_TOKEN"
#: Shortest token accepted (characters): a token is a secret, not a password to type.
MIN_TOKEN_CHARS = 16

_ADDR_PORT = re.compile(r"^(?:(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):)?(?P<port>\d{1,5})$")


@dataclass(frozen=True)
class WebConfig:
    """Where the live view listens and what it serves.

    Attributes
    ----------
    host : str
        Address to bind (default ``127.0.0.1``; ``::1`` for IPv6 loopback).
    port : int
        TCP port (0 = any free port; the bound port is then ``LiveView.port``).
    token : str or None
        Required on every request when set (``Authorization: Bearer``, or the cookie a
        ``?token=`` link sets). Mandatory when ``host`` is not a loopback address.
    max_clients : int
        Concurrent server-push connections; more get HTTP 503.
    max_epochs : int
        Epochs kept per device (the oldest go first); 2880 = 24 h.
    client_queue : int
        Messages buffered per push connection; a client that falls this far behind is
        disconnected (its browser reconnects and gets a fresh snapshot).
    heartbeat_s : float
        Seconds between keep-alive comments on idle push connections.
    """

    host: str = "127.0.0.1"
    port: int = 8088
    token: str | None = None
    max_clients: int = 32
    max_epochs: int = 2880
    client_queue: int = 512
    heartbeat_s: float = 15.0

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise UsageError(f"--web {self.port}: port must be in 0..65535")
        if self.token is not None and len(self.token) < MIN_TOKEN_CHARS:
            raise UsageError(
                f"web token: {len(self.token)} characters; use at least {MIN_TOKEN_CHARS} "
                "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(24))'`)"
            )
        if self.token is None and not is_loopback(self.host):
            raise UsageError(
                f"--web {self.host}:{self.port}: listening beyond loopback needs a token "
                f"(--web-token-file FILE or ${TOKEN_ENV})"
            )
        for name in ("max_clients", "max_epochs", "client_queue"):
            if getattr(self, name) < 1:
                raise UsageError(f"web {name} {getattr(self, name)}: must be >= 1")
        if not self.heartbeat_s > 0:
            raise UsageError(f"web heartbeat_s {self.heartbeat_s}: must be > 0 s")

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_web_address(value: str) -> tuple[str, int]:
    """``"8088"`` -> ``("127.0.0.1", 8088)``; ``"0.0.0.0:8088"``, ``"[::1]:8088"``.

    Raises
    ------
    UsageError
        Not ``[ADDR:]PORT``, or a port outside 0..65535.
    """
    m = _ADDR_PORT.match(value.strip())
    if not m:
        raise UsageError(f"--web {value!r}: expected [ADDR:]PORT, e.g. 8088 or 0.0.0.0:8088")
    port = int(m["port"])
    if port > 65535:
        raise UsageError(f"--web {value!r}: port must be in 0..65535")
    host = (m["host"] or "127.0.0.1").strip("[]")
    return host, port


def read_token(token_file: str | os.PathLike[str] | None) -> str | None:
    """The web token from ``--web-token-file`` or ``$SLEEPSTREAM_WEB_TOKEN`` (or None)."""
    if token_file:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UsageError(f"--web-token-file {token_file}: {exc.strerror}") from None
        if not token:
            raise UsageError(f"--web-token-file {token_file}: the file is empty")
        return token
    return os.environ.get(TOKEN_ENV) or None


def web_config(address: str, *, token_file: str | None = None, **kw: object) -> WebConfig:
    """A validated :class:`WebConfig` from ``--web`` and ``--web-token-file``."""
    host, port = parse_web_address(address)
    return WebConfig(host=host, port=port, token=read_token(token_file), **kw)  # type: ignore[arg-type]
