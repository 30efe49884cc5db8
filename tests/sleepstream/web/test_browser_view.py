"""The live view in a real browser (headless Chromium) without a daemon: a LiveView served
from its own loop in a thread, driven by the test (token link, push, revision, flags,
end of the night, overview)."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.network, pytest.mark.slow]


class _ViewThread:
    """A LiveView served from its own event loop in a thread (the test drives it)."""

    def __init__(self, config, devices, state_dir=None) -> None:
        import asyncio
        import threading

        from sleepstream.web import LiveView

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.view = LiveView(config, devices, state_dir)
        self.call(self.view.__aenter__())
        self.sinks = {d: self.view.sink(d, "s1") for d in devices}

    def call(self, coro):
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def close(self) -> None:
        self.call(self.view.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_token_link_push_and_report_link_in_the_browser(tmp_path, chrome, web):
    """?token= once (cookie), then pushed epochs, a revision and the end of the night."""
    from selenium.webdriver.support.ui import WebDriverWait

    from sleepstream.web import WebConfig

    TOKEN, epoch = web.TOKEN, web.epoch
    served = _ViewThread(WebConfig(port=0, token=TOKEN), ["bed1", "bed2"], tmp_path)
    try:
        base = served.view.url
        chrome.get(base + "d/bed1")
        assert "token is required" in chrome.page_source
        chrome.get(base + f"d/bed1?token={TOKEN}")
        assert chrome.current_url == base + "d/bed1"  # the token left the address bar
        wait = WebDriverWait(chrome, 20)
        wait.until(lambda d: d.find_element("id", "status").text == "waiting for the first epoch")
        sink = served.sinks["bed1"]
        for i, stage in enumerate([0, 1, 2, 2, 3]):
            served.call(sink.publish(*epoch(i, stage, ("gap",) if i == 3 else (), 0.25 * (i == 3))))
        served.call(sink.publish_revised(*epoch(1, 2), 1))
        wait.until(lambda d: len(web.rects(d, "#hypnogram rect.ep")) == 5)
        wait.until(lambda d: web.rects(d, "#hypnogram rect.ep")[1] == ("N2", "N1"))
        assert {i: s for i, (s, _) in web.rects(chrome, "#hypnogram rect.ep").items()} == {
            0: "W", 1: "N2", 2: "N2", 3: "N2", 4: "N3"}  # fmt: skip
        current = chrome.find_element("id", "current-epoch").text
        assert current.startswith("epoch #4 · ") and "zone" not in current  # UTC: local time
        flags = chrome.execute_script(
            "return [...document.querySelectorAll('#hypnogram rect.flag')].map(r => "
            "[+r.dataset.epoch, r.dataset.flags, r.classList.contains('gap')])"
        )
        assert flags == [[3, "gap", True]]
        assert not chrome.find_element("id", "report").is_displayed()
        served.call(sink.end_of_stream())
        wait.until(lambda d: d.find_element("id", "report").is_displayed())
        assert chrome.find_element("id", "status").text == "night ended"
        link = chrome.find_element("id", "report").get_attribute("href")
        assert link == base + "d/bed1/report"
        # a self-contained report.html: its inline CSS applies, an inline script does not run
        night = tmp_path / "nights" / "bed1" / "20260101T220000Z"
        night.mkdir(parents=True)
        (night / "night.json").write_text("{}")
        (night / "report.html").write_text(
            "<!doctype html><title>report</title><style>h1{color:rgb(1, 2, 3)}</style>"
            "<h1 id=t>bed1</h1><script>document.title = 'script ran'</script>"
        )
        chrome.find_element("id", "report").click()
        wait.until(lambda d: d.current_url == link and d.find_elements("id", "t"))
        color = chrome.execute_script("return getComputedStyle(document.getElementById('t')).color")
        assert color == "rgb(1, 2, 3)"
        assert chrome.title == "report"
        # bed2 replays a recording that states no time zone (R18): its own clock is shown
        served.call(served.sinks["bed2"].publish(*epoch(0, 2, start="1989-04-24T16:13:00.000")))
        chrome.get(base + "d/bed2")
        wait.until(lambda d: "16:13:00" in d.find_element("id", "current-epoch").text)
        current = chrome.find_element("id", "current-epoch").text
        assert current == "epoch #0 · 16:13:00 (recording's clock, zone not stated)"
        chrome.get(base)  # the overview shows both beds
        wait.until(lambda d: len(web.rects(d, "#bed-bed1 rect.ep")) == 5)
        badges = chrome.execute_script(
            "return [...document.querySelectorAll('.bed .badge')].map(b => b.textContent)"
        )
        assert badges == ["ended", "live"]
        whens = chrome.execute_script(
            "return [...document.querySelectorAll('.bed .stage-meta')].map(m => m.textContent)"
        )
        assert "recording's clock" in whens[1] and "recording's clock" not in whens[0]
    finally:
        served.close()
