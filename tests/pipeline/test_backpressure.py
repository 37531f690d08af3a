"""Back-pressure (aimd-detect-lag/v1): ingest lowers a camera's analysed rate while detect is behind.

The policy alone (pure), then the service against the real broker with a stand-in for detect:
a consumer in the detect group's place that processes 2 frames a second, then catches up.
"""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
from confluent_kafka import Consumer
from prometheus_client import REGISTRY

from services.common.settings import IngestSettings, load_settings
from services.pipeline.ingest.backpressure import BackpressureConfig, CameraRate, SentLog
from services.pipeline.ingest.cameras import CameraConfig, save_cameras
from services.pipeline.ingest.service import IngestService
from tests.deployment_helpers import active_deployment
from tests.kafka_helpers import create_topics, running_in_thread, unique, wait_until


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_the_rate_halves_while_detect_is_behind_holds_between_and_recovers_by_steps():
    rate = CameraRate(10.0, BackpressureConfig(max_lag_s=2.0, recover_lag_s=1.5, min_fps=1.0))
    assert [rate.update(3.0) for _ in range(5)] == [5.0, 2.5, 1.25, 1.0, 1.0]  # never below min_fps
    assert rate.update(1.8) == 1.0 and rate.update(None) == 1.0  # between the bounds, or no figure: hold
    assert [rate.update(0.2) for _ in range(10)] == [2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 10.0]
    slow_camera = CameraRate(0.5, BackpressureConfig(min_fps=1.0))
    assert slow_camera.update(9.0) == 0.5  # a camera slower than the floor is never slowed further


def test_shedding_keeps_an_even_cadence():
    rate = CameraRate(10.0)
    rate.rate = 2.5
    admitted = [i for i in range(40) if rate.admit()]
    assert len(admitted) == 10 and {b - a for a, b in zip(admitted, admitted[1:], strict=False)} == {4}
    rate.rate = 10.0
    assert all(rate.admit() for _ in range(20))


def test_the_backlog_is_the_age_of_the_oldest_frame_detect_has_not_committed():
    log = SentLog()
    for offset in range(10):
        log.add(0, offset, 1_000 + 100 * offset)
    log.add(1, 0, 1_000)
    assert log.backlog_age_s({0: 4, 1: 1}, now_ms=2_000) == {0: 0.6, 1: 0.0}  # offset 4 was captured at 1400
    assert log.backlog_age_s({0: None}, now_ms=2_000) == {0: None, 1: None}  # the group has committed nothing
    # The topic was recreated (an embedded broker restarted empty): offsets start again at 0.
    log.add(0, 0, 5_000)
    log.add(0, 1, 5_100)
    assert log.backlog_age_s({0: 1}, now_ms=5_500)[0] == 0.4


def test_ingest_sheds_frames_while_detect_is_behind_and_recovers_when_it_catches_up(broker, kafka_env, deployments, monkeypatch, tmp_path):
    camera_id = "bp-cam"
    deployments(active_deployment("d", [camera_id]))
    topic, group = unique("frames"), unique("detect")
    create_topics(broker.bootstrap_servers, topic, partitions=1)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.jpg"), np.full((90, 160, 3), 60 * i, np.uint8))
    cameras = tmp_path / "cameras.json"
    for name, value in {"LFR_CAMERAS_FILE": str(cameras), "LFR_OUTPUT_TOPIC": topic, "LFR_DETECT_GROUP_ID": group,
                        "LFR_CONFIG_POLL_INTERVAL_S": "0.2", "LFR_BACKPRESSURE_POLL_S": "0.5", "LFR_MAX_FRAME_AGE_MS": "60000"}.items():
        monkeypatch.setenv(name, value)
    service = IngestService(load_settings(IngestSettings))
    pace = {"per_frame_s": 0.5}  # the stand-in detect: 2 frames a second, committing each
    stop = threading.Event()
    consumer = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": group, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "session.timeout.ms": 6000})
    consumer.subscribe([topic])

    def slow_detect() -> None:
        while not stop.is_set():
            message = consumer.poll(0.2)
            if message is None or message.error():
                continue
            time.sleep(pace["per_frame_s"])
            consumer.commit(message, asynchronous=False)

    def backlog() -> float:
        return _metric("lfr_detect_backlog_seconds", partition="0")

    detect = threading.Thread(target=slow_detect, daemon=True)
    detect.start()
    try:
        with running_in_thread(service):
            save_cameras(cameras, {camera_id: CameraConfig(id=camera_id, deployment_id="d", source=f"folder:{folder}", fps=10)})
            wait_until(lambda: _metric("lfr_frames_sent_total", camera=camera_id) + _metric("lfr_camera_frames_sent_total", camera=camera_id) > 0,
                       30, "the first frames")
            wait_until(lambda: _metric("lfr_camera_analysed_fps", camera=camera_id) <= 2.5, 60, "the analysed rate to come down")
            shed = _metric("lfr_frames_shed_total", camera=camera_id)
            assert shed > 0
            # Sending at about detect's 2 fps, the backlog built before the rate came down drains
            # while detect is still slow (without back-pressure it grows by 8 frames a second).
            wait_until(lambda: backlog() < 3.0, 90, "the backlog to drain while detect is slow")
            assert _metric("lfr_frames_shed_total", camera=camera_id) > shed
            pace["per_frame_s"] = 0.0  # detect catches up
            wait_until(lambda: _metric("lfr_camera_analysed_fps", camera=camera_id) == 10, 60, "the full rate again")
            shed = _metric("lfr_frames_shed_total", camera=camera_id)
            sent = _metric("lfr_camera_frames_sent_total", camera=camera_id)
            wait_until(lambda: _metric("lfr_camera_frames_sent_total", camera=camera_id) >= sent + 20, 30, "frames at the full rate")
            assert _metric("lfr_frames_shed_total", camera=camera_id) == shed  # nothing shed once caught up
    finally:
        stop.set()
        detect.join(10)
        consumer.close()
