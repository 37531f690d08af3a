"""A synthetic IP camera for tests and benchmarks: the crowd rendered to a clip, served over RTSP.

``render_clip`` renders the synthetic crowd (crowd.py) to numbered JPEG files with ground truth
per clip frame (truth.jsonl) and stamps each frame's clip index into its top-left corner as a
row of black and white cells, so a frame received through RTSP, H.264 and ingest's scaling can
be matched to its truth (``read_stamp``). ``RtspTestServer`` runs GStreamer's RTSP server on the
clip (rtsp_serve.py, Debian's python3) as a subprocess that a test can kill, restart, stop
(SIGSTOP: the stream stalls with the connection open) and resume.

Demonstrations and tests only, never with real cameras.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .crowd import CrowdConfig, CrowdScene, cast_from_folder

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).with_name("rtsp_serve.py")
#: Debian packages the server needs (.ci/run installs them).
SERVER_PACKAGES = (
    "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good "
    "gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly"
)

# The stamp: STAMP_BITS cells of the index, then one parity cell, each CELL_FRACTION of the
# frame's width wide and tall, at the top-left corner. Cells 1/96 of the width (20 px at 1080p)
# survive H.264 at camera bitrates and scaling down to 640 px wide.
STAMP_BITS = 16
CELL_FRACTION = 1 / 96


def stamp(image: np.ndarray, index: int) -> None:
    """Write ``index`` (mod 2**STAMP_BITS) into the frame's top-left corner, in place."""
    cell = max(4, round(image.shape[1] * CELL_FRACTION))
    bits = [(index >> b) & 1 for b in range(STAMP_BITS)]
    bits.append(sum(bits) % 2)
    for i, bit in enumerate(bits):
        image[0:cell, i * cell : (i + 1) * cell] = 255 if bit else 0


def read_stamp(image: np.ndarray) -> int | None:
    """The stamped clip index of a (possibly scaled, compressed) frame, or None if unreadable."""
    cell = image.shape[1] * CELL_FRACTION
    grey = image if image.ndim == 2 else image.mean(axis=2)
    bits = []
    for i in range(STAMP_BITS + 1):
        y0, y1 = int(cell * 0.25), max(int(cell * 0.25) + 1, int(cell * 0.75))
        x0, x1 = int(cell * (i + 0.25)), max(int(cell * (i + 0.25)) + 1, int(cell * (i + 0.75)))
        value = float(grey[y0:y1, x0:x1].mean())
        if 70 < value < 185:
            return None  # neither black nor white: not a stamp
        bits.append(1 if value >= 128 else 0)
    if sum(bits[:STAMP_BITS]) % 2 != bits[STAMP_BITS]:
        return None
    return sum(bit << b for b, bit in enumerate(bits[:STAMP_BITS]))


@dataclass(frozen=True)
class Clip:
    folder: Path
    frames: int
    fps: int
    width: int
    height: int

    def truth(self) -> list[list[dict]]:
        """Per clip frame, the faces in it (crowd.py's truth: identity, walker, face_width, box)."""
        rows = [json.loads(line) for line in (self.folder / "truth.jsonl").read_text().splitlines()]
        return [row["faces"] for row in sorted(rows, key=lambda r: r["index"])]


def render_clip(data_dir: Path, identities: list[str], folder: Path, *, seconds: float, fps: int = 25, width: int = 1920,
                height: int = 1080, seed: int = 7, min_face_width: int = 48, max_face_width: int = 160,
                max_walkers: int = 4, jpeg_quality: int = 92) -> Clip:
    """Render (or reuse, when the folder already holds the same clip) the crowd as a JPEG clip."""
    spec = {"identities": identities, "seconds": seconds, "fps": fps, "width": width, "height": height, "seed": seed,
            "min_face_width": min_face_width, "max_face_width": max_face_width, "max_walkers": max_walkers, "quality": jpeg_quality}
    frames = max(1, round(seconds * fps))
    clip = Clip(folder, frames, fps, width, height)
    spec_file = folder / "clip.json"
    if spec_file.exists() and json.loads(spec_file.read_text()) == spec:
        return clip
    folder.mkdir(parents=True, exist_ok=True)
    cast = cast_from_folder(data_dir, identities, 1)
    scene = CrowdScene(cast, CrowdConfig(width=width, height=height, fps=fps, seed=seed, max_walkers=max_walkers,
                                         min_face_width=min_face_width, max_face_width=max_face_width))
    with open(folder / "truth.jsonl", "w", encoding="utf-8") as truth:
        for index in range(frames):
            image, faces = scene.render(index)
            stamp(image, index)
            cv2.imwrite(str(folder / f"{index:05d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
            truth.write(json.dumps({"index": index, "faces": faces}) + "\n")
    spec_file.write_text(json.dumps(spec))
    return clip


def server_unavailable() -> str | None:
    """Why the RTSP test server cannot run here (missing Debian packages), or None."""
    if not os.path.exists(SYSTEM_PYTHON):
        return f"{SYSTEM_PYTHON} not found"
    probe = (
        "import gi; gi.require_version('Gst','1.0'); gi.require_version('GstRtspServer','1.0');"
        "from gi.repository import Gst, GstRtspServer; Gst.init(None);"
        "missing=[e for e in 'multifilesrc jpegdec jpegenc videoconvert videoscale x264enc rtph264pay x265enc rtph265pay rtpjpegpay'.split()"
        " if Gst.ElementFactory.find(e) is None]; print(' '.join(missing))"
    )
    result = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        return "GStreamer's RTSP server is not installed (apt-get install " + SERVER_PACKAGES + ")"
    if result.stdout.strip():
        return "GStreamer elements missing: " + result.stdout.strip() + " (apt-get install " + SERVER_PACKAGES + ")"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RtspTestServer:
    """GStreamer's RTSP server on ``clip``: mounts /h264 (full size), /h265 and /mjpeg (half width and height)."""

    def __init__(self, clip: Clip, port: int | None = None, log_path: Path | None = None) -> None:
        self.clip = clip
        self.port = port or free_port()
        self.log_path = log_path or clip.folder / "rtsp-server.log"
        self.process: subprocess.Popen | None = None

    def url(self, mount: str = "h264") -> str:
        return f"rtsp://127.0.0.1:{self.port}/{mount}"

    def start(self, timeout_s: float = 30) -> None:
        log = open(self.log_path, "a", encoding="utf-8")  # noqa: SIM115 (the child keeps writing it)
        self.process = subprocess.Popen(
            [SYSTEM_PYTHON, str(SERVER_SCRIPT), str(self.port), str(self.clip.folder), str(self.clip.fps), str(self.clip.width),
             str(self.clip.height)],
            stdout=subprocess.PIPE, stderr=log, text=True,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        line = self.process.stdout.readline()  # "ready" once listening, or EOF if it failed
        if line.strip() != "ready" or time.monotonic() > deadline:
            self.stop()
            raise RuntimeError(f"the RTSP server did not start; see {self.log_path}")

    def stop(self) -> None:
        """Kill the server (a camera losing power): clients see the connection drop."""
        if self.process is None:
            return
        self.resume()
        self.process.kill()
        self.process.wait(10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        """SIGSTOP: the stream stalls, the connection stays open (a hung camera)."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)

    def __enter__(self) -> RtspTestServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
