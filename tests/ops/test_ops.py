"""The operations files, checked with the real tools and against a running daemon.

- ``promtool check rules`` / ``test rules`` / ``check config`` on ops/prometheus;
- every dashboard query is valid PromQL (promtool checks it as a recording rule);
- the committed dashboard is what ops/grafana/build_dashboard.py writes;
- every metric the dashboard and the rules name is on a running daemon's /metrics, and
  every ``sleepstream_*`` family that daemon exports has a dashboard panel.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
OPS = REPO / "ops"
RULES = OPS / "prometheus" / "sleepstream-rules.yml"
DASHBOARD = OPS / "grafana" / "sleepstream.json"
METRIC = re.compile(r"\bsleepstream_[a-z0-9_]+")
#: Dashboard variables replaced by plain values before promtool parses a query.
VARIABLES = {"$__rate_interval": "1m", "$__range": "1h", "$device": ".*"}


def promtool() -> str:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.skip("promtool not found (Debian: apt-get install prometheus)")
    return tool


def run_promtool(*args: str, cwd: Path) -> str:
    proc = subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def dashboard_queries() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in board["panels"] for t in p.get("targets", [])]


def rule_queries() -> list[str]:
    return [r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def test_rules_pass_promtool_check():
    """`promtool check rules` accepts the rule file (10 rules)."""
    out = run_promtool("check", "rules", RULES.name, cwd=RULES.parent)
    assert "SUCCESS: 10 rules found" in out


def test_rules_unit_tests_pass():
    """`promtool test rules`: each alert fires when it should and not before."""
    out = run_promtool("test", "rules", "sleepstream-rules.test.yml", cwd=RULES.parent)
    assert "SUCCESS" in out


def test_every_alert_has_a_unit_test_where_it_fires():
    """Each alert of the rule file fires in at least one promtool test case."""
    tests = yaml.safe_load((RULES.parent / "sleepstream-rules.test.yml").read_text())["tests"]
    fired = {
        case["alertname"]
        for t in tests
        for case in t.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    alerts = [r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    assert len(alerts) == 10
    assert sorted(set(alerts) - fired) == []


def test_example_prometheus_config_is_valid():
    """`promtool check config` accepts the example scrape config and its rule file."""
    out = run_promtool("check", "config", "prometheus.example.yml", cwd=RULES.parent)
    assert "is valid prometheus config file syntax" in out


def test_dashboard_queries_are_valid_promql(tmp_path):
    """Every dashboard query parses: promtool checks each as a recording rule."""
    rules = []
    for k, expr in enumerate(dashboard_queries()):
        for var, value in VARIABLES.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, f"unknown dashboard variable in {expr}"
        rules.append({"record": f"dashboard:query_{k}", "expr": expr})
    (tmp_path / "queries.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "d", "rules": rules}]})
    )
    out = run_promtool("check", "rules", "queries.yml", cwd=tmp_path)
    assert f"SUCCESS: {len(rules)} rules found" in out


def test_dashboard_is_the_builders_output():
    """The committed JSON is exactly what build_dashboard.py writes (edit the script)."""
    sys.path.insert(0, str(OPS / "grafana"))
    try:
        import build_dashboard
    finally:
        sys.path.pop(0)
    assert DASHBOARD.read_text() == build_dashboard.render()


def test_dashboard_is_a_grafana_dashboard():
    """Prometheus data source variable, device variable, unique ids, panels on the grid."""
    board = json.loads(DASHBOARD.read_text())
    names = [v["name"] for v in board["templating"]["list"]]
    assert names == ["datasource", "device"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for p in board["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        if p["type"] != "row":
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert p["targets"], p["title"]


# -- against a running daemon ------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def _samples(text: str) -> dict[str, float]:
    """``sample name -> sum of its values`` of an exposition."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name = re.split(r"[{ ]", line, maxsplit=1)[0]
            out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


@pytest.mark.slow
@pytest.mark.network
def test_every_metric_is_on_a_running_daemons_metrics(tmp_path):
    """Dashboard and rules name only exported series; every exported family has a panel."""
    night = tmp_path / "night.hyp"
    night.write_text("W W 1 2 2 3 3 2 R R 2 W\n")
    n_epochs = 12
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLEEPSTREAM_")}
    env.update(OMP_NUM_THREADS="1", XDG_DATA_HOME=str(tmp_path))
    argv = [sys.executable, "-m", "sleepstream", "run", "--source", f"synthetic-night:{night}",
            "--speed", "max", "--metrics-port", str(port), "--broker-port", str(_free_port()),
            "--stay", "--quiet", "--state-dir", str(tmp_path / "state")]  # fmt: skip
    log = (tmp_path / "daemon.log").open("wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline, text = time.monotonic() + 120, ""
        while time.monotonic() < deadline:
            try:
                text = _scrape(port)
                s = _samples(text)
                if s.get("sleepstream_events_published_total", 0) >= n_epochs:
                    break
            except OSError:
                pass
            assert proc.poll() is None, (tmp_path / "daemon.log").read_text()
            time.sleep(0.25)
        samples = _samples(text)
        assert samples.get("sleepstream_epochs_total") == n_epochs, text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        log.close()
    families = [
        m.group(1)
        for m in re.finditer(r"^# TYPE (sleepstream_\S+) \S+$", text, re.M)
        if not m.group(1).endswith("_created")  # prometheus_client's creation timestamps
    ]
    named = {m for q in dashboard_queries() + rule_queries() for m in METRIC.findall(q)}
    missing = sorted(n for n in named if n not in samples)
    assert not missing, f"named in ops/ but not on /metrics: {missing}"
    dashboard_names = {m for q in dashboard_queries() for m in METRIC.findall(q)}

    def covered(family: str) -> bool:
        return any(
            n == family or n in {f"{family}_bucket", f"{family}_sum", f"{family}_count"}
            for n in dashboard_names
        )

    uncovered = [f for f in families if not covered(f)]
    assert not uncovered, f"exported but on no dashboard panel (ops/grafana): {uncovered}"
    for name in ("sleepstream_epochs_total", "sleepstream_outbox_dropped_total"):
        assert name in named  # the alert rules' series are among them
