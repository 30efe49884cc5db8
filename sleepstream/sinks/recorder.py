"""The night recorder: a raw-data sink that keeps the night on disk.

Layout of ``<state_dir>/nights/<device>/<stamp>/`` (``stamp``: this machine's UTC clock
when the recorder started, ``YYYYMMDDTHHMMSSZ``; the night's own date is in
``night.json``):

- ``raw_0000.edf``, ``raw_0001.edf``, ... the raw EEG exactly as received (source units
  and channel names), in rolling segments of ``segment_seconds`` (default 300 s). A
  segment is written in one go when it is full (or at a gap, a change of channels or
  rate, and at close), so a crash loses at most the open segment;
- ``stages.edf``: the stages as an annotation-only EDF+ file in Sleep-EDF style
  (``Sleep stage W/1/2/3/R``, unscored ``Sleep stage ?``, 30-s durations, onsets in
  seconds from the night start);
- ``hypnogram.csv`` (``epoch_index, epoch_start, onset_s, stage, confidence, reasons``)
  and ``hypnodensity.csv`` (``epoch_index, epoch_start, p_W .. p_REM``);
- ``night.json``: the manifest (device, profile, model, start and end, gaps, dropped
  samples, segments, storage errors).

The night starts at the first received sample (stream time ``t0``); segment and epoch
onsets are seconds from ``t0``, and dates come from the recording itself when the source
states its start (a replayed file), else from this machine's clock in UTC
(:mod:`sleepstream.record.clock`: EDF has no time zone, and the files say so).

Every file is replaced atomically (temporary file, fsync, rename), so each one is valid
at any moment; files are created ``0600`` and folders ``0700`` whatever the umask.

**Storage faults never stop live staging** (:mod:`sleepstream.record.storage`): once the
night directory exists, no method raises because of the disk. A raw segment that cannot
be written (disk full, read-only or vanished file system, an I/O error, a writer bug)
stays in memory (``pending_segments`` in the manifest) and is written, oldest first,
at the next attempt (a new segment, or every ``retry_s`` while epochs arrive); only
when more than ``max_backlog_bytes`` are held does the oldest go to
``lost_segments``. The stage files are rewritten whole from memory, so they heal at the
next write that works. Each failure is logged, counted in ``night.json`` and in
``sleepstream_storage_errors_total{device, kind}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

from sleepstream.errors import StorageError
from sleepstream.record import files
from sleepstream.record.backlog import Backlog
from sleepstream.record.clock import NightClock, iso
from sleepstream.record.manifest import find_gaps, new_manifest
from sleepstream.record.segments import OpenSegment, PendingSegment, Segmenter
from sleepstream.record.stages import StageRow, stage_row, write_stage_files
from sleepstream.record.storage import StorageFaults, fault_kind, free_bytes
from sleepstream.types import (
    EPOCH_SECONDS,
    UNSCORED,
    Chunk,
    Epoch,
    StagePrediction,
)

log = logging.getLogger(__name__)

#: File holding the space reserved for the stages (see ``reserve_bytes``).
RESERVE_FILE = ".reserve"
#: What ``start_datetime`` may be: a datetime, None (live), or a callable giving either.
StartDatetime = dt.datetime | None | Callable[[], dt.datetime | None]


def utc_stamp(t: dt.datetime) -> str:
    """Directory name of a night: ``YYYYMMDDTHHMMSSZ``."""
    return t.strftime("%Y%m%dT%H%M%SZ")


class Recorder:
    """Sink that records the raw EEG, the stages and a manifest for one night.

    Parameters
    ----------
    state_dir : path
        State directory; the night goes to ``<state_dir>/nights/<device>/<stamp>/``.
    device : str
        Device name (a directory level, so ``/`` is replaced).
    profile : str
        Profile name, kept in the manifest.
    model_id : str
        Id of the stager, kept in the manifest.
    card_sha256 : str
        SHA-256 of the model file as checked against its card.
    segment_seconds : float
        Length of one raw EDF segment in s (default 300).
    units : str, optional
        Physical unit of ``Chunk.samples`` as received (written as the EDF physical
        dimension; ``µV`` is written ``uV``). Default: from ``scale_to_uv`` (1 -> ``uV``,
        1e3 -> ``mV``, 1e6 -> ``V``), else ``""`` (source units; the manifest keeps
        ``scale_to_uv``).
    scale_to_uv : float
        Factor from ``units`` to µV (the report uses it for the spectrogram).
    staged_channel : str, optional
        The channel (or derivation) the stager sees; the report's spectrogram uses it
        when it is one of the recorded channels, else the first channel.
    source_offset_s : float, optional
        Seconds from the start of the source recording to the first sample (replays);
        the report uses it to align a reference hypnogram.
    start_datetime : datetime, None or callable, optional
        The source's ``start_datetime`` (wall-clock time of stream time 0; naive =
        the file's local time, zone unknown), or a zero-argument callable returning it,
        evaluated when the first sample arrives (a file source learns it when opened).
        ``None``: a live source, dated by this machine's clock in UTC.
    recording : path, optional
        The file a file source reads (kept in the manifest as ``recording``; the report
        checks it against the model's training recordings). None for live sources.
    metrics : sleepstream.metrics.Metrics, optional
        Gets ``storage_errors{device, kind}`` and ``recorder_backlog_bytes{device}``.
    max_backlog_bytes : int
        Raw data (bytes, float64) held in memory while the disk fails, before the oldest
        unwritten segment is given up (default 256 MiB, about 8 h of 8 channels at
        125 Hz).
    retry_s : float
        Shortest time (s, monotonic) between two retries of the unwritten segments when
        no new segment triggers one.
    min_rewrite_s : float
        Shortest time (s) between two rewrites of the stage files (they are rewritten
        whole, atomically); a crash loses at most this much of the stages.
    reserve_bytes : int
        Space (at most; and at most 1/8 of the free space) allocated at start-up to
        ``.reserve`` in the night folder and freed at close, so that the night's final
        stages and manifest are written even when raw data filled the disk.
    now : callable, optional
        Wall clock returning an aware UTC datetime (tests).
    """

    def __init__(
        self,
        state_dir: str | Path,
        *,
        device: str,
        profile: str = "",
        model_id: str = "",
        card_sha256: str = "",
        segment_seconds: float = 300.0,
        units: str | None = None,
        scale_to_uv: float = 1.0,
        staged_channel: str | None = None,
        source_offset_s: float | None = None,
        start_datetime: StartDatetime = None,
        recording: str | Path | None = None,
        metrics: Any = None,
        max_backlog_bytes: int = 256 << 20,
        retry_s: float = 10.0,
        min_rewrite_s: float = 1.0,
        reserve_bytes: int = 1 << 20,
        now: Callable[[], dt.datetime] | None = None,
    ) -> None:
        if not device:
            raise ValueError("device must not be empty")
        if not (segment_seconds >= EPOCH_SECONDS / 30 and math.isfinite(segment_seconds)):
            raise ValueError(f"segment_seconds must be >= 1 s, got {segment_seconds}")
        if not (scale_to_uv > 0 and math.isfinite(scale_to_uv)):
            raise ValueError(f"scale_to_uv must be a positive number, got {scale_to_uv}")
        if units is None:
            units = {1.0: "uV", 1e3: "mV", 1e6: "V"}.get(float(scale_to_uv), "")
        self.state_dir = Path(state_dir)
        self.device = device.replace("/", "_").replace("\\", "_")
        self._now = now or (lambda: dt.datetime.now(dt.UTC))
        self._segment_seconds = float(segment_seconds)
        self._source_start = start_datetime
        self._retry_s = float(retry_s)
        self.night_dir: Path | None = None
        self.manifest: dict[str, Any] = new_manifest(
            device=device,
            profile=profile,
            model_id=model_id,
            card_sha256=card_sha256,
            staged_channel=staged_channel,
            units=units,
            scale_to_uv=scale_to_uv,
            source_offset_s=source_offset_s,
            segment_seconds=self._segment_seconds,
        )
        if recording is not None:
            self.manifest["recording"] = {"path": str(recording), "name": Path(recording).name}
        self.faults = StorageFaults(self.manifest, device=device, metrics=metrics)
        self.clock: NightClock | None = None
        self._t0: float | None = None
        self._last_ts: float | None = None
        self._last_fs = 1.0
        self._segmenter = Segmenter(segment_seconds)
        self._n_segments = 0
        self._backlog = Backlog(self.manifest, max_backlog_bytes)
        self._last_retry = -math.inf
        self._rows: dict[int, StageRow] = {}
        self._segment_task: asyncio.Task[None] | None = None
        self._epoch_task: asyncio.Task[None] | None = None
        self._epochs_dirty = False
        self._closing = asyncio.Event()
        self._ended = False
        self._min_rewrite_s = float(min_rewrite_s)
        self._reserve_bytes = int(reserve_bytes)
        self._reserve: Path | None = None

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> Recorder:
        created = self._now().astimezone(dt.UTC)
        base = self.state_dir / "nights" / self.device
        stamp = utc_stamp(created)
        try:
            files.make_private_dirs(base, self.state_dir)
            night, k = base / stamp, 1
            while True:
                try:
                    night.mkdir(mode=0o700)
                    break
                except FileExistsError:
                    night, k = base / f"{stamp}-{k}", k + 1
            files.make_private(night)
            free = free_bytes(night) or 0
            if files.reserve_space(night / RESERVE_FILE, min(self._reserve_bytes, free // 8)):
                self._reserve = night / RESERVE_FILE
        except OSError as exc:
            if fault_kind(exc, base) != "disk_full":  # a set-up error: refuse at start-up
                raise StorageError(
                    f"cannot create the night directory under {base}: {exc}"
                ) from None
            night = base / stamp  # a full disk: stage anyway, create it when space returns
            self.faults.failed("the night directory", exc, base)
        self.night_dir = night
        self.manifest["created_utc"] = iso(created)
        self.manifest["status"] = "recording"
        await self._save_manifest()
        log.info("recording night to %s", night)
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Write everything still in memory; never raises because of the disk."""
        await self._close()

    async def end_of_stream(self) -> None:
        """The source ended and every verdict was handed over: close the night now.

        Writes the open segment, the unwritten ones it can, the stages and the manifest
        (``status: closed``), so the morning report can be made while the daemon stays up
        (``--stay``, or one bed of many). Idempotent; later calls of the recorder are errors.
        """
        await self._close()

    async def _close(self) -> None:
        if self._ended:
            return
        self._ended = True
        for seg in self._segmenter.close():
            await self._safely("raw data", self._queue(seg))
        await self._wait(self._segment_task)
        await self._safely("raw data", self._write_backlog(force=True))
        why = self.manifest["last_storage_error"] or "storage error"
        for p in self._backlog:
            self._backlog.lose(p, f"not written before the recorder closed ({why})")
        self.faults.backlog(0)
        self._release_reserve()
        self._closing.set()
        await self._wait(self._epoch_task)
        if self._epochs_dirty or self._rows:
            await self._guard("stages", self._write_epoch_files, self._snapshot())
        self.manifest["status"] = "closed"
        self.manifest["closed_utc"] = iso(self._now().astimezone(dt.UTC))
        self._set_end()
        await self._save_manifest()
        lost = self.manifest["lost_segments"]
        if lost:
            log.error(
                "recorder %s: %d raw segment(s) (%.0f s) could not be written to %s; "
                "the stages and the manifest hold what was written (last error: %s)",
                self.device, len(lost), sum(s["duration_s"] for s in lost), self.night_dir,
                self.manifest["last_storage_error"],
            )  # fmt: skip

    async def sync(self) -> None:
        """Wait until every segment and stage already handed over was attempted."""
        await self._wait(self._segment_task)
        await self._wait(self._epoch_task)

    # ------------------------------------------------------------------ raw data
    async def write_chunk(self, chunk: Chunk) -> None:
        """Append a chunk of raw samples (``(n_channels, n_samples)``, source units)."""
        self._check_open()
        await self._safely("raw data", self._write_chunk(chunk))

    async def _write_chunk(self, chunk: Chunk) -> None:
        if chunk.n_samples == 0:
            return
        samples = np.asarray(chunk.samples, dtype=np.float64)
        ts = np.asarray(chunk.timestamps, dtype=np.float64)
        fs, channels = float(chunk.fs), tuple(chunk.channels)
        if self._t0 is None:
            self._start_clock(float(ts[0]), float(ts[-1] - ts[0]))
            self.manifest["channels"], self.manifest["fs"] = list(channels), fs
        assert self._t0 is not None
        m = self.manifest
        m["samples_received"] += int(samples.shape[1])
        m["nonfinite_samples"] += int(np.count_nonzero(~np.isfinite(samples)))
        off_scale = (samples < files.EDF_PHYSICAL_MIN) | (samples > files.EDF_PHYSICAL_MAX)
        m["off_scale_samples"] += int(np.count_nonzero(off_scale & np.isfinite(samples)))
        gaps, cuts = find_gaps(self._last_ts, ts, fs, self._t0)
        m["gaps"].extend(gaps)
        m["dropped_samples"] += sum(g["missing_samples"] for g in gaps)
        self._last_ts, self._last_fs = float(ts[-1]), fs
        bounds = [0, *[c for c in cuts if c > 0], samples.shape[1]]
        for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
            cut = k > 0 or (0 in cuts)
            for seg in self._segmenter.append(samples[:, a:b], float(ts[a]), fs, channels, cut):
                await self._queue(seg)

    def record_dropped(self, n_samples: int) -> None:
        """Count samples a source dropped before they reached the recorder."""
        self.manifest["dropped_samples"] += int(n_samples)

    def _start_clock(self, t0: float, first_span_s: float) -> None:
        """Date the night from its first sample (stream time ``t0``)."""
        self._t0 = t0
        source = self._source_start() if callable(self._source_start) else self._source_start
        now = self._now()
        if source is None:  # live: the first sample arrived one chunk span ago
            now -= dt.timedelta(seconds=max(0.0, first_span_s))
        try:
            self.clock = NightClock.for_night(source, t0, now)
        except (OverflowError, ValueError, TypeError) as exc:
            log.warning("recorder %s: cannot date the night from %r (%s)", self.device, source, exc)
            self.clock = NightClock.for_night(None, t0, now)
        self.manifest.update(self.clock.manifest_fields())

    def _set_end(self) -> None:
        if self.clock is not None and self._t0 is not None and self._last_ts is not None:
            span = self._last_ts + 1.0 / self._last_fs - self._t0
            self.manifest["end"] = self.clock.iso(span)
            self.manifest["end_utc"] = self.manifest["end"] if self.clock.zone_known else None
            self.manifest["duration_s"] = round(span, 3)

    async def _queue(self, seg: OpenSegment) -> None:
        """Queue a closed segment and hand the backlog to a background writer."""
        assert self._t0 is not None
        pending = PendingSegment(
            self._n_segments, np.concatenate(seg.parts, axis=1), seg.fs, seg.channels,
            seg.start_ts - self._t0,
        )  # fmt: skip
        self._n_segments += 1
        await self._wait(self._segment_task)
        self._backlog.add(pending)
        try:
            files.record_duration(seg.fs)
        except ValueError as exc:  # a rate EDF cannot store: no retry can help
            self._backlog.lose(pending, str(exc))
            log.error("recorder %s: cannot write %s: %s", self.device, pending.file, exc)
            return
        self._segment_task = asyncio.create_task(self._write_backlog(force=True))

    async def _write_backlog(self, force: bool = False) -> None:
        """Write the unwritten segments, oldest first, until one fails; then bound memory."""
        if not self._backlog or not (force or time.monotonic() - self._last_retry >= self._retry_s):
            return
        self._last_retry = time.monotonic()
        assert self.clock is not None
        for p in self._backlog:
            ok, pad = await self._guard(p.file, self._write_segment, p)
            if not ok:
                break
            self._backlog.written(p, self.clock.iso(p.start_s), pad)
        self.faults.backlog(self._backlog.bound(f"{self.manifest['last_storage_error']}"))
        self._set_end()
        await self._save_manifest()

    def _write_segment(self, p: PendingSegment) -> int:
        """Write one segment (blocking); return its padding samples."""
        assert self.clock is not None and self.night_dir is not None
        files.make_private_dirs(self.night_dir, self.state_dir)
        start = self.clock.edf_start(p.start_s)
        units = self.manifest["units"]
        return files.write_raw_segment(
            self.night_dir / p.file, p.data, p.fs, p.channels, units, start
        )

    # ------------------------------------------------------------------ stages
    async def publish(self, epoch: Epoch, prediction: StagePrediction) -> None:
        """Record one epoch's verdict (a second call for the same index is a revision)."""
        self._check_open()
        await self._safely("stages", self._publish(epoch, prediction))

    async def _publish(self, epoch: Epoch, prediction: StagePrediction) -> None:
        m = self.manifest
        if self._t0 is None:  # stages without raw data: the grid starts the night
            self._start_clock(float(epoch.start_time - epoch.index * EPOCH_SECONDS), 0.0)
        assert self._t0 is not None and self.clock is not None
        if m["epoch_grid_offset_s"] is None:
            offset = round(epoch.start_time - epoch.index * EPOCH_SECONDS - self._t0, 3)
            if not (-EPOCH_SECONDS < offset < EPOCH_SECONDS):
                log.warning("epoch clock differs from chunk clock by %.1f s; using 0", offset)
                offset = 0.0
            m["epoch_grid_offset_s"] = offset
        onset = round(m["epoch_grid_offset_s"] + epoch.index * EPOCH_SECONDS, 3)
        if epoch.index in self._rows:
            m["n_revised"] += 1
        self._rows[epoch.index] = stage_row(epoch, prediction, onset, self.clock.iso(onset))
        m["n_epochs"] = len(self._rows)
        m["n_unscored"] = sum(1 for r in self._rows.values() if r.stage == UNSCORED)
        self._epochs_dirty = True
        if self._epoch_task is None or self._epoch_task.done():
            await self._wait(self._epoch_task)
            self._epoch_task = asyncio.create_task(self._epoch_writer())
        if self._backlog and (self._segment_task is None or self._segment_task.done()):
            self._segment_task = asyncio.create_task(self._write_backlog())

    async def _epoch_writer(self) -> None:
        """Rewrite the stage files while there is news, at most once per ``min_rewrite_s``
        (a replay at full speed publishes hundreds of epochs a second)."""
        while self._epochs_dirty:
            self._epochs_dirty = False
            await self._guard("stages", self._write_epoch_files, self._snapshot())
            if self._closing.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self._min_rewrite_s)

    async def publish_revised(
        self, epoch: Epoch, prediction: StagePrediction, lookahead: int
    ) -> None:
        """Replace an epoch's stage by its revision once epoch ``t + lookahead`` arrived.

        The recorded hypnogram then holds the final (revised) stage of each epoch;
        ``night.json`` counts the revisions (``n_revised``) and keeps ``lookahead``.
        """
        self.manifest["lookahead"] = int(lookahead)
        await self.publish(epoch, prediction)

    def _snapshot(self) -> list[StageRow]:
        return [self._rows[k] for k in sorted(self._rows)]

    def _write_epoch_files(self, rows: list[StageRow]) -> None:
        """Rewrite stages.edf, hypnogram.csv and hypnodensity.csv (blocking, atomic)."""
        assert self.night_dir is not None and self.clock is not None
        files.make_private_dirs(self.night_dir, self.state_dir)
        offset = self.manifest["epoch_grid_offset_s"] or 0.0
        write_stage_files(self.night_dir, rows, offset, self.clock.edf_start())

    # ------------------------------------------------------------------ storage
    async def _save_manifest(self) -> None:
        """Serialise the manifest on the loop (it changes meanwhile), write it in a thread."""
        assert self.night_dir is not None
        data = (json.dumps(self.manifest, indent=2) + "\n").encode()
        await self._guard("night.json", self._write_manifest, data)

    def _write_manifest(self, data: bytes) -> None:
        assert self.night_dir is not None
        files.make_private_dirs(self.night_dir, self.state_dir)
        files.write_bytes_atomic(self.night_dir / "night.json", data)

    async def _guard(self, what: str, fn: Callable[..., Any], *args: Any) -> tuple[bool, Any]:
        """Run blocking ``fn`` in a thread; any failure is a counted storage fault."""
        assert self.night_dir is not None
        try:
            result = await asyncio.to_thread(fn, *args)
        except Exception as exc:  # noqa: BLE001 - no storage fault may stop live staging
            self.faults.failed(what, exc, self.night_dir)
            return False, None
        self.faults.succeeded(what)
        return True, result

    def _release_reserve(self) -> None:
        """Free the space reserved at start-up, for the last stages and manifest."""
        if self._reserve is not None:
            with contextlib.suppress(OSError):
                self._reserve.unlink()
            self._reserve = None

    async def _safely(self, what: str, work: Awaitable[None]) -> None:
        """Await the recorder's own work; a failure in it is a fault, never the caller's."""
        try:
            await work
        except Exception as exc:  # noqa: BLE001
            self.faults.failed(what, exc, self.night_dir or self.state_dir)

    def _check_open(self) -> None:
        if self.night_dir is None or self._closing.is_set():
            raise RuntimeError("Recorder used outside its 'async with' block")

    @staticmethod
    async def _wait(task: Awaitable[Any] | None) -> None:
        if task is not None:
            await task
