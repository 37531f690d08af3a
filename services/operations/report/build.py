"""The report's figures, computed from topic records alone (pure; no Kafka here).

Definitions (one place, used by the CLI, the console's report page and the demo):
- alerts: distinct alert ids (updates of an alert are not new alerts);
- confirmed / false_alerts / unable_to_verify: the officer's decision (false alert = rejected);
- engagements: an outcome in which officers stopped the person (spoken to, arrested, other);
- arrests: outcome arrested;
- faces: faces processed, i.e. every face the detector found in the frames detect ran through
  (before the quality gate and shot selection), summed over distinct lfr.counts.v2 count ids;
- false alert rate: per 1,000 faces and per alert;
- median alert-to-decision: over decisions, from the alert being raised to the decision.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from .deployments import DeploymentFacts
from .topics import ReportInputs

#: the stable summary keys (`lfr report --json`, the demo's "report")
SUMMARY_KEYS = ("faces", "alerts", "confirmed", "false_alerts", "engagements", "arrests")
ENGAGED = ("spoken_to", "arrested", "other")


def _iso(ms: int | None) -> str | None:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if ms is not None else None


def latest_adjudications(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per alert: its decision record, with the outcome (if one was recorded) merged in."""
    merged: dict[str, dict[str, Any]] = {}
    for record in sorted(records, key=lambda r: (r["decided_at_ms"], r["stage"] == "outcome")):
        current = merged.get(record["alert_id"])
        if record["stage"] == "decision" or current is None:
            outcome = current.get("outcome") if current else None
            current = merged[record["alert_id"]] = dict(record)
            if outcome:
                current["outcome"] = outcome
        if record["stage"] == "outcome":
            current["outcome"] = record.get("outcome")
    return merged


def _in(ms: int, from_ms: int | None, to_ms: int | None) -> bool:
    return (from_ms is None or ms >= from_ms) and (to_ms is None or ms < to_ms)


def figures(alert_ids: set[str], adjudications: dict[str, dict[str, Any]], faces: int) -> dict[str, Any]:
    decided = [adjudications[a] for a in alert_ids if a in adjudications]
    count = lambda pred: sum(1 for d in decided if pred(d))  # noqa: E731
    false_alerts = count(lambda d: d["decision"] == "rejected")
    alerts = len(alert_ids)
    delays = [d["alert_to_decision_ms"] for d in decided]
    return {
        "faces": faces,
        "alerts": alerts,
        "confirmed": count(lambda d: d["decision"] == "confirmed"),
        "false_alerts": false_alerts,
        "unable_to_verify": count(lambda d: d["decision"] == "unable_to_verify"),
        "not_adjudicated": alerts - len(decided),
        "false_alert_rate_per_1000_faces": round(1000 * false_alerts / faces, 4) if faces else None,
        "false_alert_rate_per_alert": round(false_alerts / alerts, 4) if alerts else None,
        "engagements": count(lambda d: d.get("outcome") in ENGAGED),
        "arrests": count(lambda d: d.get("outcome") == "arrested"),
        "median_alert_to_decision_s": round(statistics.median(delays) / 1000, 1) if delays else None,
    }


def build_report(inputs: ReportInputs, deployment: str | None = None, from_ms: int | None = None, to_ms: int | None = None,
                 now_ms: int | None = None) -> dict[str, Any]:
    alerts_by_dep: dict[str, set[str]] = {}
    activity: dict[str, list[int]] = {}
    for alert in inputs.alerts:
        if _in(alert["first_seen_ms"], from_ms, to_ms):
            alerts_by_dep.setdefault(alert["deployment_id"], set()).add(alert["alert_id"])
            activity.setdefault(alert["deployment_id"], []).append(alert["first_seen_ms"])
    faces_by_dep: dict[str, int] = {}
    seen_counts: set[str] = set()
    for count in inputs.counts:
        if count["count_id"] in seen_counts or not _in(count["counted_at_ms"], from_ms, to_ms):
            continue
        seen_counts.add(count["count_id"])
        faces_by_dep[count["deployment_id"]] = faces_by_dep.get(count["deployment_id"], 0) + count["faces"]
        activity.setdefault(count["deployment_id"], []).append(count["counted_at_ms"])
    for facts in inputs.deployments.values():
        if facts.start_ms is not None and _in(facts.start_ms, from_ms, to_ms):
            activity.setdefault(facts.deployment_id, [])
    adjudications = latest_adjudications(inputs.adjudications)
    ids = sorted(set(activity) | set(alerts_by_dep))
    if deployment is not None:
        ids = [d for d in ids if d == deployment] or [deployment]
    rows = []
    for dep in ids:
        facts = inputs.deployments.get(dep) or DeploymentFacts(dep)
        seen = activity.get(dep, [])
        start = facts.start_ms if facts.start_ms is not None else (min(seen) if seen else None)
        end = facts.end_ms if facts.end_ms is not None else (max(seen) if seen else None)
        size = facts.watchlist_size if facts.watchlist_size is not None else sum(1 for scopes in inputs.watchlist_scopes.values() if dep in scopes)
        rows.append({
            "deployment_id": dep,
            "date": _iso(start)[:10] if start is not None else None,
            "start": _iso(start), "end": _iso(end),
            "duration_h": round((end - start) / 3_600_000, 2) if start is not None and end is not None else None,
            "place": facts.place, "authorising_rank": facts.authorising_rank,
            "window_source": "deployment record" if facts.recorded else "observed activity",
            "watchlist_size": size,
            **figures(alerts_by_dep.get(dep, set()), adjudications, faces_by_dep.get(dep, 0)),
        })
    all_alerts = set().union(*(alerts_by_dep.get(r["deployment_id"], set()) for r in rows)) if rows else set()
    totals = {"deployments": len(rows), **figures(all_alerts, adjudications, sum(r["faces"] for r in rows))}
    return {
        "generated_at": _iso(now_ms) if now_ms is not None else None,
        "period": {"from": _iso(from_ms), "to": _iso(to_ms), "deployment": deployment},
        "deployments": rows,
        "totals": totals,
    }


def summary(report: dict[str, Any]) -> dict[str, int]:
    """The stable keys other tools read."""
    return {key: report["totals"][key] for key in SUMMARY_KEYS}
