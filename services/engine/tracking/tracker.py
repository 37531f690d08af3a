"""Frame-to-frame association of face detections, one tracker per camera.

Why our own and not a PyPI tracker: the candidates (ByteTrack ports, SORT, norfair) associate
on box overlap under a Kalman filter tuned for pedestrians at video rate. A face in a busy
street moves more than its own width between the frames detect actually sees once ingest and
the stale policies thin them out, so box overlap alone is often zero; what identifies the same
face in the next frame is a nearby, similar-sized face where its motion says it should be.
That rule is a few dozen lines and needs no dependency, so it lives here.

Rule ("greedy-iou-landmarks/v2"), per frame of one camera, in capture order:
1. predict each live track's box from its last box and its velocity (constant velocity, from
   the landmark centroid, which is steadier than the box);
2. score every (track, detection) pair: the IoU of the predicted box with the detection or
   ``1 - d / gate``, whichever is larger, where d is the distance between the predicted and
   detected landmark centroids in units of the track's face width; pairs whose
   face sizes differ by more than ``max_size_ratio`` or score below ``min_score`` are never
   paired;
   a track whose predicted landmark centroid lies outside the frame has walked out of view and
   pairs with nothing (``frame_size`` given): otherwise a walker entering at the edge where
   another just left inherits the leaver's track and, with it, the leaver's best shot, so the
   shot policy never sends the newcomer (measured: the demo's Lili_Taylor, seed 7);
   a moving track (predicted to move at least ``min_motion_widths`` of its width since last
   seen) never pairs with a face more than ``max_backtrack_widths`` behind its last position,
   against its motion: a walker does not reverse in one frame, and otherwise a walker entering
   where another is leaving the other way inherits the leaver's track and spent shot budget
   (measured: the fault suite's crowd, seed 11, walker 22: the leaver's face, cut by the edge,
   was too narrow to pair with its own track; the newcomer was never sent to embed);
3. pair greedily, best score first (optimal for the handful of faces a frame holds; a
   Hungarian assignment gives the same pairs whenever the scores are unambiguous);
4. an unpaired detection starts a new track with a fresh random id (``secrets``: 64 random
   bits, unrelated to the face, the camera or the time; it carries no identity and is never a
   metric label); a track not seen for ``ttl_ms`` of event time is dropped with its state.

State is memory only: ids, boxes, landmarks, times and shot bookkeeping; never pixels.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from services.engine.face.boxes import box_iou

ASSOCIATION_RULE = "greedy-iou-landmarks/v2"


@dataclass(frozen=True)
class TrackerConfig:
    ttl_ms: int = 3_000  # a track unseen this long (event time) is dropped
    min_score: float = 0.2  # weakest association accepted
    gate_widths: float = 2.5  # centroid distance (in face widths) at which the score reaches 0
    max_size_ratio: float = 1.6  # faces of very different size are different people
    min_motion_widths: float = 0.25  # predicted shift (in face widths) from which the motion gate applies
    max_backtrack_widths: float = 0.5  # a moving track never pairs with a face this far behind it
    max_tracks: int = 512  # per camera; the oldest-seen are dropped beyond it


@dataclass
class Track:
    """One face followed across frames. ``best_quality``, ``shots`` and ``window_start_ms``
    belong to the shot policy (shots.py)."""

    id: str
    box: np.ndarray  # x1, y1, x2, y2
    centre: np.ndarray  # landmark centroid
    first_seen_ms: int
    last_seen_ms: int
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # px per ms
    frames: int = 1
    shots: int = 0  # shots sent over the track's life
    shots_in_window: int = 0
    best_quality: float = 0.0
    window_start_ms: int = -1
    last_shot_ms: int = -1

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    def predicted(self, at_ms: int) -> tuple[np.ndarray, np.ndarray]:
        shift = self.velocity * max(0, at_ms - self.last_seen_ms)
        return self.box + np.concatenate([shift, shift]), self.centre + shift


class CameraTracker:
    """The live tracks of one camera. Feed frames in capture order with :meth:`update`."""

    def __init__(self, config: TrackerConfig = TrackerConfig()) -> None:
        self.config = config
        self.tracks: dict[str, Track] = {}
        self.last_frame_ms = -1

    def expire(self, now_ms: int) -> int:
        """Drop tracks unseen for ttl_ms before ``now_ms``; returns how many went."""
        gone = [tid for tid, t in self.tracks.items() if now_ms - t.last_seen_ms > self.config.ttl_ms]
        for tid in gone:
            del self.tracks[tid]
        return len(gone)

    def update(self, captured_at_ms: int, boxes: Sequence[Sequence[float]], landmarks: Sequence[Sequence[Sequence[float]]],
               frame_size: tuple[int, int] | None = None) -> list[Track]:
        """Associate one frame's detections; returns the track of each detection, in order.

        ``frame_size`` (width, height) lets a track predicted out of the frame pair with nothing.

        A frame older than the last one seen (a redelivery) starts no motion update: its faces
        get tracks by the same rule but velocities are left alone.
        """
        c = self.config
        self.expire(captured_at_ms)
        det_boxes = [np.asarray(b, dtype=np.float64) for b in boxes]
        det_centres = [np.asarray(lm, dtype=np.float64).reshape(-1, 2).mean(axis=0) for lm in landmarks]
        live = list(self.tracks.values())
        pairs = []
        for ti, track in enumerate(live):
            pbox, pcentre = track.predicted(captured_at_ms)
            if frame_size is not None and not (0 <= pcentre[0] < frame_size[0] and 0 <= pcentre[1] < frame_size[1]):
                continue  # walked out of view: a face here now is someone else
            speed = float(np.linalg.norm(track.velocity))
            moving = track.frames > 1 and speed * max(0, captured_at_ms - track.last_seen_ms) >= c.min_motion_widths * track.width
            for di, (box, centre) in enumerate(zip(det_boxes, det_centres, strict=True)):
                width = float(box[2] - box[0])
                if width <= 0 or not 1 / c.max_size_ratio <= width / max(track.width, 1e-6) <= c.max_size_ratio:
                    continue
                if moving and -float(np.dot(centre - track.centre, track.velocity)) / speed > c.max_backtrack_widths * track.width:
                    continue  # behind the track, against its motion: someone walking the other way
                # Both measures always: a face cut by the frame edge overlaps its own prediction
                # only partly though its landmarks sit where predicted, and with the IoU alone it
                # lost its track to a newcomer walking the other way (seed 11, walker 49).
                distance = float(np.linalg.norm(pcentre - centre)) / max(track.width, 1e-6)
                score = max(box_iou(pbox, box), 1.0 - distance / c.gate_widths)
                if score >= c.min_score:
                    pairs.append((score, ti, di))
        pairs.sort(key=lambda p: -p[0])
        taken_tracks: set[int] = set()
        result: list[Track | None] = [None] * len(det_boxes)
        forward = captured_at_ms >= self.last_frame_ms
        for _, ti, di in pairs:
            if ti in taken_tracks or result[di] is not None:
                continue
            taken_tracks.add(ti)
            track = live[ti]
            dt = captured_at_ms - track.last_seen_ms
            if forward and dt > 0:
                seen = (det_centres[di] - track.centre) / dt
                # Smooth the velocity: one frame's jitter (a detector box wobble) must not fling
                # the prediction; a walker's pace hardly changes between frames.
                track.velocity = seen if track.frames == 1 else 0.5 * track.velocity + 0.5 * seen
            track.box, track.centre = det_boxes[di], det_centres[di]
            track.last_seen_ms = max(track.last_seen_ms, captured_at_ms)
            track.frames += 1
            result[di] = track
        for di in range(len(det_boxes)):
            if result[di] is None:
                track = Track(id=secrets.token_hex(8), box=det_boxes[di], centre=det_centres[di],
                              first_seen_ms=captured_at_ms, last_seen_ms=captured_at_ms)
                self.tracks[track.id] = track
                result[di] = track
        if len(self.tracks) > c.max_tracks:
            for track in sorted(self.tracks.values(), key=lambda t: t.last_seen_ms)[: len(self.tracks) - c.max_tracks]:
                del self.tracks[track.id]
        self.last_frame_ms = max(self.last_frame_ms, captured_at_ms)
        return result  # type: ignore[return-value]


class Tracks:
    """Trackers of every camera this process sees (the camera is the partition key, so one
    replica owns each camera's state). Cameras silent for ``ttl_ms`` of wall time are dropped."""

    def __init__(self, config: TrackerConfig = TrackerConfig()) -> None:
        self.config = config
        self.cameras: dict[str, CameraTracker] = {}
        self._wall_seen: dict[str, int] = {}

    def camera(self, camera_id: str, now_ms: int) -> CameraTracker:
        tracker = self.cameras.get(camera_id)
        if tracker is None:
            tracker = self.cameras[camera_id] = CameraTracker(self.config)
        self._wall_seen[camera_id] = now_ms
        return tracker

    def sweep(self, now_ms: int) -> None:
        for camera_id in [c for c, seen in self._wall_seen.items() if now_ms - seen > self.config.ttl_ms]:
            del self.cameras[camera_id]
            del self._wall_seen[camera_id]

    def live_tracks(self) -> int:
        return sum(len(t.tracks) for t in self.cameras.values())

    def __iter__(self) -> Iterator[Track]:
        """Every live track of every camera."""
        for tracker in self.cameras.values():
            yield from tracker.tracks.values()
