"""Fixtures for the daemon tests: a real mosquitto broker, a tiny exported student,
an MQTT subscriber that collects messages in a thread, and free ports.

The mosquitto fixture starts Debian's ``mosquitto`` with a generated config on
127.0.0.1 and a free port, and stops it by PID; it skips (with the reason) when the
binary is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> bool:
    """Wait until something accepts TCP connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None
    )


@dataclass
class Mosquitto:
    """A running mosquitto: ``url``, ``port``; ``kill()``, ``start()``, ``pause()``..."""

    workdir: Path
    port: int
    extra_config: str = ""
    proc: subprocess.Popen | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.workdir / "mosquitto.log"

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Mosquitto:
        binary = mosquitto_binary()
        assert binary
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            self.extra_config
            or (
                f"listener {self.port} 127.0.0.1\n"
                "allow_anonymous true\n"
                "persistence false\n"
                "set_tcp_nodelay true\n"
            )
        )
        os.chmod(self.workdir, self.workdir.stat().st_mode | 0o755)
        os.chmod(conf, 0o644)
        self.proc = subprocess.Popen(
            [binary, "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.log, "ab"),  # noqa: SIM115 - closed with the process
        )
        if not wait_port(self.port):
            self.stop()
            pytest.fail(f"mosquitto did not listen on {self.port}: {self.log.read_text()}")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL (a crashed broker)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)
            self.proc = None


@pytest.fixture
def mosquitto(tmp_path_factory):
    """A fresh mosquitto on 127.0.0.1 and a free port, stopped by PID afterwards."""
    if mosquitto_binary() is None:
        pytest.skip("mosquitto binary not found (Debian: apt-get install mosquitto)")
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"), free_port()).start()
    yield broker
    broker.stop()


def _persistent_mosquitto(autosave_interval: int):
    """A started mosquitto that saves its sessions and queues every ``autosave_interval``
    seconds and when stopped, in a world-writable temporary folder (it drops root to
    user ``mosquitto``); stopped and removed afterwards."""
    import tempfile

    if mosquitto_binary() is None:
        pytest.skip("mosquitto binary not found (Debian: apt-get install mosquitto)")
    work = Path(tempfile.mkdtemp(prefix="sleepstream-mq-"))
    work.chmod(0o777)
    port = free_port()
    conf = (
        f"listener {port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n"
        f"persistence true\npersistence_location {work}/\n"
        f"autosave_interval {autosave_interval}\n"
    )
    broker = Mosquitto(work, port, extra_config=conf).start()
    yield broker
    broker.stop()
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def persistent_mosquitto():
    """A mosquitto that saves sessions every second (to survive its own SIGKILL)."""
    yield from _persistent_mosquitto(1)


@pytest.fixture
def rarely_saving_mosquitto():
    """A mosquitto that saves only when stopped (SIGTERM): a SIGKILL loses everything it
    acknowledged since, like a crash between two saves of any broker."""
    yield from _persistent_mosquitto(3600)


class Subscriber:
    """An MQTT subscriber (paho, in its own thread) collecting messages of a topic filter."""

    def __init__(
        self,
        port: int,
        topic: str = "sleepstream/#",
        host: str = "127.0.0.1",
        *,
        persistent: bool = False,
        client_id: str | None = None,
    ) -> None:
        import paho.mqtt.client as paho

        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=client_id or f"test-sub-{os.getpid()}-{id(self)}",
            clean_session=not persistent,
        )
        self.client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.1, 1)
        self.client.connect_async(host, port, keepalive=30)
        self.client.loop_start()
        if not self.subscribed.wait(10):
            raise RuntimeError(f"subscriber could not subscribe on port {port}")

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def stage_events(self) -> list[dict]:
        with self.lock:
            return [json.loads(p) for t, p, _ in self.messages if t.endswith("/stage")]

    def statuses(self) -> list[str]:
        with self.lock:
            return [p.decode() for t, p, _ in self.messages if t.endswith("/status")]

    def wait_for(self, predicate, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.05)
        return predicate(self)

    def close(self) -> None:
        # disconnect first: the network thread then ends at once (the other order waits
        # for its select timeout, ~1 s per subscriber)
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscribe():
    """``subscribe(port, topic)`` -> a :class:`Subscriber` (closed afterwards); a
    ``persistent`` one with the ``client_id`` of an earlier one resumes its session."""
    subs: list[Subscriber] = []

    def make(
        port: int,
        topic: str = "sleepstream/#",
        persistent: bool = False,
        client_id: str | None = None,
    ) -> Subscriber:
        sub = Subscriber(port, topic, persistent=persistent, client_id=client_id)
        subs.append(sub)
        return sub

    yield make
    for s in subs:
        s.close()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny exported student (ONNX + card), built once per session by ``distill``."""
    import torch

    torch.set_num_threads(1)
    from distill.export import export_tiny_student

    return export_tiny_student(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def stage_schema() -> dict:
    """The stage event JSON Schema."""
    return json.loads((REPO / "sleepstream" / "schemas" / "stage_event.schema.json").read_text())


def sleepstream_cmd(*args: str) -> list[str]:
    """argv to run the CLI in a subprocess."""
    return [sys.executable, "-m", "sleepstream", *args]


def daemon_env(state_dir: Path | None = None) -> dict[str, str]:
    """Environment for daemon subprocesses: one thread, no inherited SLEEPSTREAM_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLEEPSTREAM_")}
    if "SLEEPSTREAM_SHARED_DATA" in os.environ:
        env["SLEEPSTREAM_SHARED_DATA"] = os.environ["SLEEPSTREAM_SHARED_DATA"]
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    if state_dir is not None:
        env["XDG_DATA_HOME"] = str(state_dir)
    return env


@pytest.fixture(scope="session")
def helpers():
    """Helper functions for the daemon tests (``free_port``, ``wait_port``,
    ``sleepstream_cmd``, ``daemon_env``, ``Subscriber``)."""
    import types

    return types.SimpleNamespace(
        free_port=free_port,
        wait_port=wait_port,
        sleepstream_cmd=sleepstream_cmd,
        daemon_env=daemon_env,
        Subscriber=Subscriber,
        Mosquitto=Mosquitto,
        mosquitto_binary=mosquitto_binary,
    )
