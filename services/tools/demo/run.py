"""`lfr demo`: the whole pipeline on embedded defaults, with a synthetic crowd that knows the truth.

Starts the embedded broker and the five services as separate processes, enrols a watchlist
(one photo per subject), runs a synthetic crowd camera in which some watchlisted people (other
photos of them) and many strangers walk past, prints alerts as they arrive, then a summary
scored against the camera's ground truth, and shuts everything down.
"""

from __future__ import annotations

import json
import secrets
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from confluent_kafka import Consumer, TopicPartition

from services.common.envelope import decode
from services.common.jsonevents import decode_record
from services.common.settings import WatchlistSettings, load_settings
from services.engine.face import FaceDetector, FaceEmbedder
from services.governance.privacy.retention import EMBEDDED_BROKER_NOTE
from services.pipeline.ingest.cameras import CameraConfig, save_cameras
from services.governance.watchlist.admin import WatchlistAdmin
from services.governance.watchlist.enrol import Enroller
from services.governance.watchlist.store import WatchlistStore
from services.governance.watchlist.thresholds import Thresholds

from .adjudicate import ConsoleClient, adjudicate
from .cast import Cast, choose_cast, enrolment_request
from .dataset import HOW_TO_GET_LFW, PROJECT_ROOT, resolve_data_dir
from .hops import by_hop
from .deployment import open_deployment
from .pipeline import Pipeline
from .misses import never_embedded, walker_report
from .score import is_true_alert, summarise

DEPLOYMENT = "demo-van-1"
DEPLOYMENT_EVENTS_TOPIC = "lfr.deployment_events.v1"
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
    auto_adjudicate: bool = True
    review_port: int = 8080


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


def public_deployment_events(tail: TopicTail, out, timeout_s: float = 20.0) -> list[str]:
    """The demo deployment's public events (lfr run deployment-events), printed, up to its end."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not any(t.endswith(".ended") for t in seen):
        for record in tail.poll(0.5):
            headers = {k: v.decode() for k, v in record.headers() or []}
            event = decode_record(record.value(), record.headers()).data
            seen.append(headers["ce_type"])
            out(f"DEPLOYMENT EVENT {headers['ce_type']:<36} id {headers['ce_id']}  state {event['state']}"
                f"  watchlist {event.get('watchlist', {}).get('size', '-')}")
    return seen


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


def enrol(pipeline: Pipeline, cast: Cast, detector: FaceDetector, embedder: FaceEmbedder) -> dict[str, list]:
    """Enrols the cast's watchlist; returns each subject's enrolled vectors (for the miss report)."""
    signing = {name.removeprefix("LFR_").lower(): value for name, value in pipeline.signing_env.items()}
    settings = load_settings(WatchlistSettings, kafka_bootstrap_servers=pipeline.bootstrap, **signing)
    enroller = Enroller(detector, embedder)
    admin = WatchlistAdmin(WatchlistStore(settings), enroller, Thresholds())
    vectors: dict[str, list] = {}
    for identity, photo in cast.watchlist:
        request = enrolment_request(identity, photo, DEPLOYMENT)
        outcome = admin.add(request)
        if outcome.status == "refused":
            raise RuntimeError(f"demo enrolment of {identity} refused: {outcome.reason}")
        vectors[identity] = [e.vector for e in enroller.build(request, int(time.time() * 1000)).embeddings]
    return vectors


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
    deployment = None
    try:
        out(f"embedded broker on {pipeline.bootstrap}; topics applied")
        out(f"privacy: {EMBEDDED_BROKER_NOTE}; never point real cameras at it")
        enrolled = enrol(pipeline, cast, detector, embedder)
        deployment = open_deployment(pipeline.bootstrap, DEPLOYMENT, [CAMERA], signing_env=pipeline.signing_env,
                                     authoriser=pipeline.authoriser)
        out(f"deployment {DEPLOYMENT} {' -> '.join(deployment.states)}; expected false alerts per hour: "
            f"{deployment.expected_false_alerts_per_hour:.4g}")
        review = start_review(pipeline, options)
        out(f"review console: {review.url}  user {review.username}  password {review.password}")
        for service in ("detect", "embed", "matcher", "dispatch", "deployment-events"):
            pipeline.start(service)
        pipeline.wait_ready(("review", "detect", "embed", "matcher", "dispatch", "deployment-events"))
        deployment_tail = TopicTail(pipeline.bootstrap, DEPLOYMENT_EVENTS_TOPIC)
        tails.append(deployment_tail)
        officer = ConsoleClient(review.url, review.username, review.password) if options.auto_adjudicate else None
        pending: dict[str, dict] = {}
        decisions: dict[str, str] = {}
        save_cameras(pipeline.cameras_file, {CAMERA: crowd_camera(cast, data_dir, options)})
        pipeline.start("ingest")
        out(f"services running; camera {CAMERA} streaming for {options.seconds:.0f} s")
        alerts_tail = TopicTail(pipeline.bootstrap, "lfr.alerts.v3")
        tails.append(alerts_tail)
        events: list[dict] = []

        def drain_alerts(timeout_s: float) -> int:
            records = alerts_tail.poll(timeout_s)
            for record in records:
                alert = decode_record(record.value(), record.headers()).data
                events.append(alert)
                pending[alert["alert_id"]] = alert
                out(format_alert(alert, {k: v.decode() for k, v in record.headers() or []}))
            if officer is not None and pending:
                truth = pipeline.truth()
                for alert_id, alert in list(pending.items()):
                    decided = adjudicate(officer, alert, truth)
                    if decided is not None:
                        del pending[alert_id]
                        if decided != "already":
                            decisions[alert_id] = decided
                            out(f"DECIDED {decided:<9} {alert['subject_id']} (alert {alert_id})")
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
        deadline = time.monotonic() + 10
        while officer is not None and pending and time.monotonic() < deadline:
            drain_alerts(0.5)  # the last alerts reach the console and get their decision
        deployment.end()
        out(f"deployment {DEPLOYMENT} ended")
        summary_events = public_deployment_events(deployment_tail, out)
        truth = pipeline.truth()  # one record per captured frame
        shots = [decode(r.value()).data for r in _records(pipeline.bootstrap, "lfr.faces.v1", tails)]
        embedded = [(e["face"], np.frombuffer(e["embedding"]["data"], dtype="<f4").astype(np.float32))
                    for e in (decode(r.value()).data for r in _records(pipeline.bootstrap, "lfr.embeddings.v1", tails))]
        faces, embeddings = len(shots), len(embedded)
        matches = [decode(r.value()).data for r in _records(pipeline.bootstrap, "lfr.matches.v1", tails)]
        summary = summarise(events, truth, {name for name, _ in cast.watchlist}, len(truth), faces)
        summary["deployment_events"] = summary_events
        # Why each watchlisted walker was or was not alerted (issue #13): shots, best score, cause.
        threshold = max(Thresholds().for_category("suspect"), deployment.record.match_threshold or -1.0)
        alerted = {a["subject_id"] for a in events if is_true_alert(a, {(t["camera_id"], t["seq"]): t["faces"] for t in truth})}
        summary["watchlisted_walkers"] = walker_report(truth, shots, embedded, enrolled, alerted, threshold)
        # Walks of 64 px or more in view for a second that nothing was embedded of (issue #27): 0.
        summary["never_embedded"] = never_embedded(truth, [face for face, _ in embedded], {name for name, _ in cast.watchlist})
        del shots, embedded  # stranger chips and embeddings held in memory only for this count
        # Tracking: how many embeddings each walker cost (issue #17).
        walkers = len({(t["camera_id"], face["walker"]) for t in truth for face in t["faces"]})
        summary["embeddings"] = embeddings
        summary["walkers"] = walkers
        summary["embeddings_per_walker"] = round(embeddings / walkers, 2) if walkers else None
        summary["latency_ms"]["by_hop"] = by_hop(matches, events)
        summary["review_url"] = review.url
        summary["report"], html = transparency_report(pipeline, options.workdir)
        out(f"transparency report: {html}")
        if officer is not None:
            officer.close()
    finally:
        for tail in tails:
            tail.close()
        codes = pipeline.stop_all()
    summary["service_exit_codes"] = {"ingest": ingest_code, **codes}
    summary["deployment"] = deployment.summary() if deployment else None
    summary["expected_false_alerts_per_hour"] = deployment.expected_false_alerts_per_hour if deployment else None
    return summary


@dataclass(frozen=True)
class ReviewAccess:
    url: str
    username: str
    password: str


def start_review(pipeline: Pipeline, options: DemoOptions) -> ReviewAccess:
    """The console with one demo operator for the demo's deployment (a fresh password per run)."""
    from services.common.broker import free_port
    from services.operations.review.users import UsersFile

    state = options.workdir / "review"
    username, password = "demo-operator", secrets.token_urlsafe(12)
    UsersFile(state / "users.json").add(username, password, "operator", (DEPLOYMENT,))
    port = options.review_port if _port_free(options.review_port) else free_port()
    url = f"http://localhost:{port}"  # browsers send Secure cookies to localhost over plain HTTP
    pipeline.start("review", env={"LFR_STATE_DIR": str(state), "LFR_USERS_FILE": str(state / "users.json"),
                                  "LFR_HTTP_HOST": "127.0.0.1", "LFR_HTTP_PORT": str(port), "LFR_PUBLIC_URL": url})
    pipeline.wait_ready(("review",))
    return ReviewAccess(url, username, password)


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def transparency_report(pipeline: Pipeline, workdir: Path) -> tuple[dict, Path]:
    from services.common.settings import ReportSettings
    from services.operations.report.build import build_report, summary
    from services.operations.report.render import render_html
    from services.operations.report.topics import read_inputs

    # The report reads verified records only: it trusts the demo's own keyring (not in os.environ).
    settings = load_settings(ReportSettings, kafka_bootstrap_servers=pipeline.bootstrap,
                             keyring_file=pipeline.signing_env["LFR_KEYRING_FILE"])
    report, deadline = None, time.monotonic() + 60
    while True:  # detect may still be counting the last frames it processed: wait until its counts settle
        latest = build_report(read_inputs(settings), DEPLOYMENT, now_ms=int(time.time() * 1000))
        if report is not None and latest["totals"]["faces"] == report["totals"]["faces"] or time.monotonic() > deadline:
            report = latest
            break
        report = latest
        time.sleep(3)
    (workdir / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (workdir / "report.html").write_text(render_html(report), encoding="utf-8")
    return summary(report), workdir / "report.html"


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


def main(data: Path | None, seconds: float, as_json: bool, auto_adjudicate: bool = True, seed: int = DemoOptions.seed) -> int:
    data_dir = resolve_data_dir(data)
    if data_dir is None:
        print(HOW_TO_GET_LFW, file=sys.stderr)
        return 2
    quiet = (lambda _msg: None) if as_json else (lambda msg: print(msg, flush=True))
    summary = run_demo(data_dir, DemoOptions(seconds=seconds, auto_adjudicate=auto_adjudicate, seed=seed), out=quiet)
    if as_json:
        print(json.dumps(summary))
    else:
        print("summary: " + json.dumps(summary, indent=2))
    return 0 if all(code == 0 for code in summary["service_exit_codes"].values()) else 1
