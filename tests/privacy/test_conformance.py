"""Privacy conformance: run the pipeline with strangers and listed people, dead-letter a corrupt
face, then read every store (`lfr privacy audit`) and find no stranger's frame, chip or
embedding anywhere outside the pipeline's biometric topics.

On the embedded broker (Tansu, memory storage) retention is not enforced at all, so the test
checks the biometric topics' settings (the same verdict `lfr topics verify` gives on a real
Kafka) rather than their deletion, and says so.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np
import pytest

from services.common.envelope import decode, encode
from services.tools.demo.cast import choose_cast
from services.tools.demo.deployment import open_deployment
from services.tools.demo.pipeline import Pipeline
from services.tools.demo.run import DEPLOYMENT, DemoOptions, crowd_camera, enrol
from services.engine.face import LIVE_BOUNDS, align_face, assess_quality, decode_image
from services.engine.face.evaluate import list_identities, nearest_to_centre
from services.engine.face.models import default_cache_dir
from services.pipeline.ingest.cameras import save_cameras
from services.governance.privacy.audit import AuditOptions, read_whole_topic, run_audit
from services.governance.privacy.payload import PAYLOAD_HEADER, WITHHELD
from services.governance.watchlist.thresholds import DEFAULT_THRESHOLD
from tests.kafka_helpers import NoValidation, produce, wait_until

pytestmark = pytest.mark.slow

CHANGELOG = "lfr-dispatch-open-alerts-changelog"


def _stranger_embeddings(lfw_dir: Path, names: list[str], detector, embedder) -> np.ndarray:
    identities = list_identities(lfw_dir)
    vectors = []
    for name in names:
        image = decode_image(identities[name][0].read_bytes())
        face = nearest_to_centre(detector.detect(image), image.shape)
        if face is not None:
            chip = align_face(image, face.landmarks)
            if assess_quality(face, chip, LIVE_BOUNDS).accepted:
                vectors.append(embedder.embed(chip[None])[0])
    return np.stack(vectors)


def _records(bootstrap: str, topic: str) -> list:
    return read_whole_topic({"bootstrap.servers": bootstrap}, topic, 20)


def test_no_stranger_data_outside_the_biometric_topics(lfw_dir, tmp_path, face_engine):
    options = DemoOptions(fps=3.0, seed=5, workdir=tmp_path / "run")
    cast = choose_cast(lfw_dir, *face_engine, watchlisted=2, strangers=5, seed=options.seed, deployment=DEPLOYMENT,
                       recognisable_margin=0.08)
    strangers = _stranger_embeddings(lfw_dir, cast.strangers, *face_engine)
    workdir = options.workdir
    pipeline = Pipeline(workdir, extra_env={"LFR_QDRANT_PATH": str(workdir / "qdrant"), "LFR_STATE_DIR": str(workdir / "dispatch")})
    pipeline.start_broker()
    bootstrap = pipeline.bootstrap
    stopped = {}
    try:
        enrol(pipeline, cast, *face_engine)
        open_deployment(bootstrap, DEPLOYMENT, ["cam-1"])
        services = ("detect", "embed", "matcher", "dispatch")
        for service in services:
            pipeline.start(service)
        pipeline.wait_ready(services)
        save_cameras(pipeline.cameras_file, {"cam-1": crowd_camera(cast, lfw_dir, options, camera_id="cam-1")})
        pipeline.start("ingest")

        # A stranger's face reached the embeddings topic, and an alert for a listed person was raised.
        def stranger_record():
            for record in _records(bootstrap, "lfr.embeddings.v1"):
                data = decode(record.value).data
                vector = np.frombuffer(data["embedding"]["data"], "<f4")
                if float(np.max(strangers @ vector)) >= DEFAULT_THRESHOLD:
                    return data
            return None

        found: dict = {}

        def have_stranger() -> bool:
            found["face"] = stranger_record()
            return found["face"] is not None

        wait_until(have_stranger, 60, "a stranger's embedding", interval_s=2)
        wait_until(lambda: _records(bootstrap, "lfr.alerts.v3") != [], 60, "an alert", interval_s=2)

        # A corrupt face record (a stranger's real chip, face_index out of range) is dead-lettered by embed.
        corrupt = dict(found["face"]["face"], face_index=-1)
        produce(bootstrap, "lfr.faces.v1", [encode("lfr.faces.v1", corrupt, registry=NoValidation())], keys=[b"cam-1"])

        def dead_face():
            return [r for r in _records(bootstrap, "lfr.dlq.v1") if dict(r.headers).get("lfr_dlq_topic") == b"lfr.faces.v1"]

        wait_until(lambda: dead_face() != [], 30, "the corrupt face in the dead-letter topic", interval_s=1)
        for name in ("ingest", *services):
            stopped[name] = pipeline.stop(name)

        result = run_audit(AuditOptions(
            kafka_config={"bootstrap.servers": bootstrap},
            data_dirs=(workdir, default_cache_dir()),
            log_paths=tuple(sorted(workdir.glob("*.log"))),
            qdrant_paths=(workdir / "qdrant",),
            strangers=strangers,
            similarity=DEFAULT_THRESHOLD,
        ))
        dead = dead_face()
    finally:
        for name in list(pipeline.processes):
            stopped[name] = pipeline.stop(name)
        pipeline.broker.stop()
    summary = collections.Counter(f"{f['store'].split(':')[0]}:{f['store'].split(':')[1] if f['store'].startswith('topic') else '*'} "
                                  f"{f['kind']} {f['method']}" for f in result["findings"])
    print("privacy audit findings:", json.dumps(summary, indent=1))
    print("privacy audit checked:", json.dumps({k: v for k, v in result["checked"].items() if k != "retention"}, indent=1, default=str))
    assert all(code == 0 for code in stopped.values()), stopped

    checked = result["checked"]
    # The audit really read the stores it vouches for.
    assert checked["references"]["frames"] > 0 and checked["references"]["chips"] > 0 and checked["references"]["embeddings"] > 0
    assert checked["topics"]["lfr.dlq.v1"]["records"] >= 1 and checked["topics"][CHANGELOG]["records"] >= 1
    assert any(points > 0 for points in checked["index_collections"].values()), checked["index_collections"]
    assert len(checked["logs"]) >= 5 and checked["files"] > 0

    # 6. No stranger's frame, chip or embedding anywhere outside the pipeline's biometric topics.
    assert result["findings"] == []

    # 3. Every topic on the broker, the dispatcher's changelog included, is declared in topics.toml.
    assert {name for name, t in checked["topics"].items() if not t["declared"]} == set()

    # 1. The dead letter of a biometric record keeps its coordinates and reason, never its value.
    headers = {k: v.decode() for k, v in dead[0].headers}
    assert headers.get(PAYLOAD_HEADER) == WITHHELD and dead[0].value is None, headers
    assert headers["lfr_dlq_reason"] == "schema_invalid" and headers["lfr_dlq_offset"].isdigit()

    # 4. Embedded broker: the settings are checked, not the deletion, and the verdict says why.
    verdict = checked["retention"]
    assert verdict["broker"] == "embedded-tansu" and not verdict["ok"]
    print("embedded broker: biometric topics' retention settings checked, not their deletion:", verdict["notes"][0])
    assert {t["topic"] for t in verdict["topics"]} >= {"lfr.frames.v1", "lfr.faces.v1", "lfr.embeddings.v1"}
    for topic in verdict["topics"]:
        assert topic["settings_ok"], (topic["topic"], topic["problems"])
    # Every service ran the same check at start and said so in its log.
    for service in ("ingest", "detect", "embed", "matcher", "dispatch"):
        assert "biometric data can outlive the retention promise" in (workdir / f"{service}.log").read_text(), service
