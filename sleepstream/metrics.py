"""Prometheus metrics of the daemon, served on 127.0.0.1:9108 by default.

Each daemon owns a private :class:`~prometheus_client.CollectorRegistry`, so tests can
run several daemons in one process. The HTTP server runs in its own thread and never
blocks the event loop. Metric names follow ``sleepstream_*``, seconds for durations and
``_total`` for counters; every series carries a ``device`` label.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

#: Latency buckets in seconds: fine from 0.5 ms up (the floor is ~1.3 ms), coarse to 1 min.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015,
    0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
#: Inference buckets in seconds (one batched ONNX Runtime call).
INFERENCE_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
)  # fmt: skip


@dataclass
class Metrics:
    """All series of one daemon, in a private registry.

    Attributes
    ----------
    port : int or None
        The port actually bound once :meth:`serve` has run (useful with port 0).
    """

    registry: Any = None
    port: int | None = None
    _server: Any = field(default=None, repr=False)
    _thread: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        reg = self.registry = self.registry or CollectorRegistry()
        dev = ("device",)
        self.epoch_latency = Histogram(
            "sleepstream_epoch_latency_seconds",
            "Last sample of an epoch arriving -> its stage event acknowledged by the broker",
            dev,
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.inference = Histogram(
            "sleepstream_inference_seconds",
            "Duration of one (batched) inference call",
            buckets=INFERENCE_BUCKETS,
            registry=reg,
        )
        self.inference_batch = Histogram(
            "sleepstream_inference_batch_epochs",
            "Epochs per inference call (batched across devices)",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=reg,
        )
        self.samples_received = Counter(
            "sleepstream_samples_received_total", "Samples received from the source", dev,
            registry=reg,
        )  # fmt: skip
        self.samples_dropped = Counter(
            "sleepstream_samples_dropped_total",
            "Samples dropped (source queue full, or reported lost by the source)",
            dev,
            registry=reg,
        )
        self.gaps = Counter(
            "sleepstream_gaps_total", "Epochs with missing samples (gaps)", dev, registry=reg
        )
        self.epochs = Counter(
            "sleepstream_epochs_total", "Epochs scored, by stage", ("device", "stage"),
            registry=reg,
        )  # fmt: skip
        self.published = Counter(
            "sleepstream_events_published_total",
            "Stage events acknowledged by the broker",
            dev,
            registry=reg,
        )
        self.resent = Counter(
            "sleepstream_events_resent_total",
            "Acknowledged stage events published again after a lost broker connection (a "
            "crashed broker loses what it had not saved; consumers deduplicate on event_id)",
            dev,
            registry=reg,
        )
        self.outbox_dropped = Counter(
            "sleepstream_outbox_dropped_total",
            "Events dropped because the outbox was full",
            dev,
            registry=reg,
        )
        self.broker_connected = Gauge(
            "sleepstream_broker_connected", "1 while connected to the MQTT broker", dev,
            registry=reg,
        )  # fmt: skip
        self.storage_errors = Counter(
            "sleepstream_storage_errors_total",
            "Failed writes of the night recorder, by kind (disk_full, read_only, permission, "
            "missing, io_error, internal)",
            ("device", "kind"),
            registry=reg,
        )
        self.recorder_backlog_bytes = Gauge(
            "sleepstream_recorder_backlog_bytes",
            "Raw EEG held in memory because it could not be written yet (0 = all on disk)",
            dev,
            registry=reg,
        )
        self.queue_depth = Gauge(
            "sleepstream_queue_depth",
            "Items waiting in a queue (outbox: undelivered events; source: chunks)",
            ("device", "queue"),
            registry=reg,
        )

    def add_device(self, device: str) -> None:
        """Create every label set of ``device`` now, so zero counters are exported as 0.

        Prometheus only exports a labelled series once it exists; a drop counter that
        appears at its first drop cannot be alerted on (``rate()`` of an absent series
        is empty, not 0).
        """
        from sleepstream.record.storage import FAULT_KINDS
        from sleepstream.types import STAGE_NAMES

        for kind in FAULT_KINDS:
            self.storage_errors.labels(device, kind)
        for series in (
            self.samples_received,
            self.samples_dropped,
            self.gaps,
            self.published,
            self.resent,
            self.outbox_dropped,
            self.broker_connected,
            self.epoch_latency,
            self.recorder_backlog_bytes,
        ):
            series.labels(device)
        for stage in (*STAGE_NAMES, "unscored"):
            self.epochs.labels(device, stage)
        for queue in ("source", "outbox"):
            self.queue_depth.labels(device, queue)

    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        """Start the HTTP exporter in a thread; return the bound port."""
        from prometheus_client import start_http_server

        from sleepstream.errors import UsageError

        try:
            result = start_http_server(port, addr=addr, registry=self.registry)
        except (OSError, UnicodeError, ValueError) as exc:
            raise UsageError(
                f"--metrics-port {port}: cannot listen on --metrics-addr {addr}: {exc}"
            ) from None
        if isinstance(result, tuple):  # prometheus_client >= 0.20 returns (server, thread)
            self._server, self._thread = result
            self.port = int(self._server.server_address[1])
        else:
            self.port = port
        log.info("metrics on http://%s:%d/metrics", addr, self.port)
        return self.port

    def close(self) -> None:
        """Stop the HTTP exporter."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def sample_value(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        """Current value of one sample (for logs and tests)."""
        value = self.registry.get_sample_value(name, labels or {})
        return None if value is None else float(value)
