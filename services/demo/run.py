"""`lfr demo`: the whole pipeline on embedded defaults, with a synthetic crowd that knows the truth.

Starts the embedded broker and the five services as separate processes, enrols a watchlist
(one photo per subject), runs a synthetic crowd camera in which some watchlisted people (other
photos of them) and many strangers walk past, prints alerts as they arrive, then a summary
scored against the camera's ground truth, and shuts everything down.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from services.common.envelope import decode
from services.common.settings import WatchlistSettings, load_settings
from services.face import FaceDetector, FaceEmbedder
from services.ingest.cameras import CameraConfig, save_cameras
from services.watchlist.admin import WatchlistAdmin
from services.watchlist.enrol import Enroller
from services.watchlist.store import WatchlistStore
from services.watchlist.thresholds import Thresholds

from .cast import Cast, choose_cast, enrolment_request
from .dataset import HOW_TO_GET_LFW, PROJECT_ROOT, resolve_data_dir
from .hops import by_hop
from .pipeline import Pipeline
from .score import summarise

DEPLOYMENT = "demo-van-1"
CAMERA = "demo-cam-1"


@dataclass(frozen=True)
class DemoOptions:
    seconds: float = 60.0
    fps: float = 4.0
    watchlisted: int = 8
    strangers: int = 30
    seed: int = 7
    workdir: Path = PROJECT_ROOT / "var" / "demo"
    recognisable_margin: float | None = None


class TopicTail:
    """Reads a topic from the start without a consumer group."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "lfr-demo-tail", "enable.auto.commit": False})
        partitions = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self.consumer.assign([TopicPartition(topic, p, 0) for p in partitions])

    def poll(self, timeout_s: float = 0.2) -> list:
        return [r for r in self.consumer.consume(500, timeout_s) if r.error() is None]

    def close(self) -> None:
        self.consumer.close()


def crowd_camera(cast: Cast, data_dir: Path, options: DemoOptions, camera_id: str = CAMERA) -> CameraConfig:
    return CameraConfig(
        id=camera_id,
        deployment_id=DEPLOYMENT,
        source="synthetic:crowd",
        fps=options.fps,
        max_width=1280,
        max_height=720,
        synthetic={
            "data_dir": str(data_dir),
            "identities": cast.walkers + cast.strangers,
            "photo_index": cast.walker_photo_index,
            "seed": options.seed,
        },
    )


def enrol(pipeline: Pipeline, cast: Cast, detector: FaceDetector, embedder: FaceEmbedder) -> None:
    settings = load_settings(WatchlistSettings, kafka_bootstrap_servers=pipeline.bootstrap)
    admin = WatchlistAdmin(WatchlistStore(settings), Enroller(detector, embedder), Thresholds())
    for identity, photo in cast.watchlist:
        outcome = admin.add(enrolment_request(identity, photo, DEPLOYMENT))
        if outcome.status == "refused":
            raise RuntimeError(f"demo enrolment of {identity} refused: {outcome.reason}")


def format_alert(alert: dict, headers: dict[str, str]) -> str:
    kind = "ALERT " if alert["revision"] == 0 else "UPDATE"
    return (
        f"{kind} [{alert['priority'].upper():<5}] {alert['subject_id']:<28} {alert['camera_id']}  score {alert['score']:.3f} "
        f"(threshold {alert['threshold']:.2f})  sightings {alert['sightings']:>2}  {alert['capture_to_alert_ms']:.0f} ms  "
        f"id {headers.get('ce_id', '?')}"
    )


def run_demo(data_dir: Path, options: DemoOptions, out=print) -> dict:
    shutil.rmtree(options.workdir, ignore_errors=True)
    pipeline = Pipeline(options.workdir)
    detector, embedder = FaceDetector(intra_op_threads=1), FaceEmbedder(intra_op_threads=1)
    cast = choose_cast(data_dir, detector, embedder, watchlisted=options.watchlisted, strangers=options.strangers,
                       seed=options.seed, deployment=DEPLOYMENT, recognisable_margin=options.recognisable_margin)
    out(f"watchlist: {len(cast.watchlist)} subjects; crowd: {len(cast.walkers)} of them and {len(cast.strangers)} strangers")
    pipeline.start_broker()
    tails: list[TopicTail] = []
    ingest_code = None
    try:
        out(f"embedded broker on {pipeline.bootstrap}; topics applied")
        enrol(pipeline, cast, detector, embedder)
        for service in ("detect", "embed", "matcher", "dispatch"):
            pipeline.start(service)
        pipeline.wait_ready(("detect", "embed", "matcher", "dispatch"))
        save_cameras(pipeline.cameras_file, {CAMERA: crowd_camera(cast, data_dir, options)})
        pipeline.start("ingest")
        out(f"services running; camera {CAMERA} streaming for {options.seconds:.0f} s")
        alerts_tail = TopicTail(pipeline.bootstrap, "lfr.alerts.v1")
        tails.append(alerts_tail)
        events: list[dict] = []

        def drain_alerts(timeout_s: float) -> int:
            records = alerts_tail.poll(timeout_s)
            for record in records:
                alert = decode(record.value()).data
                events.append(alert)
                out(format_alert(alert, {k: v.decode() for k, v in record.headers() or []}))
            return len(records)

        deadline = time.monotonic() + options.seconds
        while time.monotonic() < deadline:
            drain_alerts(0.5)
        ingest_code = pipeline.stop("ingest")
        # Let the last frames through; stop once nothing new has arrived for a few seconds.
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < 4.0:
            if drain_alerts(0.5):
                quiet_since = time.monotonic()
        truth = pipeline.truth()  # one record per captured frame
        faces = _count(pipeline.bootstrap, "lfr.faces.v1", tails)
        embeddings = _count(pipeline.bootstrap, "lfr.embeddings.v1", tails)
        matches = [decode(r.value()).data for r in _records(pipeline.bootstrap, "lfr.matches.v1", tails)]
        summary = summarise(events, truth, {name for name, _ in cast.watchlist}, len(truth), faces)
        # Tracking: how many embeddings each walker cost (issue #17).
        walkers = len({(t["camera_id"], face["walker"]) for t in truth for face in t["faces"]})
        summary["embeddings"] = embeddings
        summary["walkers"] = walkers
        summary["embeddings_per_walker"] = round(embeddings / walkers, 2) if walkers else None
        summary["latency_ms"]["by_hop"] = by_hop(matches, events)
    finally:
        for tail in tails:
            tail.close()
        codes = pipeline.stop_all()
    summary["service_exit_codes"] = {"ingest": ingest_code, **codes}
    return summary


def _records(bootstrap: str, topic: str, tails: list[TopicTail]) -> list:
    tail = TopicTail(bootstrap, topic)
    tails.append(tail)
    records, empty = [], 0
    while empty < 3:
        got = tail.poll(0.3)
        records += got
        empty = 0 if got else empty + 1
    return records


def _count(bootstrap: str, topic: str, tails: list[TopicTail]) -> int:
    return len(_records(bootstrap, topic, tails))


def main(data: Path | None, seconds: float, as_json: bool) -> int:
    data_dir = resolve_data_dir(data)
    if data_dir is None:
        print(HOW_TO_GET_LFW, file=sys.stderr)
        return 2
    quiet = (lambda _msg: None) if as_json else (lambda msg: print(msg, flush=True))
    summary = run_demo(data_dir, DemoOptions(seconds=seconds), out=quiet)
    if as_json:
        print(json.dumps(summary))
    else:
        print("summary: " + json.dumps(summary, indent=2))
    return 0 if all(code == 0 for code in summary["service_exit_codes"].values()) else 1
