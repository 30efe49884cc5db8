"""The night recorder: a raw-data sink that keeps the night on disk.

Layout of ``<state_dir>/nights/<device>/<UTC start stamp>/``:

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
  samples, segments).

Every file is replaced atomically (temporary file, fsync, rename), so each one is
valid at any moment. The night starts at the first received sample (stream time
``t0``); segment and epoch onsets are seconds from ``t0``.

A full disk (``ENOSPC``/``EDQUOT``) is logged and counted; the recorder keeps going
(raw data of a segment that could not be written is lost and listed in the manifest;
stages stay in memory and are written at the next attempt). After
``max_storage_errors`` consecutive failures, or on any other ``OSError`` (permissions,
read-only file system), the next call raises :class:`~sleepstream.errors.StorageError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import errno
import json
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from sleepstream.errors import StorageError
from sleepstream.record import files
from sleepstream.record.manifest import find_gaps, new_manifest
from sleepstream.types import (
    EPOCH_SECONDS,
    UNSCORED,
    Chunk,
    Epoch,
    StagePrediction,
    stage_name,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

#: errno values that mean "the disk is full" (recoverable once space is freed).
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def utc_stamp(t: dt.datetime) -> str:
    """Directory name of a night: ``YYYYMMDDTHHMMSSZ``."""
    return t.strftime("%Y%m%dT%H%M%SZ")


def _iso(t: dt.datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class _Open:
    """The open (not yet written) segment."""

    fs: float
    channels: tuple[str, ...]
    start_ts: float  # stream time of its first sample, s
    parts: list[np.ndarray] = field(default_factory=list)
    n: int = 0


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
    max_storage_errors : int
        Consecutive disk-full failures tolerated before :class:`StorageError`.
    min_rewrite_s : float
        Shortest time (s) between two rewrites of the stage files (they are rewritten
        whole, atomically); a crash loses at most this much of the stages.
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
        max_storage_errors: int = 5,
        min_rewrite_s: float = 1.0,
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
        self._max_errors = int(max_storage_errors)
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
        self._start: dt.datetime | None = None
        self._t0: float | None = None
        self._last_ts: float | None = None
        self._open: _Open | None = None
        self._n_segments = 0
        self._rows: dict[int, tuple[Any, ...]] = {}
        self._segment_task: asyncio.Task[None] | None = None
        self._epoch_task: asyncio.Task[None] | None = None
        self._epochs_dirty = False
        self._closing = asyncio.Event()
        self._min_rewrite_s = float(min_rewrite_s)
        self._consecutive_errors = 0
        self._fatal: StorageError | None = None

    @classmethod
    def for_device(
        cls,
        state_dir: str | Path,
        device: str,
        profile: Any,
        stager: Any,
        **kw: Any,
    ) -> Recorder:
        """A recorder configured from a device's profile and the loaded stager.

        Parameters
        ----------
        profile : sleepstream.profiles.Profile
            Gives ``name``, ``channel`` (staged channel) and ``scale_to_uv``.
        stager : sleepstream.inference.Stager
            Gives ``model_id`` and ``card.sha256``.
        **kw
            Other constructor arguments (``segment_seconds``, ``source_offset_s``...).
        """
        card = getattr(stager, "card", None)
        return cls(
            state_dir,
            device=device,
            profile=getattr(profile, "name", str(profile)),
            model_id=getattr(stager, "model_id", ""),
            card_sha256=getattr(card, "sha256", "") or "",
            scale_to_uv=float(getattr(profile, "scale_to_uv", 1.0)),
            staged_channel=getattr(profile, "channel", None),
            **kw,
        )

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> Recorder:
        self._start = self._now().astimezone(dt.UTC)
        base = self.state_dir / "nights" / self.device
        stamp = utc_stamp(self._start)
        try:
            base.mkdir(parents=True, exist_ok=True)
            night, k = base / stamp, 1
            while True:
                try:
                    night.mkdir()
                    break
                except FileExistsError:
                    night, k = base / f"{stamp}-{k}", k + 1
        except OSError as exc:
            raise StorageError(f"cannot create the night directory under {base}: {exc}") from None
        self.night_dir = night
        self.manifest["start_utc"] = _iso(self._start)
        self.manifest["status"] = "recording"
        await self._save_manifest()
        self._raise_if_fatal()
        log.info("recording night to %s", night)
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self._open is not None and self._open.n:
                await self._start_segment_flush(self._open)
            self._open = None
            await self._wait(self._segment_task)
            self._closing.set()
            await self._wait(self._epoch_task)
            if self._epochs_dirty or self._rows:
                await self._guard("stages", self._write_epoch_files, self._snapshot())
            self.manifest["status"] = "closed"
            self.manifest["end_utc"] = _iso(self._now().astimezone(dt.UTC))
            await self._save_manifest()
        finally:
            self._raise_if_fatal()

    async def sync(self) -> None:
        """Wait until every segment and stage already handed over is written."""
        await self._wait(self._segment_task)
        await self._wait(self._epoch_task)
        self._raise_if_fatal()

    # ------------------------------------------------------------------ raw data
    async def write_chunk(self, chunk: Chunk) -> None:
        """Append a chunk of raw samples (``(n_channels, n_samples)``, source units)."""
        self._check_open()
        if chunk.n_samples == 0:
            return
        samples = np.asarray(chunk.samples, dtype=np.float64)
        ts = np.asarray(chunk.timestamps, dtype=np.float64)
        fs, channels = float(chunk.fs), tuple(chunk.channels)
        if self._t0 is None:
            self._t0 = float(ts[0])
            self.manifest["channels"], self.manifest["fs"] = list(channels), fs
        m = self.manifest
        m["samples_received"] += int(samples.shape[1])
        bad = int(np.count_nonzero(~np.isfinite(samples)))
        m["nonfinite_samples"] += bad
        gaps, cuts = find_gaps(self._last_ts, ts, fs, self._t0)
        m["gaps"].extend(gaps)
        m["dropped_samples"] += sum(g["missing_samples"] for g in gaps)
        self._last_ts = float(ts[-1])
        bounds = [0, *[c for c in cuts if c > 0], samples.shape[1]]
        for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
            roll = k > 0 or (0 in cuts)
            await self._append(samples[:, a:b], float(ts[a]), fs, channels, roll)

    def record_dropped(self, n_samples: int) -> None:
        """Count samples a source dropped before they reached the recorder."""
        self.manifest["dropped_samples"] += int(n_samples)

    async def _append(
        self, x: np.ndarray, start_ts: float, fs: float, channels: tuple[str, ...], roll: bool
    ) -> None:
        seg = self._open
        if seg is not None and (roll or seg.fs != fs or seg.channels != channels):
            await self._start_segment_flush(seg)
            seg = None
        if seg is None:
            seg = self._open = _Open(fs=fs, channels=channels, start_ts=start_ts)
        per_segment = max(1, int(round(self._segment_seconds * fs)))
        while x.shape[1]:
            take = min(per_segment - seg.n, x.shape[1])
            seg.parts.append(x[:, :take].copy())
            seg.n += take
            x, start_ts = x[:, take:], start_ts + take / fs
            if seg.n >= per_segment:
                await self._start_segment_flush(seg)
                seg = self._open = _Open(fs=fs, channels=channels, start_ts=start_ts)
        self._open = seg

    async def _start_segment_flush(self, seg: _Open) -> None:
        """Hand a full segment to a background writer (at most one in flight)."""
        self._open = None
        await self._wait(self._segment_task)
        self._raise_if_fatal()
        index = self._n_segments
        self._n_segments += 1
        self._segment_task = asyncio.create_task(self._flush_segment(index, seg))

    async def _flush_segment(self, index: int, seg: _Open) -> None:
        assert self._start is not None and self._t0 is not None and self.night_dir is not None
        data = np.concatenate(seg.parts, axis=1)
        start_s = seg.start_ts - self._t0
        start = self._start + dt.timedelta(seconds=start_s)
        name = f"raw_{index:04d}.edf"
        info = {
            "file": name,
            "start_s": round(start_s, 6),
            "start_utc": _iso(start),
            "n_samples": int(data.shape[1]),
            "duration_s": round(data.shape[1] / seg.fs, 6),
            "fs": seg.fs,
            "channels": list(seg.channels),
        }
        reason = ""
        try:
            pad = await self._guard(
                name,
                files.write_raw_segment,
                self.night_dir / name,
                data,
                seg.fs,
                seg.channels,
                self.manifest["units"],
                start,
            )
        except ValueError as exc:  # a sampling rate EDF cannot store
            log.error("cannot write %s: %s", name, exc)
            pad, reason = None, str(exc)
        if pad is None:  # disk full (or fatal): this segment's samples are lost
            reason = reason or self.manifest["last_storage_error"] or "storage error"
            self.manifest["lost_segments"].append({**info, "reason": reason})
        else:
            info["padding_samples"] = int(pad)
            self.manifest["segments"].append(info)
        await self._save_manifest()

    # ------------------------------------------------------------------ stages
    async def publish(self, epoch: Epoch, prediction: StagePrediction) -> None:
        """Record one epoch's verdict (a second call for the same index is a revision)."""
        self._check_open()
        m = self.manifest
        if m["epoch_grid_offset_s"] is None:
            offset = 0.0
            if self._t0 is not None:
                offset = round(epoch.start_time - epoch.index * EPOCH_SECONDS - self._t0, 3)
                if not (-EPOCH_SECONDS < offset < EPOCH_SECONDS):
                    log.warning("epoch clock differs from chunk clock by %.1f s; using 0", offset)
                    offset = 0.0
            m["epoch_grid_offset_s"] = offset
        onset = round(m["epoch_grid_offset_s"] + epoch.index * EPOCH_SECONDS, 3)
        stage = int(prediction.stage)
        probs = np.zeros(5) if stage == UNSCORED else np.asarray(prediction.probabilities, float)
        reasons = ";".join(prediction.reasons or epoch.unscored_reasons)
        if epoch.index in self._rows:
            m["n_revised"] += 1
        self._rows[epoch.index] = (
            epoch.index,
            epoch.start_utc,
            onset,
            stage,
            0.0 if stage == UNSCORED else float(prediction.confidence),
            reasons,
            tuple(float(p) for p in probs),
        )
        m["n_epochs"] = len(self._rows)
        m["n_unscored"] = sum(1 for r in self._rows.values() if r[3] == UNSCORED)
        self._epochs_dirty = True
        if self._epoch_task is None or self._epoch_task.done():
            await self._wait(self._epoch_task)
            self._epoch_task = asyncio.create_task(self._epoch_writer())

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

    def _snapshot(self) -> list[tuple[Any, ...]]:
        return [self._rows[k] for k in sorted(self._rows)]

    def _write_epoch_files(self, rows: list[tuple[Any, ...]]) -> None:
        """Rewrite stages.edf, hypnogram.csv and hypnodensity.csv (blocking, atomic)."""
        assert self.night_dir is not None and self._start is not None
        files.write_csv_atomic(
            self.night_dir / "hypnogram.csv",
            files.HYPNOGRAM_COLUMNS,
            [(i, utc, f"{t:.3f}", _name(s), f"{c:.4f}", why) for i, utc, t, s, c, why, _ in rows],
        )
        files.write_csv_atomic(
            self.night_dir / "hypnodensity.csv",
            files.HYPNODENSITY_COLUMNS,
            [(i, utc, *(f"{p:.5f}" for p in ps)) for i, utc, _t, _s, _c, _w, ps in rows],
        )
        # the EDF+ hypnogram is continuous: epochs never published are "Sleep stage ?"
        by_index = {r[0]: r for r in rows}
        offset = self.manifest["epoch_grid_offset_s"] or 0.0
        indices = range(rows[0][0], rows[-1][0] + 1) if rows else range(0)
        onsets = [offset + k * EPOCH_SECONDS for k in indices]
        stages = [by_index[k][3] if k in by_index else UNSCORED for k in indices]
        files.write_stages_edf(self.night_dir / "stages.edf", onsets, stages, self._start)

    # ------------------------------------------------------------------ storage
    async def _save_manifest(self) -> None:
        """Serialise the manifest on the loop (it changes meanwhile), write it in a thread."""
        assert self.night_dir is not None
        data = (json.dumps(self.manifest, indent=2) + "\n").encode()
        await self._guard(
            "night.json", files.write_bytes_atomic, self.night_dir / "night.json", data
        )

    async def _guard(self, what: str, fn: Callable[..., T], *args: Any) -> T | None:
        """Run blocking ``fn`` in a thread; count disk-full errors, keep fatal ones."""
        try:
            result = await asyncio.to_thread(fn, *args)
        except OSError as exc:
            self.manifest["storage_errors"] += 1
            self.manifest["last_storage_error"] = f"{what}: {exc}"
            if exc.errno in DISK_FULL:
                self._consecutive_errors += 1
                log.error(
                    "disk full while writing %s in %s (%d in a row): %s",
                    what,
                    self.night_dir,
                    self._consecutive_errors,
                    exc,
                )
                if self._consecutive_errors >= self._max_errors:
                    self._fatal = StorageError(
                        f"{self.night_dir}: disk full, {self._consecutive_errors} writes failed "
                        f"in a row (last: {what}); recording stopped"
                    )
            else:
                log.error("cannot write %s in %s: %s", what, self.night_dir, exc)
                self._fatal = StorageError(f"{self.night_dir}: cannot write {what}: {exc}")
            return None
        self._consecutive_errors = 0
        return result

    def _check_open(self) -> None:
        if self.night_dir is None or self._closing.is_set():
            raise RuntimeError("Recorder used outside its 'async with' block")
        self._raise_if_fatal()

    def _raise_if_fatal(self) -> None:
        if self._fatal is not None:
            raise self._fatal

    @staticmethod
    async def _wait(task: Awaitable[Any] | None) -> None:
        if task is not None:
            await task


def _name(stage: int) -> str:
    return stage_name(stage)
