"""Closed raw segments that wait in memory until the disk takes them (the manifest's
``pending_segments``), and their bookkeeping in ``segments`` / ``lost_segments``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sleepstream.record.segments import PendingSegment


class Backlog:
    """Unwritten segments, oldest first, bounded in bytes.

    Parameters
    ----------
    manifest : dict
        The night's manifest: ``pending_segments``, ``segments`` and ``lost_segments``
        follow every change.
    max_bytes : int
        Memory bound (bytes of float64 samples); :meth:`bound` gives up the oldest beyond it.
    """

    def __init__(self, manifest: dict[str, Any], max_bytes: int) -> None:
        self.manifest = manifest
        self.max_bytes = int(max_bytes)
        self._items: list[PendingSegment] = []

    def __bool__(self) -> bool:
        return bool(self._items)

    def __iter__(self) -> Iterator[PendingSegment]:
        return iter(list(self._items))

    @property
    def nbytes(self) -> int:
        """Bytes held in memory."""
        return sum(p.data.nbytes for p in self._items)

    def add(self, p: PendingSegment) -> None:
        self._items.append(p)
        self.manifest["pending_segments"].append(p.info())

    def written(self, p: PendingSegment, start: str, padding: int) -> None:
        """``p`` is on disk (``start``: its ISO date; ``padding``: samples added)."""
        self._drop(p)
        segments = self.manifest["segments"]
        segments.append({**p.info(), "start": start, "padding_samples": int(padding)})
        segments.sort(key=lambda s: s["file"])

    def lose(self, p: PendingSegment, reason: str) -> None:
        """``p`` will never be written: list it in ``lost_segments`` with ``reason``."""
        self._drop(p)
        self.manifest["lost_segments"].append({**p.info(), "reason": reason})

    def bound(self, why: str) -> int:
        """Give up the oldest segments beyond :attr:`max_bytes`; return the bytes held."""
        while self._items and self.nbytes > self.max_bytes:
            self.lose(self._items[0], f"memory bound of {self.max_bytes} bytes reached ({why})")
        return self.nbytes

    def _drop(self, p: PendingSegment) -> None:
        self._items = [q for q in self._items if q is not p]
        pend = self.manifest["pending_segments"]
        pend[:] = [s for s in pend if s["file"] != p.file]
