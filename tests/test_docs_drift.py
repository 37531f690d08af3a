"""The docs cannot drift from the code: every `lfr` command, LFR_ setting, metric, topic and
alert rule a page names exists, and every one the code has is documented; the generated pages
(settings, metrics, alert rules, dashboard panels, measured figures) are what `lfr docs` writes."""

from __future__ import annotations

import json

import pytest

from services.tools.docsite import drift, inventory, render


@pytest.fixture(scope="module")
def findings() -> list[str]:
    return drift.check()


@pytest.mark.slow
def test_the_docs_name_only_what_the_code_has_and_document_all_of_it(findings):
    assert findings == [], "\n".join(findings)


def test_generated_pages_are_fresh():
    stale = [name for name, page in render.PAGES.items() if (render.DOCS / name).read_text(encoding="utf-8") != page()]
    assert stale == [], f"stale: {stale}; run `lfr docs`"


@pytest.mark.parametrize("text, expected", [
    ("run `lfr watchlist rename` to", "command `lfr watchlist rename` does not exist"),
    ("`lfr teleport`", "command `lfr teleport` does not exist"),
    ("set `LFR_NO_SUCH_KNOB=1`", "setting LFR_NO_SUCH_KNOB is read by no settings class or code"),
    ("watch `lfr_no_such_metric_total`", "metric lfr_no_such_metric_total is exported by no service"),
    ("read lfr.gossip.v1", "topic lfr.gossip.v1 is not in topics.toml (nor an older version of one)"),
    ("read lfr.alerts.v9", "topic lfr.alerts.v9 is not in topics.toml (nor an older version of one)"),
    ("see OpenLFRCoffeeLow", "alert rule OpenLFRCoffeeLow is not in the rules file"),
])
def test_a_page_naming_what_the_code_lacks_is_a_finding(text, expected):
    assert drift.documented_but_gone({"page.md": text}) == [f"page.md: {expected}"]


def test_real_names_and_their_variants_are_not_findings():
    text = ("`lfr deployment create|authorise|start` `lfr run detect` `LFR_KAFKA_BOOTSTRAP_SERVERS` "
            "`lfr_capture_to_alert_seconds_bucket` `lfr_frames_dropped_total{reason=\"x\"}` `lfr_dlq_payload` "
            "lfr.alerts.v2 (the old version) lfr-dispatch-open-alerts-changelog OpenLFRServiceDown "
            "helm install lfr helm/openlfr")
    assert drift.documented_but_gone({"page.md": text}) == []


def test_every_code_name_is_on_its_page(monkeypatch, tmp_path):
    """Take a command off the command-line page, a topic out of the integrators' table and an
    alert rule's section out of the runbook: each is reported."""
    cli = drift.CLI_PAGE.read_text(encoding="utf-8").replace("lfr dlq list|show|replay", "lfr dlq list|show")
    table = drift.TOPICS_TABLE_PAGE.read_text(encoding="utf-8").replace("| lfr.forces.v1 |", "| (gone) |")
    runbook = drift.RUNBOOK.read_text(encoding="utf-8").replace("## OpenLFRCameraStale\n", "## Camera stale\n")
    for attr, text in (("CLI_PAGE", cli), ("TOPICS_TABLE_PAGE", table), ("RUNBOOK", runbook)):
        path = tmp_path / f"{attr}.md"
        path.write_text(text, encoding="utf-8")
        monkeypatch.setattr(drift, attr, path)
    assert set(drift.in_code_but_undocumented()) == {
        "command `lfr dlq replay` is not on docs/reference/cli.md",
        "topic lfr.forces.v1 is not in the table of docs/integrators/index.md",
        "alert rule OpenLFRCameraStale has no section in docs/runbook.md",
    }


def test_figures_come_from_the_published_results_with_date_and_machine(monkeypatch, tmp_path):
    results = tmp_path / "results.json"
    figures = [{"scenario": "kill9_embed", "duplicate_alerts": 0, "lost_alerts": 1, "lost_unmatched": 1, "lost_never_embedded": 0,
                "walks_owed_alerts": 7, "dead_lettered": 0, "dead_letters_expected": 0, "crash_restarts": 0, "recovery_s": 3.25}]
    (tmp_path / "faults.json").write_text(json.dumps(figures), encoding="utf-8")
    monkeypatch.setattr(render, "RESULTS", tmp_path / "published")
    out = render.publish(tmp_path / "faults.json", "test machine, 2 cores", "make faults", date="2026-12-07 23:00 UTC")
    assert json.loads(out.read_text())["data"] == figures and results.exists() is False
    page = render.figures_page()
    assert "Run: 2026-12-07 23:00 UTC, on test machine, 2 cores; `make faults`" in page
    assert "| kill9_embed | 0 | 1 (1 / 0) of 7 | 0 | 0 | 3.25 |" in page


def test_the_inventory_sees_the_code():
    assert "watchlist add" in inventory.commands() and "docs publish" in inventory.commands()
    assert "LFR_KAFKA_BOOTSTRAP_SERVERS" in inventory.settings()
    metrics = inventory.metrics()
    assert metrics["lfr_frames_dropped_total"].kind == "counter" and "reason" in metrics["lfr_frames_dropped_total"].labels
    assert "lfr_build_info" in metrics
    assert "lfr.alerts.v3" in inventory.topics()
    assert {r["alert"] for r in inventory.alert_rules()} >= {"OpenLFRServiceDown", "OpenLFRRetentionBroken"}


def test_benchmark_results_render_as_tables(monkeypatch, tmp_path):
    """What benchmarks/security.py and benchmarks/matcher.py write renders once published."""
    security = {"smoke": False, "machine": {"python": "3.11.7", "cpu_count": 2},
                "watchlist_load": {"records": 2000, "decode_ms_per_record": 0.043, "verify_and_decode_ms_per_record": 0.137,
                                   "ratio_verified_over_decode": 3.19},
                "audit_append": {"appends": 100, "record_bytes": 361, "plain_produce_ms": 0.12, "chained_signed_ms": 0.56,
                                 "ratio_chained_over_plain": 4.6}}
    engine = {"p50_ms": 2.4, "p99_ms": 2.6, "recall_at_1": 1.0}
    matcher = {"benchmark": "matcher", "timestamp": "2026-12-02T09:00:00+00:00", "batch": 16,
               "sizes": [{"subjects": 10000, "embedded": engine, "embedded_snapshot": engine, "local": engine, "exact": engine,
                          "loadavg_1m": {"before": 0.5, "after": 0.7}}]}
    for name, data in (("security", security), ("matcher", matcher)):
        (tmp_path / f"{name}.json").write_text(json.dumps(data), encoding="utf-8")
    monkeypatch.setattr(render, "RESULTS", tmp_path / "published")
    render.publish(tmp_path / "security.json", "2 cores", "python benchmarks/security.py", date="2026-12-02")
    render.publish(tmp_path / "matcher.json", "2 cores", "python benchmarks/matcher.py")
    page = render.figures_page()
    assert "| 0.043 (decode only) | 0.137 (signature checked) | x3.19 |" in page
    assert "Run: 2026-12-02T09:00:00+00:00, on 2 cores" in page  # the benchmark's own timestamp
    assert "| 10,000 | 2.4 / 2.6 | 1.0 | 2.4 / 2.6 |" in page
