"""Key validity at the record's place in the audit chain, not "ever revoked" (issue #23): a key
revoked at chain position N keeps vouching for what was audited before N, in the watchlist and
the deployments readers alike, and vouches for nothing audited after N whatever time its
record and audit record claim; the reader names the refused record by its offset."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
from confluent_kafka import Producer

from services.governance.audit.identity import add_ephemeral_key, ephemeral_identity
from services.governance.audit.writer import AuditWriter, change_digest
from services.common.envelope import encode
from services.common.settings import AuditSettings, DeploymentSettings, WatchlistSettings, load_settings
from services.common.signing import Keyring, Signer
from services.governance.deployments.admin import DeploymentAdmin
from services.governance.deployments.calibration import Calibration
from services.governance.deployments.store import DeploymentStore
from services.engine.face.models import SFACE, ModelIdentity
from services.governance.watchlist.entry import EnrolledEmbedding, Provenance, WatchlistEntry
from services.governance.watchlist.store import WatchlistStore
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

    caplog.set_level(logging.WARNING, logger="services.governance.audit.refusals")
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
    from services.governance.audit.index import AuditIndex, AuditLink
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


def _isolated(monkeypatch, tmp_path, broker) -> tuple[dict[str, str], dict[str, str], Signer]:
    """Fresh topics (one partition: one chain) and a keyring of this test's own (it revokes keys)."""
    topics = {name: unique(name) for name in ("watchlist", "audit", "deployments", "dlq")}
    create_topics(broker.bootstrap_servers, *topics.values(), partitions=1)
    for name, topic in topics.items():
        monkeypatch.setenv(f"LFR_{name.upper()}_TOPIC", topic)
    identity = ephemeral_identity(tmp_path / "keys", "Insp 1 Key Admin")
    for name, value in identity.items():
        monkeypatch.setenv(name, value)
    return topics, identity, Signer.load(Path(identity["LFR_SIGNING_KEY_FILE"]), identity["LFR_SIGNING_KEY_PASSPHRASE"])


def _revoke(identity: dict[str, str], audit_topic: str, revoker: Signer, revoked: Signer, in_keyring: bool = True) -> None:
    """As `lfr keys revoke` does: the signed keys.revoke audit record, then the keyring."""
    writer = AuditWriter(load_settings(AuditSettings), audit_topic, revoker, "keys")
    writer.write("keys.revoke", None, {"key_id": revoked.key_id, "owner": revoked.owner, "reason": "lost laptop"})
    writer.close()
    if in_keyring:
        ring = Keyring.load(Path(identity["LFR_KEYRING_FILE"]))
        ring.revoke(revoked.key_id, "lost laptop", int(time.time() * 1000))
        ring.save()


def _refused_offsets(caplog, topic: str, reason: str) -> set[int]:
    return {r.offset for r in caplog.records if reason in r.getMessage() and getattr(r, "topic", None) == topic}


def test_a_revoked_authorisers_countersignatures_before_stay_valid_and_one_after_is_refused(broker, kafka_env, monkeypatch, tmp_path,
                                                                                              caplog):
    """Gap 1: the countersignature's key is judged where the revision carrying it was audited."""
    topics, identity, admin = _isolated(monkeypatch, tmp_path, broker)
    operator = add_ephemeral_key(identity, "PS 3 Operator", rank="sergeant", role="operator")
    authoriser = add_ephemeral_key(identity, "Supt 2 Authoriser")
    publish_deployment(broker.bootstrap_servers, topics["deployments"], active_deployment("dep-before", ["cam-1"]),
                       signers=(operator, authoriser), audit_topic=topics["audit"])
    _revoke(identity, topics["audit"], admin, authoriser)
    # The stolen key countersigns after its revocation; the authorisation inside claims an earlier time.
    publish_deployment(broker.bootstrap_servers, topics["deployments"], active_deployment("dep-after", ["cam-2"]),
                       signers=(operator, authoriser), audit_topic=topics["audit"])

    caplog.set_level(logging.WARNING, logger="services.governance.audit.refusals")
    deployments = DeploymentStore(load_settings(DeploymentSettings))
    assert set(deployments.read_all()) == {"dep-before"}  # authorised before the revocation: still authorised
    assert deployments.refusals.reasons == {"revoked_key": 1}
    assert _refused_offsets(caplog, topics["deployments"], "revoked_key") == {1}


def test_ranks_a_revoked_key_administrator_granted_before_stay_and_one_granted_after_is_no_rank(broker, kafka_env, monkeypatch,
                                                                                                 tmp_path, caplog):
    """Gap 2: the registrar's key is judged at the registration's own keys.register record."""
    topics, identity, admin = _isolated(monkeypatch, tmp_path, broker)
    operator = add_ephemeral_key(identity, "PS 3 Operator", rank="sergeant", role="operator")
    registrar = add_ephemeral_key(identity, "Insp 4 Second Key Admin", rank="inspector", role="key_admin")
    passphrase = identity["LFR_SIGNING_KEY_PASSPHRASE"]

    def register(owner: str, at_ms: int | None = None) -> Signer:
        """As `lfr keys register` does, signed by ``registrar``: the audit record, then the keyring."""
        signer = Signer.generate(owner)
        signer.save(Path(identity["LFR_SIGNING_KEY_FILE"]).with_name(f"{signer.key_id}.key.json"), passphrase)
        ring = Keyring.load(Path(identity["LFR_KEYRING_FILE"]))
        ring.add(signer, int(time.time() * 1000))
        registered = ring.register(signer.key_id, "superintendent", "authorising_officer", "", registrar)
        writer = AuditWriter(load_settings(AuditSettings), topics["audit"], registrar, "keys")
        writer.write("keys.register", None, {"key_id": registered.key_id, "owner": registered.owner, "rank": registered.rank,
                                              "role": registered.role, "force": registered.force}, at_ms=at_ms)
        writer.close()
        ring.save()
        return signer

    before_ms = int(time.time() * 1000)
    granted_before = register("Supt 5 Granted Before")
    publish_deployment(broker.bootstrap_servers, topics["deployments"], active_deployment("dep-before", ["cam-1"]),
                       signers=(operator, granted_before), audit_topic=topics["audit"])
    _revoke(identity, topics["audit"], admin, registrar, in_keyring=False)  # in the chain first, as a stolen key would race it
    granted_after = register("Supt 6 Granted After", at_ms=before_ms)  # by the stolen key, dated before the revocation
    ring = Keyring.load(Path(identity["LFR_KEYRING_FILE"]))
    ring.revoke(registrar.key_id, "lost laptop", int(time.time() * 1000))
    ring.save()
    publish_deployment(broker.bootstrap_servers, topics["deployments"], active_deployment("dep-after", ["cam-2"]),
                       signers=(operator, granted_after), audit_topic=topics["audit"])

    caplog.set_level(logging.WARNING, logger="services.governance.audit.refusals")
    deployments = DeploymentStore(load_settings(DeploymentSettings))
    assert set(deployments.read_all()) == {"dep-before"}  # the rank granted before the revocation still holds
    assert deployments.refusals.reasons == {"rank_not_registered": 1}
    assert _refused_offsets(caplog, topics["deployments"], "rank_not_registered") == {1}
    # `lfr deployment authorise` takes the rank the readers will believe: the one granted before
    operations = DeploymentAdmin(deployments, calibration=Calibration("test", 1, 1, (), {}))
    assert operations._registration(granted_before.key_id).rank == "superintendent"
    assert operations._registration(granted_after.key_id) is None


def test_replay_is_judged_by_audit_position_not_the_signers_clock(broker, kafka_env, monkeypatch, tmp_path, caplog):
    """Gap 3: a change dated a day ahead neither blocks the next change nor makes its replay look new."""
    topics, identity, admin = _isolated(monkeypatch, tmp_path, broker)
    settings = load_settings(AuditSettings)
    now = int(time.time() * 1000)
    first, second = entry("alice", 1), dataclasses.replace(entry("alice", 3), reference="REF-alice-corrected")
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
    topic, key = topics["watchlist"], b"alice"
    writer = AuditWriter(settings, topics["audit"], admin, "watchlist")
    sent = []
    for changed, at_ms in ((first, now + 86_400_000), (second, now)):  # a signer's clock a day ahead, then a correct one
        value = encode("lfr.watchlist.v1", changed.to_data())
        _record, audit_hash = writer.write("watchlist.add", "alice", {"change_sha256": change_digest(topic, key, value)}, at_ms=at_ms)
        headers = admin.record_headers(topic, key, value, audit_hash=audit_hash, now_ms=at_ms)
        producer.produce(topic, key=key, value=value, headers=headers)
        sent.append((value, headers))
    writer.close()
    producer.produce(topic, key=key, value=sent[0][0], headers=sent[0][1])  # the first change replayed, byte for byte
    assert producer.flush(10) == 0

    caplog.set_level(logging.WARNING, logger="services.governance.audit.refusals")
    watchlist = WatchlistStore(load_settings(WatchlistSettings))
    assert watchlist.read_all()["alice"].reference == "REF-alice-corrected"
    assert watchlist.refusals.reasons == {"replayed": 1}
    assert _refused_offsets(caplog, topic, "replayed") == {2}
