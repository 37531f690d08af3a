"""Landmark refinement by re-detection on a crop around each face (an alignment option, off by default).

YuNet sees every frame letterboxed into 640x640, so a 1280x720 camera frame reaches it at half
size and a 100 px walker's landmarks come from a 50 px face. Re-running the same detector on a
square crop around the first detection, letterboxed to the same 640 input, shows it the face at
``640 / context`` px, where its landmarks are placed more finely; the refined landmarks are
mapped back to the frame. The detection in the crop that overlaps the first box most is taken
(IoU of at least MIN_IOU, else the first landmarks are kept: refinement never loses a face).
``blend`` averages the refined landmarks with the first ones (0: refined only).

The box and score stay the first detection's, so detection and the quality gate's size and score
decisions are unchanged; pose and the chip follow the refined landmarks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from services.engine.face.boxes import box_iou
from services.engine.face.detector import Detection, FaceDetector

#: Crop side as a multiple of the face box's larger side (the face fills 1/context of the crop).
DEFAULT_CONTEXT = 2.5
#: A crop detection overlapping the first box less than this is another face: keep the first.
MIN_IOU = 0.5


def face_crop(image: np.ndarray, box: np.ndarray, context: float) -> tuple[np.ndarray, np.ndarray]:
    """A square crop of side ``context`` x the box's larger side, centred on the box, black where it
    leaves the image; returns (crop, its top-left corner in image pixels)."""
    side = max(2, int(round(context * max(float(box[2] - box[0]), float(box[3] - box[1])))))
    cx, cy = (float(box[0]) + float(box[2])) / 2.0, (float(box[1]) + float(box[3])) / 2.0
    x0, y0 = int(round(cx - side / 2.0)), int(round(cy - side / 2.0))
    crop = np.zeros((side, side, 3), dtype=np.uint8)
    h, w = image.shape[:2]
    sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(w, x0 + side), min(h, y0 + side)
    if sx1 > sx0 and sy1 > sy0:
        crop[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return crop, np.array([x0, y0], dtype=np.float32)


def refine_landmarks(
    detector: FaceDetector,
    items: Sequence[tuple[np.ndarray, Detection]],
    *,
    context: float = DEFAULT_CONTEXT,
    blend: float = 0.0,
) -> list[Detection]:
    """Each (image, detection) with landmarks from a re-detection on a crop around it, in one
    detector batch. Costs one detector run (640x640) per face."""
    if context < 1.0:
        raise ValueError("context must be >= 1 (the crop must hold the face)")
    if not 0.0 <= blend <= 1.0:
        raise ValueError("blend must be in [0, 1]")
    crops = [face_crop(image, face.box, context) for image, face in items]
    found = detector.detect_batch([crop for crop, _ in crops]) if crops else []
    refined = []
    for (_, face), (_, corner), candidates in zip(items, crops, found, strict=True):
        best, best_iou = None, MIN_IOU
        for candidate in candidates:
            overlap = box_iou(face.box, candidate.box + np.tile(corner, 2))
            if overlap >= best_iou:
                best, best_iou = candidate, overlap
        if best is None:
            refined.append(face)
            continue
        landmarks = best.landmarks + corner
        landmarks = (blend * face.landmarks + (1.0 - blend) * landmarks).astype(np.float32)
        refined.append(Detection(box=face.box, landmarks=landmarks, score=face.score))
    return refined
