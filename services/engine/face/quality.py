"""Face quality gate: is a detection good enough to embed and match?

Small, blurred, strongly turned or doubtful faces produce embeddings that match nobody well and
occasionally match the wrong person, so they are dropped before embedding. All measures are
cheap: geometry comes from the detector's box and five landmarks, sharpness from the aligned
chip. The decision is one accept/reject with one reason from a small fixed set
(REJECT_REASONS), because reasons become Prometheus label values.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import cv2
import numpy as np

from services.engine.face.detector import Detection

logger = logging.getLogger(__name__)

TOO_SMALL = "too_small"
EYES_TOO_CLOSE = "eyes_too_close"
LOW_SCORE = "low_score"
POSE_ROLL = "pose_roll"
POSE_YAW = "pose_yaw"
BLURRED = "blurred"

#: Every reason assess_quality can return, in the order the checks run.
REJECT_REASONS: tuple[str, ...] = (TOO_SMALL, EYES_TOO_CLOSE, LOW_SCORE, POSE_ROLL, POSE_YAW, BLURRED)


@dataclass(frozen=True)
class QualityBounds:
    """Accept limits. Defaults suit live CCTV: admit small, imperfect faces but not useless ones.

    min_blur is the variance of the Laplacian of the grey 112x112 aligned chip. On LFW news
    photos it is 22 at the very least, 34 at the 1st percentile and ~140 at the median; a
    Gaussian blur of sigma 3 px on a 250 px LFW image brings it to 5-22 (median 9).
    Calibration figures are in services/engine/face/README.md.
    """

    min_face_width: float = 40.0  # px, detector box width in the original frame
    min_inter_ocular: float = 15.0  # px, eye-centre distance in the original frame
    min_score: float = 0.7
    max_abs_roll: float = 30.0  # degrees, eye-line angle
    max_abs_yaw: float = 0.45  # nose offset from the eye midpoint / inter-ocular distance
    min_blur: float = 15.0


#: Stricter bounds for enrolment photos: they define a watch-list entry, so demand more.
ENROLMENT_BOUNDS = QualityBounds(
    min_face_width=80.0,
    min_inter_ocular=32.0,
    min_score=0.85,
    max_abs_roll=15.0,
    max_abs_yaw=0.25,
    min_blur=40.0,
)

#: Alias for the default (live CCTV) bounds.
LIVE_BOUNDS = QualityBounds()


@dataclass(frozen=True)
class QualityReport:
    """Measured quality of one face and the decision. ``reason`` is None when accepted."""

    face_width: float
    inter_ocular: float
    blur: float
    yaw: float
    roll: float
    score: float
    accepted: bool
    reason: str | None


def pose_from_landmarks(landmarks: np.ndarray) -> tuple[float, float, float]:
    """(inter_ocular_px, yaw_proxy, roll_degrees) from YuNet's five landmarks.

    Roll is the angle of the line from the subject's right eye (image left) to the left eye.
    Yaw is the nose tip's offset from the eye midpoint along that line, in inter-ocular
    distances, so it is independent of face size and roll: about 0 frontal, growing in
    magnitude as the head turns (sign says which way).
    """
    pts = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    eye_vec = pts[1] - pts[0]
    iod = float(np.hypot(eye_vec[0], eye_vec[1]))
    roll = math.degrees(math.atan2(eye_vec[1], eye_vec[0]))
    if iod < 1e-6:
        return 0.0, 0.0, roll
    unit = eye_vec / iod
    yaw = float(np.dot(pts[2] - (pts[0] + pts[1]) / 2.0, unit) / iod)
    return iod, yaw, roll


def blur_score(chip: np.ndarray) -> float:
    """Variance of the Laplacian of the grey chip: low means few edges, i.e. blurred."""
    grey = cv2.cvtColor(chip, cv2.COLOR_BGR2GRAY) if chip.ndim == 3 else chip
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def assess_quality(
    detection: Detection, chip: np.ndarray, bounds: QualityBounds = LIVE_BOUNDS
) -> QualityReport:
    """Measure ``detection`` and its aligned BGR ``chip`` and decide against ``bounds``.

    Checks run in REJECT_REASONS order and the first failure is the reason, so a tiny face is
    reported as too_small rather than as the blur that its upscaled chip also shows.
    """
    iod, yaw, roll = pose_from_landmarks(detection.landmarks)
    return judge_quality(detection.width, iod, blur_score(chip), yaw, roll, detection.score, bounds)


def judge_quality(
    width: float, iod: float, blur: float, yaw: float, roll: float, score: float, bounds: QualityBounds = LIVE_BOUNDS
) -> QualityReport:
    """The decision alone, from measures already taken (the evaluation re-judges cached
    measures under other bounds without running the detector again)."""
    reason: str | None = None
    if width < bounds.min_face_width:
        reason = TOO_SMALL
    elif iod < bounds.min_inter_ocular:
        reason = EYES_TOO_CLOSE
    elif score < bounds.min_score:
        reason = LOW_SCORE
    elif abs(roll) > bounds.max_abs_roll:
        reason = POSE_ROLL
    elif abs(yaw) > bounds.max_abs_yaw:
        reason = POSE_YAW
    elif blur < bounds.min_blur:
        reason = BLURRED
    return QualityReport(
        face_width=width,
        inter_ocular=iod,
        blur=blur,
        yaw=yaw,
        roll=roll,
        score=score,
        accepted=reason is None,
        reason=reason,
    )
