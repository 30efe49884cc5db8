"""Nights prepared once into memory-mapped arrays, for datasets that do not fit in RAM.

``distill prepare DATA_DIR --dataset sleep-edf-20|sleep-edf-78|isruc --out PREP`` reads
every recording of a local download through :mod:`sleepstream.io` (the daemon's readers:
trimmed, 100 Hz) and writes, per night, under ``PREP/nights/``:

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
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from distill.data import Recording
from sleepstream.errors import DataFileError, SleepstreamError, UsageError
from sleepstream.types import EPOCH_SAMPLES

FORMAT = "sleepstream-distill-prepared/1"
DATASETS = ("sleep-edf-20", "sleep-edf-78", "isruc")
#: Default derivations per dataset.
DEFAULT_CHANNELS = {
    "sleep-edf-20": ("EEG Fpz-Cz",),
    "sleep-edf-78": ("EEG Fpz-Cz",),
    "isruc": ("C3-A2",),
}


@dataclass(frozen=True)
class NightEntry:
    """One night of a prepared dataset (a row of ``manifest.json``)."""

    name: str
    subject: str
    night: int
    key: str
    n_epochs: int
    psg: str
    hypnogram: str


def find_pairs(data_dir: Path, dataset: str) -> list:
    """The recording/hypnogram pairs of ``dataset`` under ``data_dir``.

    ``sleep-edf-20``: Sleep Cassette subjects 0-19 (39 nights); ``sleep-edf-78``: every
    Sleep Cassette night (153); ``isruc``: every ISRUC ``N.rec`` with ``N_1.txt``.
    """
    from sleepstream.io import find_isruc_pairs, find_sleep_edf_pairs

    if dataset not in DATASETS:
        raise UsageError(f"--dataset {dataset!r}: valid: {', '.join(DATASETS)}")
    if not Path(data_dir).is_dir():
        raise DataFileError(f"{data_dir}: no such folder")
    if dataset == "isruc":
        return find_isruc_pairs(data_dir)
    pairs = [p for p in find_sleep_edf_pairs(data_dir) if p.psg.name.startswith("SC")]
    if dataset == "sleep-edf-20":
        pairs = [p for p in pairs if int(p.psg.name[3:5]) < 20]
    return pairs


def subject_of(pair) -> tuple[str, int]:
    """``(subject, night)``: Sleep-EDF ``SC4ssN`` -> ``("SC4ss", N)``; ISRUC -> (folder, 1)."""
    name = Path(pair.psg).name
    m = re.match(r"(S[CT]\d\d\d)(\d)", name)
    if m:
        return m.group(1), int(m.group(2))
    return str(pair.subject), 1


def night_key(pair, channels: Sequence[str], fs: float = 100.0) -> str:
    """Content key of a prepared night (source bytes + reading parameters)."""
    from sleepstream.io.cache import CacheSpec

    params = {"format": FORMAT, "channels": list(channels), "fs": fs, "trim": True,
              "dataset": pair.dataset}  # fmt: skip
    return CacheSpec("distill.prepared", [pair.psg, pair.hypnogram], params).key()


def prepare(
    data_dir: Path | str,
    dataset: str,
    out: Path | str,
    channels: Sequence[str] | None = None,
    *,
    progress: bool = True,
    limit: int | None = None,
) -> dict[str, Any]:
    """Prepare every night of ``dataset`` (see the module docstring); returns the manifest.

    Failures are listed in the manifest's ``failed`` (and printed, one line each); the
    caller decides the exit status.
    """
    from tqdm import tqdm

    out = Path(out)
    (out / "nights").mkdir(parents=True, exist_ok=True)
    chans = tuple(channels or DEFAULT_CHANNELS[dataset])
    pairs = find_pairs(Path(data_dir), dataset)[:limit]
    if not pairs:
        raise DataFileError(f"{data_dir}: no {dataset} recordings with hypnograms found")
    entries: list[NightEntry] = []
    failed: list[dict[str, str]] = []
    bar = tqdm(pairs, desc=f"prepare {dataset}", unit="night", disable=not progress,
               dynamic_ncols=True)  # fmt: skip
    for pair in bar:
        bar.set_postfix_str(Path(pair.psg).name)
        try:
            entries.append(_prepare_one(pair, chans, out / "nights"))
        except (SleepstreamError, OSError, ValueError) as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            failed.append({"psg": str(pair.psg), "hypnogram": str(pair.hypnogram), "error": msg})
            where = "" if str(pair.psg) in msg or str(pair.hypnogram) in msg else f"{pair.psg}: "
            tqdm.write(f"distill prepare: {where}{msg}", file=sys.stderr)
    return write_manifest(out, dataset, str(Path(data_dir).resolve()), chans, entries, failed)


def _prepare_one(pair, chans: Sequence[str], folder: Path) -> NightEntry:
    from sleepstream.io import iter_nights

    key = night_key(pair, chans)
    subject, night = subject_of(pair)
    index = folder / f"{key}.json"
    if index.is_file():  # done before (resume) or an identical file under another name
        meta = json.loads(index.read_text())
    else:
        nights = [next(iter_nights([pair], ch, fs=100.0, trim=True, cache=False)) for ch in chans]
        labels = np.asarray(nights[0].stages, np.int8)
        for ch, n in zip(chans[1:], nights[1:], strict=True):
            if not np.array_equal(np.asarray(n.stages, np.int8), labels):
                raise DataFileError(f"{pair.psg} {ch}: hypnogram grid differs from {chans[0]}")
        x = np.stack([np.asarray(n.epochs(), np.float32).reshape(-1) for n in nights])
        from sleepstream.io.cache import file_digest

        sources = {str(p): file_digest(p) for p in (pair.psg, pair.hypnogram)}
        meta = write_night(folder, key, x, labels, chans, sources, file_digest(pair.psg))
    return NightEntry(_night_name(pair), subject, night, key, int(meta["n_epochs"]),
                      str(pair.psg), str(pair.hypnogram))  # fmt: skip


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


def _night_name(pair) -> str:
    name = Path(pair.psg).name
    return name[:6] if re.match(r"S[CT]\d{4}", name) else f"{pair.dataset}-{pair.subject}"


def write_manifest(out: Path, dataset: str, source: str, channels, entries, failed=()) -> dict:
    """Write ``out/manifest.json`` for ``entries`` (:class:`NightEntry`); returns it."""
    manifest = {
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


def _write_json(path: Path, doc: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(path)


def read_manifest(prep: Path | str) -> dict[str, Any]:
    """``PREP/manifest.json``; :class:`DataFileError` naming the file if absent or foreign."""
    path = Path(prep) / "manifest.json"
    try:
        doc = json.loads(path.read_text())
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
