"""Cameras benchmark (issue #27): detection recall by face width in 1080p and 4K frames, and what
one H.264 1080p 25 fps RTSP camera costs ingest per frame.

    python benchmarks/cameras.py [--frames 10] [--stream-seconds 15] [--out FILE] [--smoke]

1. ``face_width_recall``: the synthetic crowd (services/pipeline/ingest/crowd.py) rendered at 1920x1080
   and 3840x2160 with every walker's face at one width (16 to 160 px), through a JPEG round trip
   at ingest's quality (85), given whole to the detector as detect gets it (YuNet letterboxes
   the frame into 640x640, so a face shrinks by 1920/640 = 3 in 1080p and 6 in 4K). A face
   counts as found when a detection overlaps its true box by IoU >= 0.3; faces cut by the
   frame's edge are not counted. Recall per (frame, width, ``setting``): ``whole-frame`` (the
   default) and ``tiles-N`` (the frame also detected in N tiles across, as detect does for a
   camera in LFR_TILE_CAMERAS; policy tiles-plus-whole/v1), with its cost in
   ``detector_runs_per_frame`` (a count, independent of the machine's load).
2. ``stream_costs_1080p``: GStreamer's RTSP server (services/pipeline/ingest/testcamera.py) serves the
   crowd as H.264 1920x1080 at 25 fps; ingest's StreamSource reads it for a few seconds. CPU
   per frame (thread time) of decoding (every frame), of the BGR conversion of one frame, and of
   its JPEG encoding at quality 85 (what ingest pays per analysed frame), and the cores four such
   cameras need at 25 fps decoded and 10 fps analysed. Skipped, with the reason, where the
   server's Debian packages are missing.
3. ``four_cameras_ingest_only``: four such sessions read at once, one thread each, 10 fps
   analysed (converted and JPEG-encoded) per camera, no broker: the frames per second each
   camera delivered and the cores the reading process used (process CPU over wall time).

4. ``four_cameras``: four such cameras through the whole pipeline (benchmarks/four_cameras.py,
   analysed-rate policy steady-analysed/v1 at 10 fps), and the same with every frame analysed
   (``walker_recall_all_frames``), with the per-stage CPU per analysed frame. Left null with
   ``--recall-only`` and ``--smoke`` (tests/pipeline/test_four_cameras.py runs a short one).
   ``overload_over_baseline_faces_per_s`` stays null: not measured here yet.

Figures are from whatever machine runs this; the recall figures do not depend on its load, the
costs and rates do.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from services.tools.demo.dataset import resolve_data_dir  # noqa: E402
from services.engine.face import FaceDetector  # noqa: E402
from services.engine.face.boxes import box_iou  # noqa: E402
from services.engine.face.tiling import WHOLE_FRAME, ViewPlan, detect_views, runs_per_frame  # noqa: E402
from services.pipeline.ingest.crowd import CrowdConfig, CrowdScene, cast_from_folder  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
FRAMES = {"1080p": (1920, 1080), "4k": (3840, 2160)}
WIDTHS = (16, 24, 32, 48, 64, 96, 128, 160)
FOUND_IOU = 0.3
#: Per frame size, the detection settings measured: the whole frame (as before) and the tiles
#: detect uses for a camera in LFR_TILE_CAMERAS (services/engine/face/tiling.py) with LFR_TILE_COLUMNS.
SETTINGS = {"1080p": {"whole-frame": WHOLE_FRAME, "tiles-2": ViewPlan(columns=2)},
            "4k": {"whole-frame": WHOLE_FRAME, "tiles-2": ViewPlan(columns=2), "tiles-3": ViewPlan(columns=3)}}
FPS = 10.0


def cast_identities(data_dir: Path, count: int = 8) -> list[str]:
    """The first ``count`` identities (by name) with at least two photos: deterministic."""
    names = [p.name for p in sorted(data_dir.iterdir()) if p.is_dir() and len(list(p.glob("*.jpg"))) >= 2]
    return names[:count]


def width_recall(detector: FaceDetector, data_dir: Path, identities: list[str], size: tuple[int, int], width_px: int, frames: int,
                 plan: ViewPlan = WHOLE_FRAME) -> dict:
    cast = cast_from_folder(data_dir, identities, 1)
    scene = CrowdScene(cast, CrowdConfig(width=size[0], height=size[1], fps=FPS, seed=7, max_walkers=4,
                                         min_face_width=width_px, max_face_width=width_px))
    found = total = 0
    # From 6 s on the scene holds 3-4 walkers; one frame a second so walkers move between samples.
    for index in range(frames):
        image, truth = scene.render(int((6 + index) * FPS))
        image = cv2.imdecode(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])[1], cv2.IMREAD_COLOR)
        boxes = [d.box for d in detect_views(detector, [image], [plan])[0]]
        for face in truth:
            x1, y1, x2, y2 = face["box"]
            if x1 <= 0 or y1 <= 0 or x2 >= size[0] or y2 >= size[1]:
                continue  # cut by the frame's edge
            total += 1
            found += any(box_iou(face["box"], box) >= FOUND_IOU for box in boxes)
    return {"found": found, "faces": total, "recall": round(found / total, 3) if total else None}


def stream_costs(data_dir: Path, identities: list[str], seconds: float, workdir: Path) -> dict:
    from services.pipeline.ingest.sources import StreamSource
    from services.pipeline.ingest.testcamera import RtspTestServer, render_clip, server_unavailable

    reason = server_unavailable()
    if reason is not None:
        return {"skipped": reason}
    clip = render_clip(data_dir, identities, workdir / "clip", seconds=4, fps=25, width=1920, height=1080)
    with RtspTestServer(clip) as server:
        source = StreamSource(server.url("h264"), "bench", 25, 1920, 1080)
        from prometheus_client import REGISTRY

        def decode_totals() -> tuple[float, float]:
            return (REGISTRY.get_sample_value("lfr_camera_decode_seconds_sum", {"camera": "bench"}) or 0.0,
                    REGISTRY.get_sample_value("lfr_camera_frames_decoded_total", {"camera": "bench"}) or 0.0)

        try:
            for _ in range(25):  # the first second: the session's set-up and key frame
                source.read()
            decode_s0, decoded0 = decode_totals()
            convert_s = encode_s = 0.0
            frames = 0
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                packet_started = time.thread_time()
                image = source.read()  # decodes the packet and converts the frame (all due at 25 fps)
                read_s = time.thread_time() - packet_started
                if image is None:
                    break
                started = time.thread_time()
                cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
                encode_s += time.thread_time() - started
                convert_s += read_s
                frames += 1
            decode_s1, decoded1 = decode_totals()
        finally:
            source.close()
    decoded = decoded1 - decoded0
    decode_ms = 1000 * (decode_s1 - decode_s0) / max(decoded, 1)
    convert_ms = max(0.0, 1000 * convert_s / max(frames, 1) - decode_ms)  # read() = decode + convert
    encode_ms = 1000 * encode_s / max(frames, 1)
    return {
        "codec": "h264", "width": 1920, "height": 1080, "fps": 25, "frames": frames,
        "decode_ms_per_frame": round(decode_ms, 2), "convert_bgr_ms_per_frame": round(convert_ms, 2),
        "jpeg_encode_ms_per_frame": round(encode_ms, 2),
        # Four cameras: every frame decoded at 25 fps, 10 fps converted and encoded for detect.
        "cores_four_cameras_25fps_decoded_10fps_analysed": round(4 * (25 * decode_ms + 10 * (convert_ms + encode_ms)) / 1000, 3),
    }


def four_cameras_ingest(data_dir: Path, identities: list[str], seconds: float, workdir: Path) -> dict:
    """Four RTSP sessions (H.264 1080p 25 fps) read as ingest reads them, one thread per camera:
    every frame decoded, 10 fps converted and JPEG-encoded. No broker. Process CPU over wall time."""
    import threading

    from services.pipeline.ingest.sources import StreamSource
    from services.pipeline.ingest.testcamera import RtspTestServer, render_clip, server_unavailable

    reason = server_unavailable()
    if reason is not None:
        return {"skipped": reason}
    clip = render_clip(data_dir, identities, workdir / "clip", seconds=4, fps=25, width=1920, height=1080)
    analysed = [0] * 4
    with RtspTestServer(clip) as server:
        sources = [StreamSource(server.url("h264"), f"bench-{i}", 10, 1920, 1080) for i in range(4)]
        stop = threading.Event()

        def run(index: int) -> None:
            while not stop.is_set():
                image = sources[index].read()
                if image is None:
                    return
                cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
                analysed[index] += 1

        threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(4)]
        for thread in threads:
            thread.start()
        # A new session first receives the server's queued seconds in a burst: measure after it.
        stop.wait(min(3.0, seconds))
        from prometheus_client import REGISTRY

        def decoded() -> float:
            return sum(REGISTRY.get_sample_value("lfr_camera_frames_decoded_total", {"camera": f"bench-{i}"}) or 0.0 for i in range(4))

        cpu0, wall0, analysed0, decoded0 = time.process_time(), time.monotonic(), sum(analysed), decoded()
        stop.wait(seconds)
        cpu, wall, frames = time.process_time() - cpu0, time.monotonic() - wall0, sum(analysed) - analysed0
        decoded_frames = decoded() - decoded0
        stop.set()
        for thread in threads:
            thread.join(10)
        for source in sources:
            source.close()
    # Analysed frames are picked by the stream's timestamps: when the server's sessions run
    # ahead of or behind the wall clock, both rates move together (their ratio stays 10/25).
    return {"cameras": 4, "input_fps": 25, "analysed_fps_per_camera": round(frames / 4 / wall, 2),
            "decoded_fps_per_camera": round(decoded_frames / 4 / wall, 2), "seconds": round(wall, 1),
            "ingest_cores_used": round(cpu / wall, 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10, help="frames per (frame size, width)")
    parser.add_argument("--stream-seconds", type=float, default=15.0)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS / "cameras.json")
    parser.add_argument("--smoke", action="store_true", help="tiny: 1080p, two widths, one frame, a short stream")
    parser.add_argument("--pipeline-seconds", type=float, default=30.0, help="measured window of each four-camera pipeline run")
    parser.add_argument("--recall-only", action="store_true",
                        help="only the face-width recall (load-independent); the stream costs are left out, the four-camera run kept from --out")
    args = parser.parse_args()
    data_dir = resolve_data_dir(args.data)
    if data_dir is None:
        print("no face data set: set LFR_DATA_DIR or pass --data", file=sys.stderr)
        return 2
    sizes = {"1080p": FRAMES["1080p"]} if args.smoke else FRAMES
    widths = (32, 96) if args.smoke else WIDTHS
    frames = 1 if args.smoke else args.frames
    identities = cast_identities(data_dir)
    detector = FaceDetector(intra_op_threads=1)
    started = time.time()
    recall = []
    for name, size in sizes.items():
        for setting, plan in SETTINGS[name].items():
            for width_px in widths:
                row = width_recall(detector, data_dir, identities, size, width_px, frames, plan)
                recall.append({"frame": name, "width_px": width_px, **row, "setting": setting,
                               "detector_runs_per_frame": runs_per_frame(*size, plan)})
    if args.recall_only:
        costs = four = {"skipped": "--recall-only"}
    else:
        with tempfile.TemporaryDirectory(prefix="lfr-cameras-") as scratch:
            costs = stream_costs(data_dir, identities, 2.0 if args.smoke else args.stream_seconds, Path(scratch))
            four = four_cameras_ingest(data_dir, identities, 2.0 if args.smoke else args.stream_seconds, Path(scratch))
    four_cameras = None
    if not (args.recall_only or args.smoke):
        import four_cameras as pipeline_run

        with tempfile.TemporaryDirectory(prefix="lfr-four-") as scratch:
            analysed = pipeline_run.run(data_dir, Path(scratch) / "analysed", seconds=args.pipeline_seconds)
            every = pipeline_run.run(data_dir, Path(scratch) / "every", seconds=args.pipeline_seconds, analysed_fps=pipeline_run.INPUT_FPS)
        four_cameras = analysed if "skipped" in analysed else {
            **analysed, "walker_recall_all_frames": every.get("walker_recall"),
            "all_frames": {k: every.get(k) for k in ("analysed_fps_per_camera", "walker_recall", "false_alerts", "capture_to_alert_ms",
                                                     "cores_used", "frames_skipped", "watchlisted_walkers_shown")}}
    result = {
        "smoke": args.smoke,
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "seconds": round(time.time() - started, 1),
        "face_width_recall": recall,
        "stream_costs_1080p": costs,
        "four_cameras_ingest_only": four,
        "four_cameras": four_cameras,
        "overload_over_baseline_faces_per_s": None,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    summary = " ".join(f"{r['frame']}/{r['setting']}@{r['width_px']}px={r['recall']}" for r in recall)
    print(f"cameras: recall {summary}; decode {costs.get('decode_ms_per_frame')} ms/frame -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
