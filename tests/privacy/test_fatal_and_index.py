"""Faults that would refuse every face alike stop the service; stale index collections go."""

from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import pytest
from prometheus_client import REGISTRY
from qdrant_client import QdrantClient, models

from services.common.errors import FatalError
from services.common.runner import EXIT_FATAL, StageRunner
from services.common.settings import PassthroughSettings, load_settings
from services.engine.face.models import SFACE, ModelIdentity
from services.governance.watchlist.entry import EnrolledEmbedding
from services.governance.watchlist.index import IndexRefused, WatchlistIndex
from tests.kafka_helpers import audit_record, committed_total, create_topics, produce, unique
from tests.watchlist.test_matcher_stage import entry, unit

MODEL = ModelIdentity(SFACE.name, SFACE.sha256)
OLD_MODEL = ModelIdentity("sface-2020", "0" * 64)


def test_collections_of_models_no_longer_configured_are_dropped_at_rebuild():
    client = QdrantClient(location=":memory:")
    old = WatchlistIndex(client, OLD_MODEL)
    old.ensure_collection()
    old.upsert(dataclasses.replace(entry("gone", unit(1)), embeddings=(EnrolledEmbedding(OLD_MODEL, unit(1)),)))
    assert old.subjects() == {"gone"}
    client.create_collection("someone_elses", vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE))
    current = WatchlistIndex(client, MODEL)
    current.rebuild({"alice": entry("alice", unit(2))}, int(time.time() * 1000))
    names = {c.name for c in client.get_collections().collections}
    assert names == {current.collection, "someone_elses"}  # only our own stale collections go
    assert current.subjects() == {"alice"}


def test_a_missing_collection_is_fatal_not_a_bad_message():
    client = QdrantClient(location=":memory:")
    index = WatchlistIndex(client, MODEL)
    index.ensure_collection()
    client.delete_collection(index.collection)
    with pytest.raises(IndexRefused) as refused:
        index.search(np.stack([unit(3)]), ["van-1"], int(time.time() * 1000))
    assert isinstance(refused.value, FatalError) and refused.value.reason == "index_missing"


def test_a_fatal_error_stops_the_runner_non_zero_without_dead_letters_or_commits(broker, kafka_env, monkeypatch, reader):
    source, sink, dlq = unique("in"), unique("out"), unique("dlq")
    create_topics(broker.bootstrap_servers, source, sink, dlq)
    group = unique("fatal")
    for key, value in {"LFR_INPUT_TOPICS": source, "LFR_OUTPUT_TOPIC": sink, "LFR_DLQ_TOPIC": dlq, "LFR_GROUP_ID": group}.items():
        monkeypatch.setenv(key, value)
    settings = load_settings(PassthroughSettings)
    produce(broker.bootstrap_servers, source, [audit_record(i) for i in range(20)])

    class IndexGone(FatalError):
        reason = "index_missing"

    def stage(_batch):
        raise IndexGone("qdrant collection missing")

    runner = StageRunner("fatal-test", settings, stage, [source])
    result: dict[str, int] = {}
    thread = threading.Thread(target=lambda: result.setdefault("code", runner.run()), daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "a fatal error must stop the runner by itself"
    assert result["code"] == EXIT_FATAL
    assert REGISTRY.get_sample_value("lfr_fatal_errors_total", {"service": "fatal-test", "reason": "index_missing"}) == 1
    assert reader(dlq).poll() == []  # not a stream of dead letters
    assert committed_total(broker.bootstrap_servers, group, source) == 0  # redelivered once fixed
