"""The one deployment policy every service calls. Pure decisions plus the drop counters.

- ingest: ``capture_refusal`` -- may this camera capture now? (active, inside the window, and
  the camera is one of the deployment's cameras);
- detect, embed, matcher, dispatch: ``record_refusal`` -- is the record's deployment active, and
  was the record captured inside its window (give or take the clock skew allowance)?
- matcher: ``match_scope`` -- the entry versions of the deployment's active snapshot and its
  threshold; a probe is searched against those entries only.

Each returns the reason a record is refused (a metric label), or None. The state comes from a
``Deployments`` source: the materialised view of lfr.deployments.v1 in the services
(view.py), or a plain mapping in pure tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import Counter

from .record import Deployment

# Drop-policy name, as the README and dashboards call it.
POLICY = "deployment-required"

RECORDS_REFUSED = Counter(
    "lfr_deployment_records_dropped_total",
    "Records dropped because their deployment is not active (policy deployment-required)",
    ["service", "reason"],
)
FRAMES_NOT_CAPTURED = Counter(
    "lfr_frames_not_captured_total", "Frame slots a camera did not capture because its deployment forbids it", ["camera", "reason"]
)

NO_DEPLOYMENT = "unknown_deployment"
NOT_ACTIVE = "not_active"
OUTSIDE_WINDOW = "outside_window"
CAMERA_NOT_AUTHORISED = "camera_not_in_deployment"
NO_SNAPSHOT = "no_snapshot"


class Deployments(Protocol):
    def get(self, deployment_id: str) -> Deployment | None: ...


def now_ms() -> int:
    return int(time.time() * 1000)


def inactive_reason(deployment: Deployment | None, at_ms: int, skew_ms: int = 0) -> str | None:
    """Why ``deployment`` does not cover an event at ``at_ms`` (None when it does)."""
    if deployment is None:
        return NO_DEPLOYMENT
    if deployment.state != "active":
        return NOT_ACTIVE
    window = deployment.window
    if window is None or not window.start_ms - skew_ms <= at_ms <= window.end_ms + skew_ms:
        return OUTSIDE_WINDOW
    return None


def is_active(deployment: Deployment | None, at_ms: int, skew_ms: int = 0) -> bool:
    return inactive_reason(deployment, at_ms, skew_ms) is None


@dataclass(frozen=True)
class MatchScope:
    """What a probe of this deployment may be compared with."""

    entry_versions: frozenset[str]
    threshold: float


@dataclass
class DeploymentPolicy:
    deployments: Deployments | Mapping[str, Deployment]
    skew_ms: int = 2_000
    clock: Callable[[], int] = now_ms

    def _get(self, deployment_id: str) -> Deployment | None:
        return self.deployments.get(deployment_id)

    def capture_refusal(self, camera_id: str, deployment_id: str) -> str | None:
        """Capture is strict (no skew): only now, only inside the window, only listed cameras."""
        deployment = self._get(deployment_id)
        reason = inactive_reason(deployment, self.clock())
        if reason is None and camera_id not in deployment.cameras:
            reason = CAMERA_NOT_AUTHORISED
        return reason

    def record_refusal(self, deployment_id: str, captured_at_ms: int) -> str | None:
        """The deployment must be active now and the record captured inside its window (+- skew)."""
        return inactive_reason(self._get(deployment_id), captured_at_ms, self.skew_ms)

    def admit(self, service: str, deployment_id: str, captured_at_ms: int) -> bool:
        """record_refusal, counted: False means drop the record."""
        reason = self.record_refusal(deployment_id, captured_at_ms)
        if reason is not None:
            RECORDS_REFUSED.labels(service, reason).inc()
            return False
        return True

    def match_scope(self, deployment_id: str) -> MatchScope | None:
        deployment = self._get(deployment_id)
        if deployment is None or deployment.state != "active" or deployment.snapshot is None or deployment.snapshot.erased_at_ms:
            return None
        threshold = deployment.match_threshold if deployment.match_threshold is not None else 1.0
        return MatchScope(deployment.snapshot.entry_versions, threshold)


def frame_deployment(data: Mapping) -> tuple[str, int]:
    """(deployment id, capture time) of a frame, face, embedding or match body."""
    frame = data.get("frame") or (data.get("face") or {}).get("frame") or data
    return frame["deployment_id"], int(frame["captured_at_ms"])
