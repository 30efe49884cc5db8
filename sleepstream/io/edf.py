"""EDF/EDF+/BDF reading through :mod:`edfio` (imported lazily), with checks that turn bad
files into one-line :class:`~sleepstream.errors.DataFileError` messages.

Any file extension is accepted (ISRUC's ``.rec`` files are EDF).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sleepstream.errors import (
    ChannelNotFoundError,
    DataFileError,
    EmptyFileError,
    HypnogramError,
    NotEdfError,
    TruncatedFileError,
)
from sleepstream.io import stages as st
from sleepstream.io.night import Hypnogram
from sleepstream.io.processing import make_hypnogram
from sleepstream.types import EPOCH_SECONDS, UNSCORED

#: Physical dimension (lower case) -> factor to µV. Unknown or empty units are taken as µV.
_TO_UV = {"uv": 1.0, "µv": 1.0, "μv": 1.0, "mv": 1e3, "v": 1e6, "nv": 1e-3}
_ANNOTATION_LABELS = ("EDF Annotations", "BDF Annotations")
#: 10-20 EEG sites in order of preference (AASM: central first), to pick a default
#: channel in files without "EEG" in the labels.
_EEG_SITES = ("c3", "c4", "cz", "fpz", "f3", "f4", "fz", "fp1", "fp2", "pz", "o1", "o2", "oz")


@dataclass(frozen=True)
class EdfHeader:
    """What the fixed header of an EDF/BDF file declares."""

    path: Path
    kind: str  # "EDF" or "BDF"
    reserved: str  # "EDF+C", "EDF+D", "BDF+C" or blank
    n_signals: int
    n_records: int
    record_s: float
    labels: tuple[str, ...]
    samples_per_record: tuple[int, ...]
    header_bytes: int
    file_bytes: int


def check_file(path: Path | str) -> Path:
    """Raise :class:`DataFileError` if ``path`` is missing, a folder or empty."""
    p = Path(path)
    if not p.exists():
        raise DataFileError(f"{p}: file not found")
    if not p.is_file():
        raise DataFileError(f"{p}: not a regular file")
    if p.stat().st_size == 0:
        raise EmptyFileError(f"{p}: empty file")
    return p


def read_header(path: Path | str) -> EdfHeader:
    """Parse and check the fixed EDF/BDF header without reading any samples.

    Raises
    ------
    DataFileError
        Missing, empty, not EDF/BDF, or truncated (fewer bytes than the header declares).
    """
    p = check_file(path)
    size = p.stat().st_size
    with p.open("rb") as f:
        head = f.read(256)
        if len(head) < 256 or head[:8] not in (b"0       ", b"\xffBIOSEMI"):
            raise NotEdfError(f"{p}: not an EDF/BDF file (no EDF header)")
        kind = "BDF" if head[:1] == b"\xff" else "EDF"
        try:
            header_bytes = int(head[184:192].decode("ascii").strip())
            n_records = int(head[236:244].decode("ascii").strip())
            record_s = float(head[244:252].decode("ascii").strip())
            ns = int(head[252:256].decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            raise NotEdfError(f"{p}: not an EDF/BDF file (unreadable header fields)") from None
        if ns <= 0 or header_bytes != 256 * (ns + 1):
            raise NotEdfError(
                f"{p}: not an EDF/BDF file (header declares {ns} signals and {header_bytes} "
                "header bytes)"
            )
        rest = f.read(256 * ns)
    if len(rest) < 256 * ns:
        raise TruncatedFileError(
            f"{p}: truncated EDF: the file ends inside its header ({size} of {header_bytes} bytes)"
        )
    try:
        labels = tuple(rest[i * 16 : (i + 1) * 16].decode("latin-1").strip() for i in range(ns))
        base = ns * 216
        spr = tuple(int(rest[base + i * 8 : base + (i + 1) * 8].decode("ascii")) for i in range(ns))
    except (UnicodeDecodeError, ValueError):
        raise NotEdfError(f"{p}: not an EDF/BDF file (unreadable signal header)") from None
    sample_bytes = 3 if kind == "BDF" else 2
    record_bytes = sum(spr) * sample_bytes
    if n_records >= 0:
        expected = header_bytes + n_records * record_bytes
        if size < expected:
            whole = (size - header_bytes) // record_bytes if record_bytes else 0
            raise TruncatedFileError(
                f"{p}: truncated EDF: header declares {n_records} data records but the file "
                f"holds {whole} ({size} of {expected} bytes)"
            )
    return EdfHeader(
        path=p,
        kind=kind,
        reserved=head[192:236].decode("latin-1").strip(),
        n_signals=ns,
        n_records=n_records,
        record_s=record_s,
        labels=labels,
        samples_per_record=spr,
        header_bytes=header_bytes,
        file_bytes=size,
    )


def open_edf(path: Path | str) -> Any:
    """Check the header, then open the file lazily with :mod:`edfio` (EDF or BDF)."""
    header = read_header(path)
    import edfio

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Incomplete data record", category=UserWarning)
        try:
            if header.kind == "BDF":
                return edfio.read_bdf(header.path)
            return edfio.read_edf(header.path, lazy_load_data=True)
        except Exception as exc:  # edfio raises ValueError/IndexError/... on odd headers
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataFileError(f"{header.path}: cannot read {header.kind}: {msg}") from None


def _norm(label: str) -> str:
    s = label.strip().lower()
    s = re.sub(r"^(eeg|eog|emg)\s+", "", s)
    s = re.sub(r"[\s_:]+", "", s)
    return re.sub(r"\bm([12])\b", r"a\1", s)


def signal_labels(edf: Any) -> list[str]:
    """Labels of the data signals (annotation signals excluded)."""
    return [s.label for s in edf.signals]


def pick_channel(edf: Any, channel: str | None, path: Path | str) -> int:
    """Index of ``channel`` among the data signals.

    Matching is exact first, then ignoring case, spaces, an ``EEG``/``EOG``/``EMG`` prefix
    and the M1/A1, M2/A2 spelling. ``None`` picks the first signal whose label contains
    ``EEG``, else the first signal.

    Raises
    ------
    ChannelNotFoundError
        With the available channels in the message.
    """
    labels = signal_labels(edf)
    if not labels:
        raise ChannelNotFoundError(f"{path}: the file holds no signals (annotations only)")
    if channel is None:
        for i, label in enumerate(labels):
            if "eeg" in label.lower():
                return i
        for site in _EEG_SITES:
            for i, label in enumerate(labels):
                if re.match(rf"{site}(\b|-|$)", _norm(label)):
                    return i
        return 0
    if channel in labels:
        return labels.index(channel)
    hits = [i for i, label in enumerate(labels) if _norm(label) == _norm(channel)]
    if len(hits) == 1:
        return hits[0]
    raise ChannelNotFoundError(
        f"{path}: channel {channel!r} not found; available channels: {', '.join(labels)}"
    )


def unit_factor(physical_dimension: str) -> float:
    """Factor that converts a signal's physical unit to µV (``UV``, ``mV``, ``V``...)."""
    return _TO_UV.get(physical_dimension.strip().lower(), 1.0)


def read_signal(edf: Any, index: int, path: Path | str) -> tuple[np.ndarray, float, str]:
    """One signal in µV as float32, with its rate (Hz) and original unit."""
    sig = edf.signals[index]
    try:
        data = sig.data
    except Exception as exc:
        raise DataFileError(f"{path}: cannot read signal {sig.label!r}: {exc}") from None
    factor = unit_factor(sig.physical_dimension)
    out = np.asarray(data, dtype=np.float64) * factor
    return out.astype(np.float32), float(sig.sampling_frequency), sig.physical_dimension


def recording_meta(edf: Any, path: Path | str) -> dict[str, Any]:
    """Start time (ISO-8601), duration (s) and channel list of an open file."""
    try:
        start = edf.startdatetime.isoformat()
    except Exception:  # anonymised or malformed start date
        start = ""
    return {
        "path": str(path),
        "start": start,
        "duration_s": float(edf.duration),
        "channels": signal_labels(edf),
    }


def annotations_hypnogram(annotations: Any, source: str) -> Hypnogram | None:
    """Contiguous 30-s stages from EDF+ annotations, or ``None`` if none is a stage.

    Stage annotations (``Sleep stage W/1/2/3/4/R/?``, ``Sleep stage N1..``,
    ``Movement time``) must start and last a multiple of 30 s from the recording start
    (a zero duration means one epoch). Epochs that no annotation covers are unscored;
    other annotations (lights, arousals...) are ignored.
    """
    items = [a for a in annotations if st.is_stage_annotation(a.text)]
    if not items:
        return None
    spans = []
    for a in items:
        code = st.edf_annotation_stage(a.text, source)
        dur = float(a.duration) if a.duration else EPOCH_SECONDS
        first, n = float(a.onset) / EPOCH_SECONDS, dur / EPOCH_SECONDS
        if abs(first - round(first)) > 1e-3 or abs(n - round(n)) > 1e-3 or first < 0:
            raise HypnogramError(
                f"{source}: stage annotation {a.text.strip()!r} at {a.onset} s lasting "
                f"{dur} s is not on the 30-s epoch grid"
            )
        spans.append((int(round(first)), int(round(n)), code))
    n_epochs = max(first + n for first, n, _ in spans)
    stages = np.full(n_epochs, UNSCORED, dtype=np.int8)
    for first, n, code in spans:
        stages[first : first + n] = code
    return make_hypnogram(stages, source)


def read_edf_hypnogram(path: Path | str) -> Hypnogram:
    """An EDF+ hypnogram (e.g. Sleep-EDF ``*-Hypnogram.edf``) as 30-s AASM stages from
    the recording start.

    Raises
    ------
    DataFileError
        Unreadable file; :class:`HypnogramError` if it holds no stage annotations or an
        unknown stage label.
    """
    edf = open_edf(path)
    try:
        annotations = edf.annotations
    except Exception as exc:
        raise DataFileError(f"{path}: cannot read EDF+ annotations: {exc}") from None
    hyp = annotations_hypnogram(annotations, str(path))
    if hyp is None:
        raise HypnogramError(f"{path}: no sleep stage annotations in this EDF+ file")
    return hyp
