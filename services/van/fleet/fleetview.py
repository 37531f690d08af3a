"""The core's fleet view: Prometheus gauges from the latest accepted heartbeat of each van.

Labels are equipment (van, force, camera), never a person or a track. The alert rules of
helm/openlfr/files/prometheus-rules.yaml (group openlfr-fleet) read these: a van silent, its
backlog growing, its bundle about to expire or not erased, its cameras down in a deployment.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import Counter, Gauge

LABELS = ("van", "force")
LAST_SEEN = Gauge("lfr_fleet_heartbeat_timestamp_seconds", "When the van sent its latest heartbeat the core accepted (van clock)", LABELS)
RECEIVED = Gauge("lfr_fleet_heartbeat_received_timestamp_seconds", "When the core took in the van's latest heartbeat (core clock)", LABELS)
LINK_UP = Gauge("lfr_fleet_link_up", "1 when the van reported its link up, 0 down or unknown", LABELS)
BACKLOG = Gauge("lfr_fleet_backlog_records", "Outcome records waiting in the van's outbox", LABELS)
BACKLOG_BYTES = Gauge("lfr_fleet_backlog_bytes", "Bytes waiting in the van's outbox", LABELS)
BACKLOG_AGE = Gauge("lfr_fleet_backlog_oldest_age_seconds", "Age of the oldest record waiting in the van's outbox", LABELS)
DEPLOYMENT_ACTIVE = Gauge("lfr_fleet_deployment_active", "1 while the van holds a bundle whose window contains now", LABELS)
WINDOW_END = Gauge("lfr_fleet_bundle_window_end_timestamp_seconds", "End of the current bundle's window (0: no bundle)", LABELS)
ERASE_AT = Gauge("lfr_fleet_bundle_erase_timestamp_seconds", "When the van must have erased the current bundle (0: no bundle)", LABELS)
PAST_WINDOW = Gauge("lfr_fleet_bundles_past_window", "Bundles the van still holds whose window is over (awaiting or failing erasure)", LABELS)
CAMERAS_SENDING = Gauge("lfr_fleet_cameras_sending", "Cameras of the van sending frames (fps > 0)", LABELS)
CAMERAS = Gauge("lfr_fleet_cameras", "Cameras the van reports", LABELS)
CAMERA_FPS = Gauge("lfr_fleet_camera_fps", "Frames per second a camera of the van sent", (*LABELS, "camera"))
DISK_FREE = Gauge("lfr_fleet_disk_free_bytes", "Free space where the van keeps its state", LABELS)
DISK_TOTAL = Gauge("lfr_fleet_disk_total_bytes", "Size of the van's state disk", LABELS)
INFO = Gauge("lfr_fleet_van_info", "1 per van with its software version and build", (*LABELS, "version", "build"))
HEARTBEATS = Counter("lfr_fleet_heartbeats_total", "Heartbeats the core accepted", ["force"])


class FleetView:
    """The latest heartbeat per van, mirrored into the gauges; ``vans()`` for a console page."""

    def __init__(self, export: bool = True) -> None:
        self.export = export  # False: the review console's copy (the intake exports the gauges)
        self._latest: dict[str, dict[str, Any]] = {}
        self._cameras: dict[str, set[str]] = {}
        self._info: dict[str, tuple[str, str]] = {}

    def update(self, body: Mapping[str, Any], received_ms: int) -> None:
        van, force = body["van_id"], body["force"]
        previous = self._latest.get(van)
        if previous is not None and previous["at_ms"] > body["at_ms"]:
            return  # an older heartbeat delivered late (after a backlog drained): keep the newer
        if previous is not None and previous["force"] != force:
            self._forget(van, previous["force"])
        self._latest[van] = {**body, "received_ms": received_ms}
        if not self.export:
            return
        labels = (van, force)
        at_ms = body["at_ms"]
        LAST_SEEN.labels(*labels).set(at_ms / 1000)
        RECEIVED.labels(*labels).set(received_ms / 1000)
        link = body.get("link", {})
        LINK_UP.labels(*labels).set(1 if link.get("state") == "up" else 0)
        BACKLOG.labels(*labels).set(link.get("backlog_records", 0))
        BACKLOG_BYTES.labels(*labels).set(link.get("backlog_bytes", 0))
        BACKLOG_AGE.labels(*labels).set(link.get("backlog_oldest_age_s", 0.0))
        bundle = body.get("bundle") or {}
        active = bool(bundle) and bundle.get("window_start_ms", 0) <= at_ms < bundle.get("window_end_ms", bundle["erase_at_ms"])
        DEPLOYMENT_ACTIVE.labels(*labels).set(1 if active else 0)
        WINDOW_END.labels(*labels).set(bundle.get("window_end_ms", 0) / 1000)
        ERASE_AT.labels(*labels).set(bundle.get("erase_at_ms", 0) / 1000)
        PAST_WINDOW.labels(*labels).set(max(0, body.get("bundles_held", 0) - (1 if bundle else 0)))
        cameras = {c["camera_id"]: c["fps"] for c in body.get("cameras", [])}
        for gone in self._cameras.get(van, set()) - set(cameras):
            CAMERA_FPS.remove(van, force, gone)
        self._cameras[van] = set(cameras)
        for camera, fps in cameras.items():
            CAMERA_FPS.labels(van, force, camera).set(fps)
        CAMERAS.labels(*labels).set(len(cameras))
        CAMERAS_SENDING.labels(*labels).set(sum(1 for fps in cameras.values() if fps > 0))
        DISK_FREE.labels(*labels).set(body.get("disk_free_bytes", 0))
        DISK_TOTAL.labels(*labels).set(body.get("disk_total_bytes", 0))
        software = body.get("software", {})
        info = (software.get("version", "unknown"), software.get("build", ""))
        if self._info.get(van) not in (None, info):
            INFO.remove(van, force, *self._info[van])
        self._info[van] = info
        INFO.labels(van, force, *info).set(1)
        HEARTBEATS.labels(force).inc()

    def _forget(self, van: str, force: str) -> None:
        """A van lent to another force: its old force's series go."""
        for gauge in (LAST_SEEN, RECEIVED, LINK_UP, BACKLOG, BACKLOG_BYTES, BACKLOG_AGE, DEPLOYMENT_ACTIVE, WINDOW_END,
                      ERASE_AT, PAST_WINDOW, CAMERAS_SENDING, CAMERAS, DISK_FREE, DISK_TOTAL):
            try:
                gauge.remove(van, force)
            except KeyError:
                pass
        for camera in self._cameras.pop(van, set()):
            CAMERA_FPS.remove(van, force, camera)
        if van in self._info:
            INFO.remove(van, force, *self._info.pop(van))

    def vans(self, force: str | None = None) -> list[dict[str, Any]]:
        return [dict(body) for van, body in sorted(self._latest.items()) if force is None or body["force"] == force]
