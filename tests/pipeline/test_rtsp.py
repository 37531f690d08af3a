"""Ingest against a real RTSP server (GStreamer's, started by the test) serving the synthetic crowd.

H.264 at 1920x1080 and 25 fps, H.265 and MJPEG at 960x540; each frame carries its clip index
(services/pipeline/ingest/testcamera.py), so what ingest received is scored against the crowd's truth.
The server is killed and restarted, and stalled (SIGSTOP), under a running ingest service.
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
from prometheus_client import REGISTRY

from services.common.envelope import decode
from services.common.settings import IngestSettings, load_settings
from services.engine.face.boxes import box_iou
from services.pipeline.ingest.cameras import CameraConfig, save_cameras
from services.pipeline.ingest.service import IngestService
from services.pipeline.ingest.sources import EncodedFrame, SourceError, StreamSource, expand_credentials, open_source
from services.pipeline.ingest.testcamera import RtspTestServer, read_stamp, render_clip, server_unavailable, stamp
from tests.deployment_helpers import active_deployment
from tests.kafka_helpers import create_topics, running_in_thread, unique, wait_until

CAST = ["Aaron_Eckhart", "Abba_Eban", "Aaron_Tippin"]


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture(scope="module")
def rtsp_server(lfw_dir, tmp_path_factory):
    reason = server_unavailable()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must have the RTSP server (.ci/run installs it): {reason}")
        pytest.skip(reason)
    cast = [name for name in CAST if (lfw_dir / name).is_dir()] or sorted(p.name for p in lfw_dir.iterdir())[:3]
    clip = render_clip(lfw_dir, cast, tmp_path_factory.mktemp("clip"), seconds=4, fps=25, width=1920, height=1080,
                       min_face_width=64, max_face_width=160)
    with RtspTestServer(clip) as server:
        yield server


def test_the_stamp_survives_scaling_and_jpeg():
    image = np.full((1080, 1920, 3), 90, np.uint8)
    stamp(image, 12345)
    small = cv2.resize(image, (640, 360), interpolation=cv2.INTER_AREA)
    decoded = cv2.imdecode(cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 70])[1], cv2.IMREAD_COLOR)
    assert read_stamp(image) == 12345 and read_stamp(decoded) == 12345
    assert read_stamp(np.full((360, 640, 3), 128, np.uint8)) is None


def test_h264_1080p_is_received_decoded_and_scored_against_truth(rtsp_server, face_engine):
    detector, _ = face_engine
    clip = rtsp_server.clip
    truth = clip.truth()
    source = StreamSource(rtsp_server.url("h264"), "rtsp-h264", 25, 1920, 1080)
    before = {name: _metric(name, camera="rtsp-h264") for name in ("lfr_camera_frames_received_total", "lfr_camera_frames_decoded_total")}
    try:
        assert source.codec == "h264"
        frames = [source.read() for _ in range(40)]
    finally:
        source.close()
    assert all(f is not None and f.shape == (1080, 1920, 3) for f in frames)
    indices = [read_stamp(f) for f in frames]
    assert None not in indices and all(0 <= i < clip.frames for i in indices)
    steps = [(b - a) % clip.frames for a, b in zip(indices, indices[1:], strict=False)]
    assert steps.count(1) >= 0.9 * len(steps), steps  # every frame of a 25 fps stream, in order
    assert _metric("lfr_camera_frames_received_total", camera="rtsp-h264") >= before["lfr_camera_frames_received_total"] + 40
    assert _metric("lfr_camera_frames_decoded_total", camera="rtsp-h264") >= before["lfr_camera_frames_decoded_total"] + 40
    assert _metric("lfr_camera_decode_seconds_count", camera="rtsp-h264") >= 40
    # Recall of faces of 64 px and more on what came through RTSP and H.264 (4 frames: CPU).
    found = total = 0
    for frame, index in list(zip(frames, indices, strict=True))[::10]:
        boxes = [d.box for d in detector.detect(frame)]
        for face in truth[index]:
            if face["face_width"] >= 64 and face["box"][0] > 0 and face["box"][2] < clip.width:
                total += 1
                found += any(box_iou(face["box"], box) >= 0.3 for box in boxes)
    assert total >= 3 and found / total >= 0.9, (found, total)


@pytest.mark.parametrize(("mount", "codec"), [("h265", "hevc"), ("mjpeg", "mjpeg")])
def test_h265_and_mjpeg_streams_are_read(rtsp_server, mount, codec):
    source = StreamSource(rtsp_server.url(mount), f"rtsp-{mount}", 25, 1920, 1080)
    try:
        assert source.codec == codec
        frames = [source.read() for _ in range(10)]
    finally:
        source.close()
    # RTP/JPEG carries sizes in multiples of 8 pixels: 540 lines arrive as 544.
    assert all(f is not None and f.shape[1] == 960 and f.shape[0] in (540, 544) for f in frames)
    assert all(read_stamp(f) is not None for f in frames)


def test_mjpeg_frames_are_forwarded_as_the_camera_encoded_them_never_decoded(rtsp_server):
    """Decode once at most: an MJPEG packet is a whole JPEG, passed on at 10 of 25 fps by the
    stream's timestamps; one larger than the camera's maximum size is decoded and scaled."""
    source = StreamSource(rtsp_server.url("mjpeg"), "rtsp-mjpeg-fwd", 10, 1920, 1080)
    try:
        frames = [source.read_encoded(1920, 1080) for _ in range(8)]
    finally:
        source.close()
    small = StreamSource(rtsp_server.url("mjpeg"), "rtsp-mjpeg-small", 10, 480, 272)
    try:
        scaled = small.read_encoded(480, 272)
    finally:
        small.close()
    assert all(isinstance(f, EncodedFrame) for f in frames)
    for frame in frames:
        image = cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape[:2] == (frame.height, frame.width) and frame.width == 960 and read_stamp(image) is not None
    assert _metric("lfr_camera_frames_forwarded_total", camera="rtsp-mjpeg-fwd") == 8
    assert _metric("lfr_camera_frames_decoded_total", camera="rtsp-mjpeg-fwd") == 0
    assert _metric("lfr_camera_frames_decoded_total", camera="rtsp-mjpeg-small") == 1  # too large: decoded and scaled
    assert isinstance(scaled, np.ndarray) and scaled.shape[1] <= 480 and scaled.shape[0] <= 272
    indices = [read_stamp(cv2.imdecode(np.frombuffer(f.jpeg, np.uint8), cv2.IMREAD_COLOR)) for f in frames]
    steps = [(b - a) % rtsp_server.clip.frames for a, b in zip(indices, indices[1:], strict=False)]
    assert set(steps) <= {2, 3}, steps


def test_the_analysed_rate_is_taken_from_the_stream_and_frames_are_scaled_in_the_decoder(rtsp_server):
    """10 of 25 frames per second, chosen by the stream's timestamps; scaled within max size."""
    source = StreamSource(rtsp_server.url("h264"), "rtsp-rate", 10, 1280, 720)
    try:
        frames = [source.read() for _ in range(12)]
    finally:
        source.close()
    assert all(f is not None and f.shape == (720, 1280, 3) for f in frames)
    indices = [read_stamp(f) for f in frames]
    steps = [(b - a) % rtsp_server.clip.frames for a, b in zip(indices, indices[1:], strict=False)]
    assert set(steps) <= {2, 3} and 2.3 <= sum(steps) / len(steps) <= 2.7, steps
    assert _metric("lfr_camera_frames_decoded_total", camera="rtsp-rate") >= 2 * len(frames)


def test_credentials_come_from_the_environment_and_never_appear_in_errors(monkeypatch, rtsp_server):
    monkeypatch.setenv("CAM_PASSWORD", "s3cret")
    assert expand_credentials("rtsp://admin:${CAM_PASSWORD}@10.0.0.5/s1") == "rtsp://admin:s3cret@10.0.0.5/s1"
    with pytest.raises(SourceError, match="CAM_USER"):
        expand_credentials("rtsp://${CAM_USER}:x@10.0.0.5/s1")
    closed = rtsp_server.url("h264").replace(str(rtsp_server.port), "1")  # nobody listens on port 1
    camera = CameraConfig(id="refused", deployment_id="d", source=closed.replace("rtsp://", "rtsp://admin:${CAM_PASSWORD}@"))
    with pytest.raises(SourceError) as error:
        open_source(camera, open_timeout_s=2)
    assert "s3cret" not in str(error.value) and "***@127.0.0.1" in str(error.value)


def test_ingest_survives_the_server_restarting_and_the_stream_stalling(broker, kafka_env, deployments, monkeypatch, tmp_path, reader, rtsp_server):
    camera_id = "rtsp-live"
    deployments(active_deployment("d", [camera_id]))
    topic = unique("frames")
    create_topics(broker.bootstrap_servers, topic)
    cameras = tmp_path / "cameras.json"
    for name, value in {"LFR_CAMERAS_FILE": str(cameras), "LFR_OUTPUT_TOPIC": topic, "LFR_CONFIG_POLL_INTERVAL_S": "0.2",
                        "LFR_RECONNECT_BACKOFF_INITIAL_S": "0.2", "LFR_RECONNECT_BACKOFF_MAX_S": "1", "LFR_STREAM_READ_TIMEOUT_S": "1.5",
                        "LFR_STREAM_OPEN_TIMEOUT_S": "2"}.items():
        monkeypatch.setenv(name, value)
    service = IngestService(load_settings(IngestSettings))
    out = reader(topic)

    def sent() -> float:
        return _metric("lfr_camera_frames_sent_total", camera=camera_id)

    def reconnects() -> float:
        return _metric("lfr_camera_reconnects_total", camera=camera_id)

    with running_in_thread(service):
        save_cameras(cameras, {camera_id: CameraConfig(id=camera_id, deployment_id="d", source=rtsp_server.url("h264"), fps=5)})
        wait_until(lambda: sent() >= 5, 60, "frames from the RTSP camera")
        before = reconnects()
        rtsp_server.restart()  # the camera reboots: connection dropped, then a new server
        wait_until(lambda: reconnects() > before, 30, "a reconnect after the restart")
        resumed = sent()
        wait_until(lambda: sent() >= resumed + 5, 60, "frames after the restart")
        before = reconnects()
        rtsp_server.pause()  # the stream stalls with its connection open
        try:
            wait_until(lambda: reconnects() >= before + 2, 30, "reconnects with backoff while stalled")
        finally:
            rtsp_server.resume()
        resumed = sent()
        wait_until(lambda: sent() >= resumed + 5, 60, "frames after the stall")
    frames = [decode(r.value()).data for r in out.read_until(int(sent()))]
    assert {f["camera_id"] for f in frames} == {camera_id}
    assert all((f["width"], f["height"]) == (1920, 1080) for f in frames)
    stamped = [read_stamp(cv2.imdecode(np.frombuffer(f["image"], np.uint8), cv2.IMREAD_COLOR)) for f in frames[-5:]]
    assert None not in stamped
    assert _metric("lfr_camera_frames_decoded_total", camera=camera_id) >= 4 * len(frames)  # 25 fps decoded, 5 analysed


def test_four_1080p_cameras_through_ingest(broker, kafka_env, deployments, monkeypatch, tmp_path, reader, rtsp_server):
    """A van's four cameras: four RTSP sessions of H.264 1080p at 25 fps, each analysed at 10 fps."""
    ids = [f"van-cam-{i}" for i in range(4)]
    deployments(active_deployment("d", ids))
    topic = unique("frames")
    create_topics(broker.bootstrap_servers, topic)
    cameras = tmp_path / "cameras.json"
    for name, value in {"LFR_CAMERAS_FILE": str(cameras), "LFR_OUTPUT_TOPIC": topic, "LFR_CONFIG_POLL_INTERVAL_S": "0.2"}.items():
        monkeypatch.setenv(name, value)
    service = IngestService(load_settings(IngestSettings))
    before = {i: (_metric("lfr_camera_frames_sent_total", camera=i), _metric("lfr_camera_frames_decoded_total", camera=i)) for i in ids}
    with running_in_thread(service):
        save_cameras(cameras, {i: CameraConfig(id=i, deployment_id="d", source=rtsp_server.url("h264"), fps=10) for i in ids})
        wait_until(lambda: all(_metric("lfr_camera_frames_sent_total", camera=i) >= before[i][0] + 20 for i in ids), 90, "20 frames from each camera")
    for i in ids:
        sent = _metric("lfr_camera_frames_sent_total", camera=i) - before[i][0]
        decoded = _metric("lfr_camera_frames_decoded_total", camera=i) - before[i][1]
        assert decoded >= 2 * sent, (i, decoded, sent)  # 25 fps decoded, 10 analysed
    frames = [decode(r.value()).data for r in reader(topic).read_until(80)]
    assert {f["camera_id"] for f in frames} == set(ids)
    assert all((f["width"], f["height"]) == (1920, 1080) for f in frames)
