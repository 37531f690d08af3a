"""The van's heartbeat (lfr.heartbeats.v1): its state for the force's fleet view, never a face.

``build_heartbeat`` is pure: the van's id and force, the bundles it holds (from the ledger of
services/van/fleet/vanstore.py), the cameras' frame rates, the link's backlog (the outbox) and the
disk, at one instant. ``publish_heartbeat`` writes it to the van's broker, keyed by van id; the
link forwards it like any outcome.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from services.common.envelope import encode

SCHEMA = "lfr.heartbeats.v1"
DEFAULT_TOPIC = "lfr.heartbeats.v1"


def current_bundle(held: Mapping[str, Mapping[str, Any]], now_ms: int) -> tuple[str, Mapping[str, Any]] | None:
    """The held bundle whose window contains now, else the next to start, else None."""
    inside = [(k, v) for k, v in held.items() if v.get("window_start_ms", 0) <= now_ms < v.get("window_end_ms", v["erase_at_ms"])]
    later = sorted(((k, v) for k, v in held.items() if v.get("window_start_ms", 0) > now_ms), key=lambda kv: kv[1]["window_start_ms"])
    chosen = inside or later
    return chosen[0] if chosen else None


def link_state(backlog_rows: int, last_ack_ms: int | None, now_ms: int, down_after_s: float) -> str:
    if backlog_rows == 0:
        return "up"
    return "up" if last_ack_ms is not None and now_ms - last_ack_ms < down_after_s * 1000 else "down"


def build_heartbeat(*, van_id: str, force: str, now_ms: int, held: Mapping[str, Mapping[str, Any]], cameras: Mapping[str, float],
                    backlog=None, last_ack_ms: int | None = None, down_after_s: float = 10.0, disk_path: Path = Path("."),
                    version: str = "unknown", build: str = "") -> dict[str, Any]:
    """One heartbeat body (schema lfr.heartbeats.v1). ``backlog`` is the outbox's Backlog, or
    None when this van has no outbox (link state unknown)."""
    disk = shutil.disk_usage(disk_path)
    body: dict[str, Any] = {
        "van_id": van_id, "force": force, "at_ms": now_ms, "bundles_held": len(held),
        "cameras": [{"camera_id": camera, "fps": round(float(fps), 2)} for camera, fps in sorted(cameras.items())],
        "disk_free_bytes": int(disk.free), "disk_total_bytes": int(disk.total),
        "software": {"version": version, "build": build},
    }
    if backlog is None:
        body["link"] = {"state": "unknown", "backlog_records": 0, "backlog_bytes": 0, "backlog_oldest_age_s": 0.0}
    else:
        oldest = backlog.oldest_enqueued_at_ms
        body["link"] = {"state": link_state(backlog.rows, last_ack_ms, now_ms, down_after_s), "backlog_records": backlog.rows,
                        "backlog_bytes": backlog.bytes, "backlog_oldest_age_s": max(0.0, (now_ms - oldest) / 1000) if oldest else 0.0}
        if last_ack_ms is not None:
            body["link"]["last_ack_at_ms"] = last_ack_ms
    found = current_bundle(held, now_ms)
    if found is not None:
        bundle_id, entry = found
        body["deployment_id"] = entry["deployment_id"]
        body["bundle"] = {"bundle_id": bundle_id, "erase_at_ms": entry["erase_at_ms"],
                          **{k: entry[k] for k in ("window_start_ms", "window_end_ms") if k in entry}}
    return body


def heartbeat_record(body: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """(key, value): validated against the schema (a bad heartbeat raises, never leaves)."""
    return body["van_id"].encode(), encode(SCHEMA, body)


def publish_heartbeat(producer, topic: str, body: Mapping[str, Any], timeout_s: float = 10.0) -> None:
    key, value = heartbeat_record(body)
    producer.produce(topic, key=key, value=value)
    if producer.flush(timeout_s) != 0:
        raise TimeoutError(f"heartbeat not acknowledged by the van's broker within {timeout_s} s")
