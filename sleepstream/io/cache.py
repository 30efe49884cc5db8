"""An on-disk cache of decoded nights, keyed by the content hash of the source files.

Entries are ``.npz`` files (no pickle) under the cache folder: ``$SLEEPSTREAM_CACHE_DIR``,
else ``$XDG_CACHE_HOME/sleepstream``, else ``~/.cache/sleepstream``. Set
``SLEEPSTREAM_NO_CACHE=1`` (or pass ``cache=False``) to turn it off. The key covers the
reader, the SHA-256 of every source file and the reader's parameters, so an edited file or
another channel or rate is a different entry. Writes are atomic (temporary file, then
rename), so concurrent readers never see half an entry; an unreadable entry is rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sleepstream.io.night import Hypnogram, Night

_FORMAT = 1
_digests: dict[tuple[str, int, int], str] = {}


def default_cache_dir() -> Path:
    """The cache folder (see the module docstring)."""
    env = os.environ.get("SLEEPSTREAM_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "sleepstream"


def file_digest(path: Path | str) -> str:
    """SHA-256 of a file's content (memoised per path, size and mtime)."""
    p = Path(path)
    st = p.stat()
    memo = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if memo not in _digests:
        h = hashlib.sha256()
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        _digests[memo] = h.hexdigest()
    return _digests[memo]


@dataclass(frozen=True)
class CacheSpec:
    """What a cached night is derived from: reader name, source files, parameters."""

    reader: str
    files: Sequence[Path | str]
    params: Mapping[str, Any] = field(default_factory=dict)

    def key(self) -> str:
        doc = {
            "format": _FORMAT,
            "reader": self.reader,
            "files": [file_digest(f) for f in self.files],
            "params": {k: self.params[k] for k in sorted(self.params)},
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def resolve_cache_dir(cache: bool | Path | str | None, default: bool = True) -> Path | None:
    """``None`` -> the default policy; ``False`` -> off; ``True`` -> default folder;
    a path -> that folder. ``SLEEPSTREAM_NO_CACHE=1`` turns off the default policy."""
    if cache is None:
        if not default or os.environ.get("SLEEPSTREAM_NO_CACHE", "") not in ("", "0"):
            return None
        return default_cache_dir()
    if cache is False:
        return None
    if cache is True:
        return default_cache_dir()
    return Path(cache).expanduser()


def save_night(path: Path, night: Night) -> None:
    """Write ``night`` to ``path`` (.npz, atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(
                f,
                signal=np.asarray(night.signal, dtype=np.float32),
                fs=np.float64(night.fs),
                channel=np.str_(night.channel),
                stages=np.asarray(night.hypnogram.stages, dtype=np.int8),
                onsets=np.asarray(night.hypnogram.onsets, dtype=np.float64),
                source=np.str_(night.hypnogram.source),
                meta=np.str_(json.dumps(night.meta, default=str)),
            )
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a cache is as readable as its sources
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def load_night(path: Path) -> Night:
    """Read a night written by :func:`save_night` (``allow_pickle=False``)."""
    with np.load(path, allow_pickle=False) as z:
        hyp = Hypnogram(stages=z["stages"], onsets=z["onsets"], source=str(z["source"]))
        return Night(
            signal=z["signal"],
            fs=float(z["fs"]),
            channel=str(z["channel"]),
            hypnogram=hyp,
            meta=json.loads(str(z["meta"])),
        )


def cached_night(
    spec: CacheSpec,
    build: Callable[[], Night],
    cache: bool | Path | str | None = None,
    *,
    default: bool = True,
) -> Night:
    """Return the cached night for ``spec`` or build it (and store it when caching is on)."""
    folder = resolve_cache_dir(cache, default)
    if folder is None:
        return build()
    try:
        entry = folder / f"{spec.reader}-{spec.key()}.npz"
    except OSError:  # a missing source file: let the reader raise its own clear error
        return build()
    if entry.is_file():
        try:
            night = load_night(entry)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass  # corrupt or old entry: rebuild below
        else:
            return night
    night = build()
    with contextlib.suppress(OSError):  # a read-only cache folder must not break reading
        save_night(entry, night)
    return night
