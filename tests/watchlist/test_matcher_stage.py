"""The matcher stage alone (no broker): thresholds, scoping, model identity. Real Qdrant engines:
the embedded default (qdrant-edge) and qdrant-client local mode, same tests for both."""

from __future__ import annotations

import time

import numpy as np
import pytest

from services.common.envelope import decode, encode
from services.common.stage import Message
from services.engine.face.models import SFACE, ModelIdentity
from services.pipeline.matcher.stage import MatcherDeps, ModelMismatch, process
from services.governance.watchlist.entry import EnrolledEmbedding, Provenance, WatchlistEntry, vector_to_bytes
from services.governance.watchlist.index import WatchlistIndex, connect
from services.governance.watchlist.thresholds import Thresholds

MODEL = ModelIdentity(SFACE.name, SFACE.sha256)
NOW = int(time.time() * 1000)


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=128).astype(np.float32)
    return v / np.linalg.norm(v)


def towards(base: np.ndarray, cosine: float, seed: int) -> np.ndarray:
    """A unit vector with the given cosine similarity to ``base``."""
    noise = unit(seed)
    noise -= noise.dot(base) * base
    noise /= np.linalg.norm(noise)
    return (cosine * base + np.sqrt(1 - cosine**2) * noise).astype(np.float32)


def entry(subject: str, vector: np.ndarray, category: str = "suspect", deployments=("van-1",), expires=NOW + 10**9) -> WatchlistEntry:
    return WatchlistEntry(subject, "W-" + subject, category, "red", Provenance("custody", 0, "PACE", "PC1", NOW), expires, deployments,
                          (EnrolledEmbedding(MODEL, vector),))


def probe(vector: np.ndarray, deployment: str = "van-1", model: ModelIdentity = MODEL) -> Message:
    data = {
        "face": {"frame": {"camera_id": "cam-1", "deployment_id": deployment, "seq": 1, "captured_at_ms": NOW, "width": 640, "height": 480},
                 "face_index": 0, "box": [1, 2, 3, 4], "landmarks": [[1, 1]] * 5,
                 "quality": {"face_width_px": 90, "interocular_px": 40, "blur": 100, "yaw": 0, "roll": 0, "detector_score": 0.9},
                 "chip": {"media_type": "image/jpeg", "data": b"\xff\xd8chip"}, "detected_at_ms": NOW},
        "model": {"name": model.name, "sha256": model.sha256},
        "embedding": {"dtype": "float32le", "dim": 128, "data": vector_to_bytes(vector)},
        "embedded_at_ms": NOW,
    }
    envelope = decode(encode("lfr.embeddings.v1", data))  # exactly what the runner hands the stage
    return Message(schema=envelope.schema, data=envelope.data)


@pytest.fixture(params=["edge", "local"])
def index(request):
    idx = WatchlistIndex(connect(None, None, ":memory:", request.param), MODEL)
    idx.ensure_collection()
    yield idx
    idx.close()


def deps(index, **thresholds) -> MatcherDeps:
    return MatcherDeps(index=index, thresholds=Thresholds(default=0.5, per_category=thresholds), clock=lambda: NOW)


def test_only_candidates_at_or_above_threshold_are_emitted(index):
    a, b = unit(1), unit(2)
    index.upsert(entry("alice", a))
    index.upsert(entry("bob", b))
    outputs = process([probe(towards(a, 0.8, 10)), probe(towards(b, 0.3, 11)), probe(unit(99))], deps(index))
    assert [(o.data["subject_id"], o.data["rank"]) for o in outputs] == [("alice", 1)]
    match = outputs[0].data
    assert match["threshold"] == 0.5 and abs(match["score"] - 0.8) < 1e-3
    assert match["category"] == "suspect" and match["priority"] == "red" and match["reference"] == "W-alice"
    assert match["face"]["chip"]["data"] == b"\xff\xd8chip" and outputs[0].key == "alice"
    encode("lfr.matches.v1", match)  # valid against its schema


def test_per_category_thresholds(index):
    a = unit(3)
    index.upsert(entry("missing", a, category="missing_person_at_risk"))
    index.upsert(entry("witness", towards(a, 0.5, 4), category="witness_or_victim"))
    query = towards(a, 0.6, 5)
    loose = process([probe(query)], deps(index, missing_person_at_risk=0.55))
    assert [o.data["subject_id"] for o in loose] == ["missing"]
    strict = process([probe(query)], deps(index, missing_person_at_risk=0.7))
    assert strict == []


def test_deployment_scope_and_expiry(index):
    a, b = unit(6), unit(7)
    index.upsert(entry("scoped", a, deployments=("van-2",)))
    index.upsert(entry("expired", b, expires=NOW - 1))
    assert process([probe(a, deployment="van-1"), probe(b, deployment="van-1")], deps(index)) == []
    assert [o.data["subject_id"] for o in process([probe(a, deployment="van-2")], deps(index))] == ["scoped"]


def test_embeddings_of_another_model_are_refused_not_compared(index):
    index.upsert(entry("alice", unit(8)))
    other = ModelIdentity("arcface-r100", "0" * 64)
    with pytest.raises(ModelMismatch, match="arcface-r100"):
        process([probe(unit(8), model=other)], deps(index))


def test_one_batched_query_per_batch(index, monkeypatch):
    index.upsert(entry("alice", unit(9)))
    calls = []
    original = index.backend.query_batch
    monkeypatch.setattr(index.backend, "query_batch", lambda collection, queries, *a: calls.append(len(queries)) or original(collection, queries, *a))
    process([probe(unit(i)) for i in range(20, 36)], deps(index))
    assert calls == [16]


def test_one_face_yields_at_most_one_match_with_the_others_inside(index):
    """Three look-alikes above threshold: one match (the best), the other two as ids and scores."""
    a = unit(20)
    index.upsert(entry("best", towards(a, 0.9, 21)))
    index.upsert(entry("second", towards(a, 0.8, 22)))
    index.upsert(entry("third", towards(a, 0.75, 23)))
    index.upsert(entry("below", towards(a, 0.2, 24)))
    outputs = process([probe(a)], deps(index))
    assert [o.data["subject_id"] for o in outputs] == ["best"]
    others = outputs[0].data["other_candidates"]
    assert [c["subject_id"] for c in others] == ["second", "third"]
    assert all(c["score"] >= c["threshold"] == 0.5 for c in others)
    encode("lfr.matches.v1", outputs[0].data)


def test_best_candidate_is_the_best_one_at_or_above_its_own_threshold(index):
    """A closer candidate below its (stricter) category threshold does not hide one above its own."""
    a = unit(30)
    index.upsert(entry("strict", towards(a, 0.7, 31), category="witness_or_victim"))
    index.upsert(entry("loose", towards(a, 0.6, 32)))
    outputs = process([probe(a)], deps(index, witness_or_victim=0.8))
    assert [(o.data["subject_id"], o.data["rank"], o.data["other_candidates"]) for o in outputs] == [("loose", 2, [])]


def test_the_matcher_does_not_count_faces(index):
    """Faces processed are counted where they are found (detect, services/pipeline/detect/counts.py), not here,
    where tracking has already thinned them to a few shots per person."""
    index.upsert(entry("alice", unit(1)))
    outputs = process([probe(unit(1)), probe(unit(50))], deps(index))
    assert [o.schema for o in outputs] == ["lfr.matches.v1"]


def test_embeddings_older_than_the_latency_budget_are_skipped_and_counted(index):
    from prometheus_client import REGISTRY

    a = unit(1)
    index.upsert(entry("alice", a))
    labels = {"service": "matcher", "reason": "over_budget"}
    before = REGISTRY.get_sample_value("lfr_stale_skipped_total", labels) or 0
    late = MatcherDeps(index=index, thresholds=Thresholds(default=0.5, per_category={}), latency_budget_ms=1_000, clock=lambda: NOW + 1_001)
    assert process([probe(towards(a, 0.9, 10))], late) == []
    assert REGISTRY.get_sample_value("lfr_stale_skipped_total", labels) == before + 1
    on_time = MatcherDeps(index=index, thresholds=Thresholds(default=0.5, per_category={}), latency_budget_ms=1_000, clock=lambda: NOW + 1_000)
    assert [o.data["subject_id"] for o in process([probe(towards(a, 0.9, 10))], on_time) if o.schema == "lfr.matches.v1"] == ["alice"]


def test_a_late_first_shot_is_still_matched_within_its_own_budget(index):
    """skip-stale/keep-first-shots: under overload a track's first shot may reach the matcher after
    the latency budget; skipping it meant the person was never checked (saturated recall 0.005)."""
    from prometheus_client import REGISTRY

    a = unit(1)
    index.upsert(entry("alice", a))

    def shot(reason: str) -> Message:
        message = probe(towards(a, 0.9, 10))
        message.data["face"]["track"] = {"id": "0123456789abcdef", "shot": 1 if reason == "first" else 2, "reason": reason, "quality": 0.5}
        return message

    kept = {"service": "matcher", "reason": "first_shot"}
    before = REGISTRY.get_sample_value("lfr_stale_kept_total", kept) or 0
    late = MatcherDeps(index=index, thresholds=Thresholds(default=0.5, per_category={}), latency_budget_ms=1_000,
                       first_shot_budget_ms=3_000, clock=lambda: NOW + 2_000)
    matched = [o.data["face"]["track"]["reason"] for o in process([shot("first"), shot("better")], late) if o.schema == "lfr.matches.v1"]
    assert matched == ["first"]
    assert REGISTRY.get_sample_value("lfr_stale_kept_total", kept) == before + 1
    too_late = MatcherDeps(index=index, thresholds=Thresholds(default=0.5, per_category={}), latency_budget_ms=1_000,
                           first_shot_budget_ms=3_000, clock=lambda: NOW + 3_001)
    assert process([shot("first")], too_late) == []
