"""The embedded MQTT broker (amqtt) used when no ``--mqtt URL`` is given.

It runs inside the daemon's own event loop (the :class:`amqtt.broker.Broker` is
constructed while that loop is running) and binds 127.0.0.1:1883 unless configured
otherwise; amqtt's own default would be every interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
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


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


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
        # Probe first: amqtt logs a full traceback when its listener cannot bind.
        if self.port == 0:
            self.port = _free_port(self.config.host)
        else:
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind((self.config.host, self.port))
            except OSError as exc:
                raise BrokerError(
                    f"embedded broker: cannot listen on {self.config.host}:{self.port} "
                    f"({exc.strerror}); is another broker running? Use --mqtt URL to use it, "
                    f"or --broker-port to pick another port"
                ) from None
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
        the daemon's last PUBACK would lose the tail of the night for subscribers.
        Returns False if messages were still in flight after ``timeout`` seconds.
        """
        broker = self._broker
        if broker is None:
            return True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            busy = not broker._broadcast_queue.empty()
            busy = busy or any(not t.done() for t in getattr(broker, "_tasks_queue", ()))
            for session, _handler in list(getattr(broker, "_sessions", {}).values()):
                busy = busy or bool(getattr(session, "inflight_out", None))
                queue = getattr(session, "delivered_message_queue", None)
                busy = busy or (queue is not None and not queue.empty())
            if not busy:
                return True
            await asyncio.sleep(0.02)
        return False

    async def __aexit__(self, *exc: object) -> None:
        if self._broker is not None:
            if not await self.drain():
                log.warning("embedded broker: stopping with messages still in flight")
            with contextlib.suppress(Exception):
                await self._broker.shutdown()
            self._broker = None
