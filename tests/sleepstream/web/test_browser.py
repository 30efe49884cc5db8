"""The live view in a real browser, fed by a real daemon on the synthetic night.

A daemon (``sleepstream run --source synthetic-night:<hypnogram> --web PORT``, MQTT to a
real mosquitto) stages a short night; headless Chromium shows the device page from the
start. Once the night's events are all on MQTT, the drawn hypnogram must hold exactly
those epochs with the published stages (a revised stage where one was published), the
page must say the night ended and link its morning report (the daemon's end-of-stream
call, while ``--stay`` keeps it serving) and the link must open the report of the
recorded night; the overview must show the same night.
Screenshots (desktop and phone width) are saved under the test's temporary folder; set
``SLEEPSTREAM_SCREENSHOTS=DIR`` to keep them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

#: A short night: 20 epochs, every stage, transitions in both directions (R&K symbols).
NIGHT = "W W W 1 2 2 2 3 3 4 3 2 2 R R R 2 1 W W"
N_EPOCHS = len(NIGHT.split())

pytestmark = pytest.mark.network


def _events(sub) -> tuple[dict[int, dict], dict[int, dict]]:
    causal, revised = {}, {}
    for e in sub.stage_events():
        (revised if e.get("revised") else causal)[e["epoch_index"]] = e
    return causal, revised


def _shot(driver, path: Path) -> Path:
    driver.save_screenshot(str(path))
    keep = os.environ.get("SLEEPSTREAM_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        (Path(keep) / path.name).write_bytes(path.read_bytes())
    return path


@pytest.mark.slow
def test_live_page_draws_the_published_night(tmp_path, mosquitto, subscribe, chrome, helpers, web):
    """Every published epoch is drawn once, with its published (or revised) stage."""
    from selenium.webdriver.support.ui import WebDriverWait

    hypnogram = tmp_path / "night.hyp"
    hypnogram.write_text(NIGHT + "\n")
    sub = subscribe(mosquitto.port, "sleepstream/#")
    port = helpers.free_port()
    argv = [sys.executable, "-m", "sleepstream", "run", "--source", f"synthetic-night:{hypnogram}",
            "--speed", "40", "--device", "bed1", "--mqtt", mosquitto.url, "--web", str(port),
            "--lookahead", "1", "--no-metrics", "--quiet", "--stay",
            "--state-dir", str(tmp_path / "state")]  # fmt: skip
    log = (tmp_path / "daemon.log").open("wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=helpers.daemon_env())
    try:
        assert helpers.wait_port(port, 60), (tmp_path / "daemon.log").read_text()
        chrome.get(f"http://127.0.0.1:{port}/d/bed1")
        # the whole night on MQTT: N causal events and the N-1 revisions (lookahead 1)
        assert sub.wait_for(
            lambda s: [len(x) for x in _events(s)] == [N_EPOCHS, N_EPOCHS - 1], timeout=90
        ), (tmp_path / "daemon.log").read_text()
        causal, revised = _events(sub)
        expected = {i: (revised.get(i) or e)["stage"] for i, e in causal.items()}
        wait = WebDriverWait(chrome, 30)
        wait.until(lambda d: web.rects(d, "#hypnogram rect.ep") and {
            i: s for i, (s, _) in web.rects(d, "#hypnogram rect.ep").items()} == expected)  # fmt: skip
        drawn = web.rects(chrome, "#hypnogram rect.ep")
        assert sorted(drawn) == list(range(N_EPOCHS))
        assert (
            chrome.execute_script("return document.querySelectorAll('#hypnogram rect.ep').length")
            == N_EPOCHS
        )
        for i, (stage, was) in drawn.items():
            assert stage == expected[i]
            assert was == (causal[i]["stage"] if causal[i]["stage"] != stage else None)
        body = chrome.find_element("tag name", "body")
        assert int(body.get_attribute("data-live-events")) >= 1  # pushed, not only loaded
        # the source ended (--stay keeps the daemon up): the page says so and links the
        # morning report, pushed by the daemon's end-of-stream call, not by a reload
        wait.until(lambda d: d.find_element("id", "report").is_displayed())
        assert chrome.find_element("id", "status").text == "night ended"
        assert chrome.find_element("id", "report").get_attribute("href") == (
            f"http://127.0.0.1:{port}/d/bed1/report"
        )
        assert proc.poll() is None  # still serving
        last = causal[N_EPOCHS - 1]
        assert chrome.find_element("id", "current-stage").text == last["stage"]
        assert f"{round(100 * last['confidence'])} %" in chrome.find_element(
            "id", "current-confidence").text  # fmt: skip
        samples = chrome.execute_script(
            "return +document.querySelector('#signal polyline').dataset.samples"
        )
        assert samples == 3000
        layers = chrome.execute_script(
            "return [...document.querySelectorAll('#hypnodensity polygon')].map(p => p.dataset.stage)"
        )
        assert sorted(layers) == ["N1", "N2", "N3", "REM", "W"]
        desktop = _shot(chrome, tmp_path / "live-view-desktop.png")

        chrome.set_window_size(390, 844)  # a phone
        chrome.refresh()
        wait.until(lambda d: len(web.rects(d, "#hypnogram rect.ep")) == N_EPOCHS)
        overflow = chrome.execute_script(
            "return document.documentElement.scrollWidth - window.innerWidth"
        )
        assert overflow <= 0, f"page is {overflow} px wider than a phone screen"
        phone = _shot(chrome, tmp_path / "live-view-phone.png")

        chrome.set_window_size(1280, 1000)
        chrome.get(f"http://127.0.0.1:{port}/")
        wait.until(lambda d: len(web.rects(d, "#bed-bed1 rect.ep")) == N_EPOCHS)
        assert {i: s for i, (s, _) in web.rects(chrome, "#bed-bed1 rect.ep").items()} == expected
        badges = chrome.execute_script(
            "return [...document.querySelectorAll('.bed .badge')].map(b => b.textContent)"
        )
        assert badges == ["ended"]
        _shot(chrome, tmp_path / "live-view-overview.png")

        # the morning report behind the link: built from the night the daemon recorded
        chrome.get(f"http://127.0.0.1:{port}/d/bed1")
        wait.until(lambda d: d.find_element("id", "report").is_displayed())
        chrome.find_element("id", "report").click()
        WebDriverWait(chrome, 180).until(lambda d: d.find_elements("css selector", "h1"))
        assert chrome.current_url == f"http://127.0.0.1:{port}/d/bed1/report"
        heading = chrome.find_element("css selector", "h1").text
        assert heading.startswith("sleepstream · bed1"), heading
        meta = chrome.find_element("css selector", "p.meta").text
        assert f"{N_EPOCHS} epochs" in meta, meta
        _shot(chrome, tmp_path / "live-view-report.png")
        assert desktop.stat().st_size > 10_000 and phone.stat().st_size > 5_000
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
    assert proc.returncode == 0, (tmp_path / "daemon.log").read_text()[-3000:]
