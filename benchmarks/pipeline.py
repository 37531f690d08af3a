"""Pipeline benchmark: the crowd workload through the five services with face tracking on and off,
against a one-process baseline that does the same work, on the same seeded frames and cores.

    python benchmarks/pipeline.py [--cameras 4] [--seconds 30] [--out FILE] [--smoke]

In one run (about 12-15 minutes on 2 cores):
(b) baselines: one process on one core looping over the frames with the services' own functions
    (decode, detect, track + shot selection, align, quality, embed, match), each as fast as it can
    for the same time on the same frames: tracking on, tracking off, and the original engine
    (tracking off and SFace as converted before the PRelu rewrite: the engine when issue #17 was
    filed); per-walker recall and false matches scored against the ground truth like (a);
(a) pipeline at saturation, tracking on and off: embedded broker, ingest/detect/embed/matcher/
    dispatch as processes, cameras as `folder:` sources offered faster than the baseline runs;
    frames/s and faces/s from detect's own counters (scraped /metrics), embeddings per walker,
    per-walker recall (watchlisted walkers at >= 64 px) and false alerts/matches scored against
    the camera's ground truth, capture-to-alert p50/p95/p99 with a per-hop breakdown from the
    timestamps the messages carry, stale skips per stage, CPU per process;
(a') pipeline at half of the saturated frame rate (tracking on): latency under normal load;
(a'') pipeline sustained (tracking on): offered 0.7, 0.9, 1.0, 1.1, 1.2 x the one-process
    baseline's frame rate, upwards while it keeps up (detect processes >= 95 % of the frames
    sent, < 1 % stale skips, capture-to-alert p99 within 1.5 s); the highest is its throughput
    without shedding, the fair comparison with a baseline that sheds nothing;
(c) a compute-only ceiling for scale-out: detect's decode + YuNet loop in 1 process, then 2,
    pinned, with no Kafka and nothing else running;
(s) scale-out: a backlog of frames from 8 cameras (one per partition) drained by 1 detect
    replica pinned to one core, then by 2 replicas each pinned to its own core (taskset), with
    the CPU the (unpinned) broker took meanwhile;
(s') the same for embed: detect (tracking off) turns the backlog into face chips and stops,
    then 1, then 2 pinned embed replicas drain them; (c') embed's compute alone, 1 then 2 pinned.
Each measurement records the machine's load average (`uptime`) while it ran: on a shared
machine the figures are disturbed when it exceeds the cores the run itself uses.

The frames are rendered into a temporary folder from the face data set and deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import tempfile
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

import cv2
import numpy as np
from confluent_kafka import Producer

from services.common.envelope import decode, encode
from services.common.jsonevents import decode_record
from services.common.settings import DeploymentSettings, LatencyBudgetSettings, MatchThresholdSettings, load_settings
from services.tools.demo.cast import choose_cast, enrolment_request
from services.tools.demo.dataset import resolve_data_dir
from services.tools.demo.deployment import open_deployment
from services.tools.demo.hops import by_hop, percentiles
from services.tools.demo.misses import never_embedded
from services.tools.demo.pipeline import Pipeline
from services.tools.demo.run import DEPLOYMENT, TopicTail, enrol
from services.tools.demo.score import MIN_RECOGNISABLE_WIDTH
from services.governance.deployments.admin import load_calibration
from services.engine.face import LIVE_BOUNDS, FaceDetector, FaceEmbedder, align_face, assess_quality, decode_image
from services.engine.face.boxes import box_iou
from services.pipeline.ingest.cameras import CameraConfig, save_cameras
from services.pipeline.ingest.crowd import CrowdConfig, CrowdScene, cast_from_folder
from services.engine.tracking import ShotPolicy, Tracks, shot_quality
from services.governance.watchlist.enrol import Enroller
from services.governance.watchlist.index import Candidate, WatchlistIndex, connect
from services.governance.watchlist.thresholds import Thresholds

RESULTS = Path(__file__).resolve().parent / "results"
SCENE_STEP = 3  # every third frame of a 10 fps scene: people move visibly between frames
SCENE_MS = 100 * SCENE_STEP


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


# -- workload --------------------------------------------------------------------------------------


def render_frames(data_dir: Path, identities: list[str], photo_index: int, cameras: int, frames: int, seed: int, out: Path):
    """Pre-render each camera's frames as JPEGs in its own folder; returns (folders, truth).

    ``truth[camera index][frame index]`` lists the faces of that frame (identity, walker, width, box).
    """
    folders, truth = [], []
    for cam in range(cameras):
        scene = CrowdScene(cast_from_folder(data_dir, identities, photo_index), CrowdConfig(seed=seed + cam, max_walkers=4, spawn_interval_s=0.8))
        folder = out / f"cam{cam}"
        folder.mkdir(parents=True)
        faces = []
        for seq in range(frames):
            image, frame_truth = scene.render(seq * SCENE_STEP)
            cv2.imwrite(str(folder / f"{seq:05d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 85])
            faces.append(frame_truth)
        folders.append(folder)
        truth.append(faces)
    return folders, truth


class Truth:
    """Ground truth of the replayed folders: camera ``bench-i`` frame ``seq`` is file ``seq % frames``."""

    def __init__(self, truth: list[list[list[dict]]], watchlisted: set[str]) -> None:
        self.truth = truth
        self.frames = len(truth[0])
        self.watchlisted = watchlisted

    def faces(self, camera_id: str, seq: int) -> list[dict]:
        return self.truth[int(camera_id.rsplit("-", 1)[1])][seq % self.frames]

    def occurrence(self, camera_id: str, seq: int, walker: int) -> tuple[str, int, int]:
        return (camera_id, seq // self.frames, walker)  # the folder loops: each pass is a new walk

    def identify(self, face: dict) -> dict | None:
        """The truth face a detected face is (IoU > 0.2), or None."""
        frame = face["frame"]
        candidates = self.faces(frame["camera_id"], frame["seq"])
        best = max(candidates, key=lambda t: box_iou(t["box"], face["box"]), default=None)
        return best if best is not None and box_iou(best["box"], face["box"]) > 0.2 else None

    def walkers(self, frames: Iterable[tuple[str, int, int]], in_window: Callable[[int], bool]) -> tuple[set, dict]:
        """(walker occurrences all of whose frames fell in the window, the ones recall counts among
        them: watchlisted, at least MIN_RECOGNISABLE_WIDTH px, as occurrence -> identity).

        ``frames`` holds (camera_id, seq, time) of every frame shown, in the window or not.
        """
        frames_of: dict[tuple, list[int]] = defaultdict(list)
        for camera_id, seq, at in frames:
            for face in self.faces(camera_id, seq):
                frames_of[(self.occurrence(camera_id, seq, face["walker"]), face["identity"], face["face_width"])].append(at)
        complete = [key for key, times in frames_of.items() if all(map(in_window, times))]
        shown = {occ: identity for occ, identity, width in complete if identity in self.watchlisted and width >= MIN_RECOGNISABLE_WIDTH}
        return {occ for occ, _, _ in complete}, shown

    def score_matches(self, matches: Iterable[dict]) -> tuple[set, int]:
        """(walker occurrences a match named on one of their frames, matches naming someone who is
        not the face). A match is ``{"subject_id", "face": {"frame": {"camera_id", "seq"}, "box"}}``."""
        found, false_matches = set(), 0
        for match in matches:
            face = match["face"]
            true_face = self.identify(face)
            if true_face is None or true_face["identity"] != match["subject_id"]:
                false_matches += 1
                continue
            found.add(self.occurrence(face["frame"]["camera_id"], face["frame"]["seq"], true_face["walker"]))
        return found, false_matches


def walker_recall(found: set, shown: dict) -> float | None:
    return round(len(found & set(shown)) / len(shown), 3) if shown else None


def operating_threshold() -> Callable[[Candidate], float]:
    """The threshold the pipeline runs' matcher applies to a candidate: its category's (matcher
    settings) floored at the deployment's, which open_deployment authorises at the calibrated floor."""
    settings = load_settings(MatchThresholdSettings)
    thresholds = Thresholds.parse(settings.match_threshold_default, settings.match_thresholds)
    floor = load_calibration(load_settings(DeploymentSettings)).floor()
    return lambda candidate: max(thresholds.for_category(candidate.category), floor)


def best_match(candidates: list[Candidate], threshold: Callable[[Candidate], float]) -> Candidate | None:
    """The matcher's rule (services/pipeline/matcher/stage.py): the best candidate at or above its threshold."""
    return next((c for c in candidates if c.score >= threshold(c)), None)


# -- (b) baseline ----------------------------------------------------------------------------------


def baseline(folders: list[Path], detector: FaceDetector, embedder: FaceEmbedder, index: WatchlistIndex, tracking: bool, seconds: float,
             truth: Truth, threshold: Callable[[Candidate], float]) -> dict:
    """One process, same functions, cameras interleaved frame by frame, for at most ``seconds``;
    matches scored against the truth afterwards (outside the timed loop)."""
    paths = [sorted(folder.iterdir()) for folder in folders]
    tracks = Tracks() if tracking else None
    policy = ShotPolicy()
    matches: list[dict] = []
    frames = faces = embeddings = 0
    infer_s = 0.0
    load = load_average()
    started = time.perf_counter()
    seq = 0
    while time.perf_counter() - started < seconds:
        for cam, camera_paths in enumerate(paths):
            image = decode_image(camera_paths[seq % len(camera_paths)].read_bytes())
            t0 = time.perf_counter()
            detections = detector.detect(image)
            infer_s += time.perf_counter() - t0
            captured = seq * SCENE_MS
            tracked = tracks.camera(f"bench-{cam}", 0).update(captured, [d.box for d in detections], [d.landmarks for d in detections]) if tracks else None
            chips, boxes = [], []
            for i, face in enumerate(detections):
                chip = align_face(image, face.landmarks)
                report = assess_quality(face, chip, LIVE_BOUNDS)
                if not report.accepted:
                    continue
                faces += 1
                if tracked is not None and not policy.decide(tracked[i], shot_quality(report.score, report.inter_ocular, report.yaw, report.blur, face.box, (image.shape[1], image.shape[0])), captured).send:
                    continue
                chips.append(chip)
                boxes.append(face.box)
            if chips:
                t0 = time.perf_counter()
                vectors = embedder.embed(np.stack(chips))
                infer_s += time.perf_counter() - t0
                results = index.search(vectors, [DEPLOYMENT] * len(chips), int(time.time() * 1000), limit=3)
                embeddings += len(chips)
                for box, candidates in zip(boxes, results, strict=True):
                    if (match := best_match(candidates, threshold)) is not None:
                        matches.append({"subject_id": match.subject_id,
                                        "face": {"frame": {"camera_id": f"bench-{cam}", "seq": seq}, "box": [float(v) for v in box]}})
            frames += 1
        seq += 1
    elapsed = time.perf_counter() - started
    # Walkers counted as in the pipeline runs: the window is the frames processed (seq < the
    # last seq + 1 on every camera); a walk still under way at the end (later frames of the same
    # pass through the folder) is not counted.
    pass_end = -(-seq // truth.frames) * truth.frames
    shown_frames = [(f"bench-{cam}", s, s) for cam in range(len(folders)) for s in range(pass_end)]
    walkers, shown = truth.walkers(shown_frames, lambda s: s < seq)
    found, false_matches = truth.score_matches(matches)
    return {"tracking": tracking, "frames": frames, "faces": faces, "embeddings": embeddings, "seconds": round(elapsed, 2),
            "frames_per_s": round(frames / elapsed, 2), "faces_per_s": round(faces / elapsed, 2),
            "embeddings_per_s": round(embeddings / elapsed, 2), "inference_share": round(infer_s / elapsed, 3),
            "walkers": len(walkers), "walker_recall": walker_recall(found, shown), "watchlisted_walkers_shown": len(shown),
            "matches": len(matches), "false_matches": false_matches,
            "load_average_1m": load, "_scored": (found, shown)}  # main() compares runs on common walkers, then drops it


def recall_on_common_walkers(runs: list[dict]) -> None:
    """Each baseline's recall over the walkers every baseline showed in full. Each run starts at
    frame 0, so a slower run's walkers are the first of a faster one's: this compares the runs on
    the same walkers (each run's own ``walker_recall`` counts all of its own)."""
    scored = [run.pop("_scored") for run in runs]
    common = set.intersection(*(set(shown) for _, shown in scored))
    for run, (found, _) in zip(runs, scored, strict=True):
        run["walker_recall_common"] = walker_recall(found, dict.fromkeys(common))
        run["watchlisted_walkers_common"] = len(common)


def same_numbers(folders: list[Path], detector: FaceDetector, engine: FaceEmbedder, original: FaceEmbedder, wanted: int = 16) -> dict:
    """Both SFace graphs on the same chips (the first frames' faces), batched and one at a time:
    the engine comparison is only fair if they compute the same embeddings."""
    chips = []
    for path in (p for seq in range(4) for folder in folders for p in sorted(folder.iterdir())[seq:seq + 1]):
        image = decode_image(path.read_bytes())
        chips += [align_face(image, d.landmarks) for d in detector.detect(image)]
    chips = chips[:wanted]
    if not chips:
        return {"chips": 0, "max_abs_diff": None, "identical": None}
    batch = np.stack(chips)
    diffs = [np.abs(engine.embed(batch) - original.embed(batch)).max()]
    diffs += [np.abs(engine.embed(batch[i:i + 1]) - original.embed(batch[i:i + 1])).max() for i in range(len(chips))]
    return {"chips": len(chips), "max_abs_diff": float(max(diffs)), "identical": bool(max(diffs) == 0.0)}


# -- process measurements --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[str, float]:
    """Sum of each metric family's samples on a service's /metrics (labels folded together)."""
    totals: dict[str, float] = defaultdict(float)
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            family = name.split("{", 1)[0]
            labels = name[len(family):]
            totals[family] += float(value)
            if labels:
                totals[name] += float(value)
    return dict(totals)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


CPU_STATES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def machine_cpu_seconds() -> dict[str, float]:
    """The whole machine's CPU time so far by state (/proc/stat), in seconds."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:1 + len(CPU_STATES)]
    return {state: int(value) / os.sysconf("SC_CLK_TCK") for state, value in zip(CPU_STATES, fields, strict=True)}


def machine_cores_by_state(before: dict[str, float], after: dict[str, float], elapsed: float) -> dict[str, float]:
    """Cores the machine spent in each state between two readings: where the time went."""
    return {state: round((after[state] - before[state]) / elapsed, 3) for state in CPU_STATES}


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def drain(tail: TopicTail, until_quiet_s: float = 2.0, limit_s: float = 15.0) -> list:
    records, quiet, deadline = [], time.monotonic(), time.monotonic() + limit_s
    while time.monotonic() - quiet < until_quiet_s and time.monotonic() < deadline:
        got = tail.poll(0.2)
        records += got
        if got:
            quiet = time.monotonic()
    return records


# -- (a) pipeline ----------------------------------------------------------------------------------


def run_pipeline(workdir: Path, cast, folders: list[Path], truth: Truth, fps: float, seconds: float, tracking: bool,
                 detector: FaceDetector, embedder: FaceEmbedder) -> dict:
    """(a) the pipeline for ``seconds`` with every camera offered ``fps``; scored against the truth."""
    ports = {name: free_port() for name in ("detect", "embed", "matcher")}
    pipeline = Pipeline(workdir, extra_env={"LFR_TRACKING_ENABLED": str(tracking).lower(),
                                            # A short cooldown so that every walk past raises or updates an alert
                                            # and latency has enough samples (one alert per person per deployment).
                                            "LFR_COOLDOWN_S": "1"})
    pipeline.start_broker()
    tails: list[TopicTail] = []
    try:
        enrol(pipeline, cast, detector, embedder)
        open_deployment(pipeline.bootstrap, DEPLOYMENT, [f"bench-{i}" for i in range(len(folders))],  # the services require one
                        signing_env=pipeline.signing_env, authoriser=pipeline.authoriser)
        for service in ("detect", "embed", "matcher", "dispatch"):
            pipeline.start(service, env={"LFR_METRICS_PORT": str(ports[service])} if service in ports else None)
        pipeline.wait_ready(("embed", "matcher", "dispatch", "detect"))
        save_cameras(pipeline.cameras_file, {
            f"bench-{i}": CameraConfig(id=f"bench-{i}", deployment_id=DEPLOYMENT, source=f"folder:{folder}", fps=fps, max_width=1280, max_height=720)
            for i, folder in enumerate(folders)
        })
        pipeline.start("ingest")
        pipeline.wait_ready(("ingest",))
        time.sleep(min(8.0, seconds / 3))  # warm-up: models loaded, queues in steady state
        pids = {name: process.pid for name, process in pipeline.processes.items()}
        pids["broker"] = pipeline.broker.pid or -1
        cpu_start = {name: cpu_seconds(pid) for name, pid in pids.items()}
        metrics_start = {name: scrape(port) for name, port in ports.items()}
        window_start_ms = int(time.time() * 1000)
        load_start = load_average()
        t0 = time.monotonic()
        time.sleep(seconds)
        elapsed = time.monotonic() - t0
        window_end_ms = int(time.time() * 1000)
        metrics_end = {name: scrape(port) for name, port in ports.items()}
        cpu_share = {name: round((cpu_seconds(pid) - cpu_start[name]) / elapsed, 3)
                     for name, pid in pids.items() if cpu_start.get(name) is not None and cpu_seconds(pid) is not None}
        load_end = load_average()
        rss = {name: peak_rss_mb(process.pid) for name, process in pipeline.processes.items()}
        pipeline.stop("ingest")
        # What came out: read back after the window (the readers do not compete for the cores).
        for topic in ("lfr.frames.v1", "lfr.embeddings.v1", "lfr.matches.v1", "lfr.alerts.v3"):
            tails.append(TopicTail(pipeline.bootstrap, topic))
        frames_meta = [decode(r.value()).data for r in drain(tails[0])]
        frames_meta = [{k: f[k] for k in ("camera_id", "seq", "captured_at_ms")} for f in frames_meta]
        embeddings = [decode(r.value()).data["face"] for r in drain(tails[1])]
        matches = [decode(r.value()).data for r in drain(tails[2])]
        alerts = [decode_record(r.value(), r.headers()).data for r in drain(tails[3])]
    finally:
        for tail in tails:
            tail.close()
        pipeline.stop_all()

    def delta(service: str, metric: str) -> float:
        return metrics_end.get(service, {}).get(metric, 0.0) - metrics_start.get(service, {}).get(metric, 0.0)

    in_window = lambda captured: window_start_ms <= captured < window_end_ms  # noqa: E731
    # Walker occurrences the cameras showed inside the window (all their frames in it; at least
    # 64 px; watchlisted), and which of them a match found.
    walkers_in_window, shown = truth.walkers(((f["camera_id"], f["seq"], f["captured_at_ms"]) for f in frames_meta), in_window)
    found, false_matches = truth.score_matches(matches)
    latest: dict[str, dict] = {}
    for alert in alerts:
        if alert["alert_id"] not in latest or alert["revision"] >= latest[alert["alert_id"]]["revision"]:
            latest[alert["alert_id"]] = alert
    false_alerts = sum(1 for a in latest.values() if (t := truth.identify(a["face"])) is None or t["identity"] != a["subject_id"])
    window_embeddings = [e for e in embeddings if in_window(e["frame"]["captured_at_ms"])]
    # Walks wholly in the window, 64 px or more, in view 1 s or more of scene time (replayed
    # frames are sent faster than the scene's clock), of which nothing was embedded.
    unembedded = never_embedded(({**f, "captured_at_ms": (f["seq"] % truth.frames) * SCENE_MS, "faces": truth.faces(f["camera_id"], f["seq"])}
                                 for f in frames_meta), embeddings,
                                walk_of=lambda camera_id, seq, face: truth.occurrence(camera_id, seq, face["walker"]), only=walkers_in_window)
    window_alerts = [a for a in alerts if in_window(a["face"]["frame"]["captured_at_ms"])]
    window_matches = [m for m in matches if in_window(m["face"]["frame"]["captured_at_ms"])]
    frames = delta("detect", "lfr_frames_processed_total")
    frames_sent = sum(1 for f in frames_meta if in_window(f["captured_at_ms"]))
    cores = sum(cpu_share.values())
    return {
        "tracking": tracking, "cameras": len(folders), "fps_per_camera_offered": fps, "seconds": round(elapsed, 1),
        "frames_sent_per_s": round(frames_sent / elapsed, 2),  # what ingest put on lfr.frames.v1 (captured in the window)
        "frames_per_s": round(frames / elapsed, 2),
        "frames_per_s_per_core_used": round(frames / elapsed / max(cores, 1e-9), 2),
        "faces_per_s": round(delta("detect", "lfr_faces_accepted_total") / elapsed, 2),
        "embeddings_per_s": round(len(window_embeddings) / elapsed, 2),
        "embeddings_per_walker": round(len(window_embeddings) / max(len(walkers_in_window), 1), 2),
        "walkers": len(walkers_in_window),
        "walker_recall": walker_recall(found, shown),
        "watchlisted_walkers_shown": len(shown),
        "never_embedded_walkers": unembedded["never_embedded"], "walkers_owed_embedding": unembedded["walkers_owed"],
        "false_alerts": false_alerts, "false_matches": false_matches, "alerts": len(latest), "alert_events": len(alerts),
        "capture_to_alert_ms": percentiles([a["capture_to_alert_ms"] for a in window_alerts]),
        "capture_to_match_ms": percentiles([m["matched_at_ms"] - m["face"]["frame"]["captured_at_ms"] for m in window_matches]),
        "by_hop_ms": by_hop(window_matches, window_alerts),
        "skipped": {
            "detect_stale_frames": delta("detect", 'lfr_frames_skipped_total{reason="stale"}'),
            "detect_superseded_frames": delta("detect", 'lfr_frames_skipped_total{reason="superseded"}'),
            "detect_shots_not_better": delta("detect", 'lfr_shots_skipped_total{reason="not_better"}'),
            "detect_shots_track_budget": delta("detect", 'lfr_shots_skipped_total{reason="track_budget"}'),
            "embed_over_budget": delta("embed", "lfr_stale_skipped_total"),
            "matcher_over_budget": delta("matcher", "lfr_stale_skipped_total"),
            # skip-stale/keep-first-shots: a track's first shot past the budget, processed anyway
            "embed_first_shots_kept_late": delta("embed", "lfr_stale_kept_total"),
            "matcher_first_shots_kept_late": delta("matcher", "lfr_stale_kept_total"),
        },
        "peak_rss_mb": rss, "cpu_cores_used": cpu_share, "cpu_cores_used_total": round(cores, 2),
        "load_average_1m": {"start": load_start, "end": load_end},
    }


KEEP_UP_P99_MS = LatencyBudgetSettings.model_fields["latency_budget_ms"].default  # the stages' default latency budget


def keeps_up(run: dict) -> bool:
    """The pipeline did all the work it was offered, in time: detect processed at least 95 % of the
    frames sent, embed and the matcher skipped under 1 % of the embeddings as stale, and the
    capture-to-alert p99 stayed within the latency budget."""
    skipped = run["skipped"]["embed_over_budget"] + run["skipped"]["matcher_over_budget"]
    p99 = run["capture_to_alert_ms"].get("p99")
    return (run["frames_per_s"] >= 0.95 * run["frames_sent_per_s"] and skipped <= 0.01 * max(run["embeddings_per_s"] * run["seconds"], 1.0)
            and p99 is not None and p99 <= KEEP_UP_P99_MS)


def sustained(workdir: Path, baseline_fps: float, steps: tuple[float, ...], run) -> dict:
    """(a'') the highest offered rate the pipeline keeps up with (``keeps_up``), tried at ``steps``
    times the one-process baseline's frame rate, upwards until it no longer keeps up: its
    throughput without shedding. At saturation
    the cameras are offered 2.5x the baseline, so the broker stores (and detect skips) frames
    nobody processes, and detect sees each camera's scene sparsely (its tracks break, so embed
    takes more first shots per walker); a one-process baseline has neither cost."""
    tried, best = [], None
    for step in steps:
        result = run(workdir / f"x{step}", round(step * baseline_fps, 2))
        result["step_over_baseline_frames_per_s"] = step
        tried.append(result)
        if not keeps_up(result):
            break
        best = result
    return {"best": best, "tried": tried}


# -- (s) scale-out ---------------------------------------------------------------------------------


BACKLOG_ENV = {"LFR_MAX_FRAME_AGE_MS": "600000", "LFR_SUPERSEDED_AFTER_MS": "600000"}  # measure work, not the stale policies


def produce_backlog(bootstrap: str, folders: list[Path], frames_per_camera: int) -> None:
    """Frames of 8 cameras (camera i on partition i of lfr.frames.v1), captured "now" onwards."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "message.max.bytes": 8_000_000})
    now = int(time.time() * 1000)
    paths = [sorted(folder.iterdir()) for folder in folders]
    for seq in range(frames_per_camera):
        for cam in range(8):
            jpeg = paths[cam % len(paths)][seq % len(paths[cam % len(paths)])].read_bytes()
            value = encode("lfr.frames.v1", {"camera_id": f"scale-{cam}", "deployment_id": DEPLOYMENT, "seq": seq,
                                             "captured_at_ms": now + seq * SCENE_MS, "width": 1280, "height": 720,
                                             "media_type": "image/jpeg", "image": jpeg})
            while True:
                try:
                    producer.produce("lfr.frames.v1", key=f"scale-{cam}".encode(), value=value, partition=cam)
                    break
                except BufferError:
                    producer.poll(0.1)
        producer.poll(0)
    producer.flush(60)


def measure_replicas(pipeline: Pipeline, service: str, replicas: int, counter: str, seconds: float) -> dict:
    """Start ``replicas`` processes of ``service``, replica i pinned to core i, on a backlog already
    in their input topic; ``counter`` per second from their /metrics once all are assigned, with
    the CPU each replica and the broker used meanwhile."""
    ports = [free_port() for _ in range(replicas)]
    names = [f"{service}-{i}" for i in range(replicas)]
    for i, name in enumerate(names):
        pipeline.start(service, name=name, env={"LFR_METRICS_PORT": str(ports[i])}, cpus=str(i % (os.cpu_count() or 1)))
    pipeline.wait_ready(tuple(names))
    time.sleep(3.0)  # the group settles after the last replica's assignment
    load_start = load_average()
    pids = [pipeline.processes[name].pid for name in names]
    broker_pid = pipeline.broker.pid or -1
    cpu_before = [cpu_seconds(pid) or 0.0 for pid in pids]
    broker_before = cpu_seconds(broker_pid) or 0.0
    before = [scrape(p).get(counter, 0.0) for p in ports]
    machine_before = machine_cpu_seconds()
    t0 = time.monotonic()
    time.sleep(seconds)
    after = [scrape(p).get(counter, 0.0) for p in ports]
    elapsed = time.monotonic() - t0
    machine = machine_cores_by_state(machine_before, machine_cpu_seconds(), elapsed)
    cpu_used = [round(((cpu_seconds(pid) or 0.0) - b) / elapsed, 3) for pid, b in zip(pids, cpu_before, strict=True)]
    broker_used = round(((cpu_seconds(broker_pid) or 0.0) - broker_before) / elapsed, 3)
    per_replica = [round((a - b) / elapsed, 2) for a, b in zip(after, before, strict=True)]
    return {"replicas": replicas, "pinned_cores": [i % (os.cpu_count() or 1) for i in range(replicas)],
            "seconds": round(elapsed, 1), "per_s": round(sum(per_replica), 2), "per_s_by_replica": per_replica, "done": sum(after),
            "cpu_cores_used_by_replica": cpu_used,
            # The broker is not pinned: it takes its share from the replicas' cores.
            "broker_cpu_cores_used": broker_used,
            # Every core of the machine by state (user, system, softirq, idle, steal...) meanwhile.
            "machine_cores_by_state": machine,
            # What a replica does per core-second it got: on a shared machine the pinned cores are
            # not all ours, and this shows whether a replica lost speed or only CPU time.
            "per_cpu_second": round(sum(per_replica) / max(sum(cpu_used), 1e-9), 2),
            "load_average_1m": {"start": load_start, "end": load_average()}}


def scale_out(workdir: Path, folders: list[Path], replicas: int, frames_per_camera: int, seconds: float) -> dict:
    """(s) A backlog from 8 cameras (one per partition of lfr.frames.v1) drained by ``replicas``
    detect processes, replica i pinned to core i; frames/s from their counters once all are assigned."""
    pipeline = Pipeline(workdir, extra_env=BACKLOG_ENV)  # the backlog is old by design
    pipeline.start_broker()
    try:
        open_deployment(pipeline.bootstrap, DEPLOYMENT, [f"scale-{cam}" for cam in range(8)],  # detect requires one
                        signing_env=pipeline.signing_env, authoriser=pipeline.authoriser)
        produce_backlog(pipeline.bootstrap, folders, frames_per_camera)
        run = measure_replicas(pipeline, "detect", replicas, "lfr_frames_processed_total", seconds)
    finally:
        pipeline.stop_all()
    return {"replicas": replicas, "cameras": 8, "pinned_cores": run["pinned_cores"], "seconds": run["seconds"],
            "frames_per_s": run["per_s"], "frames_per_s_by_replica": run["per_s_by_replica"],
            "cpu_cores_used_by_replica": run["cpu_cores_used_by_replica"], "broker_cpu_cores_used": run["broker_cpu_cores_used"],
            "machine_cores_by_state": run["machine_cores_by_state"], "frames_per_cpu_second": run["per_cpu_second"], "backlog_left": int(8 * frames_per_camera - run["done"]),
            "load_average_1m": run["load_average_1m"]}


EMBEDDINGS_PRODUCED = 'lfr_messages_produced_total{service="embed",topic="lfr.embeddings.v1"}'
FACES_PRODUCED = 'lfr_messages_produced_total{service="detect",topic="lfr.faces.v1"}'


def mean_of_runs(runs: list[dict]) -> dict:
    """Repeated scale-out runs as one: the mean of each number (element-wise for per-replica
    lists), the rest from the first run, and every run under ``runs``."""
    def mean(values: list):
        if all(v == values[0] for v in values):  # settings such as replicas and pinned cores
            return values[0]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            return round(sum(values) / len(values), 3)
        if all(isinstance(v, list) for v in values):
            return [mean(list(column)) for column in zip(*values, strict=True)]
        if all(isinstance(v, dict) for v in values):
            return {key: mean([v[key] for v in values]) for key in values[0]}
        return values[0]
    return {**{key: mean([run[key] for run in runs]) for key in runs[0]}, "runs": runs}


def scale_out_embed(workdir: Path, folders: list[Path], replicas: int, frames_per_camera: int, seconds: float) -> dict:
    """(s') The same for embed: detect (tracking off, so every acceptable face is sent) first
    turns the 8 cameras' backlog into a backlog of face chips on lfr.faces.v1 and stops; then
    ``replicas`` embed processes, replica i pinned to core i, drain it; faces/s from their counters."""
    # Embed's stale policy would skip the old backlog: measure embedding, not the policy.
    pipeline = Pipeline(workdir, extra_env={**BACKLOG_ENV, "LFR_TRACKING_ENABLED": "false",
                                            "LFR_LATENCY_BUDGET_MS": "600000", "LFR_FIRST_SHOT_BUDGET_MS": "600000"})
    pipeline.start_broker()
    try:
        open_deployment(pipeline.bootstrap, DEPLOYMENT, [f"scale-{cam}" for cam in range(8)],
                        signing_env=pipeline.signing_env, authoriser=pipeline.authoriser)
        produce_backlog(pipeline.bootstrap, folders, frames_per_camera)
        port = free_port()
        pipeline.start("detect", env={"LFR_METRICS_PORT": str(port)})
        pipeline.wait_ready(("detect",))
        deadline = time.monotonic() + 600
        while scrape(port).get("lfr_frames_processed_total", 0.0) < 8 * frames_per_camera and time.monotonic() < deadline:
            time.sleep(0.5)
        faces, settled = -1, time.monotonic()
        while time.monotonic() - settled < 1.5 and time.monotonic() < deadline:  # the last faces' acks arrive after the frame count
            if (now := int(scrape(port).get(FACES_PRODUCED, 0.0))) != faces:
                faces, settled = now, time.monotonic()
            time.sleep(0.25)
        pipeline.stop("detect")
        run = measure_replicas(pipeline, "embed", replicas, EMBEDDINGS_PRODUCED, seconds)
    finally:
        pipeline.stop_all()
    return {"replicas": replicas, "cameras": 8, "pinned_cores": run["pinned_cores"], "seconds": run["seconds"],
            "faces_per_s": run["per_s"], "faces_per_s_by_replica": run["per_s_by_replica"],
            "cpu_cores_used_by_replica": run["cpu_cores_used_by_replica"], "broker_cpu_cores_used": run["broker_cpu_cores_used"],
            "machine_cores_by_state": run["machine_cores_by_state"], "faces_per_cpu_second": run["per_cpu_second"], "backlog_faces": faces, "backlog_left": int(faces - run["done"]),
            "load_average_1m": run["load_average_1m"]}


def _decode_and_detect(core: int, paths: list[str], seconds: float, results, go) -> None:
    """One process pinned to ``core``: decode and detect the frames in a loop, as a detect replica
    does, with no Kafka, no broker and no other service."""
    os.sched_setaffinity(0, {core})
    detector = FaceDetector(intra_op_threads=1)
    jpegs = [Path(p).read_bytes() for p in paths]
    detector.detect_batch([decode_image(j) for j in jpegs[:8]])  # warm-up
    results.put("ready")
    go.wait(120)  # every process starts its timed loop together
    frames, started, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - started < seconds:
        for i in range(0, len(jpegs), 8):
            frames += len(detector.detect_batch([decode_image(j) for j in jpegs[i:i + 8]]))
    results.put((frames, time.perf_counter() - started, time.process_time() - cpu))


def _decode_and_embed(core: int, chips: list[bytes], seconds: float, results, go) -> None:
    """One process pinned to ``core``: decode and embed the PNG chips in batches, as an embed replica
    does (its default batch of 32), with no Kafka, no broker and no other service."""
    os.sched_setaffinity(0, {core})
    embedder = FaceEmbedder(intra_op_threads=1)
    embedder.embed(np.stack([decode_image(c) for c in chips[:8]]))  # warm-up
    results.put("ready")
    go.wait(120)
    faces, started, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - started < seconds:
        for i in range(0, len(chips), 32):
            faces += len(embedder.embed(np.stack([decode_image(c) for c in chips[i:i + 32]])))
    results.put((faces, time.perf_counter() - started, time.process_time() - cpu))


def compute_only_ceiling(worker: Callable, work: list, seconds: float, unit: str) -> dict:
    """What this machine gives two pinned processes doing one stage's compute with nothing else
    running, against one: the ceiling for the scale-out ratio, since two vCPUs of a VM share
    caches and memory bandwidth (and may share a physical core)."""
    import multiprocessing  # noqa: PLC0415 - only this measurement starts processes this way

    context = multiprocessing.get_context("spawn")
    runs = {}
    for replicas in (1, 2):
        results, go = context.Queue(), context.Event()
        procs = [context.Process(target=worker, args=(i % (os.cpu_count() or 1), work, seconds, results, go)) for i in range(replicas)]
        for proc in procs:
            proc.start()
        ready = [results.get(timeout=120) for _ in procs]
        assert ready == ["ready"] * replicas
        go.set()
        done = [results.get(timeout=seconds + 120) for _ in procs]
        for proc in procs:
            proc.join(30)
        runs[replicas] = {f"{unit}_per_s": round(sum(n / w for n, w, _c in done), 2),
                          f"{unit}_per_cpu_second": round(sum(n for n, _w, _c in done) / max(sum(c for _n, _w, c in done), 1e-9), 2)}
    return {"one": runs[1], "two": runs[2], "two_over_one": ratio(runs[2][f"{unit}_per_s"], runs[1][f"{unit}_per_s"])}


def scale_out_ceiling(folders: list[Path], seconds: float) -> dict:
    """Detect's compute (decode + YuNet) alone, 1 process then 2 pinned."""
    paths = [str(p) for folder in folders for p in sorted(folder.iterdir())[:16]]
    return compute_only_ceiling(_decode_and_detect, paths, seconds, "frames")


def embed_ceiling(folders: list[Path], detector: FaceDetector, seconds: float) -> dict:
    """Embed's compute (decode a JPEG chip + SFace) alone, 1 process then 2 pinned, on the
    acceptable faces of the first frames, PNG-encoded as detect sends them."""
    chips: list[bytes] = []
    for path in (p for folder in folders for p in sorted(folder.iterdir())[:16]):
        frame = decode_image(path.read_bytes())
        for face in detector.detect(frame):
            chip = align_face(frame, face.landmarks)
            if assess_quality(face, chip, LIVE_BOUNDS).accepted:
                chips.append(cv2.imencode(".png", chip)[1].tobytes())  # lossless, as detect sends chips
    return {**compute_only_ceiling(_decode_and_embed, chips[:256], seconds, "faces"), "chips": min(len(chips), 256)}


# -- main ------------------------------------------------------------------------------------------


def ratio(a: float, b: float) -> float:
    return round(a / max(b, 1e-9), 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--frames", type=int, default=120, help="pre-rendered frames per camera (replayed in a loop)")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured window of each pipeline run")
    parser.add_argument("--baseline-seconds", type=float, default=20.0)
    parser.add_argument("--scale-seconds", type=float, default=15.0)
    parser.add_argument("--scale-repeats", type=int, default=3, help="detect scale-out: 1 then 2 replicas, this many times")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS / "pipeline.json")
    parser.add_argument("--smoke", action="store_true", help="tiny: 2 cameras, few frames, short runs")
    args = parser.parse_args(argv)
    if args.smoke:
        args.cameras, args.frames, args.seconds, args.baseline_seconds, args.scale_seconds, args.scale_repeats = 2, 8, 4.0, 2.0, 2.0, 1
    data_dir = resolve_data_dir(args.data)
    if data_dir is None:
        print("pipeline benchmark: no face data (set LFR_DATA_DIR); skipped")
        return 0
    started = time.monotonic()
    detector, embedder = FaceDetector(intra_op_threads=1), FaceEmbedder(intra_op_threads=1)
    # The engine when issue #17 was filed embedded with this graph (bit-identical numbers, slower).
    original_embedder = FaceEmbedder(intra_op_threads=1, rewrite_prelu=False)
    cast = choose_cast(data_dir, detector, embedder, watchlisted=4, strangers=12, seed=args.seed, deployment=DEPLOYMENT)
    scratch = Path(tempfile.mkdtemp(prefix="lfr-bench-"))
    try:
        folders, truth_frames = render_frames(data_dir, cast.walkers + cast.strangers, cast.walker_photo_index, args.cameras, args.frames,
                                              args.seed, scratch / "frames")
        truth = Truth(truth_frames, {name for name, _ in cast.watchlist})
        index = WatchlistIndex(connect(None, None, ":memory:"), embedder.identity)  # the matcher's default engine
        index.ensure_collection()
        enroller = Enroller(detector, embedder)
        index.add_new(enroller.build(enrolment_request(n, p, DEPLOYMENT), int(time.time() * 1000)) for n, p in cast.watchlist)
        threshold = operating_threshold()
        base_on = baseline(folders, detector, embedder, index, True, args.baseline_seconds, truth, threshold)
        base_off = baseline(folders, detector, embedder, index, False, args.baseline_seconds, truth, threshold)
        base_original = baseline(folders, detector, original_embedder, index, False, args.baseline_seconds, truth, threshold)
        base_original["engine"] = "tracking off, SFace converted without the PRelu rewrite (the engine when #17 was filed)"
        base_original["same_numbers_as_rewritten_sface"] = same_numbers(folders, detector, embedder, original_embedder)
        recall_on_common_walkers([base_on, base_off, base_original])
        # Saturation: offer 2.5x what the one-process baseline sustains on one core (the pipeline
        # has two, and tracking makes frames cheap); the stale policies shed the excess.
        offered = {on: min(60.0, round(2.5 * b["frames_per_s"] / args.cameras, 2)) for on, b in ((True, base_on), (False, base_off))}  # cameras take 60 fps at most
        sat_on = run_pipeline(scratch / "on", cast, folders, truth, offered[True], args.seconds, True, detector, embedder)
        sat_off = run_pipeline(scratch / "off", cast, folders, truth, offered[False], args.seconds, False, detector, embedder)
        half_fps = min(60.0, max(0.2, round(0.5 * sat_on["frames_per_s"] / args.cameras, 2)))
        half = run_pipeline(scratch / "half", cast, folders, truth, half_fps, args.seconds, True, detector, embedder)
        kept_up = sustained(scratch / "sustained", base_on["frames_per_s"] / args.cameras, (0.5,) if args.smoke else (0.7, 0.9, 1.0, 1.1, 1.2),
                            lambda work, fps: run_pipeline(work, cast, folders, truth, min(60.0, fps), args.seconds, True, detector, embedder))
        best = kept_up["best"] or {"faces_per_s": 0.0, "frames_per_s": 0.0}
        backlog = 80 if args.smoke else 320  # 240 left under 300 frames at the end of the 2-replica window: closer to running dry than a measurement should be
        # 1 then 2 replicas, repeated: one core's speed drifts by several per cent from minute to
        # minute on this VM, so each ratio pairs measurements taken back to back.
        scale_runs: dict[int, list[dict]] = {1: [], 2: []}
        for repeat in range(args.scale_repeats):
            for replicas in (1, 2):
                scale_runs[replicas].append(scale_out(scratch / f"s{replicas}-{repeat}", folders, replicas, backlog, args.scale_seconds))
        one, two = mean_of_runs(scale_runs[1]), mean_of_runs(scale_runs[2])
        ceiling = scale_out_ceiling(folders, args.scale_seconds)
        embed_backlog = 40 if args.smoke else 120  # tracking off: about 5 chips a frame, ~5,000 chips (2 replicas drain ~3,500 in the window)
        embed_one = scale_out_embed(scratch / "e1", folders, 1, embed_backlog, args.scale_seconds)
        embed_two = scale_out_embed(scratch / "e2", folders, 2, embed_backlog, args.scale_seconds)
        embed_compute = embed_ceiling(folders, detector, args.scale_seconds)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result = {
        "benchmark": "pipeline",
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "python": platform.python_version()},
        "smoke": args.smoke,
        "workload": {"cameras": args.cameras, "frame_size": "1280x720", "frames_per_camera": args.frames, "seed": args.seed,
                     "scene_ms_between_frames": SCENE_MS, "watchlist": len(cast.watchlist), "cast": len(cast.walkers) + len(cast.strangers)},
        "baseline": base_on,
        "baseline_tracking_off": base_off,
        "baseline_original_engine": base_original,
        "tracking_on": sat_on,
        "tracking_off": sat_off,
        "pipeline_saturated": sat_on,
        "pipeline_half_load": half,
        "pipeline_sustained": kept_up,
        "scale_out": {"one_replica_one_core": one, "two_replicas_pinned": two, "compute_only_ceiling": ceiling},
        "scale_out_embed": {"one_replica_one_core": embed_one, "two_replicas_pinned": embed_two, "compute_only_ceiling": embed_compute},
        "ratios": {
            # Like for like: the baseline runs as fast as it can and sheds nothing, so the pipeline is
            # compared at the highest offered rate it keeps up with (no shedding). Until 2 Dec 2026
            # 09:10 UTC this key held the 2.5x-overload figure, now pipeline_saturated_over_baseline_faces_per_s.
            "pipeline_over_baseline_faces_per_s": ratio(best["faces_per_s"], base_on["faces_per_s"]),
            "pipeline_sustained_over_baseline_faces_per_s": ratio(best["faces_per_s"], base_on["faces_per_s"]),  # kept: = the key above
            # Offered 2.5x the baseline: the broker stores, and detect skips, frames nobody processes.
            "pipeline_saturated_over_baseline_faces_per_s": ratio(sat_on["faces_per_s"], base_on["faces_per_s"]),
            # Like for like: one process on one core each, as fast as it can, same frames, same time.
            "tracking_on_over_off_frames_per_s": ratio(base_on["frames_per_s"], base_off["frames_per_s"]),
            "baseline_tracking_on_over_off_frames_per_s": ratio(base_on["frames_per_s"], base_off["frames_per_s"]),
            # Today's engine (tracking, rewritten SFace) over the engine when #17 was filed, one core each.
            "engine_over_original_frames_per_s": ratio(base_on["frames_per_s"], base_original["frames_per_s"]),
            # The pipeline runs were offered different frame rates (2.5x their own baseline): says little.
            "pipeline_tracking_on_over_off_frames_per_s": ratio(sat_on["frames_per_s"], sat_off["frames_per_s"]),
            "pipeline_tracking_on_over_off_frames_per_s_per_core": ratio(sat_on["frames_per_s_per_core_used"], sat_off["frames_per_s_per_core_used"]),
            "tracking_on_over_off_frames_per_s_per_core": ratio(sat_on["frames_per_s_per_core_used"], sat_off["frames_per_s_per_core_used"]),  # kept: = the pipeline_ key
            "two_pinned_replicas_over_one": ratio(two["frames_per_s"], one["frames_per_s"]),  # means of the repeats
            "two_pinned_replicas_over_one_by_repeat": [ratio(b["frames_per_s"], a["frames_per_s"]) for a, b in zip(scale_runs[1], scale_runs[2], strict=True)],
            "two_pinned_replicas_over_one_per_cpu_second": ratio(two["frames_per_cpu_second"], one["frames_per_cpu_second"]),
            # The same with detect's compute alone (no Kafka, nothing else running): this machine's ceiling.
            "two_pinned_compute_only_over_one": ceiling["two_over_one"],
            # The same for embed (issue #17: "2 detect or embed replicas"); the key above stays detect's.
            "two_pinned_embed_replicas_over_one": ratio(embed_two["faces_per_s"], embed_one["faces_per_s"]),
            "two_pinned_embed_replicas_over_one_per_cpu_second": ratio(embed_two["faces_per_cpu_second"], embed_one["faces_per_cpu_second"]),
            "two_pinned_embed_compute_only_over_one": embed_compute["two_over_one"],
        },
        "total_seconds": round(time.monotonic() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    r = result["ratios"]
    print(f"baseline (1 core): tracking on {base_on['frames_per_s']} frames/s vs off {base_off['frames_per_s']} (x{r['tracking_on_over_off_frames_per_s']}) "
          f"vs original engine {base_original['frames_per_s']} (x{r['engine_over_original_frames_per_s']}), walker recall "
          f"{base_on['walker_recall']}/{base_off['walker_recall']}/{base_original['walker_recall']}, false matches "
          f"{base_on['false_matches']}/{base_off['false_matches']}/{base_original['false_matches']}; "
          f"pipeline: tracking on {sat_on['frames_per_s']} frames/s vs off {sat_off['frames_per_s']} (x{r['pipeline_tracking_on_over_off_frames_per_s']}), "
          f"recall {sat_on['walker_recall']} vs {sat_off['walker_recall']}, false alerts {sat_on['false_alerts']}/{sat_off['false_alerts']}; "
          f"pipeline/baseline faces/s {r['pipeline_over_baseline_faces_per_s']} sustained ({best['frames_per_s']} frames/s kept up with), "
          f"{r['pipeline_saturated_over_baseline_faces_per_s']} at 2.5x overload; half load capture-to-alert p50/p99 "
          f"{half['capture_to_alert_ms']['p50']}/{half['capture_to_alert_ms']['p99']} ms; 2 pinned replicas x{r['two_pinned_replicas_over_one']} "
          f"(compute alone x{r['two_pinned_compute_only_over_one']}), embed x{r['two_pinned_embed_replicas_over_one']} "
          f"(compute alone x{r['two_pinned_embed_compute_only_over_one']}); "
          f"{result['total_seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
