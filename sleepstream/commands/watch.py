"""``sleepstream watch``: subscribe to stage events and print them as they come.

Anyone who can publish on the broker can reach this terminal, so every received
message is untrusted: a payload is size-capped, decoded strictly, parsed (deep nesting,
``NaN`` and huge numbers included) and checked field by field against the stage event
schema (``sleepstream/schemas/stage_event.schema.json``) before it is printed; the
event's device must be the topic's. Whatever is printed goes through
:func:`sleepstream.names.printable` (no escape sequence, carriage return or bidi
override reaches the terminal). A malformed message is reported on stderr (the first
ten, then every hundredth, with a count) and never stops the watch.

Availability follows the daemons' rule (:mod:`sleepstream.sinks.mqtt_link`): a device
is online only while its own retained status and that of its daemon
(``<prefix>/_daemon/<id>/status``, named by ``<prefix>/<device>/daemon``) are online.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import sys
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any, TextIO

from sleepstream.commands._daemon_args import add_mqtt_arguments, client_settings
from sleepstream.errors import BrokerError, UsageError
from sleepstream.names import check_device, printable

HELP = "subscribe to stage events over MQTT and print them live"

#: Largest payload looked at (bytes); a stage event is about 400.
MAX_PAYLOAD = 64 * 1024
#: Event ids remembered for de-duplication (oldest forgotten first).
DEDUP_WINDOW = 100_000

#: Event formats understood: /2 (``time_zone``; ``epoch_start`` naive when the zone is
#: unknown) and /1 (no ``time_zone``; ``epoch_start`` always with an offset).
_SCHEMA_V1, _SCHEMA_V2 = "sleepstream.stage_event/1", "sleepstream.stage_event/2"
_STAGES = frozenset({"W", "N1", "N2", "N3", "REM", "unscored"})
_PROB_KEYS = ("W", "N1", "N2", "N3", "REM")
_START = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(?P<offset>Z|[+-]\d{2}:\d{2})?")
_REQUIRED = ("schema", "device", "event_id", "epoch_index", "epoch_start", "stage",
             "probabilities", "confidence", "quality", "model", "latency_ms")  # fmt: skip
_FLAG = re.compile(r"[A-Za-z0-9_.:-]{1,64}")  # quality flags and reasons: identifiers
_OPTIONAL = frozenset({"session", "reasons", "revised", "lookahead"})


def _argtype(parse: Any, name: str) -> Any:
    """An argparse ``type=`` from a :mod:`sleepstream.settings` parser (one-line errors)."""

    def convert(raw: str) -> Any:
        try:
            return parse(raw)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{printable(raw)!r}: {exc}") from None

    convert.__name__ = name
    return convert


#: Longest timeout accepted (s): a day; nan, inf and negative values are refused.
MAX_TIMEOUT_S = 86_400.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from sleepstream.settings import integer, number

    parser.add_argument("--device", help="only this device (default: all devices)")
    parser.add_argument(
        "--count", type=_argtype(integer(1), "count"), help="exit after N distinct stage events"
    )
    parser.add_argument("--json", action="store_true", help="print JSON lines")
    parser.add_argument(
        "--connect-timeout",
        type=_argtype(number(0.0, MAX_TIMEOUT_S), "seconds"),
        default=30.0,
        help="keep retrying to connect for this many seconds (%(default)s)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=_argtype(number(0.001, MAX_TIMEOUT_S), "seconds"),
        help="exit with an error when no event arrives for this many seconds",
    )
    add_mqtt_arguments(parser, embedded=False)


# ------------------------------------------------------------------- untrusted payloads


def _number(value: Any, name: str, lo: float | None = None, hi: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} is not a number")
    if not math.isfinite(value):
        raise ValueError(f"{name} is not finite")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ValueError(f"{name} out of range")
    return float(value)


def _integer(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} is not an integer >= 0")
    return value


def _strings(value: Any, name: str, *, min_items: int = 0) -> list[str]:
    if not isinstance(value, list) or len(value) > 32 or len(value) < min_items:
        raise ValueError(f"{name} is not a list of up to 32 strings")
    if not all(isinstance(v, str) and _FLAG.fullmatch(v) for v in value):
        raise ValueError(f"{name} holds something other than flag names")
    return value


def check_event(payload: bytes, topic_device: str | None = None) -> dict[str, Any]:
    """A stage event parsed and checked against the schema, or ``ValueError(why)``.

    Parameters
    ----------
    payload : bytes
        The message as received (at most :data:`MAX_PAYLOAD` bytes are accepted).
    topic_device : str, optional
        The device level of the topic it came on; the event must name the same device.
    """
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes (more than {MAX_PAYLOAD})")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("payload is not UTF-8") from None
    try:
        event = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"not JSON ({type(exc).__name__})") from None
    if not isinstance(event, dict):
        raise ValueError("not a JSON object")
    schema = event.get("schema")
    if schema not in (_SCHEMA_V1, _SCHEMA_V2):
        raise ValueError(f"schema is not {_SCHEMA_V2} or {_SCHEMA_V1}")
    required = (*_REQUIRED, "time_zone") if schema == _SCHEMA_V2 else _REQUIRED
    missing = [k for k in required if k not in event]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    extra = set(event) - set(required) - _OPTIONAL
    if extra:
        raise ValueError(f"unknown field(s) {', '.join(sorted(map(str, extra)))[:80]}")
    device = event["device"]
    try:
        check_device(device, "device")
    except UsageError:
        raise ValueError("device is not a valid device name") from None
    if topic_device is not None and device != topic_device:
        raise ValueError("device does not match the topic")
    for key, limit in (("event_id", 256), ("model", 256), ("session", 64)):
        value = event.get(key, "x")
        if not isinstance(value, str) or not 0 < len(value) <= limit:
            raise ValueError(f"{key} is not a string of 1-{limit} characters")
    _integer(event["epoch_index"], "epoch_index")
    _check_start(event["epoch_start"], event.get("time_zone"), schema == _SCHEMA_V2)
    if not isinstance(event["stage"], str) or event["stage"] not in _STAGES:
        raise ValueError("stage is not one of W, N1, N2, N3, REM, unscored")
    probs = event["probabilities"]
    if not isinstance(probs, dict) or set(probs) != set(_PROB_KEYS):
        raise ValueError("probabilities is not an object of the five stages")
    for key in _PROB_KEYS:
        _number(probs[key], f"probabilities.{key}", 0.0, 1.0)
    _number(event["confidence"], "confidence", 0.0, 1.0)
    _number(event["latency_ms"], "latency_ms", 0.0)
    quality = _strings(event["quality"], "quality")
    if len(set(quality)) != len(quality):
        raise ValueError("quality repeats a flag")
    if event["stage"] == "unscored" and "reasons" not in event:
        raise ValueError("an unscored event has no reasons")
    if "reasons" in event:
        _strings(event["reasons"], "reasons", min_items=1)
    revised = event.get("revised", False)
    if not isinstance(revised, bool):
        raise ValueError("revised is not true or false")
    if "lookahead" in event:
        _integer(event["lookahead"], "lookahead")
    if revised and event.get("lookahead", 0) < 1:
        raise ValueError("a revised event has no lookahead >= 1")
    return event


def _check_start(start: Any, zone: Any, v2: bool) -> None:
    """``epoch_start`` agrees with ``time_zone``: an offset for UTC (/1: always), none for
    a recording whose zone is unknown (``time_zone`` null, /2 only)."""
    match = _START.fullmatch(start) if isinstance(start, str) and len(start) <= 40 else None
    if match is None:
        raise ValueError("epoch_start is not an ISO-8601 time")
    offset = match.group("offset")
    if not v2:
        if offset is None:
            raise ValueError("epoch_start has no offset")
        return
    if zone not in ("UTC", None):
        raise ValueError('time_zone is not "UTC" or null')
    if zone is None and offset is not None:
        raise ValueError("epoch_start has an offset but time_zone is null")
    if zone == "UTC" and offset not in ("Z", "+00:00"):
        raise ValueError("epoch_start is not in UTC")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class Watcher:
    """The state of one watch: de-duplication, availability, malformed-message counts.

    :meth:`handle` takes one received message and returns the ``(stream, line)`` pairs
    to print; it never raises on any topic or payload.
    """

    def __init__(self, prefix: str, *, as_json: bool, out: TextIO, err: TextIO) -> None:
        self.prefix = prefix
        self.as_json = as_json
        self.out, self.err = out, err
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.events = 0
        self.malformed = 0
        self.daemon_of: dict[str, str] = {}
        self.daemon_state: dict[str, str] = {}
        self.device_state: dict[str, str] = {}

    def handle(self, topic: str, payload: bytes) -> list[tuple[TextIO, str]]:
        try:
            return self._handle(topic, payload)
        except Exception as exc:  # noqa: BLE001 - a last guard: untrusted input never ends the watch
            return self._malformed(topic, f"unexpected {type(exc).__name__}")

    def _handle(self, topic: str, payload: bytes) -> list[tuple[TextIO, str]]:
        rest = topic[len(self.prefix) + 1 :] if topic.startswith(self.prefix + "/") else ""
        levels = rest.split("/")
        if len(levels) == 3 and levels[0] == "_daemon" and levels[2] == "status":
            return self._daemon_status(levels[1], payload)
        if len(levels) != 2:
            return self._malformed(topic, "unexpected topic")
        device, kind = levels
        if kind == "stage":
            try:
                event = check_event(payload, device)
            except ValueError as exc:
                return self._malformed(topic, str(exc))
            return self._event(event)
        if kind == "status":
            state = _state(payload)
            if state is None:
                return self._malformed(topic, "status is not online or offline")
            self.device_state[device] = state
            return [(self.err, f"[{printable(device)} is {self._availability(device)}]")]
        if kind == "daemon":
            try:
                daemon = check_device(payload.decode("utf-8"), "daemon")
            except (UnicodeDecodeError, UsageError):
                return self._malformed(topic, "daemon is not a valid daemon id")
            self.daemon_of[device] = daemon
            return []
        return self._malformed(topic, "unexpected topic")

    def _event(self, event: dict[str, Any]) -> list[tuple[TextIO, str]]:
        from sleepstream.sinks.base import format_line

        eid = event["event_id"]
        if eid in self.seen:  # at-least-once delivery: drop redeliveries
            return []
        self.seen[eid] = None
        if len(self.seen) > DEDUP_WINDOW:
            self.seen.popitem(last=False)
        self.events += 1
        if self.as_json:
            return [(self.out, json.dumps(event, separators=(",", ":"), ensure_ascii=True))]
        return [(self.out, printable(format_line(event), max_len=400))]

    def _daemon_status(self, daemon: str, payload: bytes) -> list[tuple[TextIO, str]]:
        state = _state(payload)
        if state is None:
            return self._malformed(f"{self.prefix}/_daemon/{daemon}/status", "not online/offline")
        self.daemon_state[daemon] = state
        served = sorted(d for d, owner in self.daemon_of.items() if owner == daemon)
        line = f"[daemon {printable(daemon, 80)} is {state}"
        if served and state == "offline":
            line += f": {printable(', '.join(served))} offline with it"
        return [(self.err, line + "]")]

    def _availability(self, device: str) -> str:
        own = self.device_state.get(device, "unknown")
        daemon = self.daemon_of.get(device)
        if own == "online" and daemon is not None and self.daemon_state.get(daemon) == "offline":
            return f"offline (its daemon {printable(daemon, 80)} is offline)"
        return own

    def _malformed(self, topic: str, why: str) -> list[tuple[TextIO, str]]:
        self.malformed += 1
        if self.malformed <= 10 or self.malformed % 100 == 0:
            return [
                (
                    self.err,
                    f"ignored a malformed message on {printable(topic, 120)}: {printable(why)}"
                    f" ({self.malformed} so far)",
                )
            ]
        return []


def _state(payload: bytes) -> str | None:
    return {b"online": "online", b"offline": "offline"}.get(bytes(payload).strip())


# ------------------------------------------------------------------------ the command


async def _watch(args: argparse.Namespace) -> int:
    import aiomqtt

    from sleepstream.sinks.mqtt_settings import make_client

    settings = client_settings(args)
    prefix = settings.topic_prefix
    device = args.device or "+"
    topics = [f"{prefix}/{device}/{kind}" for kind in ("stage", "status", "daemon")]
    topics.append(f"{prefix}/_daemon/+/status")
    watcher = Watcher(prefix, as_json=args.json, out=sys.stdout, err=sys.stderr)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.connect_timeout
    delay = 0.1
    while True:
        try:
            async with make_client(settings) as client:
                for topic in topics:
                    await client.subscribe(topic, qos=1)
                print(
                    f"watching {' '.join(topics)} on {settings.url()}", file=sys.stderr, flush=True
                )
                async for message in _messages(client, args.idle_timeout):
                    payload = message.payload
                    raw = (
                        payload if isinstance(payload, bytes | bytearray) else str(payload).encode()
                    )
                    for stream, line in watcher.handle(str(message.topic), bytes(raw)):
                        print(line, file=stream, flush=True)
                    if args.count and watcher.events >= args.count:
                        return 0
            return 0
        except aiomqtt.MqttError as exc:
            if loop.time() > deadline:
                raise BrokerError(f"cannot reach {settings.url()}: {exc}") from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)
            if watcher.events:  # reconnecting after a drop: allow another connect window
                deadline = loop.time() + args.connect_timeout


async def _messages(client: Any, idle_timeout: float | None) -> AsyncIterator[Any]:
    iterator = client.messages.__aiter__()
    while True:
        if idle_timeout is None:
            yield await iterator.__anext__()
        else:
            try:
                yield await asyncio.wait_for(iterator.__anext__(), idle_timeout)
            except TimeoutError:
                raise BrokerError(f"no event for {idle_timeout:g} s") from None


def run(args: argparse.Namespace) -> int:
    if args.device is not None:
        check_device(args.device, "--device")
    return asyncio.run(_watch(args))
