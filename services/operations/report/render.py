"""The report as one static HTML page (no scripts, no external resources)."""

from __future__ import annotations

from html import escape
from typing import Any

COLUMNS = (
    ("date", "Date"), ("place", "Place"), ("duration_h", "Duration (h)"), ("authorising_rank", "Authorised by (rank)"),
    ("watchlist_size", "Watchlist size"), ("faces", "Faces processed"), ("alerts", "Alerts"), ("confirmed", "Confirmed"),
    ("false_alerts", "False alerts"), ("false_alert_rate_per_1000_faces", "False alerts per 1,000 faces"),
    ("false_alert_rate_per_alert", "False alerts per alert"), ("engagements", "Engagements"), ("arrests", "Arrests"),
    ("median_alert_to_decision_s", "Median alert-to-decision (s)"),
)


def _cell(value: Any) -> str:
    if value is None:
        return '<td class="none">not recorded</td>'
    if isinstance(value, float):
        return f"<td>{value:,.4g}</td>"
    if isinstance(value, int):
        return f"<td>{value:,}</td>"
    return f"<td>{escape(str(value))}</td>"


def render_html(report: dict[str, Any]) -> str:
    period = report["period"]
    scope = (f"deployment {escape(period['deployment'])}" if period.get("deployment")
             else f"{escape(period.get('from') or 'the beginning')} to {escape(period.get('to') or 'now')}")
    head = "".join(f"<th>{escape(title)}</th>" for _, title in COLUMNS)
    rows = "".join(
        f"<tr><th>{escape(row['deployment_id'])}</th>{''.join(_cell(row.get(key)) for key, _ in COLUMNS)}</tr>"
        for row in report["deployments"]
    )
    totals = report["totals"]
    total_cells = "".join(_cell(totals.get(key)) if key in totals else "<td></td>" for key, _ in COLUMNS)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>OpenLFR transparency report</title>
<style>
body {{ font: 14px/1.35 system-ui, sans-serif; margin: 1.5rem; color: #111; }}
table {{ border-collapse: collapse; width: 100%; }} th, td {{ border: 1px solid #bbb; padding: .3rem .4rem; text-align: right; }}
thead th {{ background: #eee; font-size: .75rem; font-weight: 600; }} tbody th, tfoot th {{ text-align: left; }}
tfoot {{ font-weight: 700; background: #f6f6f6; }} .none {{ color: #888; font-style: italic; }}
</style></head>
<body>
<h1>Live facial recognition: transparency report</h1>
<p>Scope: {scope}. Generated {escape(report.get('generated_at') or '')}.
Deployments: {totals['deployments']}. Faces processed are counts per deployment; no face is kept for this report.</p>
<table>
<thead><tr><th>Deployment</th>{head}</tr></thead>
<tbody>{rows}</tbody>
<tfoot><tr><th>Total</th>{total_cells}</tr></tfoot>
</table>
<p>False alert: the reviewing officer found the person was not the one on the watchlist.
Engagement: officers stopped the person (spoken to, arrested or other).</p>
</body></html>
"""
