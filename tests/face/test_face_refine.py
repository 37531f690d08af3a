"""Landmark refinement by re-detection on a crop (services/engine/face/refine.py, an alignment option)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from services.engine.face.detector import Detection
from services.engine.face.evaluate import nearest_to_centre
from services.engine.face.refine import face_crop, refine_landmarks

SCALE = 0.5
CORNER = np.array([500.0, 300.0])


def _in_camera_frame(image: np.ndarray) -> np.ndarray:
    """The LFW photo at half size in a 1280x720 frame: the face reaches YuNet at a quarter size."""
    small = cv2.resize(image, None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_AREA)
    frame = np.zeros((720, 1280, 3), dtype=np.uint8)
    frame[300 : 300 + small.shape[0], 500 : 500 + small.shape[1]] = small
    return frame


def test_refined_landmarks_are_closer_to_the_full_resolution_ones(lfw_faces, detector) -> None:
    """The first landmarks of a ~50 px face in a camera frame are off by ~4 px; re-detecting on a
    crop brings them to ~1.5 px of where the full-resolution photo puts them (measured on these
    six faces: 3.9 -> 1.5 px). Fails if refinement is a no-op."""
    first_errors, refined_errors = [], []
    for image, full in lfw_faces:
        frame = _in_camera_frame(image)
        first = nearest_to_centre(detector.detect(frame), frame.shape)
        assert first is not None
        expected = (full.landmarks + 0.5) * SCALE - 0.5 + CORNER
        refined = refine_landmarks(detector, [(frame, first)])[0]
        assert refined.score == first.score and np.array_equal(refined.box, first.box)  # the gate's inputs stay
        assert not np.allclose(refined.landmarks, first.landmarks)
        first_errors.append(np.linalg.norm(first.landmarks - expected, axis=1).mean())
        refined_errors.append(np.linalg.norm(refined.landmarks - expected, axis=1).mean())
    assert np.mean(refined_errors) < 0.6 * np.mean(first_errors), (first_errors, refined_errors)


def test_without_a_face_in_the_crop_the_first_detection_is_kept(detector) -> None:
    frame = np.zeros((720, 1280, 3), dtype=np.uint8)
    ghost = Detection(box=np.array([600, 300, 660, 370], np.float32), landmarks=np.full((5, 2), 630, np.float32), score=0.8)
    assert refine_landmarks(detector, [(frame, ghost)])[0] is ghost
    assert refine_landmarks(detector, []) == []
    with pytest.raises(ValueError):
        refine_landmarks(detector, [(frame, ghost)], context=0.5)


def test_face_crop_pads_beyond_the_frame() -> None:
    frame = np.full((100, 100, 3), 200, dtype=np.uint8)
    crop, corner = face_crop(frame, np.array([-10, -10, 30, 30], np.float32), 2.0)
    assert crop.shape == (80, 80, 3) and tuple(corner) == (-30.0, -30.0)
    assert crop[0, 0].max() == 0 and crop[79, 79].min() == 200


def test_eval_records_with_refinement_change_only_the_embedded_chip(lfw_paths, detector, embedder, tmp_path) -> None:
    """`lfr eval --alignment redetect`: the quality gate still judges the detector's landmarks
    and the plain chip (the same reports), the embeddings come from the refined chips, and a
    cache shared with a plain run never hands one option's embeddings to the other."""
    from services.tools.evaluation.faces import OK, FaceRecords

    paths = lfw_paths[:6]
    cache = tmp_path / "faces.sqlite"
    plain = FaceRecords(detector, embedder, cache).get(paths)
    refined = FaceRecords(detector, embedder, cache, alignment="redetect").get(paths)
    compared = 0
    for path in paths:
        a, b = plain[path], refined[path]
        assert a.status == b.status
        if a.status != OK:
            continue
        assert a.probe == b.probe
        assert not np.array_equal(a.probe_vector, b.probe_vector)
        assert float(a.probe_vector @ b.probe_vector) > 0.9  # the same face, slightly better placed
        compared += 1
    assert compared >= 4
    with pytest.raises(ValueError):
        FaceRecords(detector, embedder, alignment="sideways")
