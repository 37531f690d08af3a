"""The national roll-up: per force, the figures forces and the Home Office publish, and their
totals (pure; no Kafka here). Counts only: never a deployment, a place, a subject or an image,
so a national role (NPCC) sees nothing finer than the force.

Each force's figures are its own transparency report's totals (services/operations/report/build.py),
computed from the topics under that force's prefix: a record counts for the force whose
topics hold it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: the stable keys of each force's row (`lfr report --national --json`: ``forces`` and ``totals``)
NATIONAL_KEYS = ("deployments", "faces", "alerts", "false_alerts", "arrests")


def force_row(force: str, report: Mapping[str, Any]) -> dict[str, Any]:
    """One force's row, from its report; only the national keys leave the force."""
    return {"force": force, **{key: int(report["totals"][key]) for key in NATIONAL_KEYS}}


def national_report(reports: Mapping[str, Mapping[str, Any]], period: Mapping[str, Any], generated_at: str | None) -> dict[str, Any]:
    """``reports``: force id -> that force's report. Forces in the order given."""
    rows = [force_row(force, report) for force, report in reports.items()]
    return {
        "generated_at": generated_at,
        "period": {"from": period.get("from"), "to": period.get("to")},
        "forces": rows,
        "totals": {key: sum(row[key] for row in rows) for key in NATIONAL_KEYS},
    }
