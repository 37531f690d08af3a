"""Ingest: cameras file, credential redaction, the drop-oldest policy, reconnects, live config."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from prometheus_client import REGISTRY

from services.common.envelope import decode
from services.common.settings import IngestSettings, load_settings
from services.pipeline.ingest.cameras import CameraConfig, load_cameras, redact, save_cameras
from services.pipeline.ingest.service import CameraWorker, IngestService, _Frame
from services.governance.deployments.policy import DeploymentPolicy
from tests.deployment_helpers import active_deployment
from tests.kafka_helpers import create_topics, running_in_thread, unique, wait_until


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_cameras_file_round_trip_and_validation(tmp_path):
    path = tmp_path / "cameras.json"
    cam = CameraConfig(id="north-1", deployment_id="van-1", source="rtsp://user:pw@10.1.2.3:554/s1", fps=12.5)
    save_cameras(path, {cam.id: cam})
    assert load_cameras(path) == {"north-1": cam}
    with pytest.raises(ValueError, match="fps"):
        CameraConfig(id="x", deployment_id="d", source="a.mp4", fps=500)
    with pytest.raises(ValueError, match="ids"):
        CameraConfig(id="bad id!", deployment_id="d", source="a.mp4")
    path.write_text(json.dumps({"cameras": [{"id": "a", "deployment_id": "d", "source": "x"}] * 2}))
    with pytest.raises(ValueError, match="twice"):
        load_cameras(path)


def test_stream_credentials_are_redacted():
    assert redact("rtsp://admin:s3cret@10.0.0.5:554/stream1") == "rtsp://***@10.0.0.5:554/stream1"
    assert "s3cret" not in redact("http://u:s3cret@cam.local/mjpeg")
    assert redact("/videos/a.mp4") == "/videos/a.mp4"


def test_drop_oldest_policy_counts_every_drop(tmp_path, monkeypatch):
    monkeypatch.setenv("LFR_FRAME_QUEUE_SIZE", "2")
    worker = CameraWorker(CameraConfig(id="q-cam", deployment_id="d", source="folder:/nowhere"), load_settings(IngestSettings))
    before = _metric("lfr_frames_dropped_total", camera="q-cam", reason="queue_full")
    for seq in range(5):
        worker._enqueue(_Frame(worker.camera, seq, 0, 1, 1, b""))
    assert [f.seq for f in worker.queue] == [3, 4]
    assert _metric("lfr_frames_dropped_total", camera="q-cam", reason="queue_full") == before + 3


def test_a_started_camera_exports_its_drop_counters_at_zero(tmp_path):
    """Alert rules read rate(lfr_frames_dropped_total): a camera that drops nothing reads 0, not "no data"."""
    worker = CameraWorker(CameraConfig(id="zero-cam", deployment_id="d", source="folder:/nowhere"), load_settings(IngestSettings))
    assert REGISTRY.get_sample_value("lfr_frames_dropped_total", {"camera": "zero-cam", "reason": "queue_full"}) is None
    worker.start()
    try:
        for reason in ("queue_full", "too_old"):
            assert REGISTRY.get_sample_value("lfr_frames_dropped_total", {"camera": "zero-cam", "reason": reason}) == 0.0
    finally:
        worker.stop()


def test_ingest_applies_camera_changes_live_and_reconnects(broker, kafka_env, deployments, monkeypatch, tmp_path, reader):
    deployments(active_deployment("d", ["folder-cam", "broken"]))
    topic = unique("frames")
    create_topics(broker.bootstrap_servers, topic)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((120, 160, 3), 40 * i, np.uint8))
    cameras = tmp_path / "cameras.json"
    monkeypatch.setenv("LFR_CAMERAS_FILE", str(cameras))
    monkeypatch.setenv("LFR_OUTPUT_TOPIC", topic)
    monkeypatch.setenv("LFR_CONFIG_POLL_INTERVAL_S", "0.2")
    monkeypatch.setenv("LFR_RECONNECT_BACKOFF_INITIAL_S", "0.1")
    service = IngestService(load_settings(IngestSettings))
    out = reader(topic)
    broken = CameraConfig(id="broken", deployment_id="d", source=str(tmp_path / "missing.mp4"))
    with running_in_thread(service):
        save_cameras(cameras, {"folder-cam": CameraConfig(id="folder-cam", deployment_id="d", source=f"folder:{folder}", fps=20), "broken": broken})
        out.read_until(5)
        wait_until(lambda: _metric("lfr_camera_reconnects_total", camera="broken") >= 2, 15, "reconnect attempts")
        save_cameras(cameras, {"broken": broken})  # remove the folder camera at run time
        wait_until(lambda: "folder-cam" not in service.workers, 10, "the camera to stop")
        seen = len(out.poll())
        wait_until(lambda: len(out.poll()) == seen, 3, "no more frames")
    frames = [decode(r.value()).data for r in out.poll()]
    assert {f["camera_id"] for f in frames} == {"folder-cam"}
    assert [f["seq"] for f in frames] == list(range(len(frames)))
    assert all(f["media_type"] == "image/jpeg" and f["width"] == 160 for f in frames)


def test_oversized_frame_is_dropped_and_counted_not_fatal(broker, kafka_env, monkeypatch, tmp_path):
    """Regression: a frame over the producer's message.max.bytes raised out of the sender loop."""
    monkeypatch.setenv("LFR_CAMERAS_FILE", str(tmp_path / "none.json"))
    service = IngestService(load_settings(IngestSettings))
    service.policy = DeploymentPolicy({"d": active_deployment("d", ["huge-cam"])})
    camera = CameraConfig(id="huge-cam", deployment_id="d", source="folder:/nowhere")
    worker = CameraWorker(camera, service.settings)
    service.workers[camera.id] = worker
    before = _metric("lfr_frames_dropped_total", camera="huge-cam", reason="unsendable")
    worker._enqueue(_Frame(camera, 0, int(__import__("time").time() * 1000), 8000, 8000, b"\xff" * (9 * 1024 * 1024)))
    assert service._send_some() is True
    assert _metric("lfr_frames_dropped_total", camera="huge-cam", reason="unsendable") == before + 1


def test_removed_camera_leaves_no_staleness_series(monkeypatch, tmp_path):
    """Regression: a removed camera kept its last-frame gauge, so the stale-camera alert fired forever."""
    worker = CameraWorker(CameraConfig(id="gone-cam", deployment_id="d", source="folder:/nowhere"), load_settings(IngestSettings))
    worker._encode(np.zeros((64, 64, 3), np.uint8), 1_000)
    assert REGISTRY.get_sample_value("lfr_camera_last_frame_timestamp_seconds", {"camera": "gone-cam"}) == 1.0
    worker.stop()
    assert REGISTRY.get_sample_value("lfr_camera_last_frame_timestamp_seconds", {"camera": "gone-cam"}) is None


def test_video_file_source_reads_and_loops(tmp_path):
    """A video file goes through OpenCV's FFmpeg backend, like an RTSP/HTTP stream, and loops."""
    from services.pipeline.ingest.sources import SourceError, VideoSource, open_source

    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    for i in range(3):
        writer.write(np.full((120, 160, 3), 60 * i, np.uint8))
    writer.release()
    source = open_source(CameraConfig(id="v", deployment_id="d", source=str(path)))
    assert isinstance(source, VideoSource) and not source.live
    frames = [source.read() for _ in range(5)]  # 3 frames, then it starts again
    source.close()
    assert all(f is not None and f.shape == (120, 160, 3) for f in frames)
    assert abs(int(frames[3].mean()) - int(frames[0].mean())) < 5
    with pytest.raises(SourceError, match="cannot open"):
        VideoSource(str(tmp_path / "missing.mp4"))



def test_a_jpeg_folder_is_forwarded_without_decoding_and_other_files_are_encoded(tmp_path):
    """JPEG files within the camera's size go out byte for byte (no decode and re-encode: 4-6 ms of
    ingest CPU per frame); PNGs, oversize JPEGs and JPEGs with EXIF (which may rotate) are decoded,
    scaled and encoded as before."""
    import cv2
    import numpy as np

    from services.pipeline.ingest.sources import EncodedFrame, FolderSource

    rng = np.random.default_rng(1)
    small = cv2.imencode(".jpg", rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))[1].tobytes()
    large = cv2.imencode(".jpg", rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))[1].tobytes()
    exif = small[:2] + b"\xff\xe1\x00\x10Exif\x00\x00" + b"\x00" * 8 + small[2:]
    (tmp_path / "a.jpg").write_bytes(small)
    (tmp_path / "b.jpg").write_bytes(large)
    (tmp_path / "c.png").write_bytes(cv2.imencode(".png", rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))[1].tobytes())
    (tmp_path / "d.jpg").write_bytes(exif)
    source = FolderSource(tmp_path)
    got = [source.read_encoded(100, 100) for _ in range(4)]
    assert got[0] == EncodedFrame(small, 64, 48)
    assert [type(g) for g in got[1:]] == [np.ndarray] * 3  # too large for 100x100, a PNG, EXIF
    worker = CameraWorker(CameraConfig(id="fwd-cam", deployment_id="d", source=f"folder:{tmp_path}", max_width=100, max_height=100),
                          load_settings(IngestSettings))
    forwarded = worker._forward(got[0], 1)
    assert (forwarded.jpeg, forwarded.width, forwarded.height) == (small, 64, 48)
    scaled = worker._encode(got[1], 2)
    assert (scaled.width, scaled.height) == (100, 75) and scaled.jpeg != large
