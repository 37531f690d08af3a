"""Every reader of the watchlist topic applies only what verifies, as the matcher does (issue #23):
`lfr watchlist list` and the snapshot `lfr deployment authorise` freezes (WatchlistStore.read_all)
and the review console's reference images (services/operations/review/feeds.py).

The attacks are those of someone with write access to the broker: an unsigned add, an add signed
by a key nobody trusts, a genuine record with one byte changed, a replay of a signed add after its
signed removal, a removal signed by a stranger, an unsigned tombstone, and a signed change whose
audit hash names no audit record."""

from __future__ import annotations

import subprocess
import sys
import os
import time

from dataclasses import replace

import numpy as np
import pytest
from confluent_kafka import Producer

from services.governance.audit.identity import ephemeral_identity
from services.common.envelope import encode
from services.common.settings import DeploymentSettings, WatchlistSettings, load_settings
from services.common.signing import Signer
from services.governance.deployments import snapshot
from services.governance.deployments.record import Criteria
from services.engine.face.models import SFACE, ModelIdentity
from services.governance.watchlist.entry import EnrolledEmbedding, Provenance, WatchlistEntry
from services.governance.watchlist.reference import ReferenceImage
from services.governance.watchlist.store import WatchlistStore
from tests.kafka_helpers import TopicReader, create_topics, unique, wait_until

MODEL = ModelIdentity(SFACE.name, SFACE.sha256)


def entry(subject: str, seed: int, image: bytes | None = None) -> WatchlistEntry:
    vector = np.random.default_rng(seed).normal(size=128).astype(np.float32)
    now = int(time.time() * 1000)
    return WatchlistEntry(subject, f"REF-{subject}", "wanted_by_courts", "red", Provenance("custody", now, "PACE s.64A", "note", now),
                          now + 86_400_000, ("dep-1",), (EnrolledEmbedding(MODEL, vector / np.linalg.norm(vector)),),
                          ReferenceImage(image or f"jpeg-of-{subject}".encode(), 10, 10))


@pytest.fixture
def attacked(broker, kafka_env, monkeypatch, tmp_path):
    """alice, bob and dave enrolled genuinely; then every attack written straight onto the topic."""
    topics = {name: unique(name) for name in ("watchlist", "audit", "dlq", "deployments")}
    create_topics(broker.bootstrap_servers, *topics.values(), partitions=1)
    for name, topic in topics.items():
        monkeypatch.setenv(f"LFR_{name.upper()}_TOPIC", topic)
    identity = ephemeral_identity(tmp_path / "keys", "PC 1 Operator")
    for name, value in identity.items():
        monkeypatch.setenv(name, value)
    store = WatchlistStore(load_settings(WatchlistSettings))
    for subject, seed in (("alice", 1), ("bob", 2), ("dave", 3)):
        store.publish(entry(subject, seed))
    topic = topics["watchlist"]
    raw = Producer({"bootstrap.servers": broker.bootstrap_servers})

    def send(key: bytes, value: bytes | None, headers=None) -> None:
        raw.produce(topic, key=key, value=value, headers=headers or [])
        assert raw.flush(10) == 0

    stranger = Signer.generate("PC 1 Operator")  # the same name, a key nobody trusts
    mallory = encode("lfr.watchlist.v1", entry("mallory", 9).to_data())
    send(b"mallory", mallory)  # unsigned add
    eve = encode("lfr.watchlist.v1", entry("eve", 10).to_data())
    send(b"eve", eve, stranger.record_headers(topic, b"eve", eve, audit_hash="ab" * 32))  # signed by an unknown key
    reader = TopicReader(broker.bootstrap_servers, topic)
    try:
        alice_add = next(r for r in reader.read_until(3) if r.key() == b"alice")
    finally:
        reader.close()
    tampered = bytearray(alice_add.value())
    tampered[-3] ^= 0x01  # one byte of alice's genuine record changed
    send(b"alice", bytes(tampered), alice_add.headers())
    # Replay: carol added then removed (both genuine); her signed add re-produced afterwards.
    store.publish(entry("carol", 4))
    reader = TopicReader(broker.bootstrap_servers, topic)
    try:
        carol_add = next(r for r in reader.read_until(7) if r.key() == b"carol")
    finally:
        reader.close()
    store.tombstone("carol", requested_by="Sgt 2")
    send(b"carol", carol_add.value(), carol_add.headers())
    send(b"bob", None, stranger.record_headers(topic, b"bob", None, audit_hash="ab" * 32))  # forged removal
    send(b"dave", None)  # unsigned tombstone
    # A forged reference image: alice's entry with another face in it, unsigned.
    send(b"alice", encode("lfr.watchlist.v1", entry("alice", 1, image=b"someone-else").to_data()))
    # A trusted key but a made-up audit hash: no audit record of this change exists.
    frank = encode("lfr.watchlist.v1", entry("frank", 11).to_data())
    send(b"frank", frank, store.signer.record_headers(topic, b"frank", frank, audit_hash="cd" * 32))
    return store, topics


def test_watchlist_list_and_snapshot_apply_only_what_verifies(attacked):
    store, _topics = attacked
    entries = store.read_all()
    assert set(entries) == {"alice", "bob", "dave"}
    assert entries["alice"].reference_image.jpeg == b"jpeg-of-alice"
    assert np.allclose(entries["alice"].embeddings[0].vector, entry("alice", 1).embeddings[0].vector)
    assert store.refusals.reasons == {"unsigned": 3, "unknown_key": 2, "bad_signature": 1, "replayed": 1, "unaudited": 1}
    # The snapshot `lfr deployment authorise` freezes is selected from the same verified entries.
    chosen, _excluded = snapshot.select(entries, "dep-1", Criteria(("wanted_by_courts",), ("red",), 100), int(time.time() * 1000))
    assert [e.subject_id for e in chosen] == ["alice", "bob", "dave"]


def test_watchlist_list_command_lists_only_what_verifies(attacked):
    _store, _topics = attacked
    result = subprocess.run([sys.executable, "-m", "services.cli", "watchlist", "list", "--json"], capture_output=True, text=True,
                            timeout=180, env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    listed = {line.split('"subject_id": "')[1].split('"')[0] for line in result.stdout.splitlines() if line.strip()}
    assert listed == {"alice", "bob", "dave"}
    assert "8 records refused and not listed" in result.stderr


def test_console_reference_images_come_only_from_verified_records(attacked, broker, tmp_path):
    from services.operations.review.service import build_console
    from tests.review.helpers import review_settings

    store, topics = attacked
    store.publish(entry("zed", 12))  # a genuine change after every attack: once it shows, all were read
    settings = review_settings(broker.bootstrap_servers, tmp_path / "review", watchlist_topic=topics["watchlist"],
                               audit_topic=topics["audit"])
    console, reader = build_console(settings)
    reader.start()
    try:
        wait_until(lambda: "zed" in reader.board.references, 20, "every watchlist record read")
        assert set(reader.board.references) == {"alice", "bob", "dave", "zed"}
        assert reader.board.references["alice"] == b"jpeg-of-alice"
    finally:
        reader.stop_event.set()
        reader.join(10)


class Clock:
    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


@pytest.fixture
def deployment_admin(broker, kafka_env, monkeypatch):
    """`lfr deployment` on fresh topics, signing with the session operator's key (test:operator)."""
    from services.governance.deployments.admin import DeploymentAdmin
    from services.governance.deployments.store import DeploymentStore
    from tests.deployments.test_rules import calibration

    topics = {name: unique(name) for name in ("deployments", "watchlist", "audit", "dlq")}
    create_topics(broker.bootstrap_servers, *topics.values(), partitions=1)
    for name, topic in topics.items():
        monkeypatch.setenv(f"LFR_{name.upper()}_TOPIC", topic)
    clock = Clock(int(time.time() * 1000))
    return DeploymentAdmin(DeploymentStore(load_settings(DeploymentSettings)), clock, calibration()), topics


def test_a_deployment_creator_is_the_drafts_signer_and_never_changes(deployment_admin, broker, authoriser, monkeypatch, capsys):
    """The superintendent may not authorise what he created; he tries by naming someone else as the creator."""
    from pathlib import Path

    from services.cli import main as lfr
    from services.governance.deployments.admin import DeploymentAdmin
    from services.governance.deployments.record import SCHEMA, Refused, Window
    from services.governance.deployments.store import DeploymentStore
    from tests.deployments.test_rules import HOUR, calibration, draft

    _operators, topics = deployment_admin
    own_key = Path(os.environ["LFR_SIGNING_KEY_FILE"]).with_name(f"{authoriser.key_id}.key.json")
    monkeypatch.setenv("LFR_SIGNING_KEY_FILE", str(own_key))  # everything below is written with his own key
    admin = DeploymentAdmin(DeploymentStore(load_settings(DeploymentSettings)), calibration=calibration())
    topic = topics["deployments"]
    now = admin.clock()
    base = replace(draft(), window=Window(now, now + 4 * HOUR))
    raw = Producer({"bootstrap.servers": broker.bootstrap_servers})

    def send(deployment, signer: Signer | None) -> None:
        key, value = deployment.deployment_id.encode(), encode(SCHEMA, deployment.to_data())
        raw.produce(topic, key=key, value=value, headers=signer.record_headers(topic, key, value, audit_hash="ab" * 32) if signer else [])
        assert raw.flush(10) == 0

    # An unsigned draft naming someone else as its creator.
    send(replace(base, deployment_id="dep-unsigned", created_by="Sgt Someone Else"), None)
    # The same, audited and signed with his own trusted key: a draft is written by its creator alone.
    admin.store.publish(replace(base, deployment_id="dep-named", created_by="Sgt Someone Else"))
    # His genuine draft, whose later revision (audited, signed) names another creator.
    admin.create(replace(base, deployment_id="dep-changed"))
    admin.store.publish(replace(admin.get("dep-changed"), revision=1, created_by="Sgt Someone Else"))
    # A draft signed by his trusted key whose audit hash names no audit record.
    send(replace(base, deployment_id="dep-unaudited", created_by="Sgt Someone Else"), authoriser)

    for deployment_id in ("dep-unsigned", "dep-named", "dep-changed", "dep-unaudited"):
        with pytest.raises(Refused):
            admin.authorise(deployment_id, authoriser.owner, "superintendent")  # with his own key, a superintendent's
    listed = admin.store.read_all()
    assert set(listed) == {"dep-changed"} and listed["dep-changed"].created_by == authoriser.owner
    assert admin.store.refusals.reasons == {"unsigned": 1, "creator_changed": 2, "unaudited": 1}
    capsys.readouterr()
    assert lfr(["deployment", "list"]) == 0
    assert "4 records refused and not shown (2 creator_changed, 1 unaudited, 1 unsigned)" in capsys.readouterr().err
