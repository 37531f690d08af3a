"""Ingest captures only for cameras of an active deployment inside its window, stops within 1 s
of the end, and a restarted ingest rebuilds the same decisions from the topic."""

from __future__ import annotations

import time

import cv2
import numpy as np
from prometheus_client import REGISTRY

from services.common.envelope import decode
from services.common.settings import IngestSettings, load_settings
from services.governance.deployments.record import Transition
from services.pipeline.ingest.cameras import CameraConfig, save_cameras
from services.pipeline.ingest.service import IngestService
from tests.deployment_helpers import active_deployment
from tests.kafka_helpers import create_topics, running_in_thread, unique, wait_until


def not_captured(camera: str, reason: str) -> float:
    return REGISTRY.get_sample_value("lfr_frames_not_captured_total", {"camera": camera, "reason": reason}) or 0.0


def test_only_active_deployments_capture_end_stops_within_a_second_and_restart_keeps_it(
    broker, kafka_env, deployments, monkeypatch, tmp_path, reader
):
    folder = tmp_path / "imgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "0.png"), np.full((96, 128, 3), 90, np.uint8))
    topic = unique("frames")
    create_topics(broker.bootstrap_servers, topic)
    monkeypatch.setenv("LFR_OUTPUT_TOPIC", topic)
    monkeypatch.setenv("LFR_CAMERAS_FILE", str(tmp_path / "cameras.json"))
    monkeypatch.setenv("LFR_CONFIG_POLL_INTERVAL_S", "0.2")
    now = int(time.time() * 1000)
    live = active_deployment("dep-live", ["cam-live"])
    deployments(
        live,
        active_deployment("dep-draft", ["cam-draft"], state="draft"),
        active_deployment("dep-ended", ["cam-ended"], state="ended"),
        active_deployment("dep-later", ["cam-later"], start_ms=now + 3_600_000),
        active_deployment("dep-other", ["cam-other"]),
    )
    cameras = {
        name: CameraConfig(id=name, deployment_id=deployment, source=f"folder:{folder}", fps=20)
        for name, deployment in (("cam-live", "dep-live"), ("cam-draft", "dep-draft"), ("cam-ended", "dep-ended"),
                                 ("cam-later", "dep-later"), ("cam-unlisted", "dep-live"), ("cam-nowhere", "dep-none"))
    }
    save_cameras(tmp_path / "cameras.json", cameras)
    frames = reader(topic)

    def cameras_seen(since_ms: int = 0) -> set[str]:
        return {decode(r.value()).data["camera_id"] for r in frames.poll() if decode(r.value()).data["captured_at_ms"] > since_ms}

    with running_in_thread(IngestService(load_settings(IngestSettings))):
        wait_until(lambda: "cam-live" in cameras_seen(), 20, "frames of the active deployment's camera")
        wait_until(lambda: not_captured("cam-unlisted", "camera_not_in_deployment") > 0, 10, "refusals counted")
        assert not_captured("cam-draft", "not_active") > 0 and not_captured("cam-ended", "not_active") > 0
        assert not_captured("cam-later", "outside_window") > 0 and not_captured("cam-nowhere", "unknown_deployment") > 0
        # End the deployment mid-run: no frame captured more than 1 s later leaves ingest.
        ended = live.next(state="ended", history=(*live.history, Transition("ended", "PS creator", int(time.time() * 1000))))
        deployments(ended)
        ended_at = int(time.time() * 1000)
        time.sleep(2.5)
        assert cameras_seen(ended_at + 1000) == set()
        assert cameras_seen() == {"cam-live"}

    # A restarted ingest reads the same state from the topic: still nothing from those cameras,
    # while a camera of another active deployment captures.
    cameras["cam-other"] = CameraConfig(id="cam-other", deployment_id="dep-other", source=f"folder:{folder}", fps=20)
    save_cameras(tmp_path / "cameras.json", cameras)
    restarted_at = int(time.time() * 1000)
    with running_in_thread(IngestService(load_settings(IngestSettings))):
        wait_until(lambda: "cam-other" in cameras_seen(restarted_at), 20, "frames of the other active deployment")
        time.sleep(1.0)
        assert cameras_seen(restarted_at) == {"cam-other"}
