"""Fixtures for source tests: LSL kept on loopback, and a real LSL outlet in a thread."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest


@pytest.fixture(scope="session")
def lsl_loopback():
    """Load the loopback-only liblsl config (before any other LSL call) and return pylsl."""
    pylsl = pytest.importorskip("pylsl")
    from sleepstream.sources.lsl import load_lsl_config

    load_lsl_config()
    return pylsl


class OutletThread:
    """A real LSL outlet pushing a known ramp signal in chunks from a thread.

    Sample ``k`` of channel ``c`` has the value ``k + 1000 * c`` so a reader can check
    order and completeness. ``stop()`` destroys the outlet (the stream vanishes);
    ``start()`` creates a new one with the same name and source id.
    """

    def __init__(
        self,
        pylsl,
        name: str,
        fs: float = 100.0,
        n_channels: int = 2,
        chunk: int = 10,
        labels: tuple[str, ...] = ("Fpz-Cz", "Pz-Oz"),
    ) -> None:
        self.pylsl, self.name, self.fs, self.n, self.chunk = pylsl, name, fs, n_channels, chunk
        self.labels = labels
        self.k = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _make(self):
        info = self.pylsl.StreamInfo(
            self.name, "EEG", self.n, self.fs, "float32", f"{self.name}-id"
        )
        chans = info.desc().append_child("channels")
        for label in self.labels[: self.n]:
            chans.append_child("channel").append_child_value("label", label)
        return self.pylsl.StreamOutlet(info, chunk_size=self.chunk)

    def _run(self) -> None:
        outlet = self._make()
        period = self.chunk / self.fs
        next_t = time.perf_counter()
        while not self._stop.is_set():
            ks = self.k + np.arange(self.chunk)
            block = (ks[:, None] + 1000.0 * np.arange(self.n)[None, :]).astype(np.float32)
            outlet.push_chunk(block)
            self.k += self.chunk
            next_t += period
            self._stop.wait(max(0.0, next_t - time.perf_counter()))
        del outlet

    def start(self) -> OutletThread:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None


@pytest.fixture
def lsl_outlet(lsl_loopback, request):
    """Factory for :class:`OutletThread` outlets, all stopped at teardown."""
    made: list[OutletThread] = []

    def make(name: str, **kw) -> OutletThread:
        # unique per process too: parallel test runs on this machine share the LSL scope
        o = OutletThread(lsl_loopback, f"{name}-{os.getpid()}-{request.node.name}"[:60], **kw)
        made.append(o)
        return o

    yield make
    for o in made:
        o.stop()
