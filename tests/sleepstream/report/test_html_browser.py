"""The HTML morning report in a real browser, offline, at a phone's width.

Debian's chromium + chromedriver through Selenium (never downloads anything; skips,
saying why, when they are missing). The network is switched off in the browser before
the page loads, so anything the page tried to fetch would show.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from sleepstream.report.build import build_report

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture
def phone(tmp_path_factory):
    """A headless Chromium 412 px wide (a phone), offline."""
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not os.access(binary, os.X_OK):
            pytest.skip(f"{binary} not found (Debian: apt-get install chromium chromium-driver)")
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not fetch anything
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--no-first-run", "--hide-scrollbars",
                 "--force-device-scale-factor=1", "--window-size=412,900",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 412, "height": 900, "deviceScaleFactor": 1, "mobile": True},
    )
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd(
        "Network.emulateNetworkConditions",
        {"offline": True, "latency": 0, "downloadThroughput": 0, "uploadThroughput": 0},
    )
    yield driver
    driver.quit()


@pytest.mark.slow
def test_html_report_opens_offline_on_a_phone(make_night, phone, tmp_path):
    """Offline at 412 px: the page loads nothing, the three figures draw, the page itself
    does not overflow sideways (wide tables and figures scroll in their own boxes), and
    the flagged REM latency row is there."""
    rng = np.random.default_rng(2)
    model = [0] * 10 + [2] * 6 + [4] * 6 + [2] * 20 + [3] * 10 + [4] * 8 + [0] * 4
    expert = [0] * 10 + [2] * 30 + [3] * 12 + [4] * 8 + [0] * 4
    night = make_night(model, eeg=rng.normal(0, 20, (1, len(model) * 3000)))
    reference = make_night(expert, device="expert")
    report = build_report(night, reference=reference, png=False, html=tmp_path / "r.html")
    rows = {r["key"]: r for r in report["statistics_comparison"]}
    assert rows["rem_latency_min"]["flag"]  # 3.0 vs 18.0 min
    phone.get((tmp_path / "r.html").as_uri())
    page = phone.execute_script(
        """
        const box = (el) => el.getBoundingClientRect();
        return {
          ready: document.readyState,
          fetched: performance.getEntriesByType('resource').map(e => e.name),
          svgs: [...document.querySelectorAll('figure svg')].map(s => box(s).width),
          pageWidth: document.documentElement.scrollWidth,
          viewWidth: window.innerWidth,
          flagged: [...document.querySelectorAll('tr.flag td:first-child')]
                     .map(td => td.textContent),
          title: document.querySelector('h1').textContent,
        };
        """
    )
    phone.save_screenshot(str(tmp_path / "phone.png"))
    assert page["ready"] == "complete" and page["fetched"] == []
    assert len(page["svgs"]) == 3 and min(page["svgs"]) >= 300
    assert page["viewWidth"] == 412 and page["pageWidth"] <= 412, page
    assert "REM latency from sleep onset (min)" in page["flagged"]
    assert page["title"].startswith("sleepstream · bed1 · ")
