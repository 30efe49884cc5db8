"""``sleepstream watch``: subscribe to stage events and print them as they come."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from sleepstream.commands._daemon_args import add_mqtt_arguments
from sleepstream.errors import BrokerError, UsageError

HELP = "subscribe to stage events over MQTT and print them live"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", help="only this device (default: all devices)")
    parser.add_argument("--count", type=int, help="exit after N distinct stage events")
    parser.add_argument("--json", action="store_true", help="print JSON lines")
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=30.0,
        help="keep retrying to connect for this many seconds (%(default)s)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        help="exit with an error when no event arrives for this many seconds",
    )
    add_mqtt_arguments(parser, embedded=False)


async def _watch(args: argparse.Namespace) -> int:
    import aiomqtt

    from sleepstream.sinks.base import format_line
    from sleepstream.sinks.mqtt_settings import make_client, mqtt_settings, read_password

    settings = mqtt_settings(
        args.mqtt or "mqtt://127.0.0.1:1883",
        username=args.mqtt_username,
        password=read_password(args.mqtt_password_file),
        ca_file=args.mqtt_ca_file,
        cert_file=args.mqtt_cert_file,
        key_file=args.mqtt_key_file,
        tls_insecure=args.mqtt_tls_insecure,
        client_id=args.mqtt_client_id,
        topic_prefix=args.topic_prefix,
    )
    device = args.device or "+"
    topics = [f"{settings.topic_prefix}/{device}/stage", f"{settings.topic_prefix}/{device}/status"]
    seen: set[str] = set()
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
                    topic = str(message.topic)
                    payload = bytes(message.payload or b"")
                    if topic.endswith("/status"):
                        dev = topic.split("/")[-2]
                        print(f"[{dev} is {payload.decode(errors='replace')}]", file=sys.stderr)
                        continue
                    try:
                        event = json.loads(payload)
                    except ValueError:
                        print(f"ignored a non-JSON message on {topic}", file=sys.stderr)
                        continue
                    eid = str(event.get("event_id", ""))
                    if eid in seen:  # at-least-once delivery: drop redeliveries
                        continue
                    seen.add(eid)
                    line = (
                        json.dumps(event, separators=(",", ":"))
                        if args.json
                        else format_line(event)
                    )
                    print(line, flush=True)
                    if args.count and len(seen) >= args.count:
                        return 0
            return 0
        except aiomqtt.MqttError as exc:
            if loop.time() > deadline:
                raise BrokerError(f"cannot reach {settings.url()}: {exc}") from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)
            if seen:  # reconnecting after a drop: allow another connect window
                deadline = loop.time() + args.connect_timeout


async def _messages(client, idle_timeout: float | None):
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
    if args.count is not None and args.count < 1:
        raise UsageError(f"--count {args.count}: must be >= 1")
    return asyncio.run(_watch(args))
