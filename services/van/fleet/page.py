"""The fleet page of the review console: the force's vans from their latest heartbeats (HTML, no script).

Per van: deployment, link state, backlog, cameras and their frame rates, the bundle's window end
and erase time, free disk, software, and how long ago the console last heard from it. Only the
console's own force's vans are listed (the caller filters); equipment only, never a person.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable, Mapping
from typing import Any


def _when(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ms / 1000)) if ms else "—"


def _ago(now_ms: int, ms: int) -> str:
    seconds = max(0, (now_ms - ms) // 1000)
    return f"{seconds} s" if seconds < 120 else f"{seconds // 60} min"


def fleet_rows(vans: Iterable[Mapping[str, Any]], now_ms: int) -> list[dict[str, Any]]:
    """The page's figures per van (also the JSON of /api/fleet)."""
    rows = []
    for van in vans:
        link, bundle = van.get("link", {}), van.get("bundle") or {}
        cameras = van.get("cameras", [])
        total = van.get("disk_total_bytes") or 0
        rows.append({
            "van_id": van["van_id"], "force": van["force"], "deployment_id": van.get("deployment_id"),
            "heard_ago_s": max(0, (now_ms - van["received_ms"]) // 1000), "van_clock_ms": van["at_ms"],
            "link": link.get("state", "unknown"), "backlog_records": link.get("backlog_records", 0),
            "backlog_oldest_age_s": link.get("backlog_oldest_age_s", 0.0),
            "cameras": [{"camera_id": c["camera_id"], "fps": c["fps"]} for c in cameras],
            "cameras_sending": sum(1 for c in cameras if c["fps"] > 0),
            "window_end_ms": bundle.get("window_end_ms"), "erase_at_ms": bundle.get("erase_at_ms"),
            "bundles_held": van.get("bundles_held", 0),
            "disk_free_pct": round(100 * van.get("disk_free_bytes", 0) / total, 1) if total else None,
            "software": van.get("software", {}),
        })
    return rows


def render_fleet_html(rows: list[Mapping[str, Any]], force: str, now_ms: int) -> str:
    e = html.escape
    head = ("<tr><th>Van</th><th>Deployment</th><th>Last heard</th><th>Link</th><th>Backlog</th><th>Cameras sending</th>"
            "<th>Window ends</th><th>Erased by</th><th>Bundles held</th><th>Free disk</th><th>Software</th></tr>")
    body = []
    for r in rows:
        cameras = ", ".join(f"{e(c['camera_id'])} {c['fps']:.1f} fps" for c in r["cameras"]) or "none"
        software = r["software"]
        body.append(
            f"<tr><td>{e(r['van_id'])}</td><td>{e(r['deployment_id'] or '—')}</td><td>{_ago(now_ms, now_ms - r['heard_ago_s'] * 1000)} ago</td>"
            f"<td>{e(r['link'])}</td><td>{r['backlog_records']} (oldest {r['backlog_oldest_age_s']:.0f} s)</td>"
            f"<td>{r['cameras_sending']} of {len(r['cameras'])}: {cameras}</td><td>{_when(r['window_end_ms'])}</td>"
            f"<td>{_when(r['erase_at_ms'])}</td><td>{r['bundles_held']}</td>"
            f"<td>{'—' if r['disk_free_pct'] is None else str(r['disk_free_pct']) + ' %'}</td>"
            f"<td>{e(str(software.get('version', '')))} {e(str(software.get('build', '')))}</td></tr>")
    table = f"<table><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>" if body else "<p>No van of this force has sent a heartbeat.</p>"
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Fleet: {e(force)}</title></head>"
            f"<body><h1>Fleet of force {e(force)}</h1><p>From each van's latest heartbeat, as of {_when(now_ms)}.</p>{table}</body></html>")
