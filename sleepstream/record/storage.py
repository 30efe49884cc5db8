"""What the recorder does when the disk fails it: classify, log, count — never stop staging.

Any failure to write a night file (disk full, a read-only or vanished file system, lost
permissions, an I/O error, or a bug in a writer) is a *storage fault*. The recorder
turns each into one :class:`StorageFaults.failed` call, which

- classifies it (:func:`fault_kind`): numpy's ``tofile`` reports a full disk as
  ``OSError`` with ``errno=None``, so the errno alone cannot be trusted and the free
  space of the file system is checked too;
- logs it: per kind of file (raw segments, stages, manifest), the first failure of a
  run, then at most one line a minute, and one line when writing that file works again;
- counts it in the manifest (``storage_errors``, ``storage_errors_by_kind``,
  ``last_storage_error``) and in the daemon's metrics
  (``sleepstream_storage_errors_total{device, kind}``).

It never raises: live staging goes on whatever happens to the recorder's disk.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("sleepstream.sinks.recorder")

#: Kinds of storage fault, the ``kind`` label of ``sleepstream_storage_errors_total``.
FAULT_KINDS = ("disk_full", "read_only", "permission", "missing", "io_error", "internal")

#: errno values that mean "the disk (or the quota, or the file-size limit) is full".
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
#: Free bytes below which an errno-less write failure is taken for a full disk.
LOW_SPACE_BYTES = 1 << 20
#: Seconds between two log lines while failures go on.
LOG_EVERY_S = 60.0


def free_bytes(path: Path) -> int | None:
    """Bytes available to this user on the file system of ``path`` (or its nearest
    existing parent); ``None`` when it cannot be asked."""
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        st = os.statvfs(p)
    except OSError:
        return None
    return int(st.f_bavail * st.f_frsize)


def fault_kind(exc: BaseException, directory: Path) -> str:
    """The :data:`FAULT_KINDS` entry of a write failure in ``directory``."""
    if not isinstance(exc, OSError):
        return "internal"
    code = exc.errno
    if code in DISK_FULL:
        return "disk_full"
    if code == errno.EROFS:
        return "read_only"
    if code in (errno.EACCES, errno.EPERM):
        return "permission"
    if code in (errno.ENOENT, errno.ENOTDIR, errno.ESTALE):
        return "missing"
    if code is None:  # numpy's tofile: "N requested and M written"
        free = free_bytes(directory)
        if free is not None and free < LOW_SPACE_BYTES:
            return "disk_full"
    return "io_error"


def file_group(what: str) -> str:
    """The file kind a failure belongs to: ``raw`` (segments), else ``what`` itself."""
    return "raw" if what.startswith("raw") else what


class StorageFaults:
    """Bookkeeping of one night's storage faults (see the module docstring).

    Parameters
    ----------
    manifest : dict
        The night's manifest; its ``storage_errors``, ``storage_errors_by_kind`` and
        ``last_storage_error`` keys are kept up to date.
    device : str
        The ``device`` label of the metrics.
    metrics : sleepstream.metrics.Metrics, optional
        The daemon's metrics (``storage_errors`` counter, ``recorder_backlog_bytes``
        gauge); ``None`` outside a daemon.
    clock : callable
        Monotonic seconds (tests).
    """

    def __init__(
        self,
        manifest: dict[str, Any],
        *,
        device: str,
        metrics: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.manifest = manifest
        self.device = device
        self.metrics = metrics
        self._clock = clock
        #: consecutive failures per file group (``raw``, ``stages``, ``night.json``...)
        self.in_a_row: dict[str, int] = {}
        self._last_log: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}
        manifest.setdefault("storage_errors", 0)
        manifest.setdefault("last_storage_error", None)
        manifest.setdefault("storage_errors_by_kind", {})

    def failed(self, what: str, exc: BaseException, directory: Path) -> str:
        """Count, log and classify one failed write of ``what``; return its kind."""
        kind = fault_kind(exc, directory)
        m = self.manifest
        m["storage_errors"] += 1
        by_kind = m["storage_errors_by_kind"]
        by_kind[kind] = by_kind.get(kind, 0) + 1
        detail = f"{type(exc).__name__}: {exc}" if kind == "internal" else str(exc)
        m["last_storage_error"] = f"{what}: {kind}: {detail}"
        group = file_group(what)
        n = self.in_a_row[group] = self.in_a_row.get(group, 0) + 1
        if self.metrics is not None:
            self.metrics.storage_errors.labels(device=self.device, kind=kind).inc()
        now = self._clock()
        if n == 1 or now - self._last_log.get(group, -float("inf")) >= LOG_EVERY_S:
            unlogged = self._unlogged.pop(group, 0)
            more = f" ({unlogged} more since the last line)" if unlogged else ""
            free = free_bytes(directory)
            space = f"; {free / 1e6:.1f} MB free" if free is not None else ""
            log.error(
                "recorder %s: cannot write %s in %s (%s, %d in a row%s%s): %s; "
                "staging continues, the data stays in memory until it can be written",
                self.device, what, directory, kind, n, more, space, detail,
            )  # fmt: skip
            self._last_log[group] = now
        else:
            self._unlogged[group] = self._unlogged.get(group, 0) + 1
        return kind

    def succeeded(self, what: str) -> None:
        """A write of ``what`` worked: end its group's run of failures (logged once)."""
        group = file_group(what)
        n = self.in_a_row.pop(group, 0)
        self._unlogged.pop(group, None)
        if n:
            log.warning(
                "recorder %s: writing %s works again after %d failed writes", self.device, what, n
            )

    def backlog(self, n_bytes: int) -> None:
        """Report the raw data held in memory (bytes) to the metrics."""
        if self.metrics is not None:
            self.metrics.recorder_backlog_bytes.labels(device=self.device).set(n_bytes)
