"""Key validity at the record's place in the audit chain, not "ever revoked" (issue #23): a key
revoked at chain position N keeps vouching for what was audited before N, in the watchlist and
the deployments readers alike, and vouches for nothing audited after N whatever time its
record and audit record claim; the reader names the refused record by its offset."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
from confluent_kafka import Producer

from services.audit.identity import add_ephemeral_key, ephemeral_identity
from services.audit.writer import AuditWriter, change_digest
from services.common.envelope import encode
from services.common.settings import AuditSettings, DeploymentSettings, WatchlistSettings, load_settings
from services.common.signing import Keyring, Signer
from services.deployments.store import DeploymentStore
from services.face.models import SFACE, ModelIdentity
from services.watchlist.entry import EnrolledEmbedding, Provenance, WatchlistEntry
from services.watchlist.store import WatchlistStore
from tests.deployment_helpers import active_deployment, publish_deployment
from tests.kafka_helpers import create_topics, unique

MODEL = ModelIdentity(SFACE.name, SFACE.sha256)


def entry(subject: str, seed: int) -> WatchlistEntry:
    vector = np.random.default_rng(seed).normal(size=128).astype(np.float32)
    now = int(time.time() * 1000)
    return WatchlistEntry(subject, f"REF-{subject}", "suspect", "red", Provenance("custody", now, "PACE s.64A", "note", now),
                          now + 86_400_000, ("dep-1",), (EnrolledEmbedding(MODEL, vector / np.linalg.norm(vector)),))


def test_a_revoked_key_keeps_what_it_signed_before_and_a_backdated_record_after_is_refused(broker, kafka_env, monkeypatch, tmp_path,
                                                                                            caplog):
    topics = {name: unique(name) for name in ("watchlist", "audit", "deployments", "dlq")}
    create_topics(broker.bootstrap_servers, *topics.values(), partitions=1)
    for name, topic in topics.items():
        monkeypatch.setenv(f"LFR_{name.upper()}_TOPIC", topic)
    admin_identity = ephemeral_identity(tmp_path / "keys", "Insp 1 Key Admin")  # a keyring of its own: this test revokes a key
    for name, value in admin_identity.items():
        monkeypatch.setenv(name, value)
    admin = Signer.load(Path(admin_identity["LFR_SIGNING_KEY_FILE"]), admin_identity["LFR_SIGNING_KEY_PASSPHRASE"])
    laptop = add_ephemeral_key(admin_identity, "PC 9 Laptop", rank="constable", role="operator")
    authoriser = add_ephemeral_key(admin_identity, "Supt 2 Authoriser")
    monkeypatch.setenv("LFR_SIGNING_KEY_FILE", str(Path(admin_identity["LFR_SIGNING_KEY_FILE"]).with_name(f"{laptop.key_id}.key.json")))

    # Before the laptop is lost: alice enrolled and a deployment written with its key (audited at offsets 0, 1).
    WatchlistStore(load_settings(WatchlistSettings)).publish(entry("alice", 1))
    publish_deployment(broker.bootstrap_servers, topics["deployments"], active_deployment("dep-before", ["cam-1"]),
                       signers=(laptop, authoriser), audit_topic=topics["audit"])
    before = int(time.time() * 1000)

    # Revoked at chain position 2 (a signed keys.revoke record) and in the keyring.
    settings = load_settings(AuditSettings)
    revoker = AuditWriter(settings, topics["audit"], admin, "keys")
    revoker.write("keys.revoke", None, {"key_id": laptop.key_id, "owner": laptop.owner, "reason": "lost laptop"})
    revoker.close()
    ring = Keyring.load(Path(admin_identity["LFR_KEYRING_FILE"]))
    ring.revoke(laptop.key_id, "lost laptop", int(time.time() * 1000))
    ring.save()

    # The thief: audit records and changes after the revocation, dated before it.
    thief = AuditWriter(settings, topics["audit"], laptop, "watchlist")
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
    for topic, key, value in ((topics["watchlist"], b"mallory", encode("lfr.watchlist.v1", entry("mallory", 2).to_data())),
                              (topics["watchlist"], b"alice", None),  # alice's removal
                              (topics["deployments"], b"dep-after", None)):
        _record, audit_hash = thief.write("watchlist.add", key.decode(), {"change_sha256": change_digest(topic, key, value)}, at_ms=before)
        producer.produce(topic, key=key, value=value, headers=laptop.record_headers(topic, key, value, audit_hash=audit_hash, now_ms=before))
    thief.close()
    publish_deployment(broker.bootstrap_servers, topics["deployments"], active_deployment("dep-after", ["cam-2"]),
                       signers=(laptop, authoriser), audit_topic=topics["audit"])
    assert producer.flush(10) == 0

    caplog.set_level(logging.WARNING, logger="services.audit.refusals")
    watchlist = WatchlistStore(load_settings(WatchlistSettings))
    assert set(watchlist.read_all()) == {"alice"}  # kept: audited before the revocation; mallory and the removal refused
    assert watchlist.refusals.reasons == {"revoked_key": 2}
    deployments = DeploymentStore(load_settings(DeploymentSettings))
    assert set(deployments.read_all()) == {"dep-before"}
    assert deployments.refusals.reasons["revoked_key"] >= 1
    refused = [r for r in caplog.records if "revoked_key" in r.getMessage()]
    assert {(r.topic, r.offset) for r in refused} >= {(topics["watchlist"], 1), (topics["watchlist"], 2)}


def test_the_position_rule_same_chain_before_only(broker):
    """Valid before the revocation's offset in its own partition; invalid at or after it, in any
    other partition (offsets of two chains have no order), and everywhere for a key revoked in
    the keyring without a revocation record."""
    from services.audit.index import AuditIndex, AuditLink
    from services.common.settings import KafkaSettings

    revoked, bare, fine = Signer.generate("PC 1 Revoked"), Signer.generate("PC 2 Bare"), Signer.generate("PC 3 Fine")
    ring = Keyring()
    for signer in (revoked, bare, fine):
        ring.add(signer, 0)
    ring.revoke(revoked.key_id, "lost", 5)
    ring.revoke(bare.key_id, "lost", 5)
    index = AuditIndex(KafkaSettings(kafka_bootstrap_servers=broker.bootstrap_servers), "unused", ring)
    try:
        index._revoked_at[revoked.key_id] = (0, 10)  # as _take notes a verified keys.revoke record at partition 0, offset 10
        assert index._valid(revoked.key_id, AuditLink(0, 9, revoked.key_id))
        assert not index._valid(revoked.key_id, AuditLink(0, 10, revoked.key_id))
        assert not index._valid(revoked.key_id, AuditLink(0, 11, revoked.key_id))
        assert not index._valid(revoked.key_id, AuditLink(1, 3, revoked.key_id))
        assert not index._valid(bare.key_id, AuditLink(0, 0, bare.key_id))
        assert index._valid(fine.key_id, AuditLink(1, 99, fine.key_id))
        assert not index._valid(Signer.generate("stranger").key_id, AuditLink(0, 0, ""))
    finally:
        index.close()
