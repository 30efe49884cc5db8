"""Write ``sleepstream.json``, the Grafana dashboard of the daemon's Prometheus metrics.

The dashboard is data; this script is where it is edited (one line per query), and a
test checks that the committed JSON is exactly its output::

    .venv/bin/python ops/grafana/build_dashboard.py      # rewrites ops/grafana/sleepstream.json

Variables: ``datasource`` (any Prometheus) and ``device`` (multi-select, from the
``device`` label). Every ``sleepstream_*`` family the daemon exports has a panel.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("sleepstream.json")
DS = {"type": "prometheus", "uid": "${datasource}"}
DEV = 'device=~"$device"'
STAGE_COLORS = {
    "W": "#f4c15d", "N1": "#9ad1d4", "N2": "#4ea1d3", "N3": "#7a6ff0", "REM": "#ef6f6c",
    "unscored": "#5c6370",
}  # fmt: skip


def q(expr: str, legend: str) -> dict[str, str]:
    return {"expr": expr, "legendFormat": legend}


def quantiles(bucket: str, by: str, legend: str) -> list[dict[str, str]]:
    """p50, p95 and p99 of a histogram's ``_bucket`` series."""
    rate = f"sum by ({by}le) (rate({bucket}[$__rate_interval]))"
    return [
        q(f"histogram_quantile({p}, {rate})", f"{legend}p{int(p * 100)}") for p in (0.5, 0.95, 0.99)
    ]


def stage_overrides() -> list[dict[str, Any]]:
    return [
        {
            "matcher": {"id": "byRegexp", "options": f"(.* )?{stage}$"},
            "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": color}}],
        }
        for stage, color in STAGE_COLORS.items()
    ]


PANELS: list[tuple[str, dict[str, Any]]] = [
    ("row", {"title": "Staging"}),
    ("timeseries", {
        "title": "Epoch latency: last sample -> stage event acknowledged by the broker",
        "unit": "s", "w": 12,
        "targets": quantiles(f"sleepstream_epoch_latency_seconds_bucket{{{DEV}}}", "device, ",
                             "{{device}} "),
    }),
    ("timeseries", {
        "title": "Inference time per (batched) call", "unit": "s", "w": 6,
        "targets": quantiles("sleepstream_inference_seconds_bucket", "", ""),
    }),
    ("timeseries", {
        "title": "Epochs per inference call (mean)", "unit": "short", "w": 6,
        "targets": [q("sum(rate(sleepstream_inference_batch_epochs_sum[$__rate_interval])) / "
                      "sum(rate(sleepstream_inference_batch_epochs_count[$__rate_interval]))",
                      "epochs per call")],
    }),
    ("timeseries", {
        "title": "Stages: epochs per 5 min", "unit": "short", "w": 12, "stack": True,
        "overrides": stage_overrides(),
        "targets": [q(f"sum by (device, stage) (increase(sleepstream_epochs_total{{{DEV}}}[5m]))",
                      "{{device}} {{stage}}")],
    }),
    ("bargauge", {
        "title": "Time per stage in the selected range", "unit": "m", "w": 6,
        "overrides": stage_overrides(),
        "targets": [q("0.5 * sum by (stage) "
                      f"(increase(sleepstream_epochs_total{{{DEV}}}[$__range]))", "{{stage}}")],
    }),
    ("stat", {
        "title": "Epochs in the last 2 min (0 = no epoch: alert)", "unit": "short", "w": 6,
        "thresholds": [("red", None), ("green", 1)],
        "targets": [q(f"sum by (device) (increase(sleepstream_epochs_total{{{DEV}}}[2m]))",
                      "{{device}}")],
    }),
    ("row", {"title": "Signal"}),
    ("timeseries", {
        "title": "Samples received", "unit": "hertz", "w": 8,
        "targets": [q(f"sum by (device) (rate(sleepstream_samples_received_total{{{DEV}}}"
                      "[$__rate_interval]))", "{{device}}")],
    }),
    ("timeseries", {
        "title": "Samples dropped (share of all samples; alert above 1 %)", "unit": "percent",
        "w": 8, "thresholds": [("green", None), ("red", 1)],
        "targets": [q(
            f"100 * sum by (device) (rate(sleepstream_samples_dropped_total{{{DEV}}}[5m])) / "
            f"(sum by (device) (rate(sleepstream_samples_received_total{{{DEV}}}[5m])) + "
            f"sum by (device) (rate(sleepstream_samples_dropped_total{{{DEV}}}[5m])))",
            "{{device}}")],
    }),
    ("timeseries", {
        "title": "Epochs with gaps per 5 min", "unit": "short", "w": 8, "bars": True,
        "targets": [q(f"sum by (device) (increase(sleepstream_gaps_total{{{DEV}}}[5m]))",
                      "{{device}}")],
    }),
    ("row", {"title": "Delivery"}),
    ("state-timeline", {
        "title": "Broker connection", "w": 12,
        "mappings": [{"type": "value", "options": {
            "0": {"text": "disconnected", "color": "red"},
            "1": {"text": "connected", "color": "green"}}}],
        "targets": [q(f"max by (device) (sleepstream_broker_connected{{{DEV}}})", "{{device}}")],
    }),
    ("timeseries", {
        "title": "Queue depths (outbox: undelivered events; source: chunks waiting)",
        "unit": "short", "w": 12,
        "targets": [q(f"sleepstream_queue_depth{{{DEV}}}", "{{device}} {{queue}}")],
    }),
    ("timeseries", {
        "title": "Stage events acknowledged by the broker, resent after a lost connection, "
                 "and dropped from a full outbox",
        "unit": "short", "w": 12,
        "targets": [
            q(f"sum by (device) (increase(sleepstream_events_published_total{{{DEV}}}[5m]))",
              "{{device}} acknowledged / 5 min"),
            q(f"sum by (device) (increase(sleepstream_events_resent_total{{{DEV}}}[5m]))",
              "{{device}} resent / 5 min"),
            q(f"sum by (device) (increase(sleepstream_outbox_dropped_total{{{DEV}}}[5m]))",
              "{{device}} dropped / 5 min"),
        ],
    }),
    # the daemon's one MQTT connection: its series have no device label (one per daemon)
    ("timeseries", {
        "title": "MQTT connection failures by reason, per 5 min (auth, tls, refused: alert)",
        "unit": "short", "w": 12, "bars": True,
        "targets": [q("sum by (instance, reason) "
                      "(increase(sleepstream_mqtt_connect_errors_total[5m]))",
                      "{{instance}} {{reason}}")],
    }),
    ("timeseries", {
        "title": "MQTT delivery task restarts and failed publish probes (broker drops "
                 "our publishes: ACL), per 5 min",
        "unit": "short", "w": 12, "bars": True,
        "targets": [
            q("sum by (instance) (increase(sleepstream_mqtt_delivery_restarts_total[5m]))",
              "{{instance}} delivery restarts"),
            q("sum by (instance) (increase(sleepstream_mqtt_probe_failures_total[5m]))",
              "{{instance}} probe failures"),
        ],
    }),
    ("row", {"title": "Night recording"}),
    ("timeseries", {
        "title": "Night recorder write failures by kind, per 5 min (staging goes on)",
        "unit": "short", "w": 12, "bars": True,
        "targets": [q(f"sum by (device, kind) (increase(sleepstream_storage_errors_total{{{DEV}}}"
                      "[5m]))", "{{device}} {{kind}}")],
    }),
    ("timeseries", {
        "title": "Raw EEG held in memory, not yet written (0 = all on disk)",
        "unit": "bytes", "w": 12,
        "targets": [q(f"sleepstream_recorder_backlog_bytes{{{DEV}}}", "{{device}}")],
    }),
]  # fmt: skip


def panel(kind: str, spec: dict[str, Any], pid: int, x: int, y: int) -> dict[str, Any]:
    """One Grafana panel (or row) at grid position ``(x, y)``."""
    if kind == "row":
        return {"type": "row", "id": pid, "title": spec["title"], "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []}  # fmt: skip
    custom: dict[str, Any] = {}
    if kind == "timeseries":
        custom = {"drawStyle": "bars" if spec.get("bars") else "line", "lineWidth": 1,
                  "fillOpacity": 80 if spec.get("stack") or spec.get("bars") else 10,
                  "stacking": {"mode": "normal" if spec.get("stack") else "none"},
                  "showPoints": "never"}  # fmt: skip
    steps = [{"color": c, "value": v} for c, v in spec.get("thresholds", [("green", None)])]
    defaults: dict[str, Any] = {
        "unit": spec.get("unit", "short"),
        "thresholds": {"mode": "absolute", "steps": steps},
        "custom": custom,
        "color": {"mode": "thresholds" if kind == "stat" else "palette-classic"},
    }
    if spec.get("mappings"):
        defaults["mappings"] = spec["mappings"]
        defaults["color"] = {"mode": "fixed"}
    if spec.get("thresholds") and kind == "timeseries":
        custom["thresholdsStyle"] = {"mode": "line"}
    if kind in ("stat", "bargauge"):  # one number per series: its last value
        options: dict[str, Any] = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "orientation": "horizontal",
        }
    else:
        options = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "none"},
        }
    targets = [{"datasource": DS, "refId": chr(65 + k), **t} for k, t in enumerate(spec["targets"])]
    return {
        "type": kind,
        "id": pid,
        "title": spec["title"],
        "datasource": DS,
        "gridPos": {"h": 8, "w": spec.get("w", 12), "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": spec.get("overrides", [])},
        "options": options,
        "targets": targets,
    }


def dashboard() -> dict[str, Any]:
    panels, x, y = [], 0, 0
    for pid, (kind, spec) in enumerate(PANELS, start=1):
        if kind == "row":
            if x:  # finish the line of panels above
                x, y = 0, y + 8
            panels.append(panel(kind, spec, pid, 0, y))
            y += 1
            continue
        w = spec.get("w", 12)
        if x + w > 24:
            x, y = 0, y + 8
        panels.append(panel(kind, spec, pid, x, y))
        x += w
    device_query = "label_values(sleepstream_samples_received_total, device)"
    return {
        "title": "sleepstream",
        "uid": "sleepstream",
        "description": "Real-time sleep staging daemon: latency, inference, signal, delivery.",
        "tags": ["sleepstream", "eeg", "sleep"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "timezone": "browser",
        "time": {"from": "now-12h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                },
                {
                    "name": "device",
                    "label": "Device",
                    "type": "query",
                    "datasource": DS,
                    "query": {"query": device_query, "refId": "device"},
                    "definition": device_query,
                    "multi": True,
                    "includeAll": True,
                    "allValue": ".*",
                    "refresh": 2,
                    "sort": 1,
                    "current": {"text": "All", "value": "$__all"},
                },
            ]
        },  # fmt: skip
        "annotations": {"list": []},
        "panels": panels,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}")
