"""Montage: channel / derivation selection and scaling to µV."""

from __future__ import annotations

import numpy as np
import pytest

from sleepstream.dsp import Montage
from sleepstream.errors import ChannelNotFoundError, ConfigError
from sleepstream.types import Chunk


def _chunk() -> Chunk:
    samples = np.array([[1.0, 2.0, 3.0], [0.5, 0.5, 1.0], [10.0, 20.0, 30.0]])
    return Chunk(samples, np.arange(3) / 250, 250.0, ("Fp1", "A1", "AF7"), 0.0)


def test_montage_single_channel_scaled():
    """A single channel is picked by name and multiplied by scale_to_uv."""
    x = Montage("AF7", scale_to_uv=1e6).select(_chunk())
    np.testing.assert_allclose(x, [10e6, 20e6, 30e6])
    assert x.dtype == np.float64


def test_montage_derivation_subtracts_reference():
    """``A - B`` is the active row minus the reference row, then scaled."""
    x = Montage("Fp1", reference="A1", scale_to_uv=2.0).select(_chunk())
    np.testing.assert_allclose(x, [1.0, 3.0, 4.0])
    assert Montage("Fp1", "A1").name == "Fp1-A1"


def test_montage_does_not_modify_chunk():
    """Selecting never writes into the chunk's samples."""
    c = _chunk()
    before = c.samples.copy()
    Montage("Fp1", reference="A1", scale_to_uv=3.0).select(c)
    np.testing.assert_array_equal(c.samples, before)


def test_montage_missing_channel_lists_available():
    """A missing channel raises ChannelNotFoundError naming it and the available ones."""
    with pytest.raises(ChannelNotFoundError) as e:
        Montage("Cz").select(_chunk())
    assert "'Cz'" in str(e.value) and "Fp1, A1, AF7" in str(e.value)
    with pytest.raises(ChannelNotFoundError, match="'TP9'"):
        Montage("AF7", reference="TP9").select(_chunk())


def test_montage_case_insensitive_when_unambiguous():
    """``af7`` finds ``AF7`` when only one channel matches."""
    np.testing.assert_allclose(Montage("af7").select(_chunk()), [10.0, 20.0, 30.0])


def test_montage_rejects_bad_scale():
    """A zero or non-finite scale is a ConfigError."""
    with pytest.raises(ConfigError, match="scale_to_uv"):
        Montage("AF7", scale_to_uv=0.0)


def test_montage_mean_of_references():
    """Several references are averaged (linked mastoids): ``A - mean(B, C)``."""
    m = Montage("AF7", reference=("Fp1", "A1"))
    np.testing.assert_allclose(m.select(_chunk()), [10 - 0.75, 20 - 1.25, 30 - 2.0])
    assert m.name == "AF7-mean(Fp1,A1)"
