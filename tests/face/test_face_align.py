"""Five-point alignment onto the ArcFace template."""

from __future__ import annotations

import numpy as np
import pytest

from services.engine.face.quality import pose_from_landmarks
from services.engine.face.align import ARCFACE_TEMPLATE, CHIP_SIZE, align_face, align_faces, similarity_transform, transform_points


def test_exact_similarity_is_recovered() -> None:
    angle = np.deg2rad(17.0)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = (ARCFACE_TEMPLATE - 56.0) @ rot.T * 2.7 + np.array([400.0, 230.0])
    matrix = similarity_transform(src, ARCFACE_TEMPLATE)
    np.testing.assert_allclose(transform_points(matrix, src), ARCFACE_TEMPLATE, atol=1e-9)


def test_similarity_never_reflects() -> None:
    mirrored = ARCFACE_TEMPLATE * np.array([-1.0, 1.0])
    matrix = similarity_transform(mirrored, ARCFACE_TEMPLATE)
    assert np.linalg.det(matrix[:, :2]) > 0


def test_degenerate_landmarks_are_rejected() -> None:
    with pytest.raises(ValueError):
        similarity_transform(np.ones((5, 2)), ARCFACE_TEMPLATE)


def test_real_landmarks_land_on_the_template(lfw_faces) -> None:
    """A similarity cannot undo yaw, so turned faces keep a nose offset; frontal ones fit closely."""
    all_errors = []
    frontal = 0
    for image, face in lfw_faces:
        matrix = similarity_transform(face.landmarks, ARCFACE_TEMPLATE)
        moved = transform_points(matrix, face.landmarks)
        errors = np.linalg.norm(moved - ARCFACE_TEMPLATE, axis=1)
        all_errors.extend(errors)
        assert errors.max() < 12.0, errors
        if abs(pose_from_landmarks(face.landmarks)[1]) < 0.15:
            frontal += 1
            assert errors.max() < 6.0, errors
        # Order matches: the image-left eye goes to the template's left eye position.
        assert moved[0, 0] < moved[1, 0]
        chip = align_face(image, face.landmarks)
        assert chip.shape == (CHIP_SIZE, CHIP_SIZE, 3) and chip.dtype == np.uint8
        # The chip is filled by the face, not by border.
        assert (chip.reshape(-1, 3).max(axis=1) == 0).mean() < 0.2
    assert frontal >= 2
    assert float(np.median(all_errors)) < 3.0


def test_align_faces_stacks(lfw_faces) -> None:
    image, face = lfw_faces[0]
    chips = align_faces(image, [face.landmarks, face.landmarks])
    assert chips.shape == (2, CHIP_SIZE, CHIP_SIZE, 3)
    assert np.array_equal(chips[0], chips[1])
    assert align_faces(image, []).shape == (0, CHIP_SIZE, CHIP_SIZE, 3)


def _stripes(height: int, width: int) -> np.ndarray:
    """One-pixel black and white vertical stripes: all detail, nothing a shrunk chip can show."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[:, ::2] = 255
    return image


def test_antialias_averages_a_large_face_instead_of_sampling_it() -> None:
    """A face 2.5x the template (scale 0.4): bilinear sampling of 1 px stripes keeps them at full
    contrast (std 90); the pre-shrunk chip averages them towards grey (std 21: INTER_AREA's
    2.5 px windows hold 1 or 2 white stripes). Fails if antialias is a no-op."""
    landmarks = (ARCFACE_TEMPLATE - 56.0) * 2.5 + np.array([300.0, 250.0])
    image = _stripes(500, 600)
    plain = align_face(image, landmarks)
    smooth = align_face(image, landmarks, antialias=True)
    assert plain.std() > 60.0, plain.std()
    assert smooth.std() < 30.0, smooth.std()
    assert abs(float(smooth.mean()) - 127.5) < 10.0


def test_antialias_keeps_the_geometry() -> None:
    """On smooth content the pre-shrunk warp lands every pixel where the plain warp does."""
    yy, xx = np.mgrid[0:500, 0:600].astype(np.float64)
    ramp = np.stack([(xx / 600 * 255), (yy / 500 * 255), ((xx + yy) / 1100 * 255)], axis=2).astype(np.uint8)
    angle = np.deg2rad(12.0)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = (ARCFACE_TEMPLATE - 56.0) @ rot.T * 2.5 + np.array([300.0, 250.0])
    plain = align_face(ramp, landmarks).astype(int)
    smooth = align_face(ramp, landmarks, antialias=True).astype(int)
    assert np.abs(plain - smooth)[4:-4, 4:-4].max() <= 3


def test_antialias_leaves_faces_near_chip_scale_alone() -> None:
    landmarks = (ARCFACE_TEMPLATE - 56.0) * 1.2 + np.array([300.0, 250.0])  # scale 0.83
    image = _stripes(500, 600)
    assert np.array_equal(align_face(image, landmarks), align_face(image, landmarks, antialias=True))
