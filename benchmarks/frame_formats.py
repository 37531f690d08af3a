"""What the frame topic should carry (issue #27, decode once, encode once at most): bytes per
frame, CPU per frame and the faces detect can still embed, for each way of sending a 1080p frame.

    python benchmarks/frame_formats.py [--frames 20] [--out FILE] [--smoke]

The synthetic crowd at 1920x1080 (faces 48-160 px, services/pipeline/ingest/crowd.py), one frame a second.
For each candidate format: bytes per frame (what the broker stores and moves, about 10 ms of
broker CPU per 1280x720 JPEG frame on the 2-core machine, issue #27), ingest's encode and
detect's decode CPU per frame (thread time, as ratios against JPEG quality 85 at full size in
the same process), and, load-independent, the faces detect finds and the faces the quality
gate accepts when the chip is cut from what arrives (a face in a 640x360 frame is a third as
wide as in 1080p, so most fall under the 40 px minimum).

Candidates: ``jpeg85_full`` (what ingest sends), ``jpeg70_full``, ``jpeg85_1280`` and
``jpeg85_640`` (downscaled at ingest to 1280x720 or to the detector's input scale),
``png_full`` (lossless), ``raw_bgr`` and ``raw_i420`` (no encoding), and ``h264`` (the stream
passed on as x264 ultrafast packets; detect would decode every frame, 25 a second, in order).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.tools.demo.dataset import resolve_data_dir  # noqa: E402
from services.engine.face import LIVE_BOUNDS, FaceDetector, align_face, assess_quality  # noqa: E402
from services.pipeline.ingest.crowd import CrowdConfig, CrowdScene, cast_from_folder  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SIZE = (1920, 1080)
BASELINE = "jpeg85_full"


def _jpeg(quality: int, size: tuple[int, int] | None):
    def encode(image: np.ndarray) -> bytes:
        if size is not None:
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()
    return encode


def _decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


FORMATS = {
    "jpeg85_full": (_jpeg(85, None), _decode),
    "jpeg70_full": (_jpeg(70, None), _decode),
    "jpeg85_1280": (_jpeg(85, (1280, 720)), _decode),
    "jpeg85_640": (_jpeg(85, (640, 360)), _decode),
    "png_full": (lambda image: cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])[1].tobytes(), _decode),
    "raw_bgr": (lambda image: image.tobytes(), lambda data: np.frombuffer(data, np.uint8).reshape(SIZE[1], SIZE[0], 3)),
    "raw_i420": (lambda image: cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420).tobytes(),
                 lambda data: cv2.cvtColor(np.frombuffer(data, np.uint8).reshape(SIZE[1] * 3 // 2, SIZE[0]), cv2.COLOR_YUV2BGR_I420)),
}


def h264_bytes_per_frame(frames: list[np.ndarray], fps: int = 25) -> float:
    """Mean packet size of the frames encoded as H.264 (x264 ultrafast, zerolatency, as the test server)."""
    import av

    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
    codec.time_base = Fraction(1, fps)
    codec.options = {"preset": "ultrafast", "tune": "zerolatency"}
    total = count = 0
    for index, image in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuv420p")
        frame.pts = index
        for packet in codec.encode(frame):
            total += packet.size
            count += 1
    for packet in codec.encode(None):
        total += packet.size
        count += 1
    return total / max(count, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS / "frame_formats.json")
    parser.add_argument("--smoke", action="store_true", help="three frames")
    args = parser.parse_args()
    data_dir = resolve_data_dir(args.data)
    if data_dir is None:
        print("no face data set: set LFR_DATA_DIR or pass --data", file=sys.stderr)
        return 2
    names = sorted(p.name for p in data_dir.iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) >= 2)[:8]
    scene = CrowdScene(cast_from_folder(data_dir, names, 1), CrowdConfig(width=SIZE[0], height=SIZE[1], fps=10, seed=7,
                                                                         min_face_width=48, max_face_width=160))
    count = 3 if args.smoke else args.frames
    frames = [scene.render((6 + index) * 10)[0] for index in range(count)]
    detector = FaceDetector(intra_op_threads=1)
    started = time.time()
    rows = {}
    for name, (encode, decode) in FORMATS.items():
        size = encode_s = decode_s = 0.0
        found = accepted = 0
        for image in frames:
            t = time.thread_time()
            data = encode(image)
            encode_s += time.thread_time() - t
            t = time.thread_time()
            arrived = decode(data)
            decode_s += time.thread_time() - t
            size += len(data)
            detections = detector.detect(arrived)
            found += len(detections)
            accepted += sum(assess_quality(d, align_face(arrived, d.landmarks), LIVE_BOUNDS).accepted for d in detections)
        rows[name] = {"bytes_per_frame": round(size / count), "encode_ms": round(1000 * encode_s / count, 2),
                      "decode_ms": round(1000 * decode_s / count, 2), "faces_found": found, "faces_accepted": accepted}
    base = rows[BASELINE]
    for row in rows.values():
        row["bytes_over_jpeg85_full"] = round(row["bytes_per_frame"] / base["bytes_per_frame"], 3)
        row["cpu_over_jpeg85_full"] = round((row["encode_ms"] + row["decode_ms"]) / max(base["encode_ms"] + base["decode_ms"], 1e-6), 3)
    rows["h264"] = {"bytes_per_frame": round(h264_bytes_per_frame(frames)),
                    "note": "mean packet of these frames as a 25 fps stream; the decoder needs every packet, in order"}
    rows["h264"]["bytes_over_jpeg85_full"] = round(rows["h264"]["bytes_per_frame"] / base["bytes_per_frame"], 3)
    result = {"smoke": args.smoke, "frames": count, "frame": f"{SIZE[0]}x{SIZE[1]}", "baseline": BASELINE,
              "machine": {"platform": platform.platform(), "python": platform.python_version()},
              "seconds": round(time.time() - started, 1), "formats": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("frame formats: " + " ".join(f"{k}={v['bytes_per_frame']}B/{v.get('faces_accepted')}" for k, v in rows.items()) + f" -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
