"""A real browser for the live view's tests: Debian's chromium + chromedriver via Selenium.

Selenium is pointed at the installed binaries and never downloads a browser or a driver
(``SE_OFFLINE``); Chromium runs headless with a fresh profile and without its
background network traffic. Skips, with the reason, when either binary is missing
(Debian: ``apt-get install chromium chromium-driver``; ``make test`` does it).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

#: A web token of the accepted length (tests only).
TOKEN = "t0ken-0123456789abcdef"

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)


@pytest.fixture
def chrome(tmp_path_factory):
    """A headless Chromium driven by Selenium (closed afterwards)."""
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not os.access(binary, os.X_OK):
            pytest.skip(f"{binary} not found (Debian: apt-get install chromium chromium-driver)")
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not fetch anything
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile: Path = tmp_path_factory.mktemp("chromium-profile")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument("--window-size=1280,1000")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def make_epoch(
    i: int, stage: int, quality: tuple[str, ...] = (), gap: float = 0.0, start: str | None = None
):
    """An epoch (20 µV sine) and its prediction (0.8 on ``stage``; -1 = unscored); its
    start is ``start`` or 22:00 UTC + 30 s * i."""
    from sleepstream.types import UNSCORED, Epoch, StagePrediction

    samples = (20 * np.sin(np.arange(3000) / 10.0)).astype(np.float32)
    start = start or f"2026-01-01T22:{i // 2:02d}:{(i % 2) * 30:02d}Z"
    e = Epoch(i, 30.0 * i, start, samples,
              gap_fraction=gap, quality=quality,
              unscored_reasons=("flat",) if stage == UNSCORED else ())  # fmt: skip
    probs = np.full(5, 0.05)
    if stage >= 0:
        probs[stage] = 0.8
    return e, StagePrediction(i, stage, probs, 0.8 if stage >= 0 else 0.0, "m")


@pytest.fixture
def web():
    """Shared helpers of the web tests: ``web.TOKEN``, ``web.epoch(i, stage, ...)``,
    ``web.rects(driver, selector)``."""
    import types

    return types.SimpleNamespace(TOKEN=TOKEN, epoch=make_epoch, rects=drawn_rects)


def drawn_rects(driver, selector: str) -> dict[int, tuple[str, str | None]]:
    """``epoch -> (drawn stage, causal stage if a revision changed it)`` of the SVG rects."""
    rows = driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(r => "
        "[+r.dataset.epoch, r.dataset.stage, r.dataset.causal || null]);",
        selector,
    )
    return {i: (stage, causal) for i, stage, causal in rows}
