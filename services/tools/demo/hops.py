"""Capture-to-alert latency split per hop, from the timestamps the messages already carry.

A match carries its frame's ``captured_at_ms`` (ingest), the face's ``detected_at_ms`` (detect),
``embedded_at_ms`` (embed) and ``matched_at_ms`` (matcher); an alert carries
``capture_to_alert_ms`` (dispatch). The alert's evidence face is joined to its match by
(camera, frame seq, face index) to get the last hop. Clocks are one machine's here; across
machines each hop also holds the clock skew between its two ends.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

HOPS = ("capture_to_detect", "detect_to_embed", "embed_to_match", "match_to_alert")


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None}
    return {q: round(float(np.percentile(values, p)), 1) for q, p in (("p50", 50), ("p95", 95), ("p99", 99))}


def _face_key(face: Mapping[str, Any]) -> tuple[str, int, int]:
    return (face["frame"]["camera_id"], int(face["frame"]["seq"]), int(face["face_index"]))


def by_hop(matches: Iterable[Mapping[str, Any]], alerts: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, float | None]]:
    """p50/p95/p99 per hop: the first three over every match, the last over the alerts."""
    samples: dict[str, list[float]] = {hop: [] for hop in HOPS}
    matched_at: dict[tuple[str, int, int], int] = {}
    for match in matches:
        face = match["face"]
        captured = int(face["frame"]["captured_at_ms"])
        samples["capture_to_detect"].append(face["detected_at_ms"] - captured)
        samples["detect_to_embed"].append(match["embedded_at_ms"] - face["detected_at_ms"])
        samples["embed_to_match"].append(match["matched_at_ms"] - match["embedded_at_ms"])
        matched_at[_face_key(face)] = int(match["matched_at_ms"])
    for alert in alerts:
        key = _face_key(alert["face"])
        if key in matched_at:
            emitted = int(alert["face"]["frame"]["captured_at_ms"]) + float(alert["capture_to_alert_ms"])
            samples["match_to_alert"].append(emitted - matched_at[key])
    return {hop: percentiles(values) for hop, values in samples.items()}
