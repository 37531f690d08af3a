"""Frame sources behind one small interface: read() gives the next BGR frame or None.

A folder of JPEG files at or below the camera's size, and an MJPEG stream whose frames are, also
offer ``read_encoded``: the file's or packet's bytes as they are (header checked, never
decoded), so ingest forwards them instead of decoding and re-encoding each frame. Detect decodes every frame anyway, and the round trip cost ingest
4-6 ms of CPU per frame: 0.55 of the 2-core machine's cores at the pipeline benchmark's
saturation offer (benchmarks/README.md), more than detect got.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import NamedTuple

import av
import av.error
import cv2
import numpy as np

from services.engine.face.errors import ImageError
from services.engine.face.imageio import DEFAULT_LIMITS, image_format, image_size, read_image_file

from .cameras import CameraConfig, redact
from .crowd import CrowdConfig, CrowdScene, cast_from_folder
from .stream_metrics import DECODE_SECONDS, FRAMES_DECODED, FRAMES_FORWARDED, FRAMES_RECEIVED, PACKETS_UNDECODABLE

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
    #: The source itself returns only the frames due at the camera's rate (StreamSource).
    paced = False

    def read(self) -> np.ndarray | None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class VideoSource(FrameSource):
    """A video file through OpenCV's FFmpeg backend, looping (streams go to StreamSource)."""

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


_PLACEHOLDER = re.compile(r"\$\{([A-Z_][A-Z0-9_]{0,127})\}")


def expand_credentials(source: str) -> str:
    """``${NAME}`` in a source replaced by the environment variable NAME (a camera's user or
    password from a Kubernetes Secret), so the cameras file never holds a credential."""

    def value(match: re.Match) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise SourceError(f"environment variable {name} named by the camera source is not set")
        return os.environ[name]

    return _PLACEHOLDER.sub(value, source)


def _reason(exc: Exception) -> str:
    """An FFmpeg error without the URL it names (which may carry credentials)."""
    return f"{type(exc).__name__}: {getattr(exc, 'strerror', None) or 'no detail'}"


class StreamSource(FrameSource):
    """A live stream (RTSP over TCP, HTTP) through PyAV: demux, decode every packet (H.264 and
    H.265 need every reference frame), and convert to BGR, scaled within the camera's maximum
    size in the same swscale pass, only the frames due at the camera's rate, chosen by the
    stream's own timestamps so the analysed rate stays steady when packets arrive in bursts.
    A stall longer than ``read_timeout_s`` or the end of the stream ends ``read`` with None (the
    worker reconnects with backoff). Counts frames received and decoded, and decode time."""

    live = True
    paced = True

    def __init__(self, source: str, camera_id: str, fps: float, max_width: int, max_height: int,
                 open_timeout_s: float = 10.0, read_timeout_s: float = 5.0) -> None:
        self.source = source
        self.camera_id = camera_id
        self.max_width, self.max_height = max_width, max_height
        self.set_rate(fps)
        options = {"rtsp_transport": "tcp"} if source.startswith(("rtsp://", "rtsps://")) else {}
        try:
            self._container = av.open(expand_credentials(source), options=options, timeout=(open_timeout_s, read_timeout_s))
        except (av.error.FFmpegError, OSError) as exc:
            raise SourceError(f"cannot open {redact(source)}: {_reason(exc)}") from None
        if not self._container.streams.video:
            self._container.close()
            raise SourceError(f"{redact(source)} has no video stream")
        self._stream = self._container.streams.video[0]
        # One decoding thread per camera, the caller's: decode time is this thread's CPU, and
        # frame threading would hold each frame back by one frame per extra thread.
        self._stream.codec_context.thread_count = 1
        self.codec = self._stream.codec_context.name
        self._packets = self._container.demux(self._stream)
        self._next_due: float | None = None
        self._last_t: float | None = None
        self._last_wall = 0.0
        self._received = FRAMES_RECEIVED.labels(camera_id)
        self._decoded = FRAMES_DECODED.labels(camera_id)
        self._decode_seconds = DECODE_SECONDS.labels(camera_id)

    def set_rate(self, fps: float) -> None:
        """Frames per second to return (the analysed rate); the stream is decoded in full anyway."""
        self.interval = 1.0 / fps

    def _due(self, frame) -> bool:
        return self._due_at(frame.time)

    def _due_at(self, time_s: float | None) -> bool:
        now = time.monotonic()
        if time_s is not None:
            t = time_s
        else:  # no timestamp (the first frame of an RTSP session): wall time since the last frame
            t = self._last_t + (now - self._last_wall) if self._last_t is not None else 0.0
        self._last_t, self._last_wall = t, now
        if self._next_due is None or t < self._next_due - 2 * self.interval:
            self._next_due = t + self.interval  # the first frame, or the camera restarted its clock
            return True
        if t + 0.002 < self._next_due:
            return False
        # Keep to the grid (a steady rate for tracking) unless more than one interval behind it.
        self._next_due = self._next_due + self.interval if t - self._next_due < self.interval else t + self.interval
        return True

    def read(self) -> np.ndarray | None:
        try:
            for packet in self._packets:
                if packet.size == 0:
                    continue  # the demuxer's flush packet
                self._received.inc()
                started = time.thread_time()
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError:
                    PACKETS_UNDECODABLE.labels(self.camera_id).inc()
                    continue
                finally:
                    self._decode_seconds.observe(time.thread_time() - started)
                for frame in frames:
                    self._decoded.inc()
                    if self._due(frame):
                        return self._convert(frame)
        except (av.error.FFmpegError, OSError) as exc:
            logger.warning("stream read failed", extra={"camera": self.camera_id, "source": redact(self.source), "error": _reason(exc)})
        return None

    def read_encoded(self, max_width: int, max_height: int) -> EncodedFrame | np.ndarray | None:
        """MJPEG: the next due packet's JPEG as the camera encoded it when it fits ``max_width`` x
        ``max_height`` (header checked, never decoded: every MJPEG frame stands alone, so the
        frames not due need no decoding either); otherwise, and for other codecs, ``read``."""
        if self.codec != "mjpeg":
            return self.read()
        try:
            for packet in self._packets:
                if packet.size == 0:
                    continue
                self._received.inc()
                time_s = float(packet.pts * packet.time_base) if packet.pts is not None and packet.time_base is not None else None
                if not self._due_at(time_s):
                    continue
                data = bytes(packet)
                try:
                    width, height = image_size(data) if image_format(data) == "jpeg" else (0, 0)
                except ImageError:
                    width = height = 0
                if 0 < width <= max_width and 0 < height <= max_height and width * height <= DEFAULT_LIMITS.max_pixels:
                    FRAMES_FORWARDED.labels(self.camera_id).inc()
                    return EncodedFrame(data, width, height)
                started = time.thread_time()  # too large, or not a plain JPEG: decode and scale it
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError:
                    PACKETS_UNDECODABLE.labels(self.camera_id).inc()
                    continue
                finally:
                    self._decode_seconds.observe(time.thread_time() - started)
                for frame in frames:
                    self._decoded.inc()
                    return self._convert(frame)
        except (av.error.FFmpegError, OSError) as exc:
            logger.warning("stream read failed", extra={"camera": self.camera_id, "source": redact(self.source), "error": _reason(exc)})
        return None

    def _convert(self, frame) -> np.ndarray:
        scale = min(1.0, self.max_width / frame.width, self.max_height / frame.height)
        if scale < 1.0:
            return frame.to_ndarray(format="bgr24", width=round(frame.width * scale), height=round(frame.height * scale), interpolation="AREA")
        return frame.to_ndarray(format="bgr24")

    def close(self) -> None:
        self._container.close()


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


STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")


def open_source(camera: CameraConfig, open_timeout_s: float = 10.0, read_timeout_s: float = 5.0) -> FrameSource:
    if camera.source == "synthetic:crowd":
        return CrowdSource(camera.synthetic, camera.fps)
    if camera.source.startswith("folder:"):
        return FolderSource(Path(camera.source.removeprefix("folder:")))
    if camera.source.startswith(STREAM_SCHEMES):
        return StreamSource(camera.source, camera.id, camera.fps, camera.max_width, camera.max_height, open_timeout_s, read_timeout_s)
    return VideoSource(camera.source)
