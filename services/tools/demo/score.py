"""Scores alerts against the synthetic camera's ground truth (it knows who walked where)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from services.engine.face.boxes import box_iou

MIN_RECOGNISABLE_WIDTH = 64


def latest_revisions(alert_events: Iterable[dict]) -> tuple[dict[str, dict], dict[str, dict]]:
    """(first event, latest event) per alert id: an update replaces the evidence, not the alert."""
    first: dict[str, dict] = {}
    latest: dict[str, dict] = {}
    for event in alert_events:
        first.setdefault(event["alert_id"], event)
        if event["alert_id"] not in latest or event["revision"] >= latest[event["alert_id"]]["revision"]:
            latest[event["alert_id"]] = event
    return first, latest


def is_true_alert(alert: dict, truth_by_frame: dict[tuple[str, int], list[dict]]) -> bool:
    frame = alert["face"]["frame"]
    for face in truth_by_frame.get((frame["camera_id"], frame["seq"]), []):
        if face["identity"] == alert["subject_id"] and box_iou(face["box"], alert["face"]["box"]) > 0.2:
            return True
    return False


def summarise(alert_events: list[dict], truth: list[dict], watchlisted: set[str], frames: int, faces: int) -> dict:
    truth_by_frame = {(t["camera_id"], t["seq"]): t["faces"] for t in truth}
    widest: dict[str, int] = {}
    for record in truth:
        for face in record["faces"]:
            if face["identity"] in watchlisted:
                widest[face["identity"]] = max(widest.get(face["identity"], 0), face["face_width"])
    first, latest = latest_revisions(alert_events)
    true_alerts = [a for a in latest.values() if is_true_alert(a, truth_by_frame)]
    alerted = {a["subject_id"] for a in true_alerts}
    latencies = [a["capture_to_alert_ms"] for a in first.values()]
    return {
        "frames": frames,
        "faces": faces,
        "alerts": len(latest),
        "alert_updates": len(alert_events) - len(latest),
        "true_alerts": len(true_alerts),
        "false_alerts": len(latest) - len(true_alerts),
        "subjects_shown": sorted(widest),
        "missed_subjects": sorted(s for s, w in widest.items() if w >= MIN_RECOGNISABLE_WIDTH and s not in alerted),
        "latency_ms": {
            q: round(float(np.percentile(latencies, p)), 1) for q, p in (("p50", 50), ("p95", 95), ("p99", 99))
        } if latencies else {"p50": None, "p95": None, "p99": None},
    }
