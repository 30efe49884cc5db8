"""The daemon's state directory: created private, one exclusive lock per device.

It holds raw EEG and hypnograms (``nights/``), the MQTT outbox, the devices' locks and
the normalisers' saved state, so it is created 0700, its own sub-folders are kept 0700,
and while the daemon runs every file it creates is private (umask 077).
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

from sleepstream.errors import AlreadyRunningError, StorageError

log = logging.getLogger(__name__)


def session_id() -> str:
    """A short random id distinguishing this start of the daemon (8 hex digits)."""
    return uuid.uuid4().hex[:8]


#: Sub-folders of the state dir the daemon owns (tightened to 0700 at start).
STATE_SUBDIRS = ("outbox", "nights", "locks", "state")


def prepare_state_dir(path: Path) -> Path:
    """Create the state directory (mode 0700) or raise :class:`StorageError`.

    An existing directory is kept as it is, with a warning when its group or others
    may enter or read it (it holds raw EEG and hypnograms); the daemon's own
    sub-folders are set to 0700.
    """
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
        mode = stat.S_IMODE(path.stat().st_mode)
        for sub in STATE_SUBDIRS:
            if (path / sub).is_dir():
                os.chmod(path / sub, 0o700)
    except OSError as exc:
        raise StorageError(f"state directory {path}: not writable ({exc.strerror})") from None
    if mode & 0o077:
        log.warning(
            "state directory %s is accessible to its group or others (mode %04o): it holds "
            "raw EEG and hypnograms; run `chmod 700 %s`",
            path, mode, path,
        )  # fmt: skip
    return path


@contextlib.contextmanager
def private_files() -> Iterator[None]:
    """Umask 077 while the daemon runs: every file 0600, every folder 0700."""
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


class DeviceLock:
    """An exclusive ``flock`` on ``<state_dir>/locks/<device>.lock``, held for the run."""

    def __init__(self, state_dir: Path, device: str) -> None:
        self.path = state_dir / "locks" / f"{device}.lock"
        self.device = device
        self._fd: int | None = None

    def __enter__(self) -> DeviceLock:
        import fcntl

        try:
            self.path.parent.mkdir(mode=0o700, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StorageError(f"lock file {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise AlreadyRunningError(
                f"device {self.device!r} is already run by another sleepstream (pid {holder}) "
                f"on state dir {self.path.parents[1]}; stop it, or give another --state-dir "
                "or --device"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None
