"""Every metric the Grafana dashboard and the Prometheus rules use is served by the running
services, and the chart's `helm test` scripts pass against them.

The five services run as processes (services/tools/demo/pipeline.py) on their own embedded broker,
each with its own /metrics port. A labelled metric appears in the exposition only once it has a
sample, so the test makes each one happen, with generated images only (never the face data set):
  - a folder camera of drawn cartoon faces: frames flow (captured, produced, consumed, lag, stage
    duration); with LFR_DETECTOR_SCORE_THRESHOLD=0.3 detect finds the drawing and, with
    LFR_MIN_DETECTOR_SCORE=0.99, the quality gate refuses it (lfr_faces_rejected_total);
  - a folder camera of one 10000x8000 image: resizing it after capture takes far longer than
    LFR_MAX_FRAME_AGE_MS=50, so its frames are dropped as too_old (lfr_frames_dropped_total);
    it is removed from the cameras file as soon as that is seen, to spare the CPU;
  - a camera whose video file does not exist (lfr_camera_reconnects_total);
  - a frame captured an hour ago (detect skips it: lfr_frames_skipped_total) and a corrupt frame
    (detect dead-letters it: lfr_messages_dead_lettered_total);
  - one lfr.matches.v1 record: dispatch raises an alert (lfr_alerts_total,
    lfr_capture_to_alert_seconds) and posts it to a webhook on loopback (lfr_webhook_deliveries_total).
"""

from __future__ import annotations

import http.server
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from services.common.broker import free_port
from services.common.envelope import encode
from services.tools.demo.pipeline import Pipeline
from services.engine.face.models import SFACE
from services.pipeline.ingest.cameras import CameraConfig, save_cameras
from tests.deploy.helpers import CHART, EXTERNAL_METRICS, SERVICES, referenced_metrics
from tests.deployment_helpers import active_deployment, publish_deployment

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

DEADLINE_S = 120
#: metrics only the dispatcher serves (services/pipeline/dispatch/metrics.py)
DISPATCH_ONLY = {"lfr_alerts_total", "lfr_capture_to_alert_seconds_bucket", "lfr_webhook_deliveries_total"}
DEPLOYMENT = "van-test"


def cartoon_face(shift: int) -> np.ndarray:
    """A drawn face YuNet finds at score threshold 0.3 (it scores about 0.6-0.8)."""
    image = np.full((240, 320, 3), 180, np.uint8)
    x = 160 + shift
    cv2.ellipse(image, (x, 120), (50, 65), 0, 0, 360, (150, 170, 210), -1)
    cv2.circle(image, (x - 20, 105), 7, (40, 40, 40), -1)
    cv2.circle(image, (x + 20, 105), 7, (40, 40, 40), -1)
    cv2.ellipse(image, (x, 155), (18, 7), 0, 0, 360, (60, 60, 150), -1)
    cv2.line(image, (x, 110), (x, 140), (120, 130, 170), 3)
    return image


def match_record(now_ms: int) -> bytes:
    captured = now_ms - 1500
    chip = cv2.imencode(".jpg", cartoon_face(0)[60:180, 100:220])[1].tobytes()
    return encode("lfr.matches.v1", {
        "subject_id": "S-live-1", "reference": "WARRANT/TEST/1", "category": "wanted_by_courts", "priority": "red",
        "score": 0.61, "threshold": 0.5, "rank": 1, "model": {"name": SFACE.name, "sha256": SFACE.sha256},
        "face": {
            "frame": {"camera_id": "cam-faces", "deployment_id": DEPLOYMENT, "seq": 1, "captured_at_ms": captured,
                      "width": 320, "height": 240},
            "face_index": 0, "box": [100, 60, 220, 180],
            "landmarks": [[140, 105], [180, 105], [160, 125], [145, 155], [175, 155]],
            "quality": {"face_width_px": 120, "interocular_px": 40, "blur": 120, "yaw": 0, "roll": 0, "detector_score": 0.95},
            "chip": {"media_type": "image/jpeg", "data": chip},
            "detected_at_ms": captured + 20,
        },
        "embedded_at_ms": captured + 40, "matched_at_ms": captured + 50,
    })


def frame_record(captured_at_ms: int, image: bytes, seq: int) -> bytes:
    return encode("lfr.frames.v1", {"camera_id": "cam-injected", "deployment_id": DEPLOYMENT, "seq": seq,
                                    "captured_at_ms": captured_at_ms, "width": 320, "height": 240,
                                    "media_type": "image/jpeg", "image": image})


class Webhook(http.server.BaseHTTPRequestHandler):
    received: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        Webhook.received.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        self.send_response(202)
        self.end_headers()

    def log_message(self, *_args) -> None:
        pass


def scrape(port: int) -> set[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as response:
        text = response.read().decode()
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


def tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    work = tmp_path_factory.mktemp("live-metrics")
    faces, slow = work / "faces", work / "slow"
    faces.mkdir()
    slow.mkdir()
    for i, shift in enumerate((-10, 0, 10)):
        cv2.imwrite(str(faces / f"{i}.png"), cartoon_face(shift))
    big = np.zeros((8000, 10000, 3), np.uint8)
    big[:] = (np.arange(10000) % 256).astype(np.uint8)[None, :, None]
    cv2.imwrite(str(slow / "big.jpg"), big, [cv2.IMWRITE_JPEG_QUALITY, 50])
    del big

    webhook = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Webhook)
    threading.Thread(target=webhook.serve_forever, daemon=True).start()

    ports = {service: free_port() for service in SERVICES}
    env = {
        "ingest": {"LFR_MAX_FRAME_AGE_MS": "50", "LFR_CONFIG_POLL_INTERVAL_S": "0.5", "LFR_RECONNECT_BACKOFF_INITIAL_S": "0.2",
                   "OPENCV_FOR_THREADS_NUM": "1"},
        # Find the drawing (it scores ~0.6), refuse every face at the quality gate, and judge
        # staleness by an hour-old capture time only: the services start slowly on 2 cores.
        "detect": {"LFR_DETECTOR_SCORE_THRESHOLD": "0.3", "LFR_MIN_DETECTOR_SCORE": "0.99", "LFR_MAX_FRAME_AGE_MS": "600000"},
        "embed": {},
        "matcher": {},
        "dispatch": {"LFR_WEBHOOK_URL": f"http://127.0.0.1:{webhook.server_address[1]}/hook",
                     "LFR_WEBHOOK_SIGNING_SECRET": "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="},
        "review": {"LFR_STATE_DIR": str(work / "review"), "LFR_USERS_FILE": str(work / "review" / "users.json"),
                   "LFR_HTTP_HOST": "127.0.0.1", "LFR_HTTP_PORT": str(free_port())},
        "deployment-events": {},
    }
    pipeline = Pipeline(work / "run", extra_env={"LFR_LAG_REPORT_INTERVAL_S": "1", "LFR_SHUTDOWN_TIMEOUT_S": "10"})
    cameras = {
        "cam-faces": CameraConfig(id="cam-faces", deployment_id=DEPLOYMENT, source=f"folder:{faces}", fps=4),
        "cam-slow": CameraConfig(id="cam-slow", deployment_id=DEPLOYMENT, source=f"folder:{slow}", fps=1,
                                 max_width=640, max_height=480),
        "cam-broken": CameraConfig(id="cam-broken", deployment_id=DEPLOYMENT, source=str(work / "missing.mp4")),
    }
    result = {"ports": ports, "seen": {s: set() for s in SERVICES}, "failed": {}, "pipeline": pipeline, "webhook": Webhook}
    try:
        pipeline.start_broker()
        save_cameras(pipeline.cameras_file, cameras)
        now = int(time.time() * 1000)
        # The services work only for an active deployment; its window covers the stale frame below.
        publish_deployment(pipeline.bootstrap, "lfr.deployments.v1",
                           active_deployment(DEPLOYMENT, [*cameras, "cam-injected"], start_ms=now - 7_200_000, hours=4),
                           signers=(pipeline.operator, pipeline.authoriser))
        producer = Producer({"bootstrap.servers": pipeline.bootstrap})
        producer.produce("lfr.matches.v1", key=b"S-live-1", value=match_record(now))
        small = cv2.imencode(".jpg", cartoon_face(0))[1].tobytes()
        producer.produce("lfr.frames.v1", key=b"cam-injected", value=frame_record(now - 3_600_000, small, 1))  # stale
        producer.produce("lfr.frames.v1", key=b"cam-injected", value=frame_record(now, b"\xff\xd8\xff\xe0 not a jpeg", 2))
        assert producer.flush(30) == 0
        del producer
        for service in SERVICES:
            pipeline.start(service, env={"LFR_METRICS_PORT": str(ports[service]), **env[service]})

        required = referenced_metrics() - set(EXTERNAL_METRICS)
        slow_removed = False
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            for service in SERVICES:
                if service in result["failed"]:
                    continue
                code = pipeline.processes[service].poll()
                if code is not None:
                    result["failed"][service] = f"`lfr run {service}` exited with code {code}:\n{tail(pipeline.workdir / f'{service}.log')}"
                    continue
                try:
                    result["seen"][service] |= scrape(ports[service])
                except OSError:
                    pass  # not listening yet
            seen = set().union(*result["seen"].values())
            if not slow_removed and "lfr_frames_dropped_total" in seen:
                save_cameras(pipeline.cameras_file, {k: v for k, v in cameras.items() if k != "cam-slow"})
                slow_removed = True
            if set(result["failed"]) - {"dispatch"}:
                break  # a pipeline service died: the test reports it
            # Done when the checks below would pass: the others serve all but dispatch's own
            # metrics (dispatch serves some of theirs too, so the union alone stops too early).
            others = set().union(*(names for name, names in result["seen"].items() if name != "dispatch"))
            if not (required - DISPATCH_ONLY) - others and ("dispatch" in result["failed"] or not DISPATCH_ONLY - result["seen"]["dispatch"]):
                break
            time.sleep(1)
        yield result
    finally:
        for process in pipeline.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in pipeline.processes.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        pipeline.broker.stop()
        webhook.shutdown()


def test_dashboard_and_rule_metrics_are_served_by_the_pipeline_services(live):
    required = referenced_metrics() - DISPATCH_ONLY - set(EXTERNAL_METRICS)
    seen = set().union(*(names for service, names in live["seen"].items() if service != "dispatch"))
    failed = {s: why for s, why in live["failed"].items() if s != "dispatch"}
    assert not failed, failed
    assert not required - seen, (
        f"not in any scrape of ingest/detect/embed/matcher within {DEADLINE_S} s: {sorted(required - seen)}; "
        f"logs in {live['pipeline'].workdir}"
    )


def test_dashboard_and_rule_metrics_are_served_by_dispatch(live):
    if "dispatch" in live["failed"]:
        pytest.skip(f"dispatch did not run, so {sorted(DISPATCH_ONLY)} were not observed: {live['failed']['dispatch']}")
    missing = DISPATCH_ONLY - live["seen"]["dispatch"]
    assert not missing, f"not in dispatch's scrape: {sorted(missing)}; logs in {live['pipeline'].workdir}"
    assert live["webhook"].received, "the alert never reached the webhook"


def test_helm_test_metrics_script_passes_against_the_services(live):
    running = [s for s in SERVICES if s not in live["failed"]]
    urls = [f"http://127.0.0.1:{live['ports'][s]}/metrics" for s in running]
    result = subprocess.run([sys.executable, str(CHART / "files" / "metrics-check.py"), *urls], capture_output=True,
                            text=True, timeout=60, env={**os.environ, "LFR_TEST_TIMEOUT_S": "20"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("ok: ") == len(running)
    dead = subprocess.run([sys.executable, str(CHART / "files" / "metrics-check.py"), f"http://127.0.0.1:{free_port()}/metrics"],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "LFR_TEST_TIMEOUT_S": "1"})
    assert dead.returncode == 1 and "FAIL" in dead.stdout


def test_helm_test_kafka_script_passes_against_the_broker(live):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LFR_")}
    env.update({"LFR_KAFKA_BOOTSTRAP_SERVERS": live["pipeline"].bootstrap, "LFR_TEST_TIMEOUT_S": "30"})
    result = subprocess.run([sys.executable, str(CHART / "files" / "kafka-roundtrip.py")], capture_output=True, text=True,
                            timeout=120, env=env, cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok: every pipeline topic exists" in result.stdout and "ok: produce-consume round trip" in result.stdout


def _probe(port: int, path: str) -> tuple[int, dict]:
    import json
    import urllib.error

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


#: readiness checks each service registers (services/common/health.py)
READY_CHECKS = {
    "ingest": {"kafka", "cameras_file", "deployments"},
    "detect": {"kafka", "partitions_assigned", "deployments"},
    "embed": {"kafka", "partitions_assigned", "deployments"},
    "matcher": {"kafka", "partitions_assigned", "watchlist", "deployments"},
    "dispatch": {"kafka", "partitions_assigned", "deployments"},
    "review": {"alert_feed", "transit_key", "evidence_sweeper"},
    "deployment-events": {"deployments_read"},
}


def test_every_service_answers_livez_and_readyz_with_named_checks(live):
    for service in SERVICES:
        if service in live["failed"]:
            continue
        port = live["ports"][service]
        deadline = time.monotonic() + 30
        while _probe(port, "/readyz")[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        status, body = _probe(port, "/readyz")
        assert status == 200 and body["status"] == "ok", (service, body)
        assert READY_CHECKS[service] <= set(body["checks"]), (service, body)
        status, body = _probe(port, "/livez")
        assert status == 200 and body["checks"], (service, body)


def test_dispatch_exports_its_consumer_lag(live):
    if "dispatch" in live["failed"]:
        pytest.skip(f"dispatch did not run: {live['failed']['dispatch']}")
    with urllib.request.urlopen(f"http://127.0.0.1:{live['ports']['dispatch']}/metrics", timeout=3) as response:
        text = response.read().decode()
    lags = [s for f in text_string_to_metric_families(text) for s in f.samples
            if s.name == "lfr_consumer_lag_messages" and s.labels.get("service") == "dispatch"]
    assert {s.labels["topic"] for s in lags} >= {"lfr.matches.v1"}
