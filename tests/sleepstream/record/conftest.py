"""Fixtures for the storage tests: real small file systems, and a night's worth of chunks.

``small_fs(size)`` mounts a real tmpfs of ``size`` (e.g. ``"1m"``) under ``tmp_path``;
it needs root (CAP_SYS_ADMIN) and skips, saying so, where it cannot mount. ``fill(dir)``
then takes every free byte, so the next write meets a really full disk.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from sleepstream.types import UNSCORED, Chunk, Epoch, StagePrediction

FS = 100.0
CHANNELS = ("EEG Fpz-Cz", "EEG Pz-Oz")


def _mount_tmpfs(path: Path, size: str) -> str | None:
    """Mount a tmpfs at ``path``; None on success, else why not."""
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    return None if proc.returncode == 0 else f"mount failed: {proc.stderr.strip()}"


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """``small_fs("1m") -> Path``: a freshly mounted tmpfs of that size (unmounted after)."""
    mounted: list[Path] = []

    def make(size: str) -> Path:
        path = tmp_path / f"fs{len(mounted)}"
        path.mkdir()
        why = _mount_tmpfs(path, size)
        if why:
            pytest.skip(f"no small tmpfs here ({why}); the full-disk tests need one")
        mounted.append(path)
        return path

    yield make
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path, name: str = "ballast") -> Path:
    """Take every free byte of ``directory``'s file system; return the ballast file."""
    path = directory / name
    block = b"\0" * 65536
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (65536, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, block[:size])
            except OSError:
                pass
    finally:
        os.close(fd)
    return path


def remount(path: Path, mode: str) -> None:
    """``mount -o remount,<mode>`` (``ro`` / ``rw``) of a tmpfs from :func:`small_fs`."""
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True)


def noise(n_samples: int, seed: int = 0) -> np.ndarray:
    """Two channels of EEG-like noise in µV, shape (2, n_samples)."""
    return np.random.default_rng(seed).normal(0.0, 30.0, (2, n_samples))


def chunks(x: np.ndarray, size: int = 500, t0: float = 0.0) -> Iterator[Chunk]:
    """Chunks of ``x`` (100 Hz) with sample-index timestamps from ``t0`` s."""
    for a in range(0, x.shape[1], size):
        b = min(a + size, x.shape[1])
        yield Chunk(x[:, a:b], t0 + np.arange(a, b) / FS, FS, CHANNELS, time.perf_counter())


def epoch(k: int, t0: float = 0.0) -> Epoch:
    return Epoch(k, t0 + 30.0 * k, "", np.zeros(3000, np.float32))


def prediction(k: int, stage: int) -> StagePrediction:
    if stage == UNSCORED:
        return StagePrediction(k, UNSCORED, np.zeros(5), 0.0, "m", reasons=("gap",))
    p = np.full(5, 0.025)
    p[stage] = 0.9
    return StagePrediction(k, stage, p, 0.9, "m")


def read_segments(night: Path, manifest: dict) -> np.ndarray:
    """The written raw segments of a night, concatenated in time, in file units."""
    import edfio

    parts = []
    for seg in sorted(manifest["segments"], key=lambda s: s["start_s"]):
        edf = edfio.read_edf(night / seg["file"])
        parts.append(np.stack([s.data[: seg["n_samples"]] for s in edf.signals]))
    return np.concatenate(parts, axis=1)


@pytest.fixture
def kit():
    """The helpers above as attributes (test modules cannot import a conftest)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        fill=fill, remount=remount, noise=noise, chunks=chunks, epoch=epoch,
        prediction=prediction, read_segments=read_segments, FS=FS, CHANNELS=CHANNELS,
    )  # fmt: skip
