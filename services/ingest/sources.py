"""Frame sources behind one small interface: read() gives the next BGR frame or None.

A folder of JPEG files at or below the camera's size also offers ``read_encoded``: the file's
bytes as they are (header checked, never decoded), so ingest forwards them instead of decoding
and re-encoding each frame. Detect decodes every frame anyway, and the round trip cost ingest
4-6 ms of CPU per frame: 0.55 of the 2-core machine's cores at the pipeline benchmark's
saturation offer (benchmarks/README.md), more than detect got.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from services.face.errors import ImageError
from services.face.imageio import DEFAULT_LIMITS, image_format, image_size, read_image_file

from .cameras import CameraConfig, redact
from .crowd import CrowdConfig, CrowdScene, cast_from_folder

logger = logging.getLogger(__name__)


class EncodedFrame(NamedTuple):
    """A JPEG frame forwarded as its source delivered it."""

    jpeg: bytes
    width: int
    height: int


class SourceError(Exception):
    """The source cannot be opened or stopped delivering (the worker reconnects)."""


class FrameSource:
    #: Streams deliver at their own pace; files, folders and the synthetic camera are paced by us.
    live = False

    def read(self) -> np.ndarray | None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class VideoSource(FrameSource):
    """A video file or an RTSP/HTTP stream through OpenCV's FFmpeg backend. Files loop."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.live = source.startswith(("rtsp://", "rtsps://", "http://", "https://"))
        self._capture = cv2.VideoCapture(source, cv2.CAP_FFMPEG)
        if not self._capture.isOpened():
            raise SourceError(f"cannot open {redact(source)}")

    def read(self) -> np.ndarray | None:
        ok, frame = self._capture.read()
        if not ok and not self.live:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self._capture.read()
        return frame if ok else None

    def close(self) -> None:
        self._capture.release()


class FolderSource(FrameSource):
    """Images of a folder in name order, looping; unreadable files are skipped and logged."""

    def __init__(self, folder: Path) -> None:
        self.paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if not self.paths:
            raise SourceError(f"no images in {folder}")
        self._next = 0

    def read(self) -> np.ndarray | None:
        for _ in range(len(self.paths)):
            path = self.paths[self._next % len(self.paths)]
            self._next += 1
            try:
                return read_image_file(path)  # header and pixel limits checked before decoding
            except (ImageError, OSError) as exc:
                logger.warning("unreadable image skipped", extra={"file": path.name, "error": str(exc)[:200]})
        return None

    def read_encoded(self, max_width: int, max_height: int) -> EncodedFrame | np.ndarray | None:
        """The next file's JPEG bytes when it is a JPEG that fits ``max_width`` x ``max_height``
        and the image limits (header checked only); else the decoded frame, as ``read``."""
        path = self.paths[self._next % len(self.paths)]
        try:
            if path.stat().st_size <= DEFAULT_LIMITS.max_bytes:
                data = path.read_bytes()
                # EXIF may rotate the image when decoded (its declared size would then be wrong):
                # such files take the decoding path.
                if image_format(data) == "jpeg" and b"Exif\x00" not in data[:65536]:
                    width, height = image_size(data)
                    if 0 < width <= max_width and 0 < height <= max_height and width * height <= DEFAULT_LIMITS.max_pixels:
                        self._next += 1
                        return EncodedFrame(data, width, height)
        except (ImageError, OSError):
            pass  # read() skips and logs it
        return self.read()


class CrowdSource(FrameSource):
    """The synthetic crowd camera (see crowd.py); ``truth`` collects ground truth per frame."""

    def __init__(self, options: dict, fps: float) -> None:
        data_dir = Path(options["data_dir"])
        cast = cast_from_folder(data_dir, list(options["identities"]), int(options.get("photo_index", 1)))
        config = CrowdConfig(
            width=int(options.get("width", 1280)),
            height=int(options.get("height", 720)),
            fps=fps,
            seed=int(options.get("seed", 7)),
            max_walkers=int(options.get("max_walkers", 4)),
            min_face_width=int(options.get("min_face_width", 48)),
            max_face_width=int(options.get("max_face_width", 160)),
        )
        self.scene = CrowdScene(cast, config)
        self.frame_index = 0
        self.last_truth: list[dict] = []

    def read(self) -> np.ndarray | None:
        image, self.last_truth = self.scene.render(self.frame_index)
        self.frame_index += 1
        return image


def open_source(camera: CameraConfig) -> FrameSource:
    if camera.source == "synthetic:crowd":
        return CrowdSource(camera.synthetic, camera.fps)
    if camera.source.startswith("folder:"):
        return FolderSource(Path(camera.source.removeprefix("folder:")))
    return VideoSource(camera.source)
