"""The cameras file: which cameras ingest reads. `lfr cameras add/remove/list` edit it and the
running ingest service applies the change without a restart.

Sources: a video file path (OpenCV with FFmpeg), an rtsp:// or http(s):// stream URL (PyAV;
the URL may carry credentials, or ``${NAME}`` placeholders for environment variables set from a
Secret, so it is never logged in full), ``folder:<dir>`` for an image folder,
or ``synthetic:crowd`` for the synthetic crowd camera (options in ``synthetic``).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

CAMERA_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")


@dataclass(frozen=True)
class CameraConfig:
    id: str
    deployment_id: str
    source: str
    fps: float = 10.0
    max_width: int = 1920
    max_height: int = 1080
    jpeg_quality: int = 85
    synthetic: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not CAMERA_ID.match(self.id) or not CAMERA_ID.match(self.deployment_id):
            raise ValueError("camera and deployment ids: 1-64 of letters, digits and . _ : -")
        if not 0.1 <= self.fps <= 60:
            raise ValueError(f"camera {self.id}: fps must be in [0.1, 60]")
        if not (64 <= self.max_width <= 8192 and 64 <= self.max_height <= 8192):
            raise ValueError(f"camera {self.id}: max frame size must be within 64..8192 px")
        if not 30 <= self.jpeg_quality <= 100:
            raise ValueError(f"camera {self.id}: JPEG quality must be in [30, 100]")
        if not self.source:
            raise ValueError(f"camera {self.id}: a source is required")


def redact(source: str) -> str:
    """The source without credentials, safe for logs and listings."""
    parts = urlsplit(source)
    if parts.password or parts.username:
        host = parts.hostname or ""
        netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    return source


def load_cameras(path: Path) -> dict[str, CameraConfig]:
    if not path.exists():
        return {}
    document = json.loads(path.read_text(encoding="utf-8") or "{}")
    # Found by fuzzing: "null" or a list here used to raise AttributeError out of ingest's loop.
    if not isinstance(document, dict) or not isinstance(document.get("cameras", []), list):
        raise ValueError("cameras file must be an object with a 'cameras' list")
    cameras = {}
    for raw in document.get("cameras", []):
        if not isinstance(raw, dict):
            raise ValueError("each camera must be an object")
        camera = CameraConfig(**raw)
        if camera.id in cameras:
            raise ValueError(f"camera {camera.id} is listed twice")
        cameras[camera.id] = camera
    return cameras


def save_cameras(path: Path, cameras: dict[str, CameraConfig]) -> None:
    """Atomic replace, so the running service never reads a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"cameras": [asdict(c) for c in sorted(cameras.values(), key=lambda c: c.id)]}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2)
        handle.write("\n")
    os.replace(tmp, path)
