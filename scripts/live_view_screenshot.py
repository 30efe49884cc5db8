"""Make ``docs/live-view.png``: the live view of a whole synthetic night in Chromium.

Runs ``sleepstream run --source synthetic-night --speed max --web PORT --stay`` (the
default Markov night: 960 epochs, transition rates of the 39 Sleep-EDF-20 nights, seed
0, the shipped student, ``--lookahead 1``), opens the device page in Debian's headless
Chromium (Selenium, never a downloaded browser), waits until the whole night is drawn
and the page says the night ended (with its morning-report link), saves a palette PNG,
and checks that every drawn stage is the stage the daemon recorded for that epoch
(``hypnogram.csv`` of the night recorder: the published verdicts, revised where revised)::

    .venv/bin/python scripts/live_view_screenshot.py [--out docs/live-view.png]
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"the daemon did not listen on {port}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "live-view.png")
    ap.add_argument("--width", type=int, default=1100)
    ap.add_argument("--height", type=int, default=900)
    ap.add_argument("--colors", type=int, default=96, help="palette size of the PNG")
    args = ap.parse_args()

    os.environ["SE_OFFLINE"] = "true"
    from PIL import Image
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    work = Path(tempfile.mkdtemp(prefix="live-view-"))
    port, broker = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLEEPSTREAM_")}
    env.update(OMP_NUM_THREADS="1")
    argv = [sys.executable, "-m", "sleepstream", "run", "--source", "synthetic-night", "--speed",
            "max", "--device", "bed1", "--web", str(port), "--broker-port", str(broker),
            "--lookahead", "1", "--no-metrics", "--quiet", "--stay",
            "--state-dir", str(work / "state")]  # fmt: skip
    daemon = subprocess.Popen(argv, env=env, stderr=(work / "daemon.log").open("wb"))
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--hide-scrollbars",
                 "--force-device-scale-factor=1", f"--user-data-dir={work / 'profile'}",
                 f"--window-size={args.width},{args.height}"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        _wait_port(port, 60)
        driver.get(f"http://127.0.0.1:{port}/d/bed1")
        count = "return document.querySelectorAll('#hypnogram rect.ep').length"
        WebDriverWait(driver, 900, poll_frequency=1).until(lambda d: d.execute_script(count) >= 960)
        # the source has ended: the page says so and links the morning report
        WebDriverWait(driver, 60).until(lambda d: d.find_element("id", "report").is_displayed())
        time.sleep(1.0)
        raw = work / "raw.png"
        driver.save_screenshot(str(raw))
        image = Image.open(raw).convert("RGB")
        image = image.quantize(colors=args.colors, method=Image.Quantize.MEDIANCUT)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        image.save(args.out, optimize=True)
        print(f"{args.out}: {args.out.stat().st_size} bytes, {driver.execute_script(count)} epochs")
        drawn = dict(driver.execute_script(
            "return [...document.querySelectorAll('#hypnogram rect.ep')]"
            ".map(r => [+r.dataset.epoch, r.dataset.stage]);"))  # fmt: skip
        status = driver.find_element("id", "status").text
    finally:
        driver.quit()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)
    # the stages drawn are the daemon's published verdicts (revised where revised): the
    # night recorder keeps the same verdicts in hypnogram.csv
    (table,) = (work / "state" / "nights" / "bed1").glob("*/hypnogram.csv")
    with table.open() as f:
        recorded = {int(r["epoch_index"]): r["stage"] for r in csv.DictReader(f)}
    same = sum(drawn.get(i) == stage for i, stage in recorded.items())
    print(f"status {status!r}; drawn stage == recorded stage for {same}/{len(recorded)} epochs "
          f"({len(drawn)} drawn)")  # fmt: skip
    if same != len(recorded) or len(drawn) != len(recorded):
        print(f"mismatch: see {work}", file=sys.stderr)
        return 1
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
