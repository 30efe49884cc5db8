"""Fixtures of the distill tests: a lab's nights in every format (``lab_pairs``) and a BIDS
tree (``lab_bids``), for the data-path tests.

Each night is a stretch of SC4001's Fpz-Cz (the one real night here, trimmed, 100 Hz)
written with the format's own writer (:mod:`sleepstream.io.writers`: MNE ``raw.save``,
pybv, eeglabio, MNE's EDF export, BrainFlow's ``DataFilter.write_file``, the OpenBCI GUI
layout), with its expert stages as a hypnogram in another format each (the recording's
own annotations, ``.hyp`` text, ISRUC, EDF+ annotations, DREAMS 5-s text, BIDS
``events.tsv``). Every file lives in a temporary folder: no data is committed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from sleepstream.types import EPOCH_SAMPLES

START = dt.datetime(1989, 4, 24, 23, 0, 0)
_HYP = {0: "W", 1: "1", 2: "2", 3: "3", 4: "R", -1: "?"}
_ISRUC = {0: 0, 1: 1, 2: 2, 3: 3, 4: 5, -1: -1}
_DREAMS = {0: 5, 1: 3, 2: 2, 3: 1, 4: 4, -1: -1}
_AASM = {0: "W", 1: "N1", 2: "N2", 3: "N3", 4: "R"}
#: First epochs (of trimmed SC4001) of the stretches: each holds 3-4 stages, W to REM.
LAB_STARTS = [52, 266, 412, 528, 664, 120]
BIDS_STARTS = [52, 266, 412, 664]


@dataclass(frozen=True)
class Stretch:
    """``n`` epochs of SC4001 Fpz-Cz from epoch ``a``: samples (µV, 100 Hz) and stages."""

    x: np.ndarray
    y: np.ndarray

    @property
    def annotations(self) -> list[tuple[float, float, str]]:
        return [(30.0 * i, 30.0, f"Sleep stage {_AASM[int(s)]}") for i, s in enumerate(self.y)
                if s >= 0]  # fmt: skip


def stretches(sc4001: Path, starts: list[int], n: int) -> list[Stretch]:
    """``n`` epochs of SC4001 Fpz-Cz (trimmed, 100 Hz) from each epoch in ``starts``."""
    from sleepstream.io import load_sc4001

    night = load_sc4001(sc4001, "EEG Fpz-Cz")
    sig, y = np.asarray(night.signal, np.float64), np.asarray(night.stages, np.int64)
    return [Stretch(sig[a * EPOCH_SAMPLES : (a + n) * EPOCH_SAMPLES], y[a : a + n])
            for a in starts]  # fmt: skip


def write_hyp(path: Path, y: np.ndarray) -> Path:
    path.write_text("\n".join(_HYP[int(s)] for s in y) + "\n")
    return path


def write_isruc(path: Path, y: np.ndarray) -> Path:
    path.write_text("\n".join(str(_ISRUC[int(s)]) for s in y) + "\n")
    return path


def write_dreams(path: Path, y: np.ndarray) -> Path:
    rows = [str(_DREAMS[int(s)]) for s in y for _ in range(6)]  # one code per 5 s
    path.write_text("[Hypnogram]\n" + "\n".join(rows) + "\n")
    return path


def write_edf_hypnogram(path: Path, s: Stretch) -> Path:
    """EDF+ with the stages as annotations (and a flat channel: MNE exports no
    annotation-only EDF)."""
    from sleepstream.io import writers

    flat = np.zeros((1, s.y.size * 3000))
    return writers.write_edf(path, flat, 100.0, ["Marker"], start=START,
                             annotations=s.annotations)  # fmt: skip


def lab_nights(folder: Path, sc4001: Path, n: int = 16) -> Path:
    """Six nights of three subjects, each in another format; returns ``pairs.tsv``
    (night ``i`` = :data:`LAB_STARTS` ``[i]``).

    Rows (recording / hypnogram / subject): FIF with its own stage annotations / - / s1;
    BrainVision / .hyp / s1; EEGLAB / ISRUC / s2; EDF 256 Hz / EDF+ annotations / s2;
    BrainFlow CSV (Cyton, 250 Hz, Fp1) / DREAMS 5-s / s3; OpenBCI GUI (Cyton, 250 Hz) /
    .hyp / s3. Nights are ``n``-epoch stretches from different parts of SC4001.
    """
    from scipy.signal import resample_poly

    from sleepstream.io import writers as w

    folder.mkdir(parents=True, exist_ok=True)
    names = ["EEG Fpz-Cz"]
    st = stretches(sc4001, LAB_STARTS, n)
    rows = []
    (folder / "s1").mkdir()
    fif = w.write_fif(folder / "s1" / "night1_raw.fif", st[0].x[None], 100.0, names, start=START,
                      annotations=st[0].annotations)  # fmt: skip
    rows.append((fif, "", "s1", "", ""))
    bv = w.write_brainvision(folder / "s1" / "night2.vhdr", st[1].x[None], 100.0, names,
                             start=START)  # fmt: skip
    rows.append((bv, write_hyp(folder / "s1" / "night2.hyp", st[1].y), "s1", "", ""))
    (folder / "s2").mkdir()
    eeglab = w.write_eeglab(folder / "s2" / "night1.set", st[2].x[None], 100.0, names)
    rows.append((eeglab, write_isruc(folder / "s2" / "night1_1.txt", st[2].y), "s2", "", ""))
    edf = w.write_edf(folder / "s2" / "night2.edf", resample_poly(st[3].x, 64, 25)[None], 256.0,
                      names, start=START)  # fmt: skip
    rows.append((edf, write_edf_hypnogram(folder / "s2" / "night2-Hypnogram.edf", st[3]), "s2",
                 "", ""))  # fmt: skip
    (folder / "s3").mkdir()
    t0 = START.replace(tzinfo=dt.UTC).timestamp()
    arr = w.board_array("cyton", resample_poly(st[4].x, 5, 2)[None], t0=t0)
    csv = w.write_brainflow(folder / "s3" / "BrainFlow-RAW_night1.csv", arr)
    rows.append((csv, write_dreams(folder / "s3" / "night1-dreams.txt", st[4].y), "s3", "Fp1",
                 "cyton"))  # fmt: skip
    arr = w.board_array("cyton", resample_poly(st[5].x, 5, 2)[None], t0=t0)
    gui = w.write_openbci(folder / "s3" / "OpenBCI-RAW-night2.txt", "cyton", arr)
    rows.append((gui, write_hyp(folder / "s3" / "night2.hyp", st[5].y), "s3", "Fp1", ""))
    lines = ["recording\thypnogram\tsubject\tchannels\tboard"]
    for rec, hyp, subj, ch, board in rows:
        rel = lambda p: str(Path(p).relative_to(folder)) if p else ""  # noqa: E731
        lines.append("\t".join([rel(rec), rel(hyp), subj, ch, board]))
    (folder / "pairs.tsv").write_text("\n".join(lines) + "\n")
    return folder / "pairs.tsv"


def bids_tree(root: Path, sc4001: Path, n: int = 16) -> Path:
    """A BIDS tree written by mne-bids (night ``i`` = :data:`BIDS_STARTS` ``[i]``):
    sub-01 (sessions 1 and 2, EDF), sub-02 (EDF),
    sub-03 (BrainVision); the stages are the recordings' annotations, which mne-bids
    writes as ``*_events.tsv`` rows (``trial_type`` "Sleep stage N2"...)."""
    import mne
    from mne_bids import BIDSPath, write_raw_bids

    from sleepstream.io import writers

    st = stretches(sc4001, BIDS_STARTS, n)
    plan = [("01", "1", "EDF"), ("01", "2", "EDF"), ("02", "1", "EDF"), ("03", "1", "BrainVision")]
    for s, (sub, ses, fmt) in zip(st, plan, strict=True):
        fif = writers.write_fif(root.parent / f"tmp-{sub}-{ses}_raw.fif", s.x[None], 100.0,
                                ["Fpz-Cz"], start=START, annotations=s.annotations)  # fmt: skip
        raw = mne.io.read_raw_fif(fif, preload=True, verbose="error")
        path = BIDSPath(subject=sub, session=ses, task="sleep", datatype="eeg", root=root)
        write_raw_bids(raw, path, format=fmt, allow_preload=True, overwrite=True,
                       verbose=False)  # fmt: skip
        fif.unlink()
    return root


@pytest.fixture(scope="module")
def lab_pairs(tmp_path_factory, sc4001_dir) -> tuple[Path, list[Stretch]]:
    """``pairs.tsv`` of :func:`lab_nights` (in a fresh folder) and the nights' stretches."""
    folder = tmp_path_factory.mktemp("lab")
    return lab_nights(folder, sc4001_dir), stretches(sc4001_dir, LAB_STARTS, 16)


@pytest.fixture(scope="module")
def lab_bids(tmp_path_factory, sc4001_dir) -> tuple[Path, list[Stretch]]:
    """The root of :func:`bids_tree` and its nights' stretches."""
    root = bids_tree(tmp_path_factory.mktemp("bids") / "root", sc4001_dir)
    return root, stretches(sc4001_dir, BIDS_STARTS, 16)


def _id_recording(n: int = 60, name: str = "night", channels: int = 1):
    """A synthetic night whose epoch ``i`` holds the constant ``i + 1`` in every sample
    (derivation ``c`` adds ``1000 * c``; 100 Hz, 3000 samples an epoch); its stages cycle
    W, N1, N2, N3, REM. Window and fold tests read epoch ids straight off the samples."""
    from distill.data import Recording

    base = np.repeat(np.arange(1, n + 1, dtype=np.float32), EPOCH_SAMPLES)
    sig = {f"ch{c}": base + 1000.0 * c for c in range(channels)}
    return Recording(name, sig, (np.arange(n) % 5).astype(np.int64), "synthetic")


@pytest.fixture
def id_recording():
    """:func:`_id_recording`, the epoch-id night factory: ``id_recording(n, name, channels)``."""
    return _id_recording
