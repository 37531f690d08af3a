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


#: With ``antialias``, a warp that shrinks the face below this scale (chip px per image px) first
#: shrinks the face's neighbourhood with INTER_AREA: warpAffine's bilinear sampling reads only
#: the 4 nearest pixels, so a large face (a 150 px walker, scale ~0.6) is sampled, not averaged.
ANTIALIAS_BELOW_SCALE = 0.75


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = CHIP_SIZE, *, antialias: bool = False) -> np.ndarray:
    """Warp ``image`` (BGR uint8) so ``landmarks`` (5, 2) land on the template; returns a BGR chip.

    ``size`` other than 112 scales the template proportionally. ``antialias`` (off by default:
    every shipped embedding and calibration was made without it) pre-shrinks large faces with
    INTER_AREA before the warp (see ANTIALIAS_BELOW_SCALE); it is a no-op for faces that are not
    shrunk below that scale.
    """
    template = ARCFACE_TEMPLATE * (size / CHIP_SIZE)
    matrix = similarity_transform(np.asarray(landmarks, dtype=np.float64).reshape(5, 2), template)
    if antialias:
        image, matrix = _pre_shrunk(image, matrix, size)
    return cv2.warpAffine(
        image,
        matrix,
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )


def _pre_shrunk(image: np.ndarray, matrix: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The chip's source region shrunk with INTER_AREA to about chip scale, and the matrix that
    warps it to the same chip. Only the region (plus a 2 px margin) is resized, not the frame."""
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale >= ANTIALIAS_BELOW_SCALE:
        return image, matrix
    inverse = cv2.invertAffineTransform(matrix)
    corners = transform_points(inverse, np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64))
    h, w = image.shape[:2]
    x0, y0 = (int(max(0, np.floor(v) - 2)) for v in corners.min(axis=0))
    x1, y1 = int(min(w, np.ceil(corners[:, 0].max()) + 2)), int(min(h, np.ceil(corners[:, 1].max()) + 2))
    if x1 - x0 < 2 or y1 - y0 < 2:  # the chip lies outside the image: nothing to smooth
        return image, matrix
    region = image[y0:y1, x0:x1]
    new_w, new_h = max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))
    shrunk = cv2.resize(region, (new_w, new_h), interpolation=cv2.INTER_AREA)
    # original p = q / (fx, fy) + (x0, y0) for a point q of the shrunk region
    fx, fy = new_w / (x1 - x0), new_h / (y1 - y0)
    linear = matrix[:, :2] @ np.diag([1.0 / fx, 1.0 / fy])
    return shrunk, np.hstack([linear, (matrix[:, :2] @ np.array([x0, y0], dtype=np.float64) + matrix[:, 2])[:, None]])


def align_faces(image: np.ndarray, landmarks_list: list[np.ndarray], size: int = CHIP_SIZE, *, antialias: bool = False) -> np.ndarray:
    """Chips for several faces of one frame as an (N, size, size, 3) uint8 array."""
    if not landmarks_list:
        return np.zeros((0, size, size, 3), dtype=np.uint8)
    return np.stack([align_face(image, lm, size, antialias=antialias) for lm in landmarks_list])
