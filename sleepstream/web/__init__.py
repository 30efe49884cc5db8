"""The live web view: ``sleepstream run --web [ADDR:]PORT``.

A read-only page per device (hypnogram so far, hypnodensity, current stage with its
confidence, quality flags and gaps, the last 30 s of the filtered signal, the morning
report once the night ends) and an overview of every bed, served with aiohttp from the
daemon's own event loop and updated by Server-Sent Events. The page's CSS and
JavaScript ship in the package (``static/``); nothing is fetched from elsewhere.
"""

from sleepstream.web.config import WebConfig, parse_web_address, read_token, web_config
from sleepstream.web.hub import LiveSink, LiveView

__all__ = ["LiveSink", "LiveView", "WebConfig", "parse_web_address", "read_token", "web_config"]
