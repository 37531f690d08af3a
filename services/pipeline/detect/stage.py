"""The detect stage: batched detection, quality gate, alignment; one face message per accepted face.

Stale-frame policy ``skip-stale``: a frame older than ``max_frame_age_ms`` when it reaches this
stage (the service fell behind) is skipped unprocessed and counted, so detection always works
on what the camera sees now. Policy ``skip-superseded``: a batch holding several frames of one
camera means detect is behind that camera, so a frame older than ``superseded_after_ms`` with a
newer frame of its camera in the batch is skipped and counted (reason ``superseded``). Under overload detect then drains its
backlog instead of working through frames that are, by then, too old for embed's latency
budget; the tracker bridges the gap with the track's motion. Rejected faces are counted by reason and go no further: their
pixels never leave this process.

Tracking (services/engine/tracking/, on unless ``tracking`` is None): every detection of a frame is
associated with the camera's live tracks before the quality gate, so a track survives a blurred
frame; of the accepted faces only the shots the shot policy picks go on to embed, each carrying
its track (random id, shot number, reason, quality). The rest are counted by skip reason
(``lfr_shots_skipped_total``) and their pixels go no further. With tracking off, every accepted
face is its own one-shot track (reason ``untracked``).

Shots lost to a fault (:class:`DetectStage`): when a stage call fails, the tracks whose shots it
discarded are reopened; when a produce fails (a rewound batch) or the group forgot this consumer
(a broker restart), every live track is, since what was delivered may be gone with the broker.
A person who stays in view is sent again instead of never being checked (counted in
``lfr_tracks_reopened_total``).

Small faces at distance (services/pipeline/detect/views.py, services/engine/face/tiling.py): the cameras named
in ``views`` are detected in overlapping tiles on top of the whole frame (policy
tiles-plus-whole/v1) and/or only inside their region of interest; boxes and landmarks come back
in frame pixels, so tracking, the quality gate and the chip (cut from the full-resolution frame)
work as for any frame. Policy ``min-face-width/v1``: a face narrower than the quality gate's
minimum (LFR_MIN_FACE_WIDTH_PX, never below 32 px) is tracked but never embedded, so it can
never alert; counted in ``lfr_faces_rejected_total{reason="too_small"}``.

Faces processed (services/pipeline/detect/counts.py): every face the detector found in the frames it ran
through is counted per deployment on lfr.counts.v2 (``counts_topic``), before the quality gate
and shot selection; the transparency report sums those counts.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
from prometheus_client import Counter, Gauge

from services.common.errors import MessageError
from services.common.stage import OUTPUTS_LOST_REASONS, Message, Output
from services.engine.face import FaceDetector, ImageLimits, QualityBounds, align_face, assess_quality, decode_image
from services.engine.face.errors import ImageError
from services.engine.face.tiling import detect_views, windows
from services.engine.tracking import SHOT_REASONS, SKIP_REASONS, ShotPolicy, Tracks, shot_quality
from services.engine.tracking.tracker import Track

from .counts import face_counts
from .views import CameraViews, count_runs

FACES_SCHEMA = "lfr.faces.v1"

FRAMES_SKIPPED = Counter("lfr_frames_skipped_total", "Frames not processed by detect, by policy reason", ["reason"])
FACES_DETECTED = Counter("lfr_faces_detected_total", "Faces found by the detector")
FACES_REJECTED = Counter("lfr_faces_rejected_total", "Faces rejected by the quality gate", ["reason"])
FACES_ACCEPTED = Counter("lfr_faces_accepted_total", "Faces that passed the quality gate")
FRAMES_PROCESSED = Counter("lfr_frames_processed_total", "Frames run through the detector")
SHOTS_SENT = Counter("lfr_shots_sent_total", "Accepted faces sent on to embed, by shot reason", ["reason"])
SHOTS_SKIPPED = Counter("lfr_shots_skipped_total", "Accepted faces not sent to embed (policy best-shots/v1), by reason", ["reason"])
TRACKS_LIVE = Gauge("lfr_tracks_live", "Face tracks held in memory by this detect process")
TRACKS_REOPENED = Counter(
    "lfr_tracks_reopened_total",
    "Live tracks whose shot budget detect reopened because shots it sent may have been lost (ShotPolicy.reopen), by runner reason",
    ["reason"],
)
for _reason in (*SHOT_REASONS, "untracked"):
    SHOTS_SENT.labels(_reason)
for _reason in SKIP_REASONS:
    SHOTS_SKIPPED.labels(_reason)
for _reason in OUTPUTS_LOST_REASONS:
    TRACKS_REOPENED.labels(_reason)


class FrameRejected(MessageError):
    """Corrupt image, bad size or a declared size that does not match the pixels."""


@dataclass(frozen=True)
class DetectDeps:
    detector: FaceDetector
    bounds: QualityBounds
    limits: ImageLimits
    output_topic: str = "lfr.faces.v1"
    max_frame_age_ms: int = 1_000  # below the latency budget of embed and the matcher (see settings)
    superseded_after_ms: int = 250
    tracks: Tracks | None = None  # None = tracking off: every accepted face goes to embed
    shots: ShotPolicy = ShotPolicy()
    counts_topic: str | None = None  # faces processed go here (the service sets it from settings); None = not counted
    views: CameraViews = CameraViews()  # per camera: tiles and a region of interest (services/pipeline/detect/views.py)
    clock: Callable[[], int] = lambda: int(time.time() * 1000)


def _decode(message: Message, limits: ImageLimits):
    data = message.data
    try:
        # The camera's declared size bounds the decode: a header claiming more is refused unread.
        image = decode_image(data["image"], limits, expect_size=(data["width"], data["height"]))
    except ImageError as exc:
        raise FrameRejected(f"camera {data['camera_id']} seq {data['seq']}: {exc}") from None
    if image.shape[:2] != (data["height"], data["width"]):
        raise FrameRejected(f"camera {data['camera_id']} seq {data['seq']}: declared {data['width']}x{data['height']}, image is {image.shape[1]}x{image.shape[0]}")
    return image


def process(batch: Sequence[Message], deps: DetectDeps) -> list[Output]:
    now = deps.clock()
    fresh = []
    for message in batch:
        if now - message.data["captured_at_ms"] > deps.max_frame_age_ms:
            FRAMES_SKIPPED.labels("stale").inc()
            continue
        fresh.append(message)
    newest: dict[str, int] = {}
    for message in fresh:
        camera_id = message.data["camera_id"]
        newest[camera_id] = max(newest.get(camera_id, 0), message.data["captured_at_ms"])
    kept = []
    for message in fresh:
        captured = message.data["captured_at_ms"]
        if captured < newest[message.data["camera_id"]] and now - captured > deps.superseded_after_ms:
            FRAMES_SKIPPED.labels("superseded").inc()
            continue
        kept.append(message)
    fresh = kept
    images = [_decode(message, deps.limits) for message in fresh]
    if not images:
        return []
    outputs = []
    looked_at: list[tuple[Message, int]] = []
    plans = [deps.views.plan(message.data["camera_id"]) for message in fresh]
    for image, plan in zip(images, plans, strict=True):
        count_runs(plan, len(windows(image.shape[1], image.shape[0], plan)))
    for message, image, detections in zip(fresh, images, detect_views(deps.detector, images, plans), strict=True):
        frame = {key: message.data[key] for key in ("camera_id", "deployment_id", "seq", "captured_at_ms", "width", "height")}
        FRAMES_PROCESSED.inc()
        FACES_DETECTED.inc(len(detections))
        looked_at.append((message, len(detections)))
        detected_at = deps.clock()
        tracks = None
        if deps.tracks is not None:
            camera = deps.tracks.camera(frame["camera_id"], now)
            tracks = camera.update(frame["captured_at_ms"], [face.box for face in detections], [face.landmarks for face in detections],
                                   (frame["width"], frame["height"]))
        for face_index, face in enumerate(detections):
            chip = align_face(image, face.landmarks)
            report = assess_quality(face, chip, deps.bounds)
            if not report.accepted:
                FACES_REJECTED.labels(report.reason).inc()
                continue
            FACES_ACCEPTED.inc()
            quality = shot_quality(report.score, report.inter_ocular, report.yaw, report.blur, face.box, (frame["width"], frame["height"]))
            if tracks is None:
                track = {"id": secrets.token_hex(8), "shot": 1, "reason": "untracked", "quality": round(quality, 4)}
            else:
                decision = deps.shots.decide(tracks[face_index], quality, frame["captured_at_ms"])
                if not decision.send:
                    SHOTS_SKIPPED.labels(decision.reason).inc()
                    continue
                track = {"id": tracks[face_index].id, "shot": decision.shot, "reason": decision.reason, "quality": round(quality, 4)}
            SHOTS_SENT.labels(track["reason"]).inc()
            ok, png = cv2.imencode(".png", chip)
            if not ok:
                raise RuntimeError("PNG encoding of a face chip failed")
            outputs.append(
                Output(
                    deps.output_topic,
                    FACES_SCHEMA,
                    {
                        "frame": frame,
                        "face_index": face_index,
                        "track": track,
                        "box": [round(float(v), 2) for v in face.box],
                        "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in face.landmarks],
                        "quality": {
                            "face_width_px": round(report.face_width, 2),
                            "interocular_px": round(report.inter_ocular, 2),
                            "blur": round(report.blur, 2),
                            "yaw": round(report.yaw, 4),
                            "roll": round(report.roll, 3),
                            "detector_score": round(min(1.0, max(0.0, report.score)), 4),
                        },
                        "chip": {"media_type": "image/png", "data": png.tobytes()},
                        "detected_at_ms": detected_at,
                    },
                    key=frame["camera_id"],
                )
            )
    if deps.tracks is not None:
        deps.tracks.sweep(now)
        TRACKS_LIVE.set(deps.tracks.live_tracks())
    if deps.counts_topic:
        outputs += face_counts(looked_at, deps.counts_topic, now)
    return outputs


class DetectStage:
    """:func:`process` bound to its dependencies, a ResendingStage: it reopens the tracks whose
    shots may have been lost, so a fault costs one extra shot per reopened track.

    Shots since the last delivered batch are unconfirmed. A call that raises discards its shots,
    so their tracks are reopened at once (a corrupt frame is rejected before any track is
    touched, so it reopens none); a failed call reported by the runner reopens the unconfirmed
    ones. A rewind (a produce failed) or a lost group reopens every live track: both mean broker
    trouble, and what was delivered just before may have died with the broker."""

    def __init__(self, deps: DetectDeps) -> None:
        self.deps = deps
        self._unconfirmed: set[str] = set()  # track ids with a shot sent since the last delivery

    def __call__(self, batch: Sequence[Message]) -> list[Output]:
        shots_before = {track.id: track.shots for track in self.deps.tracks} if self.deps.tracks is not None else {}
        try:
            outputs = process(batch, self.deps)
        except BaseException:
            self._reopen("stage_error", lambda track: track.shots != shots_before.get(track.id, 0))
            raise
        if self.deps.tracks is not None:
            self._unconfirmed |= {o.data["track"]["id"] for o in outputs if o.schema == FACES_SCHEMA}
        return outputs

    def outputs_delivered(self) -> None:
        self._unconfirmed.clear()

    def outputs_lost(self, reason: str) -> None:
        if reason in ("partitions_lost", "rewind"):
            # Broker trouble (never a record's content): shots delivered just before may be gone
            # with the broker too (in one make faults run that reopened only the unconfirmed ones,
            # the first alert after a broker restart came 20 s after it, against 8-9 s in the
            # runs that reopen all). Cheap: one shot per track.
            self._reopen(reason, lambda _track: True)
        else:
            unconfirmed = self._unconfirmed
            self._reopen(reason, lambda track: track.id in unconfirmed)
        self._unconfirmed = set()

    def _reopen(self, reason: str, lost: Callable[[Track], bool]) -> None:
        if self.deps.tracks is None:
            return
        reopened = 0
        for track in self.deps.tracks:
            if lost(track):
                self.deps.shots.reopen(track)
                reopened += 1
        TRACKS_REOPENED.labels(reason).inc(reopened)
