"""Per-camera detection views: which cameras detect looks at in tiles and in a region of interest.

From detect's settings (LFR_TILE_CAMERAS, LFR_TILE_COLUMNS, LFR_TILE_OVERLAP, LFR_DETECT_REGIONS);
the tiling and the mapping back to frame pixels are services/engine/face/tiling.py (policy
tiles-plus-whole/v1). A camera in neither setting is detected whole, as before.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from prometheus_client import Counter

from services.engine.face.tiling import WHOLE_FRAME, ViewPlan

CAMERA_LIST = re.compile(r"^(\*|[A-Za-z0-9][A-Za-z0-9._:-]{0,63}(,[A-Za-z0-9][A-Za-z0-9._:-]{0,63})*)?$")
CAMERA_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")

DETECTOR_RUNS = Counter("lfr_detector_runs_total", "Detector runs (640x640 model inputs), by view: whole frame, region, tile", ["view"])
for _view in ("frame", "region", "tile"):
    DETECTOR_RUNS.labels(_view)


def parse_regions(text: str) -> dict[str, tuple[float, float, float, float]]:
    """``{"camera-id": [x1, y1, x2, y2], ...}`` in fractions of the frame; "" = none."""
    if not text.strip():
        return {}
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"detect regions: not JSON ({exc.msg} at {exc.pos})") from None
    if not isinstance(document, dict):
        raise ValueError('detect regions: a JSON object {"camera-id": [x1, y1, x2, y2]} is required')
    regions = {}
    for camera_id, box in document.items():
        if not CAMERA_ID.match(camera_id):
            raise ValueError(f"detect regions: {camera_id!r} is not a camera id")
        if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)):
            raise ValueError(f"detect regions: camera {camera_id} needs [x1, y1, x2, y2] as four numbers")
        region = tuple(float(v) for v in box)
        ViewPlan(region=region)  # bounds checked there
        regions[camera_id] = region
    return regions


@dataclass(frozen=True)
class CameraViews:
    """The plan per camera: tiles for the listed cameras (``*`` = all), a region where one is set."""

    tile_cameras: frozenset[str] = frozenset()
    columns: int = 2
    overlap: float = 0.2
    regions: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, tile_cameras: str, columns: int, overlap: float, regions: str) -> CameraViews:
        if not CAMERA_LIST.match(tile_cameras):
            raise ValueError(f"tile cameras {tile_cameras!r}: a comma-separated list of camera ids, or *")
        views = cls(frozenset(filter(None, tile_cameras.split(","))), columns, overlap, parse_regions(regions))
        ViewPlan(columns=columns, overlap=overlap)  # bounds checked there
        return views

    def plan(self, camera_id: str) -> ViewPlan:
        tiled = "*" in self.tile_cameras or camera_id in self.tile_cameras
        region = self.regions.get(camera_id)
        if not tiled and region is None:
            return WHOLE_FRAME
        return ViewPlan(region=region, columns=self.columns if tiled else 0, overlap=self.overlap)


def count_runs(plan: ViewPlan, windows: int) -> None:
    DETECTOR_RUNS.labels("frame" if plan.region is None else "region").inc()
    DETECTOR_RUNS.labels("tile").inc(windows - 1)
