"""The detect stage: batched detection, quality gate, alignment; one face message per accepted face.

Stale-frame policy ``skip-stale``: a frame older than ``max_frame_age_ms`` when it reaches this
stage (the service fell behind) is skipped unprocessed and counted, so detection always works
on what the camera sees now. Rejected faces are counted by reason and go no further: their
pixels never leave this process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
from prometheus_client import Counter

from services.common.errors import MessageError
from services.common.stage import Message, Output
from services.face import FaceDetector, ImageLimits, QualityBounds, align_face, assess_quality, decode_image
from services.face.errors import ImageError

FACES_SCHEMA = "lfr.faces.v1"

FRAMES_SKIPPED = Counter("lfr_frames_skipped_total", "Frames not processed by detect, by policy reason", ["reason"])
FACES_DETECTED = Counter("lfr_faces_detected_total", "Faces found by the detector")
FACES_REJECTED = Counter("lfr_faces_rejected_total", "Faces rejected by the quality gate", ["reason"])
FACES_ACCEPTED = Counter("lfr_faces_accepted_total", "Faces that passed the quality gate")


class FrameRejected(MessageError):
    """Corrupt image, bad size or a declared size that does not match the pixels."""


@dataclass(frozen=True)
class DetectDeps:
    detector: FaceDetector
    bounds: QualityBounds
    limits: ImageLimits
    output_topic: str = "lfr.faces.v1"
    max_frame_age_ms: int = 5_000
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
    images = [_decode(message, deps.limits) for message in fresh]
    if not images:
        return []
    outputs = []
    for message, image, detections in zip(fresh, images, deps.detector.detect_batch(images), strict=True):
        frame = {key: message.data[key] for key in ("camera_id", "deployment_id", "seq", "captured_at_ms", "width", "height")}
        FACES_DETECTED.inc(len(detections))
        detected_at = deps.clock()
        for face_index, face in enumerate(detections):
            chip = align_face(image, face.landmarks)
            report = assess_quality(face, chip, deps.bounds)
            if not report.accepted:
                FACES_REJECTED.labels(report.reason).inc()
                continue
            FACES_ACCEPTED.inc()
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
    return outputs
