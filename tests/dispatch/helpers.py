"""Building lfr.matches.v1 messages for dispatch tests (like tests/watchlist builds embeddings)."""

from __future__ import annotations

import time
from typing import Any

from services.common.envelope import decode, encode
from services.engine.face.models import SFACE

CHIP = b"\xff\xd8\xff\xe0fake-jpeg-chip\xff\xd9"
NOW = int(time.time() * 1000)


def match(subject: str = "subj-1", camera: str = "cam-1", seq: int = 1, captured_at_ms: int = NOW, score: float = 0.6,
          face_index: int = 0, deployment: str = "van-1", priority: str = "red", chip: bytes = CHIP) -> dict[str, Any]:
    """One lfr.matches.v1 body, as the dispatcher sees it after decoding (chip as bytes)."""
    data = {
        "subject_id": subject,
        "reference": "W-" + subject,
        "category": "wanted_by_courts",
        "priority": priority,
        "score": score,
        "threshold": 0.5,
        "rank": 1,
        "model": {"name": SFACE.name, "sha256": SFACE.sha256},
        "face": {
            "frame": {"camera_id": camera, "deployment_id": deployment, "seq": seq, "captured_at_ms": captured_at_ms,
                      "width": 640, "height": 480},
            "face_index": face_index,
            "box": [10, 20, 122, 132],
            "landmarks": [[40, 60], [80, 60], [60, 80], [45, 100], [75, 100]],
            "quality": {"face_width_px": 112, "interocular_px": 40, "blur": 120, "yaw": 0, "roll": 0, "detector_score": 0.95},
            "chip": {"media_type": "image/jpeg", "data": chip},
            "detected_at_ms": captured_at_ms + 20,
        },
        "embedded_at_ms": captured_at_ms + 40,
        "matched_at_ms": captured_at_ms + 50,
    }
    return decode(encode("lfr.matches.v1", data)).data  # exactly what the dispatcher hands decide()


def record(**kwargs: Any) -> bytes:
    """One lfr.matches.v1 record value (the binary envelope)."""
    return encode("lfr.matches.v1", match(**kwargs))
