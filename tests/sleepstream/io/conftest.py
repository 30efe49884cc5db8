"""Fixtures for the reader tests: the real SC4001 night (read once per session) and a
small EDF writer (edfio) for fixtures that the tests build in ``tmp_path``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from sleepstream.io import Night, load_sc4001


@pytest.fixture(scope="session")
def sc4001_night(sc4001_dir: Path) -> Night:
    """SC4001 Fpz-Cz, trimmed, 100 Hz, read without the on-disk cache."""
    return load_sc4001(sc4001_dir, cache=False)


def write_edf(
    path: Path,
    signals: dict[str, np.ndarray],
    fs: float | dict[str, float],
    *,
    unit: str = "uV",
    annotations: Sequence[tuple[float, float, str]] = (),
    bdf: bool = False,
    record_s: float = 1.0,
) -> Path:
    """Write a small EDF(+)/BDF file with edfio.

    Parameters
    ----------
    signals : label -> samples (physical values in ``unit``)
    fs : one rate for all signals or one per label, Hz
    annotations : (onset s, duration s, text); any makes the file EDF+
    """
    import edfio

    make = edfio.BdfSignal if bdf else edfio.EdfSignal
    sigs = []
    for label, data in signals.items():
        rate = fs[label] if isinstance(fs, dict) else fs
        lo, hi = float(np.min(data)), float(np.max(data))
        if hi <= lo:
            hi = lo + 1.0
        sigs.append(
            make(
                np.asarray(data, dtype=np.float64),
                rate,
                label=label,
                physical_dimension=unit,
                physical_range=(lo, hi),
            )
        )
    kind = edfio.Bdf if bdf else edfio.Edf
    anns = [edfio.EdfAnnotation(o, d, t) for o, d, t in annotations] or None
    edf = kind(sigs, data_record_duration=record_s, annotations=anns)
    edf.write(path)
    return path


def sine(fs: float, seconds: float, freq: float = 10.0, amp: float = 50.0) -> np.ndarray:
    """A sine of ``freq`` Hz and ``amp`` µV, ``seconds`` long at ``fs`` Hz."""
    t = np.arange(int(round(fs * seconds))) / fs
    return amp * np.sin(2 * np.pi * freq * t)


@pytest.fixture(scope="session")
def make_edf():
    """:func:`write_edf` (tests cannot import conftest under importlib mode)."""
    return write_edf


@pytest.fixture(scope="session")
def make_sine():
    """:func:`sine`."""
    return sine


@pytest.fixture(scope="session")
def make_edf_d():
    """:func:`sleepstream.io.writers.write_edf_d` (an EDF+D file, byte by byte)."""
    from sleepstream.io.writers import write_edf_d

    return write_edf_d
