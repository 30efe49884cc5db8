"""Nights prepared once into memory-mapped arrays, for datasets that do not fit in RAM.

``distill prepare DATA --dataset sleep-edf-20|sleep-edf-78|isruc|bids|pairs --out PREP``
reads every night of a dataset (:mod:`distill.datasets`: the public downloads, a BIDS
tree, or a lab's own list of recordings and hypnograms in any format) through
:mod:`sleepstream.io` (the daemon's readers: trimmed, 100 Hz) and writes, per night,
under ``PREP/nights/``:

- ``<key>.npy``: float32 ``(n_channels, n_epochs * 3000)`` µV, read back with
  ``numpy.load(mmap_mode="r")`` (no pickle, ``allow_pickle=False``);
- ``<key>.labels.npy``: int8 ``(n_epochs,)`` stages, ``-1`` unscored;
- ``<key>.json``: the index (channels, epochs, stage counts, source files and their
  SHA-256), written last and atomically: its presence means the night is complete.

``key`` is the SHA-256 of the source files' contents and the reading parameters (as the
npz cache of :mod:`sleepstream.io.cache`), so an edited file is prepared again and an
identical one is not. ``PREP/manifest.json`` lists the nights (name, subject, night
number, key) and the files that failed. Preparing is resumable (finished keys are
skipped) and a corrupt or missing file gives one line naming it while the others go on.

:func:`load_prepared` returns :class:`~distill.data.Recording` objects whose signals are
memory-mapped views: a training window reads only its own epochs.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from distill.data import Recording
from distill.datasets import (
    DEFAULT_CHANNELS,
    NightSource,
    find_sources,
    read_night,
    source_files,
)
from sleepstream.errors import DataFileError, SleepstreamError, UsageError
from sleepstream.types import EPOCH_SAMPLES

FORMAT = "sleepstream-distill-prepared/1"


@dataclass(frozen=True)
class NightEntry:
    """One night of a prepared dataset (a row of ``manifest.json``)."""

    name: str
    subject: str
    night: int
    key: str
    n_epochs: int
    psg: str
    hypnogram: str  # "" = the recording's own stage annotations


def night_key(src: NightSource, channels: Sequence[str], fs: float = 100.0) -> str:
    """Content key of a prepared night (source bytes + reading parameters)."""
    from sleepstream.io.cache import CacheSpec

    params: dict[str, Any] = {"format": FORMAT, "channels": list(channels), "fs": fs,
                              "trim": True, "dataset": src.dataset}  # fmt: skip
    if src.legacy:  # Sleep-EDF, ISRUC: the keys of the first release
        return CacheSpec("distill.prepared", [src.psg, cast(Path, src.hypnogram)], params).key()
    for f in source_files(src):
        if not f.is_file():
            raise DataFileError(f"{f}: no such file")
    params.update(file_channels=list(src.channels or channels), board=src.board,
                  own_annotations=src.hypnogram is None)  # fmt: skip
    return CacheSpec("distill.prepared", source_files(src), params).key()


def prepare(
    data_dir: Path | str,
    dataset: str,
    out: Path | str,
    channels: Sequence[str] | None = None,
    *,
    progress: bool = True,
    limit: int | None = None,
    board: str | None = None,
) -> dict[str, Any]:
    """Prepare every night of ``dataset`` (see the module docstring); returns the manifest.

    ``data_dir`` is the dataset's folder (``pairs``: the pairs file, or a folder holding
    ``pairs.tsv``); ``board`` the BrainFlow layout of BrainFlow files whose row names
    none. Failures are listed in the manifest's ``failed`` (and printed, one line each);
    the caller decides the exit status.
    """
    from tqdm import tqdm  # type: ignore[import-untyped]

    out = Path(out)
    sources = find_sources(Path(data_dir), dataset, board)[:limit]
    if not sources:
        raise DataFileError(f"{data_dir}: no {dataset} recordings with hypnograms found")
    chans = tuple(channels) if channels else DEFAULT_CHANNELS.get(dataset, ())
    if not chans:
        raise UsageError(f"--dataset {dataset}: name the derivation(s) with --channels "
                         f"(e.g. --channels C3-M2); {first_channels(sources[0])}")  # fmt: skip
    (out / "nights").mkdir(parents=True, exist_ok=True)
    entries: list[NightEntry] = []
    failed: list[dict[str, str]] = []
    bar = tqdm(sources, desc=f"prepare {dataset}", unit="night", disable=not progress,
               dynamic_ncols=True)  # fmt: skip
    for src in bar:
        bar.set_postfix_str(src.psg.name)
        try:
            entries.append(_prepare_one(src, chans, out / "nights"))
        except (SleepstreamError, OSError, ValueError) as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            hyp = str(src.hypnogram or "")
            failed.append({"psg": str(src.psg), "hypnogram": hyp, "error": msg})
            where = "" if str(src.psg) in msg or (hyp and hyp in msg) else f"{src.psg}: "
            tqdm.write(f"distill prepare: {where}{msg}", file=sys.stderr)
    return write_manifest(out, dataset, str(Path(data_dir).resolve()), chans, entries, failed)


def first_channels(src: NightSource) -> str:
    """``"<file> has: <labels>"`` of a recording (for a message), or why it cannot say."""
    from sleepstream.io import open_recording

    try:
        rec = open_recording(src.psg, board=src.board)
        labels = [c.name for c in rec.channels]
        rec.close()
    except (SleepstreamError, OSError, ValueError) as exc:
        return f"{src.psg}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    return f"{src.psg.name} has: {', '.join(labels)}"


def _prepare_one(src: NightSource, chans: Sequence[str], folder: Path) -> NightEntry:
    key = night_key(src, chans)
    index = folder / f"{key}.json"
    if index.is_file():  # done before (resume) or an identical file under another name
        meta = json.loads(index.read_text())
    else:
        nights = read_night(src, chans)
        labels = np.asarray(nights[0].stages, np.int8)
        for ch, n in zip(chans[1:], nights[1:], strict=True):
            if not np.array_equal(np.asarray(n.stages, np.int8), labels):
                raise DataFileError(f"{src.psg} {ch}: hypnogram grid differs from {chans[0]}")
        x = np.stack([np.asarray(n.epochs(), np.float32).reshape(-1) for n in nights])
        from sleepstream.io.cache import file_digest

        files = [src.psg] if src.legacy else source_files(src)
        if src.legacy:
            files.append(cast(Path, src.hypnogram))
        sources = {str(p): file_digest(p) for p in files}
        meta = write_night(folder, key, x, labels, chans, sources, file_digest(src.psg))
    return NightEntry(src.name, src.subject, src.night, key, int(meta["n_epochs"]),
                      str(src.psg), str(src.hypnogram or ""))  # fmt: skip


def write_night(
    folder: Path,
    key: str,
    x: np.ndarray,
    labels: np.ndarray,
    channels: Sequence[str],
    sources: dict[str, str],
    psg_sha256: str,
) -> dict[str, Any]:
    """Write one prepared night (``x (n_channels, n_epochs * 3000)`` float32 µV, ``labels
    (n_epochs,)``) under ``folder``; the index JSON last, atomically. Returns the index."""
    labels = np.asarray(labels, np.int8)
    x = np.asarray(x, np.float32)
    if x.shape != (len(channels), labels.shape[0] * EPOCH_SAMPLES):
        raise ValueError(f"night {key}: x shape {x.shape} does not fit {len(channels)} "
                         f"channels x {labels.shape[0]} epochs")  # fmt: skip
    tmp = folder / f"{key}.npy.tmp"
    with open(tmp, "wb") as f:
        np.save(f, x, allow_pickle=False)
    tmp.replace(folder / f"{key}.npy")
    np.save(folder / f"{key}.labels.npy", labels, allow_pickle=False)
    meta = {
        "format": FORMAT,
        "key": key,
        "channels": list(channels),
        "n_epochs": int(labels.shape[0]),
        "stage_counts": np.bincount(labels[labels >= 0], minlength=5).tolist(),
        "sources": dict(sources),
        "psg_sha256": psg_sha256,
    }
    _write_json(folder / f"{key}.json", meta)
    return meta


def write_manifest(
    out: Path,
    dataset: str,
    source: str,
    channels: Sequence[str],
    entries: Sequence[NightEntry],
    failed: Sequence[dict[str, str]] = (),
) -> dict[str, Any]:
    """Write ``out/manifest.json`` for ``entries`` (:class:`NightEntry`); returns it."""
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "dataset": dataset,
        "source": source,
        "channels": list(channels),
        "fs": 100.0,
        "nights": [e.__dict__ for e in entries],
        "failed": list(failed),
    }
    _write_json(Path(out) / "manifest.json", manifest)
    return manifest


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(path)


def read_manifest(prep: Path | str) -> dict[str, Any]:
    """``PREP/manifest.json``; :class:`DataFileError` naming the file if absent or foreign."""
    path = Path(prep) / "manifest.json"
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataFileError(f"{path}: not found (run `distill prepare` first)") from None
    except json.JSONDecodeError as exc:
        raise DataFileError(f"{path}: invalid JSON ({exc.msg})") from None
    if doc.get("format") != FORMAT:
        raise DataFileError(f"{path}: format {doc.get('format')!r}, expected {FORMAT!r}")
    return doc


def load_prepared(prep: Path | str) -> list[Recording]:
    """Every prepared night as a :class:`Recording` with memory-mapped signals.

    Each recording's ``dataset`` is the manifest's dataset and its name the night's name;
    :func:`subjects` gives the subject of each.
    """
    doc = read_manifest(prep)
    folder = Path(prep) / "nights"
    out = []
    for e in doc["nights"]:
        x = np.load(folder / f"{e['key']}.npy", mmap_mode="r", allow_pickle=False)
        labels = np.load(folder / f"{e['key']}.labels.npy", allow_pickle=False).astype(np.int64)
        if x.shape[1] != labels.shape[0] * EPOCH_SAMPLES:
            raise DataFileError(f"{folder / e['key']}.npy: {x.shape} does not match its labels")
        signals = {ch: x[i] for i, ch in enumerate(doc["channels"])}
        index = json.loads((folder / f"{e['key']}.json").read_text())
        sources = ((Path(e["psg"]).name, index["psg_sha256"]),)
        out.append(Recording(e["name"], signals, labels, doc["dataset"], sources, e["subject"]))
    return out


def subjects(prep: Path | str) -> dict[str, str]:
    """Night name -> subject of a prepared dataset."""
    return {e["name"]: e["subject"] for e in read_manifest(prep)["nights"]}
