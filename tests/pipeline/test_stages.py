"""Detect and embed stages on synthetic crowd frames (real models, no broker)."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
from prometheus_client import REGISTRY

from services.common.envelope import decode, encode
from services.common.stage import Message
from services.detect.stage import DetectDeps, FrameRejected, process as detect
from services.embed.stage import ChipRejected, EmbedDeps, process as embed
from services.face import LIVE_BOUNDS, ImageLimits
from services.ingest.crowd import CrowdConfig, CrowdScene, cast_from_folder

CAST = ["Vladimir_Putin", "Hugo_Chavez", "Ariel_Sharon", "Hans_Blix"]


@pytest.fixture(scope="module")
def scene(lfw_dir):
    return CrowdScene(cast_from_folder(lfw_dir, CAST, 1), CrowdConfig(seed=3))


def frame_message(image: np.ndarray, seq: int = 0, captured_at_ms: int | None = None, jpeg: bytes | None = None) -> Message:
    data = {"camera_id": "cam-1", "deployment_id": "van-1", "seq": seq, "captured_at_ms": captured_at_ms or int(time.time() * 1000),
            "width": image.shape[1], "height": image.shape[0], "media_type": "image/jpeg",
            "image": jpeg if jpeg is not None else cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()}
    envelope = decode(encode("lfr.frames.v1", data))
    return Message(envelope.schema, envelope.data, topic="lfr.frames.v1")


def as_messages(outputs) -> list[Message]:
    return [Message(o.schema, decode(encode(o.schema, o.data)).data) for o in outputs]


def test_crowd_scene_is_deterministic_and_knows_the_truth(scene, lfw_dir):
    first, truth = scene.render(30)
    again, truth_again = CrowdScene(cast_from_folder(lfw_dir, CAST, 1), CrowdConfig(seed=3)).render(30)
    assert np.array_equal(first, again) and truth == truth_again
    other, _ = CrowdScene(cast_from_folder(lfw_dir, CAST, 1), CrowdConfig(seed=4)).render(30)
    assert not np.array_equal(first, other)
    assert first.shape == (720, 1280, 3)
    widths = [w.face_width for w in scene.walkers_until(600)]
    assert min(widths) >= 48 and max(widths) <= 160
    for face in truth:
        x1, y1, x2, y2 = face["box"]
        assert 0 <= x1 < x2 <= 1280 and 0 <= y1 < y2 <= 720


def test_detect_finds_the_walkers_and_emits_valid_faces(scene, face_engine):
    deps = DetectDeps(detector=face_engine[0], bounds=LIVE_BOUNDS, limits=ImageLimits())
    frames = [scene.render(seq) for seq in (20, 40, 60)]
    outputs = detect([frame_message(image, seq) for seq, (image, _) in zip((20, 40, 60), frames)], deps)
    expected = sum(1 for _, truth in frames for f in truth if f["face_width"] >= 64)
    assert expected > 0 and len(outputs) >= expected
    for output in outputs:
        encode(output.schema, output.data)  # valid lfr.faces.v1
        chip = cv2.imdecode(np.frombuffer(output.data["chip"]["data"], np.uint8), cv2.IMREAD_COLOR)
        assert chip.shape == (112, 112, 3) and output.key == "cam-1"


def test_detect_rejects_corrupt_and_mislabelled_frames(scene, face_engine):
    deps = DetectDeps(detector=face_engine[0], bounds=LIVE_BOUNDS, limits=ImageLimits())
    image, _ = scene.render(10)
    with pytest.raises(FrameRejected, match="camera cam-1 seq 0: JPEG without a frame header"):
        detect([frame_message(image, jpeg=b"\xff\xd8\xff\xe0garbage")], deps)
    small = cv2.resize(image, (640, 360))
    mislabelled = frame_message(image, jpeg=cv2.imencode(".jpg", small)[1].tobytes())
    with pytest.raises(FrameRejected, match="expected 1280x720"):
        detect([mislabelled], deps)


def test_detect_skips_stale_frames_and_counts_them(scene, face_engine):
    deps = DetectDeps(detector=face_engine[0], bounds=LIVE_BOUNDS, limits=ImageLimits(), max_frame_age_ms=1000)
    before = REGISTRY.get_sample_value("lfr_frames_skipped_total", {"reason": "stale"}) or 0
    image, _ = scene.render(40)
    assert detect([frame_message(image, captured_at_ms=int(time.time() * 1000) - 10_000)], deps) == []
    assert REGISTRY.get_sample_value("lfr_frames_skipped_total", {"reason": "stale"}) == before + 1


def test_embed_emits_normalised_vectors_with_model_and_evidence(scene, face_engine):
    detector, embedder = face_engine
    faces = detect([frame_message(scene.render(40)[0])], DetectDeps(detector=detector, bounds=LIVE_BOUNDS, limits=ImageLimits()))
    assert faces
    outputs = embed(as_messages(faces), EmbedDeps(embedder=embedder))
    assert len(outputs) == len(faces)
    for face, output in zip(faces, outputs):
        data = decode(encode(output.schema, output.data)).data
        vector = np.frombuffer(data["embedding"]["data"], "<f4")
        assert abs(float(np.linalg.norm(vector)) - 1) < 1e-3 and data["embedding"]["dim"] == 128
        assert data["model"] == {"name": embedder.identity.name, "sha256": embedder.identity.sha256}
        assert data["face"]["chip"]["data"] == face.data["chip"]["data"]


def test_embed_rejects_a_chip_that_is_not_an_aligned_face(scene, face_engine):
    detector, embedder = face_engine
    faces = as_messages(detect([frame_message(scene.render(40)[0])], DetectDeps(detector=detector, bounds=LIVE_BOUNDS, limits=ImageLimits())))
    bad = dict(faces[0].data)
    bad["chip"] = {"media_type": "image/png", "data": cv2.imencode(".png", np.zeros((50, 60, 3), np.uint8))[1].tobytes()}
    with pytest.raises(ChipRejected, match="60x50"):
        embed([Message(faces[0].schema, bad)], EmbedDeps(embedder=embedder))
