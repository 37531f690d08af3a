"""YuNet face detection on frames of any size.

This YuNet build has a fixed 640x640 input. Frames are letterboxed into it (scaled to fit,
aspect kept, padded with black at the right/bottom, so mapping back is a single division by the
scale) and fed like OpenCV's FaceDetectorYN does: BGR, float 0-255, NCHW, no normalisation.
The twelve outputs (cls/obj/bbox/kps at strides 8, 16, 32) are decoded the same way as
FaceDetectorYN: anchor-free priors at every grid cell, score = sqrt(clip(cls) * clip(obj)),
centre offsets and log sizes in stride units, then greedy NMS. The conversion step makes the
batch dimension symbolic, so detect_batch runs several frames in one onnxruntime call.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from services.engine.face.errors import EmptyImageError, ImageError, ModelLoadError
from services.engine.face.models import YUNET, ModelIdentity, prepare_model
from services.engine.face.session import batch_dim_is_dynamic, create_session

logger = logging.getLogger(__name__)

INPUT_SIZE = 640
STRIDES = (8, 16, 32)


@dataclass(frozen=True, eq=False)
class Detection:
    """One face in original-image pixel coordinates.

    ``box`` is float32 (x1, y1, x2, y2) and may extend slightly past the frame border.
    ``landmarks`` is float32 (5, 2): right eye, left eye, nose tip, right mouth corner, left
    mouth corner, where "right" is the subject's right, i.e. the point on the image's left.
    """

    box: np.ndarray
    landmarks: np.ndarray
    score: float

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def center(self) -> tuple[float, float]:
        return float(self.box[0] + self.box[2]) / 2.0, float(self.box[1] + self.box[3]) / 2.0


@dataclass(frozen=True)
class Letterbox:
    """How a frame was placed in the model input: input = original * scale, offset (0, 0).

    The per-axis factors are the ones actually applied after rounding the resized size.
    """

    scale_x: float
    scale_y: float
    width: int  # scaled content size inside the input
    height: int

    def to_original(self, points: np.ndarray) -> np.ndarray:
        """Map (..., 2) points or (..., 4) xyxy boxes from input to original pixels."""
        factors = np.array([self.scale_x, self.scale_y], dtype=np.float32)
        if points.shape[-1] == 4:
            factors = np.tile(factors, 2)
        return points / factors


def as_bgr(image: np.ndarray) -> np.ndarray:
    """Validate a frame and return it as contiguous BGR uint8 (grey and BGRA are converted)."""
    if not isinstance(image, np.ndarray):
        raise ImageError("expected a numpy array, got %s" % type(image).__name__)
    if image.size == 0:
        raise EmptyImageError("image has no pixels (shape %s)" % (image.shape,))
    if image.dtype != np.uint8:
        raise ImageError("expected uint8 pixels, got %s" % image.dtype)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return np.ascontiguousarray(image)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    raise ImageError("expected HxW, HxWx3 or HxWx4 image, got shape %s" % (image.shape,))


def letterbox(image: np.ndarray, size: int = INPUT_SIZE) -> tuple[np.ndarray, Letterbox]:
    """Scale ``image`` to fit a size x size canvas (aspect kept), pad right/bottom with black."""
    h, w = image.shape[:2]
    scale = min(size / w, size / h)
    new_w = min(size, max(1, int(round(w * scale))))
    new_h = min(size, max(1, int(round(h * scale))))
    interpolation = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    canvas = np.zeros((size, size, 3), dtype=np.uint8)
    canvas[:new_h, :new_w] = resized
    return canvas, Letterbox(scale_x=new_w / w, scale_y=new_h / h, width=new_w, height=new_h)


def _priors(size: int) -> list[tuple[int, np.ndarray]]:
    grids = []
    for stride in STRIDES:
        cells = size // stride
        rows, cols = np.divmod(np.arange(cells * cells, dtype=np.float32), cells)
        grids.append((stride, np.stack([cols, rows], axis=1)))
    return grids


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, top_k: int) -> np.ndarray:
    """Greedy non-maximum suppression on float xyxy boxes; returns kept indices, best first."""
    order = np.argsort(-scores, kind="stable")[:top_k]
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = np.maximum(0.0, x2 - x1) * np.maximum(0.0, y2 - y1)
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        ix1 = np.maximum(x1[i], x1[rest])
        iy1 = np.maximum(y1[i], y1[rest])
        ix2 = np.minimum(x2[i], x2[rest])
        iy2 = np.minimum(y2[i], y2[rest])
        inter = np.maximum(0.0, ix2 - ix1) * np.maximum(0.0, iy2 - iy1)
        union = areas[i] + areas[rest] - inter
        iou = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


class FaceDetector:
    """YuNet detector: ``detect(frame)`` and ``detect_batch(frames)`` on BGR uint8 frames.

    ``score_threshold`` filters candidates before NMS (0.6 keeps small and side-lit CCTV faces;
    the quality gate decides later which ones are good enough to embed). ``max_batch`` bounds
    the frames per onnxruntime call, which bounds memory (each 640x640 frame costs ~5 MB of
    input plus activations).
    """

    def __init__(
        self,
        *,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.3,
        top_k: int = 5000,
        max_batch: int = 8,
        intra_op_threads: int = 1,
        allow_spinning: bool = False,
        cache_dir: Path | str | None = None,
        source: Path | str | None = None,
    ) -> None:
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError("score_threshold must be in [0, 1]")
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.top_k = int(top_k)
        self.max_batch = int(max_batch)
        prepared = prepare_model(YUNET, cache_dir=cache_dir, source=source)
        self._identity = prepared.identity
        self._session = create_session(
            prepared.path, intra_op_threads=intra_op_threads, allow_spinning=allow_spinning
        )
        self._input_name = self._session.get_inputs()[0].name
        self._output_names = [o.name for o in self._session.get_outputs()]
        expected = {"%s_%d" % (kind, s) for kind in ("cls", "obj", "bbox", "kps") for s in STRIDES}
        if set(self._output_names) != expected:
            raise ModelLoadError(
                "%s: unexpected detector outputs %s" % (prepared.path, sorted(self._output_names))
            )
        self._batched = batch_dim_is_dynamic(self._session)
        if not self._batched:
            logger.info("detector batch dimension is fixed; detect_batch loops frame by frame")
        self._priors = _priors(INPUT_SIZE)

    @property
    def identity(self) -> ModelIdentity:
        return self._identity

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in one BGR frame, best score first."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Faces per frame for several frames (any sizes), run in batches of ``max_batch``."""
        prepared = [letterbox(as_bgr(image)) for image in images]
        results: list[list[Detection]] = []
        step = self.max_batch if self._batched else 1
        for start in range(0, len(prepared), step):
            chunk = prepared[start : start + step]
            blob = np.stack([canvas for canvas, _ in chunk]).transpose(0, 3, 1, 2).astype(np.float32)
            outputs = dict(zip(self._output_names, self._session.run(self._output_names, {self._input_name: blob})))
            for index, (_, box) in enumerate(chunk):
                results.append(self._decode(outputs, index, box))
        return results

    def _decode(self, outputs: dict[str, np.ndarray], index: int, lb: Letterbox) -> list[Detection]:
        all_boxes, all_kps, all_scores = [], [], []
        for stride, grid in self._priors:
            cls = np.clip(outputs["cls_%d" % stride][index, :, 0], 0.0, 1.0)
            obj = np.clip(outputs["obj_%d" % stride][index, :, 0], 0.0, 1.0)
            scores = np.sqrt(cls * obj)
            mask = scores >= self.score_threshold
            if not mask.any():
                continue
            cells = grid[mask]
            bbox = outputs["bbox_%d" % stride][index][mask]
            kps = outputs["kps_%d" % stride][index][mask].reshape(-1, 5, 2)
            centre = (cells + bbox[:, :2]) * stride
            size = np.exp(bbox[:, 2:4]) * stride
            all_boxes.append(np.concatenate([centre - size / 2, centre + size / 2], axis=1))
            all_kps.append((kps + cells[:, None, :]) * stride)
            all_scores.append(scores[mask])
        if not all_scores:
            return []
        boxes = np.concatenate(all_boxes)
        kps = np.concatenate(all_kps)
        scores = np.concatenate(all_scores)
        keep = nms(boxes, scores, self.nms_threshold, self.top_k)
        detections = []
        for i in keep:
            detections.append(
                Detection(
                    box=lb.to_original(boxes[i]).astype(np.float32),
                    landmarks=lb.to_original(kps[i]).astype(np.float32),
                    score=float(scores[i]),
                )
            )
        return detections
