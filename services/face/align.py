"""Five-point face alignment to the 112x112 ArcFace template.

Recognisers such as SFace were trained on chips warped so the eyes, nose tip and mouth corners
sit at fixed template positions; embedding an unaligned crop costs a lot of accuracy. We fit a
similarity transform (rotation, uniform scale, translation: no shear, so faces are not
distorted) by least squares (Umeyama 1991). That is deterministic and exact for five
well-placed points, unlike a robust estimator such as LMEDS, which only matters with outliers.

YuNet's landmark order (subject's right eye, left eye, nose tip, right mouth corner, left mouth
corner; the subject's right eye appears on the image's left) is the template's order, so no
re-indexing is needed.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

logger = logging.getLogger(__name__)

CHIP_SIZE = 112

#: ArcFace five-point template for 112x112 chips, in YuNet landmark order.
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 matrix of the least-squares similarity mapping ``src`` points onto ``dst`` (Umeyama)."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or src.shape[0] < 2:
        raise ValueError("need matching (N>=2, 2) point arrays, got %s and %s" % (src.shape, dst.shape))
    src_mean = src.mean(axis=0)
    dst_mean = dst.mean(axis=0)
    src_c = src - src_mean
    dst_c = dst - dst_mean
    src_var = (src_c**2).sum() / len(src)
    if src_var <= 1e-12:
        raise ValueError("degenerate landmarks: all points coincide")
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1.0  # reflections are not allowed
    rotation = u @ np.diag(d) @ vt
    scale = float((s * d).sum() / src_var)
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, None]])


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to (N, 2) points."""
    pts = np.asarray(points, dtype=np.float64)
    return pts @ matrix[:, :2].T + matrix[:, 2]


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = CHIP_SIZE) -> np.ndarray:
    """Warp ``image`` (BGR uint8) so ``landmarks`` (5, 2) land on the template; returns a BGR chip.

    ``size`` other than 112 scales the template proportionally.
    """
    template = ARCFACE_TEMPLATE * (size / CHIP_SIZE)
    matrix = similarity_transform(np.asarray(landmarks, dtype=np.float64).reshape(5, 2), template)
    return cv2.warpAffine(
        image,
        matrix,
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )


def align_faces(image: np.ndarray, landmarks_list: list[np.ndarray], size: int = CHIP_SIZE) -> np.ndarray:
    """Chips for several faces of one frame as an (N, size, size, 3) uint8 array."""
    if not landmarks_list:
        return np.zeros((0, size, size, 3), dtype=np.uint8)
    return np.stack([align_face(image, lm, size) for lm in landmarks_list])
