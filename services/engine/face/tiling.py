"""Small faces at distance: detection in tiles and a region of interest, mapped back to the frame.

YuNet's input is a fixed 640x640 (services/engine/face/detector.py): a whole 1080p frame is shrunk by 3
and a 4K frame by 6, so a face 32 px wide in 1080p reaches the model 11 px wide, below what it
finds (benchmarks/cameras.py: recall 0.10 at 32 px, 0.61 at 48 px in 1080p). Policy
``tiles-plus-whole/v1``: a camera's frame (or its region of interest) is cut into ``columns``
tiles across and as many rows as keep the tiles about square, each tile overlapping its
neighbours by ``overlap`` of its size, and every tile is detected at the model's input size on
top of the whole view. A tile shrinks a 1080p frame by about 1.2 instead of 3.

Mapping back: a window's detections are offset by the window's origin (boxes and landmarks are
in the crop's pixels, the crop is the frame's pixels unscaled). De-duplication: a detection
touching a tile's inner edge (an edge inside the view) is a face cut by the tile and is dropped,
since a face narrower than the overlap lies whole in the neighbouring tile and a wider one is
found by the whole view; the rest are merged by greedy NMS on intersection over the smaller
box (a face found by a tile and by the whole view keeps its best-scoring box).

The cost is the detector runs per frame: 1 + tiles (``runs_per_frame``), all in one batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from services.engine.face.detector import Detection, FaceDetector

TILING_POLICY = "tiles-plus-whole/v1"
EDGE_MARGIN_PX = 2.0  # a box this close to a tile's inner edge was cut by it
MERGE_OVERLAP = 0.5  # intersection over the smaller box above which two detections are one face


@dataclass(frozen=True)
class ViewPlan:
    """Where the detector looks in one camera's frames.

    ``region``: (x1, y1, x2, y2) as fractions of the frame, the only part looked at (None = the
    whole frame). ``columns``: tiles across the region (0 or 1 = no tiling). ``overlap``: the
    fraction of a tile's width and height shared with each neighbour.
    """

    region: tuple[float, float, float, float] | None = None
    columns: int = 0
    overlap: float = 0.2

    def __post_init__(self) -> None:
        if self.region is not None:
            x1, y1, x2, y2 = self.region
            if not (0.0 <= x1 < x2 <= 1.0 and 0.0 <= y1 < y2 <= 1.0):
                raise ValueError(f"region {self.region}: needs 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1 (fractions of the frame)")
        if not 0 <= self.columns <= 8:
            raise ValueError(f"tile columns {self.columns}: must be in 0..8")
        if not 0.0 <= self.overlap <= 0.5:
            raise ValueError(f"tile overlap {self.overlap}: must be in [0, 0.5]")

    @property
    def is_whole_frame(self) -> bool:
        return self.region is None and self.columns <= 1


WHOLE_FRAME = ViewPlan()


@dataclass(frozen=True)
class Window:
    """A crop of the frame in pixels; ``inner`` says which of its edges (left, top, right,
    bottom) lie inside the view, where a face can be cut."""

    x1: int
    y1: int
    x2: int
    y2: int
    inner: tuple[bool, bool, bool, bool] = (False, False, False, False)


def _spans(start: int, length: int, count: int, overlap: float) -> list[tuple[int, int]]:
    if count <= 1:
        return [(start, start + length)]
    size = length / (count - (count - 1) * overlap)
    step = size * (1 - overlap)
    spans = []
    for index in range(count):
        lo = start + round(index * step)
        hi = start + length if index == count - 1 else start + round(index * step + size)
        spans.append((lo, hi))
    return spans


def windows(width: int, height: int, plan: ViewPlan) -> list[Window]:
    """The crops the detector runs on for a ``width`` x ``height`` frame: the view, then its tiles."""
    if plan.region is None:
        vx1, vy1, vx2, vy2 = 0, 0, width, height
    else:
        fx1, fy1, fx2, fy2 = plan.region
        vx1, vy1 = math.floor(fx1 * width), math.floor(fy1 * height)
        vx2, vy2 = max(vx1 + 1, math.ceil(fx2 * width)), max(vy1 + 1, math.ceil(fy2 * height))
    view = [Window(vx1, vy1, vx2, vy2)]
    if plan.columns <= 1:
        return view
    vw, vh = vx2 - vx1, vy2 - vy1
    columns = plan.columns
    # Rows so that a tile is no taller than it is wide (the model's input is square).
    rows = max(1, math.ceil(columns * vh / vw))
    xs = _spans(vx1, vw, columns, plan.overlap)
    ys = _spans(vy1, vh, rows, plan.overlap)
    tiles = []
    for row, (y1, y2) in enumerate(ys):
        for column, (x1, x2) in enumerate(xs):
            tiles.append(Window(x1, y1, x2, y2, (column > 0, row > 0, column < columns - 1, row < rows - 1)))
    return view + tiles


def runs_per_frame(width: int, height: int, plan: ViewPlan) -> int:
    """Detector runs one frame costs under ``plan`` (1 for the whole frame)."""
    return len(windows(width, height, plan))


def _shift(detection: Detection, window: Window) -> Detection:
    offset = np.array([window.x1, window.y1], dtype=np.float32)
    return Detection(box=detection.box + np.tile(offset, 2), landmarks=detection.landmarks + offset, score=detection.score)


def _cut_by(box: np.ndarray, window: Window) -> bool:
    left, top, right, bottom = window.inner
    return ((left and box[0] <= window.x1 + EDGE_MARGIN_PX) or (top and box[1] <= window.y1 + EDGE_MARGIN_PX)
            or (right and box[2] >= window.x2 - EDGE_MARGIN_PX) or (bottom and box[3] >= window.y2 - EDGE_MARGIN_PX))


def merge(detections: Sequence[Detection], overlap: float = MERGE_OVERLAP) -> list[Detection]:
    """Greedy NMS on intersection over the smaller box, best score first."""
    kept: list[Detection] = []
    for candidate in sorted(detections, key=lambda d: -d.score):
        box = candidate.box
        area = max(0.0, float(box[2] - box[0])) * max(0.0, float(box[3] - box[1]))
        duplicate = False
        for other in kept:
            ob = other.box
            iw = min(box[2], ob[2]) - max(box[0], ob[0])
            ih = min(box[3], ob[3]) - max(box[1], ob[1])
            if iw <= 0 or ih <= 0:
                continue
            other_area = float(ob[2] - ob[0]) * float(ob[3] - ob[1])
            smaller = min(area, other_area)
            if smaller > 0 and float(iw * ih) / smaller > overlap:
                duplicate = True
                break
        if not duplicate:
            kept.append(candidate)
    return kept


def detect_views(detector: FaceDetector, images: Sequence[np.ndarray], plans: Sequence[ViewPlan]) -> list[list[Detection]]:
    """Faces per frame, in frame pixels, each frame looked at as its plan says (one batched call)."""
    if all(plan.is_whole_frame for plan in plans):
        return detector.detect_batch(images)
    crops: list[np.ndarray] = []
    owners: list[tuple[int, Window]] = []
    for index, (image, plan) in enumerate(zip(images, plans, strict=True)):
        for window in windows(image.shape[1], image.shape[0], plan):
            crops.append(image[window.y1:window.y2, window.x1:window.x2])  # a view: no copy
            owners.append((index, window))
    found: list[list[Detection]] = [[] for _ in images]
    for (index, window), detections in zip(owners, detector.detect_batch(crops), strict=True):
        for detection in (_shift(detection, window) for detection in detections):
            if not _cut_by(detection.box, window):
                found[index].append(detection)
    return [merge(frame) if plan.columns > 1 else frame for frame, plan in zip(found, plans, strict=True)]
