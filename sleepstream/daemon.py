"""The daemon's lifecycle: start-up -> run -> graceful shutdown.

Start-up (in this order, each undone in reverse on the way out): the Prometheus
exporter, the embedded MQTT broker (when no ``--mqtt URL``), the ONNX stager, one MQTT
sink (with its durable outbox) and one stdout sink per device, then one pipeline per
device. Run: every pipeline in one :class:`asyncio.TaskGroup`, inference batched across
devices. Shutdown on SIGTERM/SIGINT (handled once; a second signal aborts): the sources
stop, epochs already read are scored and published, the outboxes are flushed to the
broker, ``offline`` is published (retained), and :meth:`Daemon.run` returns normally
(exit code 0). A file source that ends also ends the run the same way.

The daemon never calls ``sys.exit``; commands turn its result into an exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import uuid
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sleepstream.config import DeviceConfig, RunConfig
from sleepstream.errors import StorageError
from sleepstream.pipeline import DevicePipeline, InferenceBatcher, run_pipelines, wait_opened
from sleepstream.wiring import (  # re-exported: commands and tests import them from here
    chain_from_profile,
    default_dsp,
    default_source,
    resolve_profile,
)

log = logging.getLogger(__name__)

__all__ = [
    "Daemon",
    "DaemonResult",
    "DeviceResult",
    "chain_from_profile",
    "default_dsp",
    "default_source",
    "resolve_profile",
]


@dataclass
class DeviceResult:
    """What one device did during a run."""

    name: str
    session: str
    epochs: int = 0
    published: int = 0
    delivered: int = 0
    undelivered: int = 0
    latencies_s: list[float] = field(default_factory=list)


@dataclass
class DaemonResult:
    """Summary of a run (also used by ``replay``)."""

    devices: dict[str, DeviceResult]
    stopped_by_signal: bool = False
    mqtt_url: str = ""
    metrics_port: int | None = None


def session_id() -> str:
    """A short random id distinguishing this start of the daemon (8 hex digits)."""
    return uuid.uuid4().hex[:8]


def outbox_path(state_dir: Path, device: str) -> Path:
    """Where a device's outbox lives: ``<state_dir>/outbox/<device>.sqlite``."""
    return state_dir / "outbox" / f"{device}.sqlite"


def prepare_state_dir(path: Path) -> Path:
    """Create the state directory (mode 0700) or raise :class:`StorageError`."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise StorageError(f"state directory {path}: not writable ({exc.strerror})") from None
    return path


class Daemon:
    """One process, one event loop, one pipeline per device.

    Parameters
    ----------
    config : RunConfig
    stager : Stager, optional
        Already loaded; default: ``load_stager(config.model)`` in a thread.
    build_source : callable, optional
        ``build_source(device_config) -> (source, until)``; default: the source registry
        (:func:`sleepstream.sources.base.open_source`) with no end time.
    make_dsp : callable, optional
        ``make_dsp(device_config, source, seq_len) -> chain`` with
        ``chain.push(chunk) -> list[Epoch]``; default: :func:`default_dsp`.
    extra_sinks : callable, optional
        ``extra_sinks(device_name) -> list[Sink]`` added after MQTT and stdout
        (``replay`` collects predictions this way). They must be entered already or
        be entered by the caller.
    install_signals : bool
        Handle SIGTERM/SIGINT (only possible in the main thread).
    """

    def __init__(
        self,
        config: RunConfig,
        *,
        stager: Any = None,
        build_source: Callable[[DeviceConfig], tuple[Any, float | None]] | None = None,
        make_dsp: Callable[[DeviceConfig, Any, int], Any] | None = None,
        extra_sinks: Callable[[str], Sequence[Any]] | None = None,
        install_signals: bool = True,
        stdout: Any = None,
        stay: bool = False,
    ) -> None:
        self.config = config
        self.stager = stager
        self.build_source = build_source or default_source
        self.make_dsp = make_dsp or default_dsp
        self.extra_sinks = extra_sinks
        self.install_signals = install_signals
        self.stdout = stdout
        self.stay = stay
        #: Set once every source has ended and every outbox is empty (with ``stay``).
        self.idle = asyncio.Event()
        self.metrics: Any = None
        self.mqtt_sinks: dict[str, Any] = {}
        self.pipelines: list[DevicePipeline] = []
        self.started = asyncio.Event()
        self.mqtt_url = ""
        self._stop = asyncio.Event()
        self._signalled = False
        self._signals: list[int] = []

    # -- control -----------------------------------------------------------------------
    def request_stop(self) -> None:
        """Begin a graceful shutdown (what SIGTERM/SIGINT do)."""
        self._stop.set()

    def _on_signal(self, signum: int) -> None:
        if self._signalled:
            log.warning("second %s: aborting without flushing", signal.Signals(signum).name)
            for task in asyncio.all_tasks():
                if task.get_name() == "sleepstream-daemon":
                    task.cancel()
            return
        self._signalled = True
        log.info("%s: shutting down gracefully", signal.Signals(signum).name)
        self._stop.set()

    @contextlib.contextmanager
    def _signal_handlers(self):
        loop = asyncio.get_running_loop()
        if self.install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                try:
                    loop.add_signal_handler(sig, self._on_signal, sig)
                    self._signals.append(sig)
                except (NotImplementedError, RuntimeError, ValueError):
                    pass
        try:
            yield
        finally:
            for sig in self._signals:
                loop.remove_signal_handler(sig)
            self._signals.clear()

    # -- lifecycle -----------------------------------------------------------------------
    async def run(self) -> DaemonResult:
        """Start everything, run until the sources end or a stop is requested, shut down."""
        task = asyncio.current_task()
        if task is not None and task.get_name().startswith("Task-"):
            task.set_name("sleepstream-daemon")
        cfg = self.config
        with self._signal_handlers():
            async with AsyncExitStack() as stack:
                await self._startup(stack)
                results = {
                    p.name: DeviceResult(p.name, self._sessions[p.name]) for p in self.pipelines
                }
                batcher = InferenceBatcher(
                    self.stager,
                    metrics=self.metrics,
                    lookahead=cfg.lookahead,
                    batch_window_s=0.005 if len(self.pipelines) > 1 else 0.0,
                )
                work = asyncio.create_task(run_pipelines(self.pipelines, batcher), name="pipelines")
                await wait_opened(self.pipelines, work)
                if not work.done():
                    self.started.set()
                    log.info("running: %s", ", ".join(p.name for p in self.pipelines))
                stopper = asyncio.create_task(self._stop.wait(), name="stop-request")
                await asyncio.wait([work, stopper], return_when=asyncio.FIRST_COMPLETED)
                if not work.done():
                    for p in self.pipelines:
                        p.stop()
                stopper.cancel()
                try:
                    await work
                except BaseExceptionGroup as group:
                    # one error type, one message: the first SleepstreamError if any
                    raise _first_error(group) from None
                for p in self.pipelines:
                    r = results[p.name]
                    r.epochs, r.published = p.n_epochs, p.n_published
                if self.stay and not self._stop.is_set():
                    await self._wait_delivered()
                    self.idle.set()
                    log.info("all sources ended; staying up until SIGTERM/SIGINT")
                    await self._stop.wait()
                # leaving the stack flushes the outboxes and publishes "offline"
            for name, sink in self.mqtt_sinks.items():
                r = results[name]
                r.delivered = sink.delivered
                # this session's epochs not acknowledged: they stay in the outbox
                r.undelivered = max(0, r.published - len(sink.latencies_s))
                r.latencies_s = list(sink.latencies_s)
        return DaemonResult(
            results,
            stopped_by_signal=self._stop.is_set(),
            mqtt_url=self.mqtt_url,
            metrics_port=self.metrics.port if self.metrics else None,
        )

    def _recorder(self, dev: DeviceConfig, state_dir: Path) -> Any:
        """The night recorder of one device (raw EDF segments, stages, manifest)."""
        from sleepstream.sinks.recorder import Recorder

        profile = resolve_profile(dev)
        start = dev.options.get("start")
        return Recorder(
            state_dir,
            device=dev.name,
            profile=profile.name,
            model_id=self.stager.model_id,
            card_sha256=str(getattr(self.stager.card, "sha256", "")),
            scale_to_uv=abs(profile.scale_to_uv),
            staged_channel=profile.channel,
            source_offset_s=float(start) if start is not None else None,
        )

    async def _wait_delivered(self) -> None:
        """Wait until every MQTT outbox is empty (events acknowledged) or a stop request."""
        while not self._stop.is_set() and any(s.pending for s in self.mqtt_sinks.values()):
            await asyncio.sleep(0.02)

    async def _startup(self, stack: AsyncExitStack) -> None:
        from sleepstream.metrics import Metrics
        from sleepstream.sinks.mqtt import MqttSink, mqtt_settings, read_password
        from sleepstream.sinks.outbox import Outbox
        from sleepstream.sinks.stdout import StdoutSink

        cfg = self.config
        # 1. everything that can be checked without listening or loading: fail fast
        state_dir = prepare_state_dir(cfg.state_dir)
        built = {dev.name: self.build_source(dev) for dev in cfg.devices}
        m = cfg.mqtt
        settings_kw = dict(
            username=m.username,
            password=read_password(m.password_file),
            ca_file=m.ca_file,
            cert_file=m.cert_file,
            key_file=m.key_file,
            tls_insecure=m.tls_insecure,
            client_id=m.client_id,
            topic_prefix=m.topic_prefix,
        )
        embedded_url = f"mqtt://{cfg.broker_host}:{cfg.broker_port}"
        settings = mqtt_settings(m.url or embedded_url, **settings_kw)
        # 2. the model (sha256 and contract checked against its card)
        if self.stager is None:
            from sleepstream.inference import load_stager

            self.stager = await asyncio.to_thread(load_stager, cfg.model)
        log.info("model %s (seq_len %d)", self.stager.model_id, self.stager.seq_len)
        # 3. listeners: metrics, then the embedded broker
        self.metrics = Metrics()
        if cfg.metrics_port is not None:
            self.metrics.serve(cfg.metrics_port, cfg.metrics_addr)
            stack.callback(self.metrics.close)
        if m.url is None:
            from sleepstream.broker import EmbeddedBroker, EmbeddedBrokerConfig

            broker = EmbeddedBroker(EmbeddedBrokerConfig(cfg.broker_host, cfg.broker_port))
            await stack.enter_async_context(broker)
            self.mqtt_url = broker.url
            settings = mqtt_settings(broker.url, **settings_kw)
        else:
            self.mqtt_url = m.url
        # 4. per device: sinks (outbox first), then the pipeline
        self._sessions: dict[str, str] = {}
        for dev in cfg.devices:
            session = self._sessions[dev.name] = session_id()
            source, until = built[dev.name]
            sinks: list[Any] = []
            mqtt = MqttSink(
                settings,
                device=dev.name,
                session=session,
                outbox=Outbox(outbox_path(state_dir, dev.name), max_events=cfg.outbox_max_events),
                metrics=self.metrics,
                flush_timeout=cfg.flush_timeout_s,
            )
            sinks.append(await stack.enter_async_context(mqtt))
            self.mqtt_sinks[dev.name] = mqtt
            if cfg.print_mode != "none":
                out = StdoutSink(
                    device=dev.name, session=session, json=cfg.print_mode == "json",
                    stream=self.stdout,
                )  # fmt: skip
                sinks.append(await stack.enter_async_context(out))
            if cfg.record:
                sinks.append(await stack.enter_async_context(self._recorder(dev, state_dir)))
            if self.extra_sinks is not None:
                sinks.extend(self.extra_sinks(dev.name))
            seq_len = self.stager.seq_len

            def make(src: Any, dev: DeviceConfig = dev, seq_len: int = seq_len) -> Any:
                return self.make_dsp(dev, src, seq_len)

            self.pipelines.append(
                DevicePipeline(
                    dev.name,
                    source,
                    make,
                    sinks,
                    metrics=self.metrics,
                    until=until,
                    lookahead=cfg.lookahead,
                )  # fmt: skip
            )


def _first_error(group: BaseExceptionGroup) -> BaseException:
    from sleepstream.errors import SleepstreamError

    flat: list[BaseException] = []

    def walk(g: BaseException) -> None:
        if isinstance(g, BaseExceptionGroup):
            for e in g.exceptions:
                walk(e)
        else:
            flat.append(g)

    walk(group)
    for e in flat:
        if isinstance(e, SleepstreamError):
            return e
    return flat[0] if flat else group
