"""All five services as processes on the embedded broker, fed by the synthetic crowd camera."""

from __future__ import annotations

import collections
import time

import cv2
import numpy as np
import pytest

from services.common.envelope import decode, encode
from services.demo.cast import choose_cast
from services.demo.pipeline import Pipeline
from services.demo.run import DEPLOYMENT, DemoOptions, TopicTail, crowd_camera, enrol
from services.demo.score import summarise
from services.ingest.cameras import CameraConfig, save_cameras
from tests.kafka_helpers import produce, wait_until

pytestmark = pytest.mark.slow


def test_crowd_alerts_restart_dead_letters_and_camera_removal(lfw_dir, tmp_path, face_engine):
    options = DemoOptions(fps=3.0, seed=11, workdir=tmp_path / "run")
    cast = choose_cast(lfw_dir, *face_engine, watchlisted=3, strangers=6, seed=options.seed, deployment=DEPLOYMENT, recognisable_margin=0.08)
    assert len(cast.watchlist) == 3 and len(cast.strangers) == 6
    # A second, face-free camera: generated street images in a folder (never the data set).
    folder = tmp_path / "cam2"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.jpg"), np.random.default_rng(i).integers(0, 255, (240, 320, 3), dtype=np.uint8))

    pipeline = Pipeline(options.workdir)
    pipeline.start_broker()
    tails: list[TopicTail] = []
    try:
        enrol(pipeline, cast, *face_engine)
        for service in ("detect", "embed", "matcher", "dispatch"):
            pipeline.start(service)
        pipeline.wait_ready(("detect", "embed", "matcher", "dispatch"))
        cam1 = crowd_camera(cast, lfw_dir, options)
        cam2 = CameraConfig(id="cam-2", deployment_id=DEPLOYMENT, source=f"folder:{folder}", fps=2.0)
        save_cameras(pipeline.cameras_file, {cam1.id: cam1, cam2.id: cam2})
        pipeline.start("ingest")
        alerts, frames, dlq = (TopicTail(pipeline.bootstrap, t) for t in ("lfr.alerts.v1", "lfr.frames.v1", "lfr.dlq.v1"))
        faces = TopicTail(pipeline.bootstrap, "lfr.faces.v1")
        tails += [alerts, frames, dlq, faces]
        alert_records, frame_meta, dead, face_meta = [], [], [], []

        def pump() -> None:
            alert_records.extend(alerts.poll(0.1))
            frame_meta.extend(decode(r.value()).data | {"image": None} for r in frames.poll(0.1))
            dead.extend(dlq.poll(0.05))
            face_meta.extend(decode(r.value()).data["frame"] for r in faces.poll(0.05))

        wait_until(lambda: pump() or any(f["camera_id"] == "cam-2" for f in frame_meta), 30, "frames from both cameras")

        # A corrupt frame is dead-lettered and the camera keeps flowing.
        corrupt_at = int(time.time() * 1000)
        corrupt = {"camera_id": cam1.id, "deployment_id": DEPLOYMENT, "seq": 10**6, "captured_at_ms": corrupt_at, "width": 1280,
                   "height": 720, "media_type": "image/jpeg", "image": b"\xff\xd8\xff\xe0 not really a jpeg"}
        produce(pipeline.bootstrap, "lfr.frames.v1", [encode("lfr.frames.v1", corrupt)], keys=[cam1.id.encode()])
        wait_until(lambda: pump() or dead, 30, "the corrupt frame in the dead-letter topic")
        headers = {k: v.decode() for k, v in dead[0].headers()}
        assert headers["lfr_dlq_topic"] == "lfr.frames.v1" and headers["lfr_dlq_service"] == "detect"
        assert headers["lfr_dlq_error_class"] == "FrameRejected"
        wait_until(lambda: pump() or any(f["camera_id"] == cam1.id and f["captured_at_ms"] > corrupt_at for f in face_meta), 30,
                   "faces from frames captured after the corrupt one")

        # The dispatcher stops and restarts mid-run; its state survives.
        assert pipeline.stop("dispatch") == 0
        pipeline.start("dispatch")
        pipeline.wait_ready(("dispatch",))

        # Removing a camera at run time stops its frames.
        save_cameras(pipeline.cameras_file, {cam1.id: cam1})
        removed_at = int(time.time() * 1000)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            pump()
        late = [f for f in frame_meta if f["camera_id"] == "cam-2" and f["captured_at_ms"] > removed_at + 2_500]
        assert late == [], f"{len(late)} frames from the removed camera"

        assert pipeline.stop("ingest") == 0
        quiet = time.monotonic()
        while time.monotonic() - quiet < 5:
            before = len(alert_records)
            pump()
            if len(alert_records) > before:
                quiet = time.monotonic()
    finally:
        for tail in tails:
            tail.close()
        codes = pipeline.stop_all()
    assert all(code == 0 for code in codes.values()), codes

    events = [decode(r.value()).data for r in alert_records]
    summary = summarise(events, pipeline.truth(), {name for name, _ in cast.watchlist}, len(frame_meta), len(face_meta))
    print("e2e summary:", summary)
    assert summary["subjects_shown"], "no watchlisted subject walked past"
    # Every watchlisted subject who walked past at >= 64 px raised an alert; no stranger did.
    assert summary["missed_subjects"] == []
    assert summary["false_alerts"] == 0
    # Exactly one alert per subject and camera (the cooldown spans the run), restart included.
    per_subject = collections.Counter((e["subject_id"], e["camera_id"]) for e in {e["alert_id"]: e for e in events}.values())
    assert all(count == 1 for count in per_subject.values()), per_subject
    ce_ids = [dict(r.headers())["ce_id"] for r in alert_records]
    assert len(ce_ids) == len(set(ce_ids)), "an alert event was raised twice"
