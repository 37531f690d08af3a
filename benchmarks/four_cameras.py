"""A van's four cameras through the whole pipeline (issue #27): four RTSP sessions of H.264 1080p
at 25 fps from GStreamer's RTSP server, read by ingest, through the embedded broker, detect,
embed, the matcher and dispatch, each a process; scored against the clip's ground truth.

Analysed-rate policy ``steady-analysed/v1``: every camera is decoded in full (H.264 needs every
reference frame) and ``analysed_fps`` frames a second (``ANALYSED_FPS``, 10 of 25) are picked by
the stream's own timestamps on a steady grid, so tracking sees a constant interval; ingest's
back-pressure (aimd-detect-lag/v1) lowers it while detect is behind, never below 1 fps. The same
run with every frame analysed (25 fps) gives ``walker_recall_all_frames`` for comparison.

Truth: every clip frame carries its clip index as a stamp (services/pipeline/ingest/testcamera.py); the
frames read back from lfr.frames.v1 are matched to the clip's truth through it. A walker counts
once per pass of the looping clip per camera (a new walk), when all of its frames fell in the
measured window, it is watchlisted and at least 64 px wide; a false alert names someone who is not
the face it was raised on. Per-stage CPU: each process's CPU over the window (broker, ingest,
detect, embed, matcher, dispatch) per analysed frame, with ingest's decode time from its own
histogram. Timings depend on the machine's load; recall and false alerts do not, much.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pipeline as bench  # noqa: E402  (benchmarks/pipeline.py: scraping, CPU, truth scoring)
from services.common.envelope import decode  # noqa: E402
from services.common.jsonevents import decode_record  # noqa: E402
from services.tools.demo.cast import choose_cast  # noqa: E402
from services.tools.demo.deployment import open_deployment  # noqa: E402
from services.tools.demo.hops import percentiles  # noqa: E402
from services.tools.demo.pipeline import Pipeline  # noqa: E402
from services.tools.demo.run import DEPLOYMENT, TopicTail, enrol  # noqa: E402
from services.engine.face import FaceDetector, FaceEmbedder  # noqa: E402
from services.pipeline.ingest.cameras import CameraConfig, save_cameras  # noqa: E402
from services.pipeline.ingest.testcamera import RtspTestServer, read_stamp, render_clip, server_unavailable  # noqa: E402

ANALYSED_POLICY = "steady-analysed/v1"
ANALYSED_FPS = 10.0
INPUT_FPS = 25
STAGES = ("broker", "ingest", "detect", "embed", "matcher", "dispatch")


class StampedTruth(bench.Truth):
    """Truth of frames received over RTSP: camera ``id``'s frame ``seq`` is the clip frame its stamp
    names; each wrap of the looping clip on a camera is a new pass (a new walk)."""

    def __init__(self, clip_truth: list[list[dict]], watchlisted: set[str], frames_meta: list[dict]) -> None:
        super().__init__([clip_truth], watchlisted)
        self.where: dict[tuple[str, int], tuple[int, int]] = {}
        by_camera: dict[str, list[dict]] = defaultdict(list)
        for frame in frames_meta:
            by_camera[frame["camera_id"]].append(frame)
        for camera_id, frames in by_camera.items():
            passes, last = 0, -1
            for frame in sorted(frames, key=lambda f: f["seq"]):
                index = frame["index"]
                if index is None:
                    continue
                if index < last:
                    passes += 1
                last = index
                self.where[(camera_id, frame["seq"])] = (passes, index)

    def faces(self, camera_id: str, seq: int) -> list[dict]:
        where = self.where.get((camera_id, seq))
        return self.truth[0][where[1]] if where is not None else []

    def occurrence(self, camera_id: str, seq: int, walker: int) -> tuple[str, int, int]:
        return (camera_id, self.where.get((camera_id, seq), (-1, 0))[0], walker)


def run(data_dir: Path, workdir: Path, *, seconds: float, analysed_fps: float = ANALYSED_FPS, cameras: int = 4,
        clip_seconds: float = 12.0, seed: int = 7, recognisable_margin: float | None = None, warm_up_s: float = 6.0) -> dict:
    """The four-camera run for a ``seconds`` window; see the module's docstring."""
    reason = server_unavailable()
    if reason is not None:
        return {"skipped": reason}
    detector, embedder = FaceDetector(intra_op_threads=1), FaceEmbedder(intra_op_threads=1)
    cast = choose_cast(data_dir, detector, embedder, watchlisted=4, strangers=4, seed=seed, deployment=DEPLOYMENT,
                       recognisable_margin=recognisable_margin)
    clip = render_clip(data_dir, cast.walkers + cast.strangers, workdir / "clip", seconds=clip_seconds, fps=INPUT_FPS,
                       width=1920, height=1080, seed=seed, min_face_width=64, max_face_width=160)
    ids = [f"van-{i}" for i in range(cameras)]
    ports = {name: bench.free_port() for name in ("ingest", "detect", "embed", "matcher")}
    pipeline = Pipeline(workdir / "pipeline", extra_env={"LFR_COOLDOWN_S": "1"})
    tails: list[TopicTail] = []
    with RtspTestServer(clip) as server:
        pipeline.start_broker()
        try:
            enrol(pipeline, cast, detector, embedder)
            open_deployment(pipeline.bootstrap, DEPLOYMENT, ids, signing_env=pipeline.signing_env, authoriser=pipeline.authoriser)
            for service in ("detect", "embed", "matcher", "dispatch"):
                pipeline.start(service, env={"LFR_METRICS_PORT": str(ports[service])} if service in ports else None)
            pipeline.wait_ready(("embed", "matcher", "dispatch", "detect"))
            save_cameras(pipeline.cameras_file, {
                i: CameraConfig(id=i, deployment_id=DEPLOYMENT, source=server.url("h264"), fps=analysed_fps, max_width=1920, max_height=1080)
                for i in ids})
            pipeline.start("ingest", env={"LFR_METRICS_PORT": str(ports["ingest"])})
            pipeline.wait_ready(("ingest",))
            time.sleep(warm_up_s)  # RTSP sessions set up, the server's first burst, models warm
            pids = {name: process.pid for name, process in pipeline.processes.items()}
            pids["broker"] = pipeline.broker.pid or -1
            cpu_start = {name: bench.cpu_seconds(pid) for name, pid in pids.items()}
            metrics_start = {name: bench.scrape(port) for name, port in ports.items()}
            window_start_ms, load_start, t0 = int(time.time() * 1000), bench.load_average(), time.monotonic()
            time.sleep(seconds)
            elapsed = time.monotonic() - t0
            window_end_ms = int(time.time() * 1000)
            metrics_end = {name: bench.scrape(port) for name, port in ports.items()}
            cpu = {name: (bench.cpu_seconds(pid) or 0.0) - (cpu_start[name] or 0.0) for name, pid in pids.items() if cpu_start.get(name) is not None}
            load_end = bench.load_average()
            pipeline.stop("ingest")
            for topic in ("lfr.frames.v1", "lfr.embeddings.v1", "lfr.matches.v1", "lfr.alerts.v3"):
                tails.append(TopicTail(pipeline.bootstrap, topic))
            frames_meta = []
            for record in bench.drain(tails[0]):
                frame = decode(record.value()).data
                image = cv2.imdecode(np.frombuffer(frame["image"], np.uint8), cv2.IMREAD_REDUCED_COLOR_4)  # the stamp survives
                frames_meta.append({"camera_id": frame["camera_id"], "seq": frame["seq"], "captured_at_ms": frame["captured_at_ms"],
                                    "bytes": len(frame["image"]), "index": read_stamp(image) if image is not None else None})
            matches = [decode(r.value()).data for r in bench.drain(tails[2])]
            alerts = [decode_record(r.value(), r.headers()).data for r in bench.drain(tails[3])]
        finally:
            for tail in tails:
                tail.close()
            pipeline.stop_all()

    def delta(service: str, metric: str) -> float:
        return metrics_end.get(service, {}).get(metric, 0.0) - metrics_start.get(service, {}).get(metric, 0.0)

    truth = StampedTruth(clip.truth(), {name for name, _ in cast.watchlist}, frames_meta)
    in_window = lambda captured: window_start_ms <= captured < window_end_ms  # noqa: E731
    walkers, shown = truth.walkers(((f["camera_id"], f["seq"], f["captured_at_ms"]) for f in frames_meta), in_window)
    found, false_matches = truth.score_matches(matches)
    latest: dict[str, dict] = {}
    for alert in alerts:
        if alert["alert_id"] not in latest or alert["revision"] >= latest[alert["alert_id"]]["revision"]:
            latest[alert["alert_id"]] = alert
    false_alerts = sum(1 for a in latest.values() if (t := truth.identify(a["face"])) is None or t["identity"] != a["subject_id"])
    window_frames = [f for f in frames_meta if in_window(f["captured_at_ms"])]
    analysed = len(window_frames)
    decoded = delta("ingest", "lfr_camera_frames_decoded_total")
    per_frame_ms = {stage: round(1000 * cpu[stage] / max(analysed, 1), 2) for stage in STAGES if stage in cpu}
    return {
        "policy": ANALYSED_POLICY, "cameras": cameras, "input_fps": INPUT_FPS, "frame": "1920x1080 H.264",
        "analysed_fps_target": analysed_fps, "seconds": round(elapsed, 1),
        "analysed_fps_per_camera": round(analysed / cameras / elapsed, 2),
        "decoded_fps_per_camera": round(decoded / cameras / elapsed, 2),
        "detect_frames_per_s": round(delta("detect", "lfr_frames_processed_total") / elapsed, 2),
        "walkers": len(walkers), "watchlisted_walkers_shown": len(shown), "walker_recall": bench.walker_recall(found, shown),
        "false_alerts": false_alerts, "false_matches": false_matches, "alerts": len(latest),
        "capture_to_alert_ms": percentiles([a["capture_to_alert_ms"] for a in alerts if in_window(a["face"]["frame"]["captured_at_ms"])]),
        "frames_unstamped": sum(1 for f in window_frames if f["index"] is None),
        "bytes_per_frame": round(sum(f["bytes"] for f in window_frames) / max(analysed, 1)),
        "frames_skipped": {"detect_stale_frames": delta("detect", 'lfr_frames_skipped_total{reason="stale"}'),
                    "detect_superseded_frames": delta("detect", 'lfr_frames_skipped_total{reason="superseded"}'),
                    "ingest_shed_frames": delta("ingest", "lfr_frames_shed_total")},
        "cores_used": round(sum(cpu.values()) / elapsed, 3),
        "cores_by_process": {name: round(value / elapsed, 3) for name, value in cpu.items()},
        "cpu_ms_per_analysed_frame": {
            **per_frame_ms,
            # ingest's own split: decoding every packet (25 fps) against the rest (convert, scale, JPEG, produce)
            "ingest_decode": round(1000 * delta("ingest", "lfr_camera_decode_seconds_sum") / max(analysed, 1), 2),
        },
        "load_average_1m": {"start": load_start, "end": load_end},
    }
