"""EDF, EDF+ (continuous and discontinuous) and BDF(+), read lazily record by record.

The fixed header is parsed and checked here (one-line :class:`DataFileError` messages for
missing, empty, non-EDF, cut or inconsistent files). Samples are read with plain file
reads of the requested data records only, so a 24-hour file is never held in memory and
never mapped. Physical values are converted from the signal's physical dimension to µV
(``UV``, written by some recorders, is µV too).

EDF+D: every data record carries its own onset in its first time-stamped annotation list
(TAL). :meth:`EdfRecording.blocks` gives each sample the time of its record's onset plus
its position, so a pause in the recording is a jump in the timestamps. EDF+C and plain
EDF records are contiguous by definition (onset ``k x record duration``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sleepstream.errors import DataFileError, HypnogramError, NotEdfError, TruncatedFileError
from sleepstream.io.annotations import parse_tals, stage_hypnogram
from sleepstream.io.night import Hypnogram
from sleepstream.io.recording import (
    EDF_MAGIC,
    Annotation,
    Block,
    ChannelInfo,
    check_file,
    os_errors,
    unit_factor,
)

__all__ = [
    "EdfHeader",
    "EdfRecording",
    "check_file",
    "read_edf_hypnogram",
    "read_header",
]

_ANNOTATION_LABELS = ("EDF Annotations", "BDF Annotations")
#: Records read per file access when scanning annotations.
_SCAN_RECORDS = 512


@dataclass(frozen=True)
class EdfHeader:
    """What the fixed header of an EDF/BDF file declares (one entry per signal)."""

    path: Path
    kind: str  # "EDF" or "BDF"
    reserved: str  # "EDF+C", "EDF+D", "BDF+C", "24BIT" or blank
    n_signals: int
    n_records: int
    record_s: float
    labels: tuple[str, ...]
    samples_per_record: tuple[int, ...]
    header_bytes: int
    file_bytes: int
    start: str = ""  # "dd.mm.yy hh.mm.ss" as written
    recording_id: str = ""
    units: tuple[str, ...] = ()
    physical_min: tuple[float, ...] = ()
    physical_max: tuple[float, ...] = ()
    digital_min: tuple[int, ...] = ()
    digital_max: tuple[int, ...] = ()

    @property
    def sample_bytes(self) -> int:
        return 3 if self.kind == "BDF" else 2

    @property
    def record_bytes(self) -> int:
        return sum(self.samples_per_record) * self.sample_bytes

    @property
    def is_plus(self) -> bool:
        return self.reserved.startswith(("EDF+", "BDF+"))

    @property
    def discontinuous(self) -> bool:
        return self.reserved.startswith(("EDF+D", "BDF+D"))

    def is_annotation(self, i: int) -> bool:
        return self.is_plus and self.labels[i] in _ANNOTATION_LABELS


def _fields(rest: bytes, ns: int, offset: int, width: int) -> list[str]:
    base = offset * ns
    return [
        rest[base + i * width : base + (i + 1) * width].decode("latin-1").strip() for i in range(ns)
    ]


def read_header(path: Path | str) -> EdfHeader:
    """Parse and check the fixed EDF/BDF header without reading any samples.

    Raises
    ------
    DataFileError
        Missing, empty, not EDF/BDF, or truncated (fewer bytes than the header declares).
    """
    p = check_file(path)
    with os_errors(p):
        size = p.stat().st_size
        head, rest = _read_head(p)
    return _parse_header(p, size, head, rest)


def _read_head(p: Path) -> tuple[bytes, bytes]:
    """The fixed header and the signal headers (as many bytes as the file has)."""
    with p.open("rb") as f:
        head = f.read(256)
        ns = 0
        if len(head) >= 256 and head[:8] in EDF_MAGIC:
            try:
                ns = max(0, int(head[252:256].decode("ascii").strip()))
            except (UnicodeDecodeError, ValueError):
                ns = 0
        return head, f.read(256 * min(ns, 100_000))


def _parse_header(p: Path, size: int, head: bytes, rest: bytes) -> EdfHeader:
    """Check and parse the header bytes read by :func:`_read_head`."""
    if len(head) < 256 or head[:8] not in EDF_MAGIC:
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
    if len(rest) < 256 * ns:
        raise TruncatedFileError(
            f"{p}: truncated EDF: the file ends inside its header ({size} of {header_bytes} bytes)"
        )
    try:
        labels = tuple(_fields(rest, ns, 0, 16))
        units = tuple(_fields(rest, ns, 96, 8))
        pmin = tuple(float(v) for v in _fields(rest, ns, 104, 8))
        pmax = tuple(float(v) for v in _fields(rest, ns, 112, 8))
        dmin = tuple(int(float(v)) for v in _fields(rest, ns, 120, 8))
        dmax = tuple(int(float(v)) for v in _fields(rest, ns, 128, 8))
        spr = tuple(int(v) for v in _fields(rest, ns, 216, 8))
    except (ValueError, OverflowError):  # "inf" reads as a float but is no integer
        raise NotEdfError(f"{p}: not an EDF/BDF file (unreadable signal header)") from None
    bad = next((i for i in range(ns) if not np.isfinite(pmin[i]) or not np.isfinite(pmax[i])), None)
    if bad is not None:
        raise NotEdfError(
            f"{p}: not an EDF/BDF file (signal {labels[bad]!r} has physical range "
            f"{pmin[bad]}..{pmax[bad]})"
        )
    if any(n < 0 for n in spr) or not np.isfinite(record_s) or record_s < 0:
        raise NotEdfError(f"{p}: not an EDF/BDF file (negative record size or duration)")
    header = EdfHeader(
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
        start=head[168:184].decode("latin-1"),
        recording_id=head[88:168].decode("latin-1").strip(),
        units=units,
        physical_min=pmin,
        physical_max=pmax,
        digital_min=dmin,
        digital_max=dmax,
    )
    record_bytes = header.record_bytes
    if n_records >= 0:
        expected = header_bytes + n_records * record_bytes
        if size < expected:
            whole = (size - header_bytes) // record_bytes if record_bytes else 0
            raise TruncatedFileError(
                f"{p}: truncated EDF: header declares {n_records} data records but the file "
                f"holds {whole} ({size} of {expected} bytes)"
            )
    elif record_bytes:  # -1: still being recorded; count the whole records there are
        header = _replace_records(header, (size - header_bytes) // record_bytes)
    return header


def _replace_records(h: EdfHeader, n: int) -> EdfHeader:
    from dataclasses import replace

    return replace(h, n_records=int(n))


def start_datetime(header: EdfHeader) -> dt.datetime | None:
    """The header's start date and time (naive: EDF states no time zone), or None.

    Two-digit years follow the EDF rule (85-99 -> 19xx, else 20xx); an EDF+
    ``Startdate dd-MMM-yyyy`` in the recording field gives the four-digit year.
    """
    try:
        d, t = header.start[:8], header.start[8:16]
        day, month, yy = (int(v) for v in d.split("."))
        hh, mm, ss = (int(v) for v in t.split("."))
        year = 1900 + yy if yy >= 85 else 2000 + yy
        m = re.match(r"Startdate \d{2}-[A-Z]{3}-(\d{4})", header.recording_id)
        if m and int(m.group(1)) % 100 == yy:
            year = int(m.group(1))
        return dt.datetime(year, month, day, hh, mm, ss)
    except ValueError:
        return None


class EdfRecording:
    """An EDF/EDF+/BDF file opened for chunked reading (:class:`~.recording.Recording`)."""

    def __init__(self, path: Path | str) -> None:
        self.header = h = read_header(path)
        self.path = h.path
        self.format = h.kind.lower()
        self._data = [i for i in range(h.n_signals) if not h.is_annotation(i)]
        self._ann = [i for i in range(h.n_signals) if h.is_annotation(i)]
        for i in self._data:
            if h.digital_max[i] <= h.digital_min[i]:
                raise DataFileError(
                    f"{self.path}: signal {h.labels[i]!r} has digital maximum "
                    f"{h.digital_max[i]} <= minimum {h.digital_min[i]}"
                )
        rate = (
            (lambda i: h.samples_per_record[i] / h.record_s) if h.record_s > 0 else (lambda i: 0.0)
        )
        self.channels = tuple(ChannelInfo(h.labels[i], rate(i), h.units[i]) for i in self._data)
        offsets = np.concatenate([[0], np.cumsum(h.samples_per_record)])
        self._offsets = offsets.astype(np.int64)
        self._onsets: np.ndarray | None = None
        self._first_onset = 0.0
        if h.is_plus and self._ann and h.n_records > 0 and not h.discontinuous:
            self._first_onset = self._record_onsets(0, 1)[0]
        self.start_datetime = start_datetime(h)

    # ------------------------------------------------------------------ protocol
    def __enter__(self) -> EdfRecording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing is held open between reads."""

    @property
    def onsets(self) -> np.ndarray:
        """Onset of every data record in seconds from the header's start time."""
        if self._onsets is None:
            h = self.header
            if h.discontinuous and self._ann:
                self._onsets = self._record_onsets(0, h.n_records)
            else:
                self._onsets = self._first_onset + h.record_s * np.arange(h.n_records)
        return self._onsets

    @property
    def duration_s(self) -> float:
        h = self.header
        if h.n_records <= 0:
            return 0.0
        return float(self.onsets[-1] + h.record_s)

    def physical_range(self, index: int) -> tuple[float, float]:
        """The header's physical range of data channel ``index``, in µV."""
        s = self._data[index]
        f = unit_factor(self.header.units[s])
        lo, hi = self.header.physical_min[s] * f, self.header.physical_max[s] * f
        return (min(lo, hi), max(lo, hi))

    @property
    def gaps(self) -> list[tuple[float, float]]:
        """``(onset_s, duration_s)`` of every pause between records (EDF+D)."""
        ends = self.onsets[:-1] + self.header.record_s
        jump = self.onsets[1:] - ends
        idx = np.flatnonzero(jump > 1e-6)
        return [(float(ends[i]), float(jump[i])) for i in idx]

    def blocks(
        self, picks: Sequence[int], *, start_s: float = 0.0, block_s: float = 30.0
    ) -> Iterator[Block]:
        """Samples of ``picks`` (one rate) in blocks of whole records from ``start_s`` on."""
        h = self.header
        if not picks:
            raise DataFileError(f"{self.path}: no channel picked")
        sigs = [self._data[i] for i in picks]
        spr = {h.samples_per_record[s] for s in sigs}
        if len(spr) > 1:
            pairs = ", ".join(f"{self.channels[i].name} {self.channels[i].fs:g} Hz" for i in picks)
            raise DataFileError(f"{self.path}: channels differ in sampling rate ({pairs})")
        n_spr = spr.pop()
        if n_spr == 0 or h.record_s <= 0:
            raise DataFileError(f"{self.path}: signal {h.labels[sigs[0]]!r} holds no samples")
        fs = n_spr / h.record_s
        onsets = self.onsets
        first = int(np.searchsorted(onsets + h.record_s, start_s, side="right"))
        step = max(1, int(round(block_s / h.record_s)))
        factors = np.array([self._gain(s) for s in sigs])
        pos = np.arange(n_spr) / fs
        for a in range(first, h.n_records, step):
            b = min(h.n_records, a + step)
            samples = self._read(a, b, sigs, factors)
            ts = (onsets[a:b, None] + pos[None, :]).reshape(-1)
            if ts[0] < start_s:
                keep = ts >= start_s - 1e-9
                samples, ts = samples[:, keep], ts[keep]
            if ts.size:
                yield Block(samples, ts)

    def annotations(self) -> list[Annotation]:
        """Every EDF+ annotation (timekeeping TALs excluded), onsets from the start."""
        h = self.header
        if not self._ann:
            return []
        out: list[Annotation] = []
        for a in range(0, h.n_records, _SCAN_RECORDS):
            b = min(h.n_records, a + _SCAN_RECORDS)
            for raw in self._annotation_bytes(a, b):
                for tal in parse_tals(raw, self.path):
                    out.extend(Annotation(tal.onset, tal.duration, t) for t in tal.texts if t)
        return out

    # ------------------------------------------------------------------ reading
    def _gain(self, s: int) -> tuple[float, float]:
        h = self.header
        gain = (h.physical_max[s] - h.physical_min[s]) / (h.digital_max[s] - h.digital_min[s])
        return gain, h.physical_min[s] - gain * h.digital_min[s]

    def _raw(self, a: int, b: int) -> np.ndarray:
        h = self.header
        n = (b - a) * h.record_bytes
        with os_errors(self.path), self.path.open("rb") as f:
            f.seek(h.header_bytes + a * h.record_bytes)
            buf = f.read(n)
        if len(buf) < n:
            raise TruncatedFileError(
                f"{self.path}: truncated EDF: data record {a + len(buf) // max(1, h.record_bytes)} is cut"
            )
        return np.frombuffer(buf, dtype=np.uint8).reshape(b - a, h.record_bytes)

    def _digital(self, rows: np.ndarray, s: int) -> np.ndarray:
        h = self.header
        k = h.sample_bytes
        lo, hi = self._offsets[s] * k, self._offsets[s + 1] * k
        part = rows[:, lo:hi].reshape(-1)
        if k == 2:
            return part.view("<i2").astype(np.float64)
        b = part.reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        return np.where(v >= 1 << 23, v - (1 << 24), v).astype(np.float64)

    def _read(self, a: int, b: int, sigs: list[int], factors: np.ndarray) -> np.ndarray:
        rows = self._raw(a, b)
        out = np.empty((len(sigs), (b - a) * self.header.samples_per_record[sigs[0]]))
        for j, s in enumerate(sigs):
            gain, offset = factors[j]
            out[j] = (self._digital(rows, s) * gain + offset) * unit_factor(self.header.units[s])
        return out

    def _annotation_bytes(self, a: int, b: int) -> list[bytes]:
        rows = self._raw(a, b)
        k = self.header.sample_bytes
        s = self._ann[0]
        lo, hi = self._offsets[s] * k, self._offsets[s + 1] * k
        out = []
        for r in range(b - a):
            raw = rows[r, lo:hi].tobytes()
            extra = [
                rows[r, self._offsets[x] * k : self._offsets[x + 1] * k].tobytes()
                for x in self._ann[1:]
            ]
            out.append(raw + b"\x00".join([b""] + extra) if extra else raw)
        return out

    def _record_onsets(self, a: int, b: int) -> np.ndarray:
        onsets = np.empty(b - a)
        for start in range(a, b, _SCAN_RECORDS):
            stop = min(b, start + _SCAN_RECORDS)
            for r, raw in enumerate(self._annotation_bytes(start, stop)):
                tals = parse_tals(raw, self.path)
                if not tals:
                    raise DataFileError(
                        f"{self.path}: EDF+ data record {start + r} has no time-keeping annotation"
                    )
                onsets[start - a + r] = tals[0].onset
        if b - a > 1 and np.any(np.diff(onsets) < self.header.record_s - 1e-6):
            k = int(np.flatnonzero(np.diff(onsets) < self.header.record_s - 1e-6)[0])
            raise DataFileError(
                f"{self.path}: EDF+D data record {a + k + 1} starts at {onsets[k + 1]:g} s, "
                f"before the end of record {a + k} ({onsets[k] + self.header.record_s:g} s)"
            )
        return onsets


def read_edf_hypnogram(path: Path | str) -> Hypnogram:
    """An EDF+ hypnogram (e.g. Sleep-EDF ``*-Hypnogram.edf``) as 30-s AASM stages from
    the recording start.

    Raises
    ------
    DataFileError
        Unreadable file; :class:`HypnogramError` if it holds no stage annotations or an
        unknown stage label.
    """
    rec = EdfRecording(path)
    hyp = stage_hypnogram(rec.annotations(), str(path))
    if hyp is None:
        raise HypnogramError(f"{path}: no sleep stage annotations in this EDF+ file")
    return hyp
