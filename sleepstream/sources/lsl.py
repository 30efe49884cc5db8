"""Lab Streaming Layer inlet: a stream resolved by name, type or source id.

Timestamps are LSL's, mapped to the local clock and smoothed
(``proc_clocksync | proc_dejitter``). A reader thread pulls chunks and hands them to the
event loop through a bounded :class:`~.base.ChunkQueue` (oldest dropped and counted).
When the outlet vanishes (``LostError``, or no samples for ``stall_timeout_s``) the
stream is re-resolved with jittered exponential back-off and ``reconnects`` counts it;
the timestamps then jump over the gap.

liblsl reads its configuration once, at its first call: for loopback-only use (tests,
demos) call :func:`load_lsl_config` before anything else touches LSL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from sleepstream.errors import SourceError, UsageError
from sleepstream.sources.base import Backoff, ChunkQueue, QueueCounters
from sleepstream.types import Chunk

log = logging.getLogger(__name__)

#: liblsl configuration that keeps LSL on 127.0.0.1 (see ``../shared/RUNTIME.md``); the
#: same text ships as ``lsl_loopback.cfg`` for ``LSLAPICFG=`` in other processes.
LOOPBACK_CONFIG_TEXT = """\
[ports]
IPv6 = disable
[multicast]
ResolveScope = machine
MachineAddresses = {127.0.0.1}
ListenAddress = 127.0.0.1
[lab]
KnownPeers = {127.0.0.1}
SessionID = sleepstream-test
[log]
level = -3
"""
LOOPBACK_CONFIG = Path(__file__).with_name("lsl_loopback.cfg")


def _pylsl() -> Any:
    try:
        import pylsl
        import pylsl.util  # noqa: F401  (LostError lives there)
    except ImportError as exc:
        raise SourceError(f"pylsl is not installed ({exc}); pip install pylsl") from None
    return pylsl


def load_lsl_config(path: Path | str | None = None) -> str:
    """Load a liblsl configuration (default: loopback only) before any other LSL call.

    Also sets ``LSLAPICFG`` (when the file exists) so child processes use the same
    configuration. Returns the configuration text.
    """
    if path is None:
        text, cfg = LOOPBACK_CONFIG_TEXT, LOOPBACK_CONFIG
    else:
        cfg = Path(path)
        try:
            text = cfg.read_text(encoding="utf-8")
        except OSError as exc:
            raise SourceError(f"LSL config {cfg}: {exc.strerror or exc}") from None
    if cfg.is_file():
        os.environ["LSLAPICFG"] = str(cfg)
    _pylsl().set_config_content(text)
    return text


def _quote(value: str) -> str:
    if "'" in value:
        raise UsageError(f"LSL stream property {value!r} must not contain a quote")
    return f"'{value}'"


def channel_labels(info: Any, n: int) -> tuple[str, ...]:
    """Channel labels from a full ``StreamInfo`` description (``ch0``... when absent)."""
    labels: list[str] = []
    ch = info.desc().child("channels").child("channel")
    while not ch.empty() and len(labels) < n:
        labels.append(ch.child_value("label") or f"ch{len(labels)}")
        ch = ch.next_sibling()
    if len(labels) != n:
        labels = [f"ch{i}" for i in range(n)]
    return tuple(labels)


class LSLSource(QueueCounters):
    """An LSL stream as an async source of :class:`Chunk`.

    Parameters
    ----------
    name, type, source_id : str, optional
        Stream properties to match (all given ones must match; at least one).
    timeout : float
        Seconds to wait for the stream at start-up before failing.
    max_buflen : int
        Seconds liblsl buffers on the inlet side.
    pull_timeout_s : float
        Longest a single pull waits, in seconds.
    queue_size : int
        Chunks buffered before the oldest is dropped.
    stall_timeout_s : float
        No samples for this long (s) means the stream is lost.
    resolve_timeout_s : float
        How long each re-resolve attempt listens, in seconds.
    clocksync, dejitter : bool
        LSL post-processing of timestamps: map the outlet's clock to the local one, and
        smooth jitter by a running linear fit (both on by default).
    backoff : Backoff
        Re-resolve schedule after a loss (default 0.25 s doubling to 5 s, jittered,
        forever).
    """

    #: A live stream: the profile's fs is enforced; the wall clock dates it.
    from_file: bool = False
    start_datetime: datetime | None = None

    def __init__(
        self,
        name: str | None = None,
        *,
        type: str | None = None,  # noqa: A002 (LSL's property name)
        source_id: str | None = None,
        timeout: float = 5.0,
        max_buflen: int = 60,
        pull_timeout_s: float = 0.1,
        queue_size: int = 256,
        stall_timeout_s: float = 10.0,
        resolve_timeout_s: float = 1.0,
        backoff: Backoff | None = None,
        clocksync: bool = True,
        dejitter: bool = True,
    ) -> None:
        props = {"name": name, "type": type, "source_id": source_id}
        given = {k: v for k, v in props.items() if v}
        if not given:
            raise UsageError("LSL source: give a stream name, type or source id")
        if timeout <= 0 or pull_timeout_s <= 0 or stall_timeout_s <= pull_timeout_s:
            raise UsageError("LSL source: timeouts must be > 0 and stall > pull timeout")
        self.predicate = " and ".join(f"{k}={_quote(v)}" for k, v in given.items())
        self.wanted = ", ".join(f"{k}={v!r}" for k, v in given.items())
        self.timeout = float(timeout)
        self.max_buflen = int(max_buflen)
        self.pull_timeout_s = float(pull_timeout_s)
        self.queue_size = int(queue_size)
        self.stall_timeout_s = float(stall_timeout_s)
        self.resolve_timeout_s = float(resolve_timeout_s)
        # re-resolving is cheap (one multicast query): cap the back-off at a few seconds
        self.backoff = backoff or Backoff(initial_s=0.25, max_s=5.0)
        self.clocksync, self.dejitter = bool(clocksync), bool(dejitter)
        self.name = f"lsl:{self.wanted}"
        self.fs = 0.0
        self.channels: tuple[str, ...] = ()
        self.reconnects = 0
        self.last_error = ""
        self.stream_info: dict[str, Any] = {}
        self._lsl: Any = None
        self._inlet: Any = None
        self._queue: ChunkQueue | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ inlet handling
    def _connect(self, timeout: float) -> bool:
        """Resolve the stream and open an inlet; False when nothing answered."""
        lsl = self._lsl
        infos = lsl.resolve_bypred(self.predicate, 1, timeout)
        if not infos:
            return False
        if len(infos) > 1:
            log.warning("%d LSL streams match %s; using the first", len(infos), self.wanted)
        flags = (lsl.proc_clocksync if self.clocksync else 0) | (
            lsl.proc_dejitter if self.dejitter else 0
        )
        inlet = lsl.StreamInlet(
            infos[0], max_buflen=self.max_buflen, processing_flags=flags, recover=False
        )
        try:
            inlet.open_stream(timeout=max(timeout, 1.0))
            full = inlet.info(timeout=max(timeout, 1.0))
        except Exception:
            with contextlib.suppress(Exception):
                inlet.close_stream()
            raise
        fs = float(full.nominal_srate())
        if full.channel_format() == lsl.cf_string:
            inlet.close_stream()
            raise SourceError(f"LSL stream {full.name()!r} carries strings, not samples")
        if fs <= 0:
            inlet.close_stream()
            raise SourceError(f"LSL stream {full.name()!r} has an irregular rate; need fixed fs")
        n = int(full.channel_count())
        self.fs, self.channels = fs, channel_labels(full, n)
        self.stream_info = {
            "name": full.name(),
            "type": full.type(),
            "source_id": full.source_id(),
            "hostname": full.hostname(),
            "channel_count": n,
            "nominal_srate": fs,
        }
        self._inlet = inlet
        return True

    def _close_inlet(self) -> None:
        inlet, self._inlet = self._inlet, None
        if inlet is not None:
            with contextlib.suppress(Exception):
                inlet.close_stream()
            del inlet

    def _open(self) -> None:
        self._lsl = _pylsl()
        try:
            found = self._connect(self.timeout)
        except SourceError:
            raise
        except Exception as exc:
            raise SourceError(f"cannot open LSL stream {self.wanted}: {exc}") from None
        if not found:
            raise SourceError(
                f"no LSL stream with {self.wanted} found within {self.timeout:g} s "
                "(is the outlet running, on this network / LSL config?)"
            )

    # ------------------------------------------------------------------ reader thread
    def _read_loop(self) -> None:
        assert self._queue is not None
        try:
            self._read_forever()
        except Exception as exc:  # a bug or an odd device must not hang the consumer
            log.exception("reader thread failed")
            self._queue.close_threadsafe(
                SourceError(f"LSL stream {self.wanted} reader failed: {exc}")
            )

    def _read_forever(self) -> None:
        assert self._queue is not None
        lost_error = self._lsl.util.LostError
        last_data = time.monotonic()
        while not self._stop.is_set():
            try:
                samples, stamps = self._inlet.pull_chunk(timeout=self.pull_timeout_s)
            except lost_error:
                self._recover("the outlet vanished")
                last_data = time.monotonic()
                continue
            except Exception as exc:
                self._recover(f"pull failed: {exc}")
                last_data = time.monotonic()
                continue
            if stamps:
                last_data = time.monotonic()
                x = np.asarray(samples, dtype=np.float64).T
                chunk = Chunk(
                    samples=np.ascontiguousarray(x),
                    timestamps=np.asarray(stamps, dtype=np.float64),
                    fs=self.fs,
                    channels=self.channels,
                    received_at=time.perf_counter(),
                )
                self._queue.put_threadsafe(chunk)
            elif time.monotonic() - last_data > self.stall_timeout_s:
                self._recover(f"no samples for {self.stall_timeout_s:g} s")
                last_data = time.monotonic()

    def _recover(self, why: str) -> None:
        """Drop the inlet and re-resolve with back-off until it is back (reader thread)."""
        self.last_error = why
        log.warning("LSL stream %s lost (%s); re-resolving with back-off", self.wanted, why)
        self._close_inlet()
        old = (self.fs, self.channels)
        for attempt, delay in enumerate(self.backoff.delays(), start=1):
            if self._stop.wait(delay):
                return
            try:
                found = self._connect(self.resolve_timeout_s)
            except Exception as exc:
                self.last_error = f"re-resolve attempt {attempt} failed: {exc}"
                continue
            if found:
                if (self.fs, self.channels) != old:
                    log.warning("LSL stream %s came back with a different layout", self.wanted)
                self.reconnects += 1
                log.warning("LSL stream %s is back after %d attempt(s)", self.wanted, attempt)
                return
        self._stop.set()
        assert self._queue is not None
        self._queue.close_threadsafe(SourceError(f"LSL stream {self.wanted} lost: {why}"))

    # ------------------------------------------------------------------ protocol
    async def __aenter__(self) -> LSLSource:
        await asyncio.to_thread(self._open)
        self._queue = ChunkQueue(asyncio.get_running_loop(), self.queue_size)
        self._stop.clear()
        self._thread = threading.Thread(target=self._read_loop, name="lsl-inlet", daemon=True)
        self._thread.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10.0)
            self._thread = None
        self._close_inlet()

    def __aiter__(self) -> LSLSource:
        return self

    async def __anext__(self) -> Chunk:
        if self._queue is None:
            raise StopAsyncIteration
        return await self._queue.get()
