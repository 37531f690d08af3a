"""All five services as processes on the embedded broker, fed by the synthetic crowd camera."""

from __future__ import annotations

import collections
import time

import cv2
import numpy as np
import pytest

from services.common.envelope import decode, encode
from services.common.jsonevents import decode_record
from services.tools.demo.cast import choose_cast
from services.tools.demo.pipeline import Pipeline
from services.tools.demo.run import DEPLOYMENT, DemoOptions, TopicTail, crowd_camera, enrol
from services.tools.demo.score import summarise
from services.pipeline.ingest.cameras import CameraConfig, save_cameras
from services.tools.demo.deployment import open_deployment
from tests.deployment_helpers import active_deployment, publish_deployment
from tests.kafka_helpers import produce, wait_until

REPLAY_SEQ = {"frames": 10**7, "faces": 10**7 + 1, "embeddings": 10**7 + 2, "matches": 10**7 + 3}


def deployment_dead(records: list) -> list[dict[str, str]]:
    headers = [{k: v.decode() for k, v in r.headers()} for r in records]
    return [h for h in headers if h["lfr_dlq_topic"] == "lfr.deployments.v1"]


def replay(bootstrap: str, topic: str, record) -> int:
    """The record again, captured now with a marker seq: what a late record of the deployment looks like."""
    envelope = decode(record.value())
    data = envelope.data
    frame = data if topic == "frames" else data["frame"] if topic == "faces" else data["face"]["frame"]
    frame["captured_at_ms"], frame["seq"] = int(time.time() * 1000), REPLAY_SEQ[topic]
    produce(bootstrap, f"lfr.{topic}.v1", [encode(envelope.schema, data)], keys=[record.key()])
    return REPLAY_SEQ[topic]

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
    stages = ("detect", "embed", "matcher", "dispatch")
    try:
        enrol(pipeline, cast, *face_engine)
        cam1 = crowd_camera(cast, lfw_dir, options)
        cam2 = CameraConfig(id="cam-2", deployment_id=DEPLOYMENT, source=f"folder:{folder}", fps=2.0)
        # A camera of a draft deployment, in the same cameras file: it must never capture.
        cam3 = CameraConfig(id="cam-3", deployment_id="draft-van", source=f"folder:{folder}", fps=2.0)
        publish_deployment(pipeline.bootstrap, "lfr.deployments.v1", active_deployment("draft-van", [cam3.id], state="draft"))
        deployment = open_deployment(pipeline.bootstrap, DEPLOYMENT, [cam1.id, cam2.id], signing_env=pipeline.signing_env,
                                     authoriser=pipeline.authoriser)
        assert deployment.states == ["draft", "authorised", "active"]
        for service in stages:
            pipeline.start(service)
        pipeline.wait_ready(stages)
        save_cameras(pipeline.cameras_file, {cam1.id: cam1, cam2.id: cam2, cam3.id: cam3})
        pipeline.start("ingest")
        alerts, frames, dlq = (TopicTail(pipeline.bootstrap, t) for t in ("lfr.alerts.v3", "lfr.frames.v1", "lfr.dlq.v1"))
        faces, embeddings, matches = (TopicTail(pipeline.bootstrap, t) for t in ("lfr.faces.v1", "lfr.embeddings.v1", "lfr.matches.v1"))
        tails += [alerts, frames, dlq, faces, embeddings, matches]
        alert_records, frame_meta, dead, face_meta = [], [], [], []
        latest: dict[str, object] = {}  # the latest raw record of each topic (replayed after the end)
        seqs: dict[str, list[int]] = {"embeddings": [], "matches": []}

        def pump() -> None:
            alert_records.extend(alerts.poll(0.1))
            new_frames = frames.poll(0.1)
            frame_meta.extend(decode(r.value()).data | {"image": None} for r in new_frames)
            dead.extend(dlq.poll(0.05))
            new_faces = faces.poll(0.05)
            face_meta.extend(decode(r.value()).data["frame"] for r in new_faces)
            new_embeddings, new_matches = embeddings.poll(0.05), matches.poll(0.05)
            seqs["embeddings"] += [decode(r.value()).data["face"]["frame"]["seq"] for r in new_embeddings]
            seqs["matches"] += [decode(r.value()).data["face"]["frame"]["seq"] for r in new_matches]
            for topic, records in (("frames", new_frames), ("faces", new_faces), ("embeddings", new_embeddings), ("matches", new_matches)):
                if records:
                    latest[topic] = records[-1]

        wait_until(lambda: pump() or any(f["camera_id"] == "cam-2" for f in frame_meta), 30, "frames from both cameras")

        # A corrupt frame is dead-lettered and the camera keeps flowing. Detect may skip a frame
        # unread under its stale and superseded policies (a loaded machine puts it behind the
        # camera), so a corrupt frame is sent again, freshly stamped, until one is decoded.
        corrupt_sent: list[int] = []

        def send_corrupt() -> None:
            corrupt_sent.append(int(time.time() * 1000))
            corrupt = {"camera_id": cam1.id, "deployment_id": DEPLOYMENT, "seq": 10**6 + len(corrupt_sent), "captured_at_ms": corrupt_sent[-1],
                       "width": 1280, "height": 720, "media_type": "image/jpeg", "image": b"\xff\xd8\xff\xe0 not really a jpeg"}
            produce(pipeline.bootstrap, "lfr.frames.v1", [encode("lfr.frames.v1", corrupt)], keys=[cam1.id.encode()])

        def corrupt_dead_lettered() -> bool:
            pump()
            if not dead and int(time.time() * 1000) - corrupt_sent[-1] > 3_000:
                send_corrupt()
            return bool(dead)

        send_corrupt()
        wait_until(corrupt_dead_lettered, 60, "a corrupt frame in the dead-letter topic")
        corrupt_at = corrupt_sent[-1]
        headers = {k: v.decode() for k, v in dead[0].headers()}
        assert headers["lfr_dlq_topic"] == "lfr.frames.v1" and headers["lfr_dlq_service"] == "detect"
        assert headers["lfr_dlq_error_class"] == "FrameRejected"
        wait_until(lambda: pump() or any(f["camera_id"] == cam1.id and f["captured_at_ms"] > corrupt_at for f in face_meta), 30,
                   "faces from frames captured after the corrupt one")

        # Every stage restarts mid-deployment: each rebuilds the deployment state from the topic
        # and keeps enforcing it (the dispatcher's alert state survives too).
        for service in stages:
            assert pipeline.stop(service) == 0, service
        for service in stages:
            pipeline.start(service)
        pipeline.wait_ready(stages)
        restarted_at = int(time.time() * 1000)
        wait_until(lambda: pump() or any(f["camera_id"] == cam1.id and f["captured_at_ms"] > restarted_at for f in face_meta), 60,
                   "faces after the restart")

        # Removing a camera at run time stops its frames.
        save_cameras(pipeline.cameras_file, {cam1.id: cam1})
        removed_at = int(time.time() * 1000)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            pump()
        late = [f for f in frame_meta if f["camera_id"] == "cam-2" and f["captured_at_ms"] > removed_at + 2_500]
        assert late == [], f"{len(late)} frames from the removed camera"

        # A malformed deployment record is dead-lettered by every service with its reason, and
        # each keeps the last valid state: capture goes on unchanged.
        bad_at = int(time.time() * 1000)
        produce(pipeline.bootstrap, "lfr.deployments.v1", [b'{"not": "an envelope"}'], keys=[DEPLOYMENT.encode()])
        wait_until(lambda: pump() or {h["lfr_dlq_service"] for h in deployment_dead(dead)} >= {"ingest", *stages}, 30,
                   "every service to dead-letter the malformed deployment record")
        wait_until(lambda: pump() or any(f["camera_id"] == cam1.id and f["captured_at_ms"] > bad_at + 500 for f in frame_meta), 20,
                   "frames after the malformed record")

        # Ending the deployment stops capture within 1 s, and nothing after it raises an alert:
        # records of the ended deployment replayed into every stage are dropped there.
        wait_until(lambda: pump() or len(latest) == 4, 30, "a record on every stage topic")
        deployment.end()
        ended_at = int(time.time() * 1000)
        replayed = {topic: replay(pipeline.bootstrap, topic, record) for topic, record in latest.items()}
        quiet = time.monotonic()
        while time.monotonic() - quiet < 5:
            before = len(alert_records)
            pump()
            if len(alert_records) > before:
                quiet = time.monotonic()
        assert pipeline.stop("ingest") == 0
    finally:
        for tail in tails:
            tail.close()
        codes = pipeline.stop_all()
    assert all(code == 0 for code in codes.values()), codes

    assert not [f for f in frame_meta if f["camera_id"] == cam3.id], "a camera of a draft deployment captured"
    late_frames = [f for f in frame_meta if f["captured_at_ms"] > ended_at + 1000 and f["seq"] < 10**6]
    assert late_frames == [], f"{len(late_frames)} frames captured more than 1 s after the end"
    late_alerts = [a for a in (decode_record(r.value(), r.headers()).data for r in alert_records) if a["last_seen_ms"] > ended_at]
    assert late_alerts == [], "an alert for a sighting after the end"
    assert set(replayed) == {"frames", "faces", "embeddings", "matches"}
    assert REPLAY_SEQ["frames"] not in {f["seq"] for f in face_meta}, "detect processed a frame of the ended deployment"
    assert REPLAY_SEQ["faces"] not in seqs["embeddings"], "embed processed a face of the ended deployment"
    assert REPLAY_SEQ["embeddings"] not in seqs["matches"], "the matcher matched an embedding of the ended deployment"

    events = [decode_record(r.value(), r.headers()).data for r in alert_records]
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
