"""A forged, unsigned, tampered, unaudited, replayed or revoked-key watchlist record changes
nothing in the matcher's index and is reported: counted, audited, dead-lettered without payload."""

from __future__ import annotations

import time

import numpy as np
import pytest
from confluent_kafka import Producer
from prometheus_client import REGISTRY

from services.governance.audit.identity import ephemeral_identity
from services.common.envelope import encode
from services.common.jsonevents import decode_record
from services.common.settings import MatcherSettings, WatchlistSettings, load_settings
from services.common.signing import Keyring, Signer
from services.engine.face.models import SFACE, ModelIdentity
from services.pipeline.matcher.service import build
from services.governance.watchlist.entry import EnrolledEmbedding, Provenance, WatchlistEntry
from services.governance.watchlist.store import WatchlistStore
from tests.kafka_helpers import create_topics, unique, wait_until

MODEL = ModelIdentity(SFACE.name, SFACE.sha256)


def entry(subject: str, seed: int) -> WatchlistEntry:
    vector = np.random.default_rng(seed).normal(size=128).astype(np.float32)
    now = int(time.time() * 1000)
    return WatchlistEntry(subject, f"REF-{subject}", "suspect", "red", Provenance("custody", now, "PACE s.64A", "free text", now),
                          now + 86_400_000, ("dep-1",), (EnrolledEmbedding(MODEL, vector / np.linalg.norm(vector)),))


def refusals(reason: str) -> float:
    return REGISTRY.get_sample_value("lfr_signature_refusals_total", {"service": "matcher", "topic": TOPICS["watchlist"], "reason": reason}) or 0.0


TOPICS: dict[str, str] = {}


@pytest.fixture
def wired(broker, kafka_env, monkeypatch, tmp_path):
    TOPICS.update({name: unique(name) for name in ("watchlist", "audit", "dlq", "embeddings", "matches")})
    create_topics(broker.bootstrap_servers, *TOPICS.values(), partitions=1)
    for name in ("watchlist", "audit", "dlq"):
        monkeypatch.setenv(f"LFR_{name.upper()}_TOPIC", TOPICS[name])
    monkeypatch.setenv("LFR_INPUT_TOPIC", TOPICS["embeddings"])
    monkeypatch.setenv("LFR_OUTPUT_TOPIC", TOPICS["matches"])
    monkeypatch.setenv("LFR_QDRANT_PATH", ":memory:")
    monkeypatch.setenv("LFR_AUDIT_LINK_WAIT_S", "1")  # the made-up audit hash below is held this long, then refused
    for name, value in ephemeral_identity(tmp_path / "keys", "PC 1234 Operator").items():
        monkeypatch.setenv(name, value)  # a keyring of its own: this test revokes keys
    store = WatchlistStore(load_settings(WatchlistSettings))
    store.publish(entry("alice", 1))
    store.publish(entry("bob", 2))
    materialiser, _deps = build(load_settings(MatcherSettings))
    materialiser.start()
    materialiser.wait_ready(30)
    yield store, materialiser
    materialiser.stop()


def test_unverified_records_change_nothing_and_are_reported(wired, broker, reader, tmp_path):
    store, materialiser = wired
    index, topic = materialiser.index, TOPICS["watchlist"]
    assert index.subjects() == {"alice", "bob"}
    raw = Producer({"bootstrap.servers": broker.bootstrap_servers})

    def send(key: bytes, value: bytes | None, headers=None) -> None:
        raw.produce(topic, key=key, value=value, headers=headers or [])
        raw.flush(10)

    mallory = encode("lfr.watchlist.v1", entry("mallory", 3).to_data())
    alice_changed = encode("lfr.watchlist.v1", entry("alice", 4).to_data())
    stranger = Signer.generate(store.signer.owner)  # same name, key nobody trusts
    before = {r: refusals(r) for r in ("unsigned", "unknown_key", "bad_signature", "unaudited", "replayed", "revoked_key")}

    send(b"mallory", mallory)  # unsigned add
    send(b"bob", None)  # unsigned removal
    send(b"alice", None, stranger.record_headers(topic, b"alice", None, audit_hash="ab" * 32))  # forged removal
    genuine = store.signer.record_headers(topic, b"mallory", mallory, audit_hash="ab" * 32)
    send(b"alice", alice_changed, genuine)  # a real signature moved onto other content
    send(b"mallory", mallory, store.signer.record_headers(topic, b"mallory", mallory))  # signed, but never audited
    send(b"mallory", mallory, store.signer.record_headers(topic, b"mallory", mallory, audit_hash="cd" * 32))  # a made-up audit hash

    # Replay: a subject added then removed (both signed and audited) must not come back when
    # someone re-produces the original signed add.
    store.publish(entry("carol", 5))
    wait_until(lambda: "carol" in index.subjects(), 10, "carol to be listed")
    carol_add = next(r for r in reader(topic).read_until(8) if r.key() == b"carol")
    store.tombstone("carol", requested_by="Sgt 2")
    wait_until(lambda: "carol" not in index.subjects(), 10, "carol to be removed")
    send(b"carol", carol_add.value(), carol_add.headers())

    # A key revoked in the keyring file: its records are refused from then on, no restart needed.
    deputy = Signer.generate("PC 77 Deputy")
    ring = Keyring.load(materialiser.keyring.path)
    ring.add(deputy, 0)
    ring.revoke(deputy.key_id, "lost laptop", 1)
    ring.save()
    time.sleep(1.1)  # the keyring is re-read at most once a second
    send(b"alice", None, deputy.record_headers(topic, b"alice", None, audit_hash="ab" * 32))

    expected = {"unsigned": 2, "unknown_key": 1, "bad_signature": 1, "unaudited": 2, "replayed": 1, "revoked_key": 1}
    wait_until(lambda: {r: refusals(r) - before[r] for r in expected} == expected, 20, "every refusal counted")
    dlq = reader(TOPICS["dlq"])
    dead = dlq.read_until(8)
    audit = [decode_record(r.value(), r.headers()).data for r in reader(TOPICS["audit"]).read_until(2 + 1 + 2 + 8)]

    # Nothing changed: alice and bob listed with their own vectors, mallory and carol absent.
    assert index.subjects() == {"alice", "bob"}
    assert set(materialiser.entries) == {"alice", "bob"}
    assert np.allclose(materialiser.entries["alice"].embeddings[0].vector, entry("alice", 1).embeddings[0].vector)
    # Dead letters name the reason and never carry the record's value.
    assert len(dead) == 8 and all(r.value() is None for r in dead)
    headers = [dict((k, v.decode()) for k, v in r.headers()) for r in dead]
    assert {h["lfr_dlq_payload"] for h in headers} == {"withheld"}
    assert sorted(h["lfr_dlq_error"] for h in headers) == sorted(r for r, n in expected.items() for _ in range(n))
    # Audited, signed by the matcher's key (whose owner is the actor), in the same verified chain.
    refused = [r for r in audit if r["action"] == "signature.refused"]
    assert len(refused) == 8 and {r["details"]["topic"] for r in refused} == {topic}
    assert [r["actor"] for r in audit if r["action"].startswith("watchlist.")] == ["PC 1234 Operator"] * 4
    assert audit[-1]["details"]["reason"] == "revoked_key"
    # The matcher audited the thresholds it started with.
    (started,) = [r for r in audit if r["action"] == "matcher.thresholds"]
    assert started["details"]["default"] == 0.5 and started["actor"] == "PC 1234 Operator"
    # The service keeps going: a genuine signed change after all that still applies.
    store.tombstone("bob", requested_by="Sgt 2")
    wait_until(lambda: index.subjects() == {"alice"}, 10, "a genuine removal to apply")

    # A restarted matcher rebuilds the same state; the refused records are counted again but not
    # reported again (no new dead letters), so restarts and replicas do not multiply reports.
    materialiser.stop()
    counted = sum(refusals(r) for r in expected)
    again, _deps = build(load_settings(MatcherSettings))
    again.start()
    try:
        again.wait_ready(30)
        assert again.index.subjects() == {"alice"}
        wait_until(lambda: sum(refusals(r) for r in expected) >= counted + 8, 10, "the rebuild to count the refusals")
        assert len(dlq.poll()) == 8  # the same eight, nothing new
    finally:
        again.stop()


def test_matcher_refuses_to_start_without_a_keyring(kafka_env, monkeypatch):
    from services.common.errors import SettingsError

    monkeypatch.delenv("LFR_KEYRING_FILE")
    with pytest.raises(SettingsError, match="LFR_KEYRING_FILE is required"):
        build(load_settings(MatcherSettings))
