"""Shared fixtures: where the real data lives, and markers.

The real recordings are read from ``../shared/data`` next to the repository (or from
``$SLEEPSTREAM_SHARED_DATA``); they are never copied into the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SLEEPSTREAM_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the real data folder; skips (with the reason) if it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder not found at {SHARED_DATA} (set SLEEPSTREAM_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def sc4001_dir(shared_data: Path) -> Path:
    return shared_data / "sleep_edf_sc4001"


@pytest.fixture(scope="session")
def dreams_dir(shared_data: Path) -> Path:
    return shared_data / "dreams_spindles"


@pytest.fixture(scope="session")
def hypnograms_dir(shared_data: Path) -> Path:
    return shared_data / "sleep_edf20_hypnograms"
