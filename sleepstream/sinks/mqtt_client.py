"""Connection-level helpers of the MQTT link: paho's log, loss detection, publishing.

Public interfaces only: a lost connection is seen through aiomqtt's message iterator
(:func:`watch_connection`), never through its private ``_disconnected`` future.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from sleepstream.sinks.mqtt_settings import CONNECT_REASONS

log = logging.getLogger(__name__)


class LinkMetrics:
    """The link's own series, registered once per Prometheus registry; every label set
    exists from the start (a zero counter is visible before its first increment)."""

    _by_registry: weakref.WeakKeyDictionary[Any, LinkMetrics] = weakref.WeakKeyDictionary()

    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter as PromCounter

        self.connect_errors = PromCounter(
            "sleepstream_mqtt_connect_errors_total",
            "Failed MQTT connections or lost connections, by reason "
            "(auth, tls and refused need an operator)",
            ("reason",),
            registry=registry,
        )
        for reason in CONNECT_REASONS:
            self.connect_errors.labels(reason)
        self.restarts = PromCounter(
            "sleepstream_mqtt_delivery_restarts_total",
            "Times the MQTT delivery task failed unexpectedly and was restarted",
            registry=registry,
        )
        self.probe_failures = PromCounter(
            "sleepstream_mqtt_probe_failures_total",
            "Connections on which the daemon's own probe message never came back "
            "(the broker may be dropping its publishes: ACL)",
            registry=registry,
        )

    @classmethod
    def of(cls, registry: Any) -> LinkMetrics:
        if registry not in cls._by_registry:
            cls._by_registry[registry] = cls(registry)
        return cls._by_registry[registry]


class PahoLog(logging.Handler):
    """Keeps the last warning or error paho logged (TLS alerts arrive only there).

    :attr:`logger` is a standalone logger (not in the logging tree, so nothing
    propagates to the root handlers) to pass to :func:`make_client`.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.last: str | None = None
        self.logger = logging.Logger("sleepstream.mqtt.paho", logging.WARNING)
        self.logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        self.last = record.getMessage()
        log.debug("paho: %s", self.last)

    def take(self) -> str | None:
        last, self.last = self.last, None
        return last


async def watch_connection(client: Any, on_message: Callable[[Any], None] | None = None) -> None:
    """Returns (by raising MqttError) when the connection is lost; public API only.

    ``on_message(message)`` sees every message received meanwhile (the link's probe).
    """
    async for message in client.messages:
        if on_message is not None:
            on_message(message)


async def race(work: Awaitable[None], watcher: asyncio.Task[None]) -> None:
    """Run ``work``; raise at once if the connection is lost meanwhile."""
    task = asyncio.ensure_future(work)
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    if task.done() and not task.cancelled():
        task.result()  # re-raises a publish error
        return
    raise lost(watcher)


def lost(watcher: asyncio.Task[None]) -> Exception:
    """The MqttError for a connection whose watcher has ended."""
    import aiomqtt

    exc = watcher.exception() if watcher.done() and not watcher.cancelled() else None
    return aiomqtt.MqttError(f"connection lost: {exc}" if exc else "connection lost")


async def gather_publishes(
    client: Any, messages: list[tuple[str, bytes]], *, retain: bool, timeout: float | None
) -> None:
    """Publish QoS 1 messages concurrently (queued in this order); wait for every PUBACK.

    On the first failure the others are cancelled and the error is raised.
    """
    tasks = [
        asyncio.ensure_future(client.publish(t, p, qos=1, retain=retain, timeout=timeout))
        for t, p in messages
    ]
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            if not t.done():
                t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
