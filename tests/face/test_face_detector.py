"""YuNet detection: recall on LFW, any frame size, batch/single agreement, determinism."""

from __future__ import annotations

import random
from pathlib import Path

import cv2
import numpy as np
import pytest

from services.engine.face.detector import Detection, FaceDetector
from services.engine.face.errors import EmptyImageError, ImageError
from services.engine.face.evaluate import nearest_to_centre


def _contains(det: Detection, x: float, y: float) -> bool:
    return bool(det.box[0] <= x <= det.box[2] and det.box[1] <= y <= det.box[3])


def test_labelled_face_found_on_99_percent(detector: FaceDetector, lfw_paths: list[Path]) -> None:
    sample = random.Random(20240601).sample(lfw_paths, 200)
    images = [cv2.imread(str(p)) for p in sample]
    found = 0
    for image, detections in zip(images, detector.detect_batch(images)):
        face = nearest_to_centre(detections, image.shape)
        h, w = image.shape[:2]
        if face is not None and _contains(face, w / 2, h / 2):
            found += 1
            assert face.landmarks.shape == (5, 2)
            # Right eye (image left) left of the left eye, eyes above the mouth corners.
            assert face.landmarks[0, 0] < face.landmarks[1, 0]
            assert face.landmarks[:2, 1].max() < face.landmarks[3:, 1].min()
    assert found >= 198, "labelled face found on %d/200" % found


def _scene(face: np.ndarray, size: tuple[int, int], at: tuple[int, int]) -> np.ndarray:
    w, h = size
    frame = np.full((h, w, 3), 90, np.uint8)
    x, y = at
    frame[y : y + face.shape[0], x : x + face.shape[1]] = face
    return frame


def test_boxes_map_back_to_original_coordinates(detector: FaceDetector, lfw_faces) -> None:
    image, ref = lfw_faces[0]
    for size, at in (((1280, 720), (900, 300)), ((480, 1000), (100, 650)), ((250, 250), (0, 0))):
        frame = _scene(image, size, at)
        face = nearest_to_centre(
            [d for d in detector.detect(frame) if _contains(d, at[0] + 125, at[1] + 125)], frame.shape
        )
        assert face is not None, "face not found in %s frame" % (size,)
        # Box sizes vary a little with the input scale; position and landmarks must map back.
        offset = np.array(at, np.float32)
        centre_error = np.hypot(*(np.array(face.center) - np.array(ref.center) - offset))
        assert centre_error < 0.1 * ref.width, (size, centre_error)
        assert 0.75 < face.width / ref.width < 1.33, (size, face.width, ref.width)
        landmark_error = np.linalg.norm(face.landmarks - ref.landmarks - offset, axis=1).mean()
        assert landmark_error < 0.06 * ref.width, (size, landmark_error)


def _flatten(results: list[list[Detection]]) -> list[np.ndarray]:
    return [np.concatenate([d.box, d.landmarks.ravel(), [d.score]]) for dets in results for d in dets]


def test_batch_matches_single_and_is_deterministic(detector: FaceDetector, lfw_faces) -> None:
    frames = [image for image, _ in lfw_faces[:3]]
    frames.append(_scene(lfw_faces[3][0], (1280, 720), (200, 100)))
    batch = detector.detect_batch(frames)
    single = [detector.detect(frame) for frame in frames]
    assert [len(d) for d in batch] == [len(d) for d in single]
    assert sum(len(d) for d in batch) >= 4
    for a, b in zip(_flatten(batch), _flatten(single)):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
    again = detector.detect_batch(frames)
    for a, b in zip(_flatten(batch), _flatten(again)):
        assert np.array_equal(a, b)


def test_no_faces_in_a_blank_frame(detector: FaceDetector) -> None:
    assert detector.detect(np.zeros((720, 1280, 3), np.uint8)) == []
    assert detector.detect_batch([]) == []


def test_accepts_grey_frames(detector: FaceDetector, lfw_faces) -> None:
    grey = cv2.cvtColor(lfw_faces[0][0], cv2.COLOR_BGR2GRAY)
    assert detector.detect(grey)


def test_rejects_unusable_arrays(detector: FaceDetector) -> None:
    with pytest.raises(EmptyImageError):
        detector.detect(np.zeros((0, 10, 3), np.uint8))
    with pytest.raises(ImageError):
        detector.detect(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ImageError):
        detector.detect(np.zeros((10, 10, 2), np.uint8))
