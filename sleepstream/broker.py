"""The embedded MQTT broker (amqtt) used when no ``--mqtt URL`` is given.

It runs inside the daemon's own event loop (the :class:`amqtt.broker.Broker` is
constructed while that loop is running) and binds 127.0.0.1:1883 unless configured
otherwise; amqtt's own default would be every interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
from dataclasses import dataclass
from typing import Any

from sleepstream.errors import BrokerError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddedBrokerConfig:
    """Address of the embedded broker's single TCP listener.

    Attributes
    ----------
    host : str
        Interface to bind; 127.0.0.1 by default (loopback only).
    port : int
        TCP port; 0 picks a free one (see :attr:`EmbeddedBroker.port`).
    """

    host: str = "127.0.0.1"
    port: int = 1883


def _probe_bind(host: str, port: int) -> int:
    """Bind ``host:port`` once and release it: the port bound (``0`` picks a free one).

    amqtt logs a full traceback when its listener cannot bind, so every reason a bind
    can fail is turned into one line here first.

    Raises
    ------
    BrokerError
        The port is in use, or ``host`` is no address of this machine (not resolvable,
        not IDNA-encodable, not assignable).
    """
    import errno

    try:
        family, kind, proto, _, addr = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as s:
            if port:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(addr)
            return int(s.getsockname()[1])
    except (OSError, UnicodeError, ValueError) as exc:
        reason = (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
        if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
            raise BrokerError(
                f"embedded broker: cannot listen on {host}:{port} ({reason}); is another "
                "broker running? Use --mqtt URL to use it, or --broker-port to pick another port"
            ) from None
        raise BrokerError(
            f"--broker-host {host!r}: the embedded broker cannot listen there ({reason}); "
            "give an address of this machine (default 127.0.0.1)"
        ) from None


class EmbeddedBroker:
    """An amqtt broker as an async context manager.

    Examples
    --------
    >>> async with EmbeddedBroker(EmbeddedBrokerConfig(port=0)) as broker:  # doctest: +SKIP
    ...     url = broker.url
    """

    def __init__(self, config: EmbeddedBrokerConfig | None = None) -> None:
        self.config = config or EmbeddedBrokerConfig()
        self.port = self.config.port
        self._broker: Any = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.config.host}:{self.port}"

    def _amqtt_config(self) -> dict[str, Any]:
        return {
            "listeners": {
                "default": {"type": "tcp", "bind": f"{self.config.host}:{self.port}"},
            },
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }

    async def __aenter__(self) -> EmbeddedBroker:
        self.port = _probe_bind(self.config.host, self.port)
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        from amqtt.broker import Broker

        self._broker = Broker(self._amqtt_config())
        try:
            await self._broker.start()
        except Exception as exc:  # amqtt wraps everything in its own BrokerError
            raise BrokerError(f"embedded broker on {self.url}: {exc}") from None
        log.info("embedded MQTT broker on %s", self.url)
        return self

    async def drain(self, timeout: float = 5.0) -> bool:
        """Wait until every accepted message has been handed to its subscribers.

        amqtt acknowledges a publish before it has forwarded it; stopping right after
        the daemon's last PUBACK would lose the tail of the night for subscribers. With
        public interfaces only: the broker itself broadcasts a *fence* message
        (:meth:`amqtt.broker.Broker.internal_message_broadcast`) on
        ``$sleepstream/fence/<random>`` (``$`` topics match no ``#`` subscription, so no
        subscriber sees it) and a client of its listener reads it back; amqtt forwards
        messages in arrival order, so every message accepted before the fence has then
        been handed to its subscribers' sessions. Then it waits until no session has a QoS 1
        message in flight (:attr:`amqtt.session.Session.inflight_out_count`).

        Returns False if messages were still in flight after ``timeout`` seconds.
        """
        broker = self._broker
        if broker is None:
            return True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            await asyncio.wait_for(self._fence(), timeout)
        except Exception as exc:  # noqa: BLE001 - any failure means "not drained", reported
            log.warning("embedded broker: fence not read back (%s)", exc or type(exc).__name__)
            return False
        while loop.time() < deadline:
            sessions = [pair[0] for pair in broker.sessions.values()]
            if not any(s.inflight_out_count for s in sessions):
                return True
            await asyncio.sleep(0.02)  # amqtt offers no event for "acknowledged by all"
        return False

    async def _fence(self) -> None:
        """Broadcast a QoS 1 message through the broker's queue; wait until it comes back."""
        from sleepstream.sinks.mqtt_settings import make_client, mqtt_settings

        token = secrets.token_hex(8)
        topic = f"$sleepstream/fence/{token}"
        settings = mqtt_settings(self.url)
        async with make_client(settings, client_id=f"sleepstream-fence-{token}") as client:
            await client.subscribe(topic, qos=1)
            # the broker's own publish (clients may not publish to "$" topics)
            await self._broker.internal_message_broadcast(topic, b"fence", 1)
            async for message in client.messages:
                if str(message.topic) == topic:
                    return

    async def __aexit__(self, *exc: object) -> None:
        if self._broker is not None:
            if not await self.drain():
                log.warning("embedded broker: stopping with messages still in flight")
            with contextlib.suppress(Exception):
                await self._broker.shutdown()
            self._broker = None
