"""The dispatch policy "person-deployment-track/v1": when a watchlist match becomes an alert.

Pure functions, no Kafka or faust imports: the faust runner (``service.py``) keeps one
:class:`OpenAlert` per ``subject_id|deployment_id`` in a changelog-backed table and calls
:func:`decide` for every match, in partition order (lfr.matches.v1 is keyed by subject, so all
of a person's matches, from every camera of every deployment, reach one partition in order).

One alert per person per deployment within the cooldown; other cameras and better shots
update it rather than raising more. Event time = the frame's ``captured_at_ms`` (never the
wall clock):

1. **New alert.** No open alert for this subject in this deployment, or the sighting is more
   than ``cooldown_ms`` after the open alert's ``last_seen_ms``: a new window starts at this
   sighting. Its ``alert_id`` is derived from (subject, deployment, window start), so
   replaying the same matches yields the same id. Emitted with ``revision`` 0.
2. **Track-level score.** Detect sends a few shots per face track (services/engine/tracking/); the
   score of a (camera, track, subject) is the best score over the track's shots ("track-best":
   the matcher already dropped every shot below threshold, and one clear shot of a track is the
   evidence an officer needs). The state keeps, per track, its shots and best score
   (at most :data:`MAX_TRACKS`, the least recently seen dropped first).
3. **Same window, nothing new.** Within the cooldown the sighting joins the open alert:
   ``last_seen_ms``, ``sightings`` and the track's shots are updated, nothing is emitted.
4. **Same window, update.** Within the cooldown, when the sighting is from a camera the alert
   has not seen yet, or its score is strictly above the best so far: ``revision`` is bumped
   and an updated alert (same ``alert_id``) is emitted carrying this evidence (chip, score,
   camera, ...) and the list of cameras; the best score never goes down.
5. **Idempotent under redelivery.** Input is at-least-once, so a match the state has already
   accounted for changes nothing and emits nothing. A sighting is identified by
   (``captured_at_ms``, frame ``seq``, ``face_index``, camera hash); the state keeps the most
   recent :data:`RECENT_SIGHTINGS` of them and a floor below which everything counts as seen.
   A sighting older than the open window's start belongs to a closed window (or arrived very
   late) and is ignored too, since it can no longer change the alert's identity.

CloudEvent ids are deterministic: ``ce_id = f"{alert_id}.{revision}"``, so a replay re-emits
the same id for the same decision and consumers can de-duplicate on (``ce_source``, ``ce_id``).

The state holds ids, times, counts and scores only: never a chip or an embedding, so the
changelog topic carries no biometric data (track ids are random and carry no identity).
"""

from __future__ import annotations

import bisect
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

POLICY = "person-deployment-track/v1"
RECENT_SIGHTINGS = 64
MAX_TRACKS = 64
MAX_CAMERAS = 64
ALERT_SCHEMA = "lfr.alerts.v3"
MATCH_SCHEMA = "lfr.matches.v1"
# Namespace of the alert ids (uuid5): fixed forever, or replays would change every id.
ALERT_ID_NAMESPACE = uuid.UUID("6f1c2f0e-8d1b-5b7a-9c43-0f3a1d2e5b90")

SightingId = tuple[int, ...]  # (captured_at_ms, frame seq, face_index, crc32 of the camera id)
Kind = Literal["new", "update"]


def table_key(subject_id: str, deployment_id: str) -> str:
    """Key of the open-alert table. ``|`` cannot occur in an id (lfr.common.v1 id pattern)."""
    return f"{subject_id}|{deployment_id}"


def alert_id_for(subject_id: str, deployment_id: str, window_start_ms: int) -> str:
    """Deterministic alert id of the window that starts at ``window_start_ms``."""
    return str(uuid.uuid5(ALERT_ID_NAMESPACE, f"{subject_id}|{deployment_id}|{window_start_ms}"))


def track_key(match: Mapping[str, Any]) -> str:
    """``camera|track id`` of a match's face; a face without a track is a track of its own."""
    face = match["face"]
    track = face.get("track")
    track_id = track["id"] if track else f"f{face['frame']['seq']}.{face['face_index']}"
    return f"{face['frame']['camera_id']}|{track_id}"


def ce_id_for(alert_id: str, revision: int) -> str:
    """Deterministic CloudEvent id of one revision of one alert."""
    return f"{alert_id}.{revision}"


def sighting_id(match: Mapping[str, Any]) -> SightingId:
    face = match["face"]
    camera = zlib.crc32(face["frame"]["camera_id"].encode())
    return (int(face["frame"]["captured_at_ms"]), int(face["frame"]["seq"]), int(face["face_index"]), camera)


@dataclass(frozen=True)
class OpenAlert:
    """The state of one (subject, deployment) window; JSON-serialisable via to_json/from_json."""

    alert_id: str
    subject_id: str
    deployment_id: str
    camera_id: str  # camera of the evidence the latest revision carries
    first_seen_ms: int
    last_seen_ms: int
    sightings: int
    revision: int
    best_score: float
    recent: tuple[SightingId, ...] = ()  # sorted ascending, at most RECENT_SIGHTINGS
    floor: SightingId | None = None  # every sighting <= floor is accounted for
    cameras: tuple[str, ...] = ()  # cameras that saw the person in this window, first first
    tracks: tuple[tuple[str, int, float, int], ...] = ()  # (camera|track, shots, best score, last seen), oldest first

    def with_track(self, key: str, score: float, seen_ms: int) -> OpenAlert:
        """Fold one shot into its track's score (track-best) and keep at most MAX_TRACKS."""
        tracks = {k: (shots, best, last) for k, shots, best, last in self.tracks}
        shots, best, last = tracks.pop(key, (0, score, seen_ms))
        tracks[key] = (shots + 1, max(best, score), max(last, seen_ms))
        ordered = sorted(tracks.items(), key=lambda item: item[1][2])[-MAX_TRACKS:]
        return replace(self, tracks=tuple((k, s, b, t) for k, (s, b, t) in ordered))

    def track_score(self, key: str) -> float | None:
        return next((best for k, _, best, _ in self.tracks if k == key), None)

    def accounts_for(self, sid: SightingId) -> bool:
        if sid[0] < self.first_seen_ms:
            return True  # belongs to a closed window, or too late to change this one
        if self.floor is not None and sid <= self.floor:
            return True
        index = bisect.bisect_left(self.recent, sid)
        return index < len(self.recent) and self.recent[index] == sid

    def remember(self, sid: SightingId) -> OpenAlert:
        recent = list(self.recent)
        bisect.insort(recent, sid)
        floor = self.floor
        while len(recent) > RECENT_SIGHTINGS:
            evicted = recent.pop(0)
            floor = evicted if floor is None else max(floor, evicted)
        return replace(self, recent=tuple(recent), floor=floor)

    def to_json(self) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id,
            "subject_id": self.subject_id,
            "deployment_id": self.deployment_id,
            "camera_id": self.camera_id,
            "first_seen_ms": self.first_seen_ms,
            "last_seen_ms": self.last_seen_ms,
            "sightings": self.sightings,
            "revision": self.revision,
            "best_score": self.best_score,
            "recent": [list(s) for s in self.recent],
            "floor": list(self.floor) if self.floor is not None else None,
            "cameras": list(self.cameras),
            "tracks": [list(t) for t in self.tracks],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OpenAlert:
        return cls(
            alert_id=data["alert_id"],
            subject_id=data["subject_id"],
            deployment_id=data["deployment_id"],
            camera_id=data["camera_id"],
            first_seen_ms=int(data["first_seen_ms"]),
            last_seen_ms=int(data["last_seen_ms"]),
            sightings=int(data["sightings"]),
            revision=int(data["revision"]),
            best_score=float(data["best_score"]),
            recent=tuple(tuple(int(x) for x in s) for s in data.get("recent") or ()),  # type: ignore[misc]
            floor=tuple(int(x) for x in data["floor"]) if data.get("floor") else None,
            cameras=tuple(data.get("cameras") or ()),
            tracks=tuple((str(k), int(n), float(b), int(t)) for k, n, b, t in data.get("tracks") or ()),
        )


@dataclass(frozen=True)
class Alert:
    """One alert to emit: the lfr.alerts.v3 body plus what the runner needs around it."""

    kind: Kind
    ce_id: str
    data: dict[str, Any] = field(repr=False)
    emitted_at_ms: int = 0
    # The probe chip travels apart from the alert, sealed in lfr.evidence.v1 (services/governance/evidence):
    # the alerts topic keeps no biometric data, so a rejected alert's chip can be shredded.
    chip: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def alert_id(self) -> str:
        return self.data["alert_id"]

    @property
    def subject_id(self) -> str:
        return self.data["subject_id"]

    @property
    def camera_id(self) -> str:
        return self.data["camera_id"]

    @property
    def deployment_id(self) -> str:
        return self.data["deployment_id"]

    @property
    def priority(self) -> str:
        return self.data["priority"]

    @property
    def revision(self) -> int:
        return self.data["revision"]

    @property
    def capture_to_alert_ms(self) -> float:
        return self.data["capture_to_alert_ms"]


def decide(state: OpenAlert | None, match: Mapping[str, Any], cooldown_ms: int, now_ms: int) -> tuple[OpenAlert | None, Alert | None]:
    """Apply one lfr.matches.v1 body to the open alert of its subject and deployment.

    Returns ``(new_state, alert_or_None)``. When the match is already accounted for, the
    very same ``state`` object comes back (callers may skip the state write on ``is``).
    ``now_ms`` is the emit time: it only sets ``capture_to_alert_ms``.
    """
    subject_id = match["subject_id"]
    frame = match["face"]["frame"]
    camera_id = frame["camera_id"]
    deployment_id = frame["deployment_id"]
    if state is not None and (state.subject_id, state.deployment_id) != (subject_id, deployment_id):
        raise ValueError("state belongs to another subject or deployment")
    sid = sighting_id(match)
    captured_at = sid[0]
    score = float(match["score"])
    track = track_key(match)

    if state is not None:
        if state.accounts_for(sid):
            return state, None
        if captured_at - state.last_seen_ms <= cooldown_ms:
            joined = replace(state, last_seen_ms=max(state.last_seen_ms, captured_at), sightings=state.sightings + 1)
            joined = joined.remember(sid).with_track(track, score, captured_at)
            new_camera = camera_id not in state.cameras
            if not new_camera and score <= state.best_score:
                return joined, None
            cameras = (*state.cameras, camera_id)[-MAX_CAMERAS:] if new_camera else state.cameras
            better = replace(joined, revision=state.revision + 1, best_score=max(score, state.best_score), camera_id=camera_id, cameras=cameras)
            return better, _alert(better, match, "update", now_ms)

    opened = OpenAlert(
        alert_id=alert_id_for(subject_id, deployment_id, captured_at),
        subject_id=subject_id,
        deployment_id=deployment_id,
        camera_id=camera_id,
        first_seen_ms=captured_at,
        last_seen_ms=captured_at,
        sightings=1,
        revision=0,
        best_score=score,
        cameras=(camera_id,),
    ).remember(sid).with_track(track, score, captured_at)
    return opened, _alert(opened, match, "new", now_ms)


def _alert(state: OpenAlert, match: Mapping[str, Any], kind: Kind, now_ms: int) -> Alert:
    frame = match["face"]["frame"]
    data = {
        "alert_id": state.alert_id,
        "subject_id": state.subject_id,
        "reference": match["reference"],
        "category": match["category"],
        "priority": match["priority"],
        "score": match["score"],
        "threshold": match["threshold"],
        "camera_id": state.camera_id,
        "cameras": list(state.cameras),
        "tracks": len(state.tracks),
        "track_score": state.track_score(track_key(match)),
        "deployment_id": state.deployment_id,
        "first_seen_ms": state.first_seen_ms,
        "last_seen_ms": state.last_seen_ms,
        "sightings": state.sightings,
        "revision": state.revision,
        "model": dict(match["model"]),
        "face": {name: value for name, value in match["face"].items() if name != "chip"},
        "capture_to_alert_ms": max(0, now_ms - int(frame["captured_at_ms"])),
    }
    return Alert(kind=kind, ce_id=ce_id_for(state.alert_id, state.revision), data=data, emitted_at_ms=now_ms,
                 chip=dict(match["face"]["chip"]))


def expired(state: OpenAlert, now_ms: int, cooldown_ms: int, grace_ms: int) -> bool:
    """True when the state can be dropped: its window closed and no redelivery can reach it."""
    return now_ms - state.last_seen_ms > cooldown_ms + grace_ms
