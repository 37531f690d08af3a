"""Prometheus rules and the Grafana dashboard: promtool checks and unit tests, the queries the
issue asks for, and the chart embedding the one copy of each file.

promtool comes from Debian's `prometheus` package (.ci/run installs it when missing); without it
the promtool tests skip and say so.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.helpers import (
    DASHBOARD,
    EXTERNAL_METRICS,
    RULES,
    all_features,
    by_kind,
    dashboard_queries,
    name,
    referenced_metrics,
    render,
)

RULE_TESTS = Path(__file__).with_name("prometheus-rules.test.yaml")
RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "runbook.md"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not found: `apt-get install prometheus` (Debian) provides it; .ci/run installs it in CI")
    return path


def run_promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_promtool_check_rules():
    result = run_promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 15 rules found" in result.stdout


def test_promtool_test_rules():
    result = run_promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rules_cover_the_required_alerts():
    rules = {r["alert"]: r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    assert set(rules) == {"OpenLFRServiceDown", "OpenLFRConsumerLagHigh", "OpenLFRCameraStale", "OpenLFRDeadLetters",
                          "OpenLFRCaptureToAlertLatencyHigh", "OpenLFRWatchlistNotReady", "OpenLFRFramesDropped",
                          "OpenLFRWebhookGiveUps", "OpenLFRRetentionBroken", "OpenLFRDeploymentWithoutFrames",
                          "OpenLFRVanSilent", "OpenLFRVanBacklogGrowing", "OpenLFRVanBundleExpiring", "OpenLFRVanBundleNotErased",
                          "OpenLFRVanCamerasDown"}
    assert 'up{job=~"openlfr-(ingest|detect|embed|matcher|dispatch)"} == 0' in rules["OpenLFRServiceDown"]["expr"]
    assert "histogram_quantile(0.99" in rules["OpenLFRCaptureToAlertLatencyHigh"]["expr"]
    for rule in rules.values():
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        # Every alert links to its own section of docs/runbook.md (GitHub's heading anchors).
        page, anchor = rule["annotations"]["runbook_url"].split("#")
        assert page == "https://github.com/openlfr/openlfr/blob/main/docs/runbook.md"
        assert anchor == rule["alert"].lower() and f"\n## {rule['alert']}\n" in RUNBOOK.read_text(encoding="utf-8")
    # The tests exercise every alert.
    tested = {t["alertname"] for case in yaml.safe_load(RULE_TESTS.read_text())["tests"] for t in case["alert_rule_test"]}
    assert tested == set(rules)


def test_every_dashboard_query_parses(tmp_path):
    """promtool has no query linter: wrap each query in a recording rule and check the file."""
    grafana = {"$__rate_interval": "5m", "$__interval": "1m", "$namespace": ".*"}
    rules = []
    for i, query in enumerate(dashboard_queries()):
        query = re.sub(r"label_values\((.*), *\w+\)$", r"\1", query)  # a variable's query: its selector
        for variable, value in grafana.items():
            query = query.replace(variable, value)
        rules.append({"record": f"dashboard:query_{i}", "expr": query})
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run_promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_shows_what_the_issue_asks_for():
    document = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queries = "\n".join(dashboard_queries())
    for needle in (
        "sum by (service) (rate(lfr_messages_consumed_total",           # per-stage rates
        "sum by (service, topic) (rate(lfr_messages_produced_total",
        "rate(lfr_messages_dead_lettered_total",                        # dead-letter rate
        "lfr_consumer_lag_messages",                                    # consumer lag
        "histogram_quantile(0.99, sum by (le) (rate(lfr_capture_to_alert_seconds_bucket",  # latency quantiles
        "histogram_quantile(0.5, sum by (le) (rate(lfr_capture_to_alert_seconds_bucket",
        "sum by (priority, kind) (increase(lfr_alerts_total",           # alerts by priority
        "sum by (reason) (rate(lfr_faces_rejected_total",               # faces rejected by reason
        "sum by (camera, reason) (rate(lfr_frames_dropped_total",       # frames dropped per camera
        "time() - lfr_camera_last_frame_timestamp_seconds",             # camera staleness
        "max by (pod) (lfr_watchlist_ready",                            # operations row (issue 15)
        "min by (topic) (lfr_retention_verdict",
        "count by (version) (lfr_build_info",
        'lfr_webhook_deliveries_total{namespace=~"$namespace", outcome=~"failed|expired"}',
        "rate(lfr_deployment_frames_total",
        'lfr_consumer_lag_messages{namespace=~"$namespace", service="dispatch"}',
    ):
        assert needle in queries, needle
    ids = [p["id"] for p in document["panels"]]
    assert len(ids) == len(set(ids))
    assert document["uid"] == "openlfr-pipeline"
    datasources = {json.dumps(t["datasource"]) for p in document["panels"] for t in p.get("targets", [])}
    assert datasources == {json.dumps({"type": "prometheus", "uid": "${datasource}"})}


def test_chart_embeds_the_one_copy_of_rules_and_dashboard():
    docs = render(all_features())
    rule = by_kind(docs, "PrometheusRule")["lfr-openlfr"]
    assert rule["spec"] == yaml.safe_load(RULES.read_text(encoding="utf-8"))
    dashboard = by_kind(docs, "ConfigMap")[name("dashboard")]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["openlfr.json"]) == json.loads(DASHBOARD.read_text(encoding="utf-8"))
    monitor = by_kind(docs, "ServiceMonitor")["lfr-openlfr"]["spec"]
    assert monitor["jobLabel"] == "openlfr.io/job"  # the rules' `up{job=~"openlfr-..."}`
    assert monitor["endpoints"][0]["port"] == "metrics" and monitor["endpoints"][0]["honorLabels"] is True


def test_referenced_metrics_are_defined_in_the_code():
    """Cheap guard before the live scrape: each name is declared by a prometheus_client metric."""
    import services.common.metrics  # noqa: F401
    import services.pipeline.detect.stage  # noqa: F401
    import services.pipeline.dispatch.metrics  # noqa: F401
    import services.pipeline.ingest.service  # noqa: F401
    import services.governance.deployments.view  # noqa: F401
    import services.van.fleet.fleetview  # noqa: F401
    import services.governance.watchlist.materialiser  # noqa: F401
    from prometheus_client import REGISTRY

    exposed = {family.name for family in REGISTRY.collect()}
    exposed |= {f"{family.name}_bucket" for family in REGISTRY.collect() if family.type == "histogram"}
    exposed |= {f"{family.name}_total" for family in REGISTRY.collect() if family.type == "counter"}
    missing = referenced_metrics() - exposed
    assert missing <= set(EXTERNAL_METRICS), sorted(missing - set(EXTERNAL_METRICS))
