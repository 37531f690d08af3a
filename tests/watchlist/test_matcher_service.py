"""Matcher against the real broker and local Qdrant: watchlist topic -> index -> matches."""

from __future__ import annotations

import threading
import time

import pytest

from services.common.envelope import encode
from services.common.jsonevents import decode_record
from services.common.runner import StageRunner
from services.common.settings import MatcherSettings, WatchlistSettings, load_settings
from services.pipeline.matcher.service import build
from services.pipeline.matcher.stage import process
from services.governance.watchlist.admin import WatchlistAdmin
from services.governance.watchlist.enrol import Enroller
from services.governance.watchlist.store import WatchlistStore
from services.governance.watchlist.thresholds import Thresholds
from tests.face_helpers import embedding_message
from tests.kafka_helpers import committed_total, create_topics, produce, unique, wait_until
from tests.watchlist.test_enrolment import request

STRANGERS = ["Aaron_Tippin", "Abdel_Madi_Shabneh", "Abdul_Rahman", "Adam_Herbert", "Zach_Safrin", "Tina_Andrews"]


class Clock:
    """Real time plus an offset the test can move forward (expiry without waiting)."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def __call__(self) -> int:
        return int(time.time() * 1000) + self.offset_ms


class Matcher:
    """The matcher service's own wiring (services.pipeline.matcher.service.build), run in threads."""

    def __init__(self, settings: MatcherSettings, clock: Clock) -> None:
        self.materialiser, deps = build(settings, clock)
        self.runner = StageRunner("matcher-test", settings, lambda batch: process(batch, deps), [settings.input_topic])
        self.thread = threading.Thread(target=self.runner.run, daemon=True)

    def __enter__(self) -> Matcher:
        self.materialiser.start()
        self.materialiser.wait_ready(30)
        self.thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.runner.request_stop()
        self.thread.join(30)
        self.materialiser.stop()
        self.materialiser.index.close()


@pytest.fixture
def setup(broker, kafka_env, monkeypatch, face_engine, tmp_path):
    topics = {name: unique(name) for name in ("watchlist", "audit", "embeddings", "matches", "dlq")}
    create_topics(broker.bootstrap_servers, *topics.values(), partitions=1)
    for name, topic in topics.items():
        monkeypatch.setenv(f"LFR_{name.upper()}_TOPIC", topic)
    monkeypatch.setenv("LFR_INPUT_TOPIC", topics["embeddings"])
    monkeypatch.setenv("LFR_OUTPUT_TOPIC", topics["matches"])
    monkeypatch.setenv("LFR_DLQ_TOPIC", topics["dlq"])
    monkeypatch.setenv("LFR_EXPIRY_SWEEP_INTERVAL_S", "0.2")
    monkeypatch.setenv("LFR_GROUP_ID", unique("matcher"))
    # Probes are sent before the matcher has joined its group: not a test of the latency budget.
    monkeypatch.setenv("LFR_LATENCY_BUDGET_MS", "600000")
    admin = WatchlistAdmin(WatchlistStore(load_settings(WatchlistSettings)), Enroller(*face_engine), Thresholds(0.5))
    return topics, admin


def test_watchlist_matching_removal_expiry_and_restart(setup, broker, reader, lfw_dir, face_engine, monkeypatch, tmp_path):
    topics, admin = setup
    photo = lambda name, n: (lfw_dir / name / f"{name}_{n:04d}.jpg").read_bytes()  # noqa: E731
    for subject, name in (("putin", "Vladimir_Putin"), ("sharon", "Ariel_Sharon"), ("chavez", "Hugo_Chavez")):
        assert admin.add(request(subject, [photo(name, 1)])).status == "enrolled"
    matches = reader(topics["matches"])
    sent = {"n": 0}

    def probe(name: str, n: int) -> int:
        """Send one embedding of photo n of `name`; returns its seq, once the matcher has processed it."""
        seq = sent["n"]
        data = embedding_message(lfw_dir / name / f"{name}_{n:04d}.jpg", *face_engine, seq=seq)
        produce(broker.bootstrap_servers, topics["embeddings"], [encode("lfr.embeddings.v1", data)], keys=[b"cam-1"])
        sent["n"] += 1
        wait_until(lambda: committed_total(broker.bootstrap_servers, settings.group_id, topics["embeddings"]) >= sent["n"], 30, "probe processed")
        return seq

    def matched(seq: int) -> list[str]:
        return [d["subject_id"] for d in (decode_record(r.value(), r.headers()).data for r in matches.poll()) if d["face"]["frame"]["seq"] == seq]

    monkeypatch.setenv("LFR_QDRANT_PATH", str(tmp_path / "qdrant-a"))
    monkeypatch.setenv("LFR_AUTO_COMMIT_INTERVAL_MS", "100")
    settings = load_settings(MatcherSettings)
    clock = Clock()
    with Matcher(settings, clock) as matcher:
        # Other photos of the listed people match; strangers do not.
        first = {name: probe(name, 2) for name in ("Vladimir_Putin", "Ariel_Sharon", "Hugo_Chavez")}
        strangers = {name: probe(name, 1) for name in STRANGERS}
        assert {name: matched(seq) for name, seq in first.items()} == {
            "Vladimir_Putin": ["putin"], "Ariel_Sharon": ["sharon"], "Hugo_Chavez": ["chavez"]}
        assert {name: matched(seq) for name, seq in strangers.items()} == {name: [] for name in STRANGERS}
        answers_before = {seq: matched(seq) for seq in [*first.values(), *strangers.values()]}

        # A tombstone removes the subject: later probes of them stop matching.
        assert admin.remove("sharon", "Sgt 42", "warrant executed")
        wait_until(lambda: "sharon" not in matcher.materialiser.index.subjects(), 5, "sharon's embedding to leave the index")
        wait_until(lambda: matched(probe("Ariel_Sharon", 3)) == [], 15, "sharon's probes to stop matching")
        assert matched(probe("Ariel_Sharon", 4)) == []
        assert matched(probe("Vladimir_Putin", 3)) == ["putin"]

        # Expiry removes an entry without anyone touching the topic.
        expires = request("blix", [photo("Hans_Blix", 1)], expires_at_ms=clock() + 60_000)
        assert admin.add(expires).status == "enrolled"
        wait_until(lambda: matched(probe("Hans_Blix", 2)) == ["blix"], 15, "blix to match")
        clock.offset_ms = 120_000
        assert matched(probe("Hans_Blix", 3)) == []
        wait_until(lambda: "blix" not in matcher.materialiser.index.subjects(), 10, "the expiry sweep to drop blix")

    # A restarted matcher (fresh index) rebuilds from the topic and answers the same.
    monkeypatch.setenv("LFR_QDRANT_PATH", str(tmp_path / "qdrant-b"))
    settings = load_settings(MatcherSettings)
    with Matcher(settings, clock) as restarted:
        assert restarted.materialiser.index.subjects() == {"putin", "chavez"}
        again = {name: probe(name, 2) for name in ("Vladimir_Putin", "Hugo_Chavez")}
        again.update({name: probe(name, 1) for name in STRANGERS})
        assert sorted(matched(seq) for seq in again.values()) == sorted(
            answers for answers in answers_before.values() if answers != ["sharon"])
