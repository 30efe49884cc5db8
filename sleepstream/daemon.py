"""The daemon's lifecycle: start-up -> run -> graceful shutdown.

Start-up, in this order (each step undone in reverse on the way out), so that a bad
setting, file or board is reported before anything listens or writes:

1. checks without I/O: the sources are built (options checked), the profiles loaded,
   every sink kind validates its settings (TLS files, ...);
2. the state dir: created 0700, a warning if it is group- or world-accessible, and an
   exclusive lock per device (a second daemon on the same state dir and device is
   refused with :class:`~sleepstream.errors.AlreadyRunningError`); every file the
   daemon creates from here on is private (umask 077 while it runs);
3. the model (sha256 and contract checked against its card);
4. the sources are opened and their DSP chains built (a missing board, file or channel
   fails here: no broker started, no night folder created);
5. listeners: the Prometheus exporter (every device's label sets created), the
   embedded MQTT broker (when no ``--mqtt URL``);
6. the sinks: every registered sink kind's factory (:mod:`sleepstream.sinks.registry`),
   then one sink per device and kind;
7. one pipeline per device (:mod:`sleepstream.pipeline`), inference batched across them.

Signals: SIGTERM, SIGINT and SIGHUP all stop gracefully (during start-up they end it
where it is: a board still connecting is left, nothing else starts) (a terminal hang-up ends the
daemon like a Ctrl-C: the sources stop, epochs already read are scored and published,
the night's open segment is closed, the outboxes are flushed, ``offline`` is published).
To change settings, restart (systemd: ``systemctl restart``). A second signal during
that shutdown aborts it without waiting for the broker; :meth:`Daemon.run` still
returns normally (``DaemonResult.aborted``), never with a traceback. A file source that
ends also ends the run gracefully (unless ``stay``).

The daemon never calls ``sys.exit``; commands turn its result into an exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Callable, Iterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, TextIO

from sleepstream.batcher import InferenceBatcher, Model, Stager
from sleepstream.config import DeviceConfig, RunConfig
from sleepstream.dsp.chain import EpochNormaliser
from sleepstream.errors import SleepstreamError, UsageError
from sleepstream.metrics import Metrics
from sleepstream.pipeline import DevicePipeline, EpochChain, run_pipelines, wait_opened
from sleepstream.profiles import Profile
from sleepstream.sinks.base import Sink
from sleepstream.sinks.registry import (
    DaemonContext,
    DeviceContext,
    SinkFactory,
    sink_kinds,
)
from sleepstream.sources.base import Source
from sleepstream.state_dir import DeviceLock, prepare_state_dir, private_files, session_id
from sleepstream.wiring import (  # re-exported: commands and tests import them from here
    PersistentScale,
    default_dsp,
    default_source,
    device_profile,
    make_normaliser,
    normaliser_path,
)

log = logging.getLogger(__name__)

__all__ = [
    "Daemon",
    "DaemonResult",
    "DeviceResult",
    "default_dsp",
    "default_source",
    "device_profile",
]

#: The signals that stop the daemon gracefully (SIGHUP included: see the module doc).
STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@dataclass
class DeviceResult:
    """What one device did during a run."""

    name: str
    session: str
    epochs: int = 0
    published: int = 0
    delivered: int = 0
    undelivered: int = 0
    #: Acknowledged events published again after a lost broker connection.
    resent: int = 0
    latencies_s: list[float] = field(default_factory=list)


@dataclass
class DaemonResult:
    """Summary of a run (also used by ``replay``).

    ``stopped_by_signal``: a stop was requested (signal or :meth:`Daemon.request_stop`)
    before the sources ended; ``aborted``: a second signal cut the shutdown short.
    """

    devices: dict[str, DeviceResult]
    stopped_by_signal: bool = False
    mqtt_url: str = ""
    metrics_port: int | None = None
    aborted: bool = False


class Daemon:
    """One process, one event loop, one pipeline per device.

    Parameters
    ----------
    config : RunConfig
    stager : Stager or Model, optional
        Already loaded (a :class:`~sleepstream.batcher.Stager`, or a loaded model the
        batcher wraps in a per-device context stager); default:
        ``load_stager(config.model)`` in a thread.
    build_source : callable, optional
        ``build_source(device_config) -> (source, until)``; default:
        :func:`~sleepstream.wiring.default_source`.
    make_dsp : callable, optional
        ``make_dsp(device_config, open_source) -> EpochChain``; default:
        :func:`~sleepstream.wiring.default_dsp`.
    extra_sinks : callable, optional
        ``extra_sinks(device_name) -> list[Sink]``, delivered after the registered
        sinks (``replay`` collects predictions this way); entered by the caller.
    install_signals : bool
        Handle SIGTERM/SIGINT/SIGHUP (only possible in the main thread).
    stdout : text stream, optional
        Where per-epoch lines go (default ``sys.stdout`` at print time).
    stay : bool, optional
        Overrides ``config.stay``.
    """

    def __init__(
        self,
        config: RunConfig,
        *,
        stager: Stager | Model | None = None,
        build_source: Callable[[DeviceConfig], tuple[Source, float | None]] | None = None,
        make_dsp: Callable[[DeviceConfig, Source], EpochChain] | None = None,
        extra_sinks: Callable[[str], Sequence[Sink]] | None = None,
        install_signals: bool = True,
        stdout: TextIO | None = None,
        stay: bool | None = None,
    ) -> None:
        self.config = config
        self.stager: Stager | Model | None = stager
        self.build_source = build_source or default_source
        self.make_dsp = make_dsp or default_dsp
        self.extra_sinks = extra_sinks
        self.install_signals = install_signals
        self.stdout = stdout
        self.stay = config.stay if stay is None else stay
        #: Set once every source has ended and every sink has delivered (with ``stay``).
        self.idle = asyncio.Event()
        #: Set once every source is open and the pipelines run.
        self.started = asyncio.Event()
        self.metrics: Metrics | None = None
        self.factories: dict[str, SinkFactory] = {}
        self.pipelines: list[DevicePipeline] = []
        self.mqtt_url = ""
        self._sessions: dict[str, str] = {}
        self._stop = asyncio.Event()
        self._signalled = 0
        self._aborted = False
        self._fatal: BaseException | None = None

    # -- control -----------------------------------------------------------------------
    def request_stop(self) -> None:
        """Begin a graceful shutdown (what SIGTERM/SIGINT/SIGHUP do)."""
        self._stop.set()

    def fail(self, error: BaseException) -> None:
        """A daemon-wide resource died for good (``DaemonContext.fail``): log it, shut down
        gracefully, and make :meth:`run` raise it. The first error wins."""
        if self._fatal is None:
            self._fatal = error
            log.critical("%s; stopping the daemon", error)
        self._stop.set()

    def _on_signal(self, signum: int, task: asyncio.Task[Any] | None) -> None:
        name = signal.Signals(signum).name
        self._signalled += 1
        if self._signalled == 1:
            log.info("%s: shutting down gracefully", name)
            self._stop.set()
        elif self._signalled == 2 and task is not None:
            log.warning("second signal (%s): aborting the shutdown without flushing", name)
            self._aborted = True
            task.cancel()

    @contextlib.contextmanager
    def _signal_handlers(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        installed: list[signal.Signals] = []
        if self.install_signals:
            for sig in STOP_SIGNALS:
                try:
                    loop.add_signal_handler(sig, self._on_signal, sig, task)
                    installed.append(sig)
                except (NotImplementedError, RuntimeError, ValueError):
                    pass
        try:
            yield
        finally:
            for done in installed:
                loop.remove_signal_handler(done)
                if self._signalled:  # already stopping: a late signal must not kill the exit
                    signal.signal(done, signal.SIG_IGN)

    # -- lifecycle ---------------------------------------------------------------------
    async def run(self) -> DaemonResult:
        """Start everything, run until the sources end or a stop is requested, shut down."""
        results: dict[str, DeviceResult] = {}
        with self._signal_handlers(), private_files():
            try:
                await self._run(results)
            except asyncio.CancelledError:
                if not self._aborted:
                    raise
                log.warning("shutdown aborted: undelivered events stay in the outbox")
            finally:
                gc.unfreeze()
        if self._fatal is not None:
            raise self._fatal
        return DaemonResult(
            results,
            stopped_by_signal=self._stop.is_set(),
            mqtt_url=self.mqtt_url,
            metrics_port=self.metrics.port if self.metrics else None,
            aborted=self._aborted,
        )

    async def _run(self, results: dict[str, DeviceResult]) -> None:
        async with AsyncExitStack() as stack:
            # a stop during start-up (a board that takes long to answer, an LSL stream
            # being resolved) ends it there: what was started is undone by the stack
            startup = asyncio.ensure_future(self._startup(stack))
            await self._until_stopped(startup)
            if not startup.done():
                startup.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await startup
                log.info("stopped during start-up")
                return
            startup.result()  # a start-up error ends the run here
            for p in self.pipelines:
                results[p.name] = DeviceResult(p.name, self._sessions[p.name])
            assert self.stager is not None
            batcher = InferenceBatcher(
                self.stager,
                metrics=self.metrics,
                lookahead=self.config.lookahead,
                batch_window_s=0.005 if len(self.pipelines) > 1 else 0.0,
            )
            work = asyncio.create_task(run_pipelines(self.pipelines, batcher), name="pipelines")
            await wait_opened(self.pipelines, work)
            if not work.done():
                # everything built at start-up (models, sessions, thousands of pipelines)
                # leaves the collector's generations: full collections stay short all night
                # (1,000 beds: 111-ms pauses before); undone when the run ends
                gc.collect()
                gc.freeze()
                self.started.set()
                log.info("running: %s", ", ".join(p.name for p in self.pipelines))
            await self._until_stopped(work)
            if not work.done():
                for p in self.pipelines:
                    p.stop()
            try:
                await work
            except BaseExceptionGroup as group:
                # one error type, one message: the first SleepstreamError if any
                raise _first_error(group) from None
            finally:
                self._collect(results)
            if self.stay and not self._stop.is_set():
                await self._until_stopped(self._drained())
                self.idle.set()
                log.info("all sources ended; staying up until SIGTERM/SIGINT")
                await self._stop.wait()
            # leaving the stack closes the sinks, then the factories (flushing the outboxes)
        self._collect(results)

    async def _until_stopped(self, work: Any) -> None:
        """Wait for ``work`` (a task or coroutine) or a stop request, whichever is first."""
        task = work if isinstance(work, asyncio.Future) else asyncio.ensure_future(work)
        stopper = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait([task, stopper], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            if task is not work and not task.done():
                task.cancel()

    async def _drained(self) -> None:
        await asyncio.gather(*(f.drained() for f in self.factories.values()))

    def _collect(self, results: dict[str, DeviceResult]) -> None:
        for p in self.pipelines:
            r = results.get(p.name)
            if r is None:
                continue
            r.epochs, r.published = p.n_epochs, p.n_published
            for factory in self.factories.values():
                stats = factory.delivery(p.name)
                if stats is not None:
                    r.delivered = stats.delivered
                    # this session's epochs not acknowledged: they stay in the outbox
                    r.undelivered = max(0, r.published - len(stats.latencies_s))
                    r.resent = stats.resent
                    r.latencies_s = list(stats.latencies_s)
                    break

    async def _startup(self, stack: AsyncExitStack) -> None:
        cfg = self.config
        # 1. checks without I/O: sources built, profiles read, sink settings validated
        kinds = sink_kinds()
        built = {dev.name: self.build_source(dev) for dev in cfg.devices}
        profiles = {dev.name: device_profile(dev) for dev in cfg.devices}
        for kind in kinds:
            if kind.validate is not None:
                kind.validate(kind.config_of(cfg), cfg)
        # 2. the state dir, one lock per device
        state_dir = prepare_state_dir(cfg.state_dir)
        for dev in cfg.devices:
            stack.enter_context(DeviceLock(state_dir, dev.name))
        # 3. the model
        stager = self.stager
        if stager is None:
            from sleepstream.inference import load_stager

            loaded: Model = await asyncio.to_thread(load_stager, cfg.model)
            stager = self.stager = loaded
        log.info("model %s (seq_len %d)", stager.model_id, stager.seq_len)
        if cfg.lookahead >= stager.seq_len:  # the bound is the model's: checked once known
            raise UsageError(
                f"--lookahead {cfg.lookahead}: model {stager.model_id} looks at most "
                f"{stager.seq_len - 1} epochs ahead (seq_len {stager.seq_len})"
            )
        # 4. the sources, opened (and closed on the way out)
        self.metrics = metrics = Metrics()
        for dev in cfg.devices:
            source, until = built[dev.name]

            def make(src: Source, dev: DeviceConfig = dev) -> EpochChain:
                chain = self.make_dsp(dev, src)
                chain.normaliser = self._normaliser(stack, dev, profiles[dev.name], src)
                return chain

            pipe = DevicePipeline(dev.name, source, make, [], metrics=metrics, until=until)
            self.pipelines.append(pipe)
            stack.push_async_callback(pipe.reader.close)
            await pipe.reader.open()
        # 5. listeners: metrics (label sets created now), then the embedded broker
        for dev in cfg.devices:
            metrics.add_device(dev.name)
        if cfg.metrics_port is not None:
            metrics.serve(cfg.metrics_port, cfg.metrics_addr)
            stack.callback(metrics.close)
        if cfg.mqtt.url is None:
            from sleepstream.broker import EmbeddedBroker, EmbeddedBrokerConfig

            broker = EmbeddedBroker(EmbeddedBrokerConfig(cfg.broker_host, cfg.broker_port))
            await stack.enter_async_context(broker)
            self.mqtt_url = broker.url
        else:
            self.mqtt_url = cfg.mqtt.url
        # 6. sinks: one factory per kind (daemon-wide), one sink per device and kind
        for kind in kinds:
            ctx = DaemonContext(
                cfg, state_dir, metrics, stager, self.mqtt_url, self.stdout, dict(self.factories),
                fail=self.fail,
            )  # fmt: skip
            factory = kind.factory(kind.config_of(cfg), ctx)
            if factory is not None:
                self.factories[kind.name] = await stack.enter_async_context(factory)
        for dev, pipe in zip(cfg.devices, self.pipelines, strict=True):
            session = self._sessions[dev.name] = session_id()
            device = DeviceContext(dev, session, profiles[dev.name], built[dev.name][0])
            sinks: list[Sink] = []
            for factory in self.factories.values():
                sink = factory.sink_for(device)
                if sink is not None:
                    sinks.append(await stack.enter_async_context(sink))
            if self.extra_sinks is not None:
                sinks.extend(self.extra_sinks(dev.name))
            pipe.set_sinks(sinks)

    def _normaliser(
        self, stack: AsyncExitStack, dev: DeviceConfig, profile: Profile, src: Source
    ) -> EpochNormaliser | None:
        """The device's normaliser (the model's spec, the profile's prior). A live device
        keeps its state under the state dir across a restart within the night; a
        recording always starts from its prior (it is its own night)."""
        assert self.stager is not None
        state = None if src.from_file else normaliser_path(self.config.state_dir, dev.name)
        normaliser = make_normaliser(self.stager.normalisation, profile, state)
        if isinstance(normaliser, PersistentScale):
            stack.callback(normaliser.save)
        return normaliser


def _first_error(group: BaseExceptionGroup[Any]) -> BaseException:
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
