"""The matcher compares a probe only with its deployment's active snapshot (inside the Qdrant
query): entries outside the criteria never match although they are in the index, and probes of
a deployment that is not active are dropped and counted."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

from prometheus_client import REGISTRY

from services.common.envelope import encode
from services.common.jsonevents import decode_record
from services.common.runner import StageRunner
from services.common.settings import DeploymentSettings, MatcherSettings, load_settings
from services.governance.deployments.admin import DeploymentAdmin
from services.governance.deployments.enforcement import record_gate, start_enforcement
from services.governance.deployments.record import Window
from services.governance.deployments.store import DeploymentStore
from services.pipeline.matcher.service import build
from services.pipeline.matcher.stage import process
from services.governance.watchlist.entry import EnrolledEmbedding, Provenance, WatchlistEntry, vector_from_bytes
from services.governance.watchlist.store import WatchlistStore
from tests.deployments.test_rules import HOUR, MODEL, draft
from tests.deployments.test_admin import Clock
from tests.face_helpers import embedding_message
from tests.kafka_helpers import TopicReader, committed_total, create_topics, produce, unique, wait_until


def dropped(reason: str) -> float:
    return REGISTRY.get_sample_value("lfr_deployment_records_dropped_total", {"service": "matcher-scope", "reason": reason}) or 0.0


def test_only_the_active_snapshot_matches(broker, kafka_env, monkeypatch, lfw_dir, face_engine, authoriser):
    topics = {name: unique(name) for name in ("watchlist", "deployments", "audit", "embeddings", "matches", "dlq")}
    create_topics(broker.bootstrap_servers, *topics.values(), partitions=1)
    for name, topic in topics.items():
        monkeypatch.setenv(f"LFR_{name.upper()}_TOPIC", topic)
    monkeypatch.setenv("LFR_INPUT_TOPIC", topics["embeddings"])
    monkeypatch.setenv("LFR_OUTPUT_TOPIC", topics["matches"])
    monkeypatch.setenv("LFR_GROUP_ID", unique("matcher"))
    # Probes are sent before the matcher has joined its group: not a test of the latency budget.
    monkeypatch.setenv("LFR_LATENCY_BUDGET_MS", "600000")
    monkeypatch.setenv("LFR_QDRANT_PATH", ":memory:")
    monkeypatch.setenv("LFR_AUTO_COMMIT_INTERVAL_MS", "100")
    photo = lambda n: lfw_dir / "Vladimir_Putin" / f"Vladimir_Putin_{n:04d}.jpg"  # noqa: E731
    enrolled = embedding_message(photo(1), *face_engine)["embedding"]
    vector = vector_from_bytes(enrolled["data"], enrolled["dim"])
    now = int(time.time() * 1000)

    def entry(subject: str, category: str = "suspect", deployments=("dep-1",), expires: int = now + 100 * HOUR) -> WatchlistEntry:
        return WatchlistEntry(subject, "W-" + subject, category, "red", Provenance("custody", 0, "PACE", "PC1", now), expires,
                              tuple(deployments), (EnrolledEmbedding(MODEL, vector),))

    # The same face under five subject ids: all would match; only "listed" meets the criteria.
    settings = load_settings(DeploymentSettings)
    store = DeploymentStore(settings)
    for e in (entry("listed"), entry("witness", category="witness_or_victim"), entry("elsewhere", deployments=("dep-2",)),
              entry("expiring", expires=now + HOUR)):
        store.watchlist.publish(e)
    clock = Clock(now + 2 * HOUR)  # authorised two hours on: "expiring" has expired by then
    admin = DeploymentAdmin(store, clock)
    admin.create(replace(draft(), window=Window(now - 60_000, now + 4 * HOUR), criteria=replace(draft().criteria, categories=("suspect",))))
    authorised = admin.authorise("dep-1", "Supt A", "superintendent", signer=authoriser)
    assert [s.subject_id for s in authorised.deployment.snapshot.subjects] == ["listed"]
    assert authorised.excluded == {"category": 1, "scope": 1, "expired": 1}
    admin.start("dep-1", "PS creator")
    WatchlistStore(settings).publish(entry("late"))  # enrolled after authorisation: not on the snapshot

    matcher_settings = load_settings(MatcherSettings)
    view, policy = start_enforcement(matcher_settings, "matcher-scope")
    materialiser, deps = build(matcher_settings, policy=policy)
    materialiser.start()
    runner = StageRunner("matcher-scope", matcher_settings, lambda batch: process(batch, deps), [matcher_settings.input_topic],
                         admit=record_gate(policy, "matcher-scope"))
    thread = threading.Thread(target=runner.run, daemon=True)
    sent = {"n": 0}
    try:
        materialiser.wait_ready(30)
        wait_until(lambda: materialiser.index.subjects() == {"listed", "witness", "elsewhere", "expiring", "late"}, 15, "all in the index")
        thread.start()

        def probe(deployment: str) -> list[str]:
            seq = sent["n"]
            data = embedding_message(photo(2), *face_engine, deployment_id=deployment, seq=seq)
            produce(broker.bootstrap_servers, topics["embeddings"], [encode("lfr.embeddings.v1", data)], keys=[b"cam-1"])
            sent["n"] += 1
            wait_until(lambda: committed_total(broker.bootstrap_servers, matcher_settings.group_id, topics["embeddings"]) >= sent["n"],
                       30, "probe processed")
            reader = TopicReader(broker.bootstrap_servers, topics["matches"])
            try:
                reader.poll()
                reader.poll()
                found = [d for d in (decode_record(r.value(), r.headers()).data for r in reader.records) if d["face"]["frame"]["seq"] == seq]
                # The authorised threshold (0.6) is a floor over the matcher's own (0.5).
                assert all(d["threshold"] == 0.6 for d in found)
                return sorted(d["subject_id"] for d in found)
            finally:
                reader.close()

        before = dropped("unknown_deployment")
        assert probe("dep-1") == ["listed"]
        assert probe("dep-2") == []  # no such deployment: dropped before the search
        assert dropped("unknown_deployment") == before + 1
    finally:
        runner.request_stop()
        thread.join(30)
        materialiser.stop()
        view.stop()
