"""Builds real pipeline messages from real photos (what the detect and embed services produce)."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from services.engine.face import LIVE_BOUNDS, align_face, assess_quality, decode_image
from services.engine.face.evaluate import nearest_to_centre
from services.governance.watchlist.entry import vector_to_bytes


def embedding_message(path: Path, detector, embedder, camera_id: str = "cam-1", deployment_id: str = "van-1", seq: int = 0) -> dict:
    """lfr.embeddings.v1 data for the labelled (nearest-centre) face of an image."""
    image = decode_image(path.read_bytes())
    face = nearest_to_centre(detector.detect(image), image.shape)
    assert face is not None, f"no face in {path.name}"
    chip = align_face(image, face.landmarks)
    report = assess_quality(face, chip, LIVE_BOUNDS)
    vector = embedder.embed(chip[None])[0]
    now = int(time.time() * 1000)
    ok, jpeg = cv2.imencode(".jpg", chip, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return {
        "face": {
            "frame": {"camera_id": camera_id, "deployment_id": deployment_id, "seq": seq, "captured_at_ms": now,
                      "width": int(image.shape[1]), "height": int(image.shape[0])},
            "face_index": 0,
            "box": [float(v) for v in face.box],
            "landmarks": [[float(x), float(y)] for x, y in face.landmarks],
            "quality": {"face_width_px": report.face_width, "interocular_px": report.inter_ocular, "blur": report.blur,
                        "yaw": report.yaw, "roll": report.roll, "detector_score": min(1.0, float(face.score))},
            "chip": {"media_type": "image/jpeg", "data": jpeg.tobytes()},
            "detected_at_ms": now,
        },
        "model": {"name": embedder.identity.name, "sha256": embedder.identity.sha256},
        "embedding": {"dtype": "float32le", "dim": int(vector.shape[0]), "data": vector_to_bytes(vector)},
        "embedded_at_ms": now,
    }


def side_by_side(*paths: Path) -> bytes:
    """Several photos next to each other in one JPEG (a photo with more than one face)."""
    images = [decode_image(p.read_bytes()) for p in paths]
    height = max(im.shape[0] for im in images)
    canvas = np.hstack([cv2.copyMakeBorder(im, 0, height - im.shape[0], 0, 0, cv2.BORDER_CONSTANT) for im in images])
    ok, jpeg = cv2.imencode(".jpg", canvas)
    assert ok
    return jpeg.tobytes()
