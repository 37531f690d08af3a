"""Quality gate decisions and reasons."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

from services.engine.face.align import ARCFACE_TEMPLATE, align_face
from services.engine.face.detector import Detection, FaceDetector
from services.engine.face.evaluate import nearest_to_centre
from services.engine.face.quality import (
    ENROLMENT_BOUNDS,
    LIVE_BOUNDS,
    REJECT_REASONS,
    QualityBounds,
    assess_quality,
    pose_from_landmarks,
)


def _assess(detector: FaceDetector, image: np.ndarray, bounds: QualityBounds = LIVE_BOUNDS):
    face = nearest_to_centre(detector.detect(image), image.shape)
    assert face is not None
    return assess_quality(face, align_face(image, face.landmarks), bounds)


def test_reasons_are_a_small_fixed_set() -> None:
    assert isinstance(REJECT_REASONS, tuple)
    assert set(REJECT_REASONS) == {"too_small", "blurred", "pose_yaw", "pose_roll", "low_score", "eyes_too_close"}
    assert all(re.fullmatch(r"[a-z_]+", r) for r in REJECT_REASONS)


def test_normal_lfw_faces_are_accepted(detector, lfw_faces) -> None:
    for image, _ in lfw_faces[:3]:
        report = _assess(detector, image)
        assert report.accepted and report.reason is None, report
        assert 60 < report.face_width < 160 and report.inter_ocular > 25


def test_heavily_blurred_face_is_rejected_as_blurred(detector, lfw_faces) -> None:
    image = lfw_faces[0][0]
    sharp = _assess(detector, image)
    blurred = _assess(detector, cv2.GaussianBlur(image, (0, 0), 4.0))
    assert blurred.reason == "blurred" and not blurred.accepted, blurred
    assert blurred.blur < sharp.blur / 4


def test_tiny_face_is_rejected_as_too_small(detector, lfw_faces) -> None:
    image = lfw_faces[0][0]
    tiny = cv2.resize(image, (50, 50), interpolation=cv2.INTER_AREA)  # face ~20 px wide
    report = _assess(detector, tiny)
    assert report.face_width < 30
    assert report.reason == "too_small" and not report.accepted


def _synthetic(landmarks: np.ndarray, score: float = 0.95, width: float = 100.0) -> Detection:
    return Detection(box=np.array([0, 0, width, width], np.float32), landmarks=landmarks.astype(np.float32), score=score)


def test_pose_and_score_reasons() -> None:
    chip = np.random.default_rng(0).integers(0, 255, (112, 112, 3), dtype=np.uint8)  # sharp texture
    frontal = ARCFACE_TEMPLATE.copy()
    assert assess_quality(_synthetic(frontal), chip).accepted

    angle = np.deg2rad(40.0)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    rolled = (frontal - 56.0) @ rot.T + 56.0
    report = assess_quality(_synthetic(rolled), chip)
    assert report.reason == "pose_roll" and report.roll == pytest.approx(40.0, abs=3.0)

    turned = frontal.copy()
    turned[2, 0] += 20.0  # nose 20 px towards the image right, eyes 35 px apart
    report = assess_quality(_synthetic(turned), chip)
    assert report.reason == "pose_yaw" and report.yaw > 0.45

    assert assess_quality(_synthetic(frontal, score=0.5), chip).reason == "low_score"
    close = frontal.copy()
    close[1, 0] = close[0, 0] + 8.0
    assert assess_quality(_synthetic(close), chip).reason == "eyes_too_close"
    assert assess_quality(_synthetic(frontal), np.full((112, 112, 3), 128, np.uint8)).reason == "blurred"


def test_pose_proxies_are_roll_invariant() -> None:
    angle = np.deg2rad(25.0)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    turned = ARCFACE_TEMPLATE.copy()
    turned[2, 0] += 10.0
    iod, yaw, _ = pose_from_landmarks(turned)
    iod_r, yaw_r, roll_r = pose_from_landmarks(turned @ rot.T * 3.0)
    assert yaw_r == pytest.approx(yaw, abs=1e-9) and iod_r == pytest.approx(3 * iod)
    assert roll_r == pytest.approx(25.0 + np.degrees(np.arctan2(-0.1949, 35.2372)), abs=1e-3)


def test_enrolment_is_stricter(detector, lfw_faces) -> None:
    image = lfw_faces[0][0]
    medium = cv2.resize(image, (150, 150), interpolation=cv2.INTER_AREA)  # face ~55-65 px
    assert _assess(detector, medium, LIVE_BOUNDS).accepted
    assert _assess(detector, medium, ENROLMENT_BOUNDS).reason == "too_small"
    for field in ("min_face_width", "min_inter_ocular", "min_score", "min_blur"):
        assert getattr(ENROLMENT_BOUNDS, field) > getattr(LIVE_BOUNDS, field)
    for field in ("max_abs_roll", "max_abs_yaw"):
        assert getattr(ENROLMENT_BOUNDS, field) < getattr(LIVE_BOUNDS, field)
