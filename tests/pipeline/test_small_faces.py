"""Small faces at distance: tiles and a region of interest (services/engine/face/tiling.py), with the real
YuNet model on synthetic-crowd 1080p frames; boxes mapped back to frame pixels, faces in tile
overlaps found once, and the min-face-width/v1 rule in the detect stage."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
from prometheus_client import REGISTRY

from services.common.envelope import decode, encode
from services.common.settings import DetectSettings
from services.common.stage import Message
from services.pipeline.detect.stage import DetectDeps, process as detect
from services.pipeline.detect.views import CameraViews
from services.engine.face import LIVE_BOUNDS, ImageLimits
from services.engine.face.boxes import box_iou
from services.engine.face.tiling import ViewPlan, detect_views, runs_per_frame, windows
from services.pipeline.ingest.crowd import CrowdConfig, CrowdScene, cast_from_folder

CAST = ["Vladimir_Putin", "Hugo_Chavez", "Ariel_Sharon", "Hans_Blix"]
HD = (1920, 1080)
TILED = ViewPlan(columns=2)


def crowd(lfw_dir, face_width: int) -> CrowdScene:
    return CrowdScene(cast_from_folder(lfw_dir, CAST, 1), CrowdConfig(width=HD[0], height=HD[1], seed=7, max_walkers=4,
                                                                      min_face_width=face_width, max_face_width=face_width))


def jpeg_round_trip(image: np.ndarray) -> np.ndarray:
    return cv2.imdecode(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])[1], cv2.IMREAD_COLOR)


def inside(face: dict) -> bool:
    x1, y1, x2, y2 = face["box"]
    return x1 > 0 and y1 > 0 and x2 < HD[0] and y2 < HD[1]


def matches(face: dict, detections) -> list:
    return [d for d in detections if box_iou(face["box"], d.box) >= 0.3]


def test_tiles_cover_the_view_with_the_overlap_and_about_square():
    plan = ViewPlan(columns=2, overlap=0.2)
    view, *tiles = windows(*HD, plan)
    assert (view.x1, view.y1, view.x2, view.y2) == (0, 0, *HD) and len(tiles) == 4 == runs_per_frame(*HD, plan) - 1
    assert min(t.x1 for t in tiles) == 0 and max(t.x2 for t in tiles) == HD[0]
    assert min(t.y1 for t in tiles) == 0 and max(t.y2 for t in tiles) == HD[1]
    left, right = tiles[0], tiles[1]
    assert left.x2 - right.x1 >= 0.2 * (left.x2 - left.x1) - 1  # neighbours share the overlap
    assert left.inner == (False, False, True, True) and tiles[3].inner == (True, True, False, False)
    assert all(t.y2 - t.y1 <= t.x2 - t.x1 for t in tiles)
    region = ViewPlan(region=(0.25, 0.5, 0.75, 1.0))
    assert [(w.x1, w.y1, w.x2, w.y2) for w in windows(*HD, region)] == [(480, 540, 1440, 1080)]
    assert runs_per_frame(3840, 2160, ViewPlan(columns=3)) == 1 + 3 * 2
    with pytest.raises(ValueError, match="region"):
        ViewPlan(region=(0.5, 0.0, 0.4, 1.0))


def test_tiles_find_32px_faces_the_whole_frame_misses_each_once_in_frame_pixels(lfw_dir, face_engine):
    detector = face_engine[0]
    scene = crowd(lfw_dir, 32)
    whole_found = tiled_found = total = 0
    for seq in (60, 70, 80):
        image, truth = scene.render(seq)
        image = jpeg_round_trip(image)
        whole, tiled = detect_views(detector, [image, image], [ViewPlan(), TILED])
        for face in filter(inside, truth):
            total += 1
            whole_found += bool(matches(face, whole))
            found = matches(face, tiled)
            assert len(found) <= 1, "a face found by several tiles must come back once"
            if found:
                tiled_found += 1
                detection = found[0]
                assert box_iou(face["box"], detection.box) >= 0.5  # frame pixels, not the tile's
                x1, y1, x2, y2 = detection.box
                assert all(x1 <= x <= x2 and y1 <= y <= y2 for x, y in detection.landmarks)
        assert len(tiled) == sum(1 for f in truth if matches(f, tiled)), "no detection without a face"
    assert total >= 6
    assert tiled_found == total
    assert whole_found <= total // 2  # measured: 2 of 10 at 32 px (benchmarks/cameras.py)


def test_a_face_in_the_overlap_of_four_tiles_is_found_by_each_and_kept_once(lfw_dir, face_engine):
    detector = face_engine[0]
    image, truth = crowd(lfw_dir, 64).render(60)
    face = next(f for f in truth if inside(f))
    # Move the picture so the face sits where all four tiles overlap (and the whole view sees it).
    _, top_left, top_right, bottom_left, _ = windows(*HD, TILED)
    target = ((top_right.x1 + top_left.x2) / 2, (bottom_left.y1 + top_left.y2) / 2)
    x1, y1, x2, y2 = face["box"]
    dx, dy = round(target[0] - (x1 + x2) / 2), round(target[1] - (y1 + y2) / 2)
    moved = jpeg_round_trip(np.roll(image, (dy, dx), axis=(0, 1)))
    box = [x1 + dx, y1 + dy, x2 + dx, y2 + dy]
    raw = detector.detect_batch([moved[w.y1:w.y2, w.x1:w.x2] for w in windows(*HD, TILED)])
    seen_by = sum(any(box_iou(box, d.box + np.tile([w.x1, w.y1], 2)) >= 0.5 for d in ds) for w, ds in zip(windows(*HD, TILED), raw))
    assert seen_by == 5  # the whole view and the four tiles
    (tiled,) = detect_views(detector, [moved], [TILED])
    assert len([d for d in tiled if box_iou(box, d.box) >= 0.3]) == 1


def test_a_region_of_interest_looks_only_there_and_maps_back(lfw_dir, face_engine):
    detector = face_engine[0]
    image, truth = crowd(lfw_dir, 64).render(50)  # two walkers in the upper half, two in the lower
    image = jpeg_round_trip(image)
    lower = ViewPlan(region=(0.0, 0.5, 1.0, 1.0))
    (found,) = detect_views(detector, [image], [lower])
    below = [f for f in truth if inside(f) and f["box"][1] >= HD[1] / 2]
    above = [f for f in truth if inside(f) and f["box"][3] <= HD[1] / 2]
    assert below and above
    assert all(len(matches(f, found)) == 1 and box_iou(f["box"], matches(f, found)[0].box) >= 0.5 for f in below)
    assert not any(matches(f, found) for f in above)
    assert all(d.box[1] >= HD[1] / 2 - 2 for d in found)


def frame_message(image: np.ndarray, camera_id: str) -> Message:
    data = {"camera_id": camera_id, "deployment_id": "van-1", "seq": 0, "captured_at_ms": int(time.time() * 1000),
            "width": image.shape[1], "height": image.shape[0], "media_type": "image/jpeg",
            "image": cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()}
    return Message("lfr.frames.v1", decode(encode("lfr.frames.v1", data)).data, topic="lfr.frames.v1")


def _count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_detect_tiles_the_listed_camera_and_never_sends_a_face_too_small_to_judge(lfw_dir, face_engine):
    views = CameraViews.from_settings("mast-1", 2, 0.2, "")
    deps = DetectDeps(detector=face_engine[0], bounds=LIVE_BOUNDS, limits=ImageLimits(), views=views)
    image, truth = crowd(lfw_dir, 32).render(60)
    faces = [f for f in truth if inside(f)]
    before = (_count("lfr_faces_detected_total"), _count("lfr_faces_rejected_total", reason="too_small"), _count("lfr_detector_runs_total", view="tile"))
    # The listed camera is tiled: its 32 px faces are found, and none goes on to embed (min-face-width/v1).
    assert [o for o in detect([frame_message(image, "mast-1")], deps) if o.schema == "lfr.faces.v1"] == []
    found = _count("lfr_faces_detected_total") - before[0]
    assert found == len(faces) > 0
    assert _count("lfr_faces_rejected_total", reason="too_small") - before[1] == found
    assert _count("lfr_detector_runs_total", view="tile") - before[2] == 4
    # Another camera is detected whole, as before: most of those faces are not even found.
    before_other = _count("lfr_faces_detected_total")
    detect([frame_message(image, "street-2")], deps)
    assert _count("lfr_faces_detected_total") - before_other < found
    # 64 px faces through the tiles: sent, in frame pixels, the chip from the full frame.
    image, truth = crowd(lfw_dir, 64).render(60)
    outputs = [o for o in detect([frame_message(image, "mast-1")], deps) if o.schema == "lfr.faces.v1"]
    assert outputs and all(any(box_iou(f["box"], o.data["box"]) >= 0.5 for f in truth) for o in outputs)


def test_the_settings_bound_the_views_and_the_minimum_width():
    settings = DetectSettings(tile_cameras="mast-1,mast-2", tile_columns=3, detect_regions='{"mast-2": [0, 0.4, 1, 1]}')
    views = CameraViews.from_settings(settings.tile_cameras, settings.tile_columns, settings.tile_overlap, settings.detect_regions)
    assert views.plan("mast-2") == ViewPlan(region=(0.0, 0.4, 1.0, 1.0), columns=3, overlap=0.2)
    assert views.plan("street").is_whole_frame
    assert CameraViews.from_settings("*", 2, 0.2, "").plan("any").columns == 2
    for bad in ({"tile_cameras": "mast 1"}, {"tile_columns": 9}, {"tile_overlap": 0.6}, {"detect_regions": "[1]"},
                {"detect_regions": '{"mast-1": [0, 0, 1]}'}, {"detect_regions": '{"mast-1": [0, 0.5, 1, 0.2]}'},
                {"min_face_width_px": 24}):
        with pytest.raises(ValueError):
            DetectSettings(**bad)
