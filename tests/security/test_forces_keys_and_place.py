"""Forces as tenants (issue #24): every governed record carries its force and is refused off its
place; a key registered for force A neither signs force B's watchlist entries nor authorises
force B's deployments (refused at the command line, exit 3, and by every reader)."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from services.governance.audit.identity import ephemeral_identity
from services.cli import main as lfr
from services.common.envelope import encode
from services.common.settings import DeploymentSettings, WatchlistSettings, load_settings
from services.common.signing import Keyring, Signer
from services.governance.deployments.admin import DeploymentAdmin
from services.governance.deployments.record import Window
from services.governance.deployments.store import DeploymentStore
from services.governance.watchlist.store import WatchlistStore
from services.governance.watchlist.verified import VerifiedWatchlist, fold
from tests.deployments.test_rules import HOUR, calibration, draft, entry
from tests.kafka_helpers import TopicReader, create_topics, produce, unique



def test_a_record_is_refused_off_its_place():
    from services.governance.forces import place

    assert place.mismatch("lfr.gmp.alerts.v3", {"force": "gmp"}) is None
    assert place.mismatch("lfr.alerts.v3", {}) is None  # force default, as before forces
    assert place.mismatch("lfr.alerts.v3", {"force": "gmp"})  # force A's name on default's topic
    assert place.mismatch("lfr.surrey.alerts.v3", {"force": "gmp"})  # force A's name on force B's topic
    assert place.mismatch("lfr.surrey.alerts.v3", {})  # unnamed = default's, not surrey's
    assert place.mismatch("lfr.deployments.v1", {"force": "Test Constabulary"}) is None  # a pre-force free-text name
    assert place.mismatch("lfr.surrey.deployments.v1", {"force": "Test Constabulary"})
    with pytest.raises(place.ForceMismatch):
        place.check_topic("lfr.surrey.counts.v2", "lfr.counts.v2", {"force": "gmp"}, "test")
    place.check_topic("lfr.surrey.faces.v1", "lfr.faces.v1", {}, "test")  # not a governed record: no force field
    with pytest.raises(place.ForceMismatch):
        place.check_deployment({"force": "gmp"}, "surrey", "lfr.surrey.alerts.v3", "test")


@pytest.fixture
def forces(broker, kafka_env, monkeypatch, tmp_path, capsys):
    """Forces A and B on their own topics; an administrator registered A's and B's superintendents
    and B's sergeant (who creates B's deployment)."""
    a, b = f"a{uuid.uuid4().hex[:6]}", f"b{uuid.uuid4().hex[:6]}"
    topics = {force: {name: f"lfr.{force}.{name}.v{v}" for name, v in (("deployments", 1), ("watchlist", 1), ("audit", 2))} for force in (a, b)}
    dlq = unique("lfr.dlq.v1")
    create_topics(broker.bootstrap_servers, dlq, *(t for by_name in topics.values() for t in by_name.values()), partitions=1)
    monkeypatch.setenv("LFR_DLQ_TOPIC", dlq)
    identity = ephemeral_identity(tmp_path / "keys", "Key Admin")
    for name, value in identity.items():
        monkeypatch.setenv(name, value)
    ring = Keyring.load(Path(identity["LFR_KEYRING_FILE"]))
    files = {}
    for who, owner, rank, role, force in (("a_super", "Supt 1 Adams", "superintendent", "authorising_officer", a),
                                          ("b_super", "Supt 2 Brown", "superintendent", "authorising_officer", b),
                                          ("b_sergeant", "PS 3 Clark", "sergeant", "operator", b)):
        signer = Signer.generate(owner)
        files[who] = tmp_path / "keys" / f"{who}.key.json"
        signer.save(files[who], identity["LFR_SIGNING_KEY_PASSPHRASE"])
        ring.add(signer, 0)
        ring.save()
        with monkeypatch.context() as m:  # the registration is audited on force A's chain
            for name, topic in topics[a].items():
                m.setenv(f"LFR_{name.upper()}_TOPIC", topic)
            assert lfr(["keys", "register", signer.key_id, "--rank", rank, "--role", role, "--force", force]) == 0
        ring = Keyring.load(Path(identity["LFR_KEYRING_FILE"]))
    capsys.readouterr()
    return a, b, topics, files, identity


def as_force(monkeypatch, topics: dict[str, str], key: Path) -> None:
    for name, topic in topics.items():
        monkeypatch.setenv(f"LFR_{name.upper()}_TOPIC", topic)
    monkeypatch.setenv("LFR_SIGNING_KEY_FILE", str(key))


def test_a_key_of_force_a_cannot_change_force_bs_watchlist(forces, monkeypatch, capsys):
    a, b, topics, files, _ = forces
    as_force(monkeypatch, topics[b], files["b_sergeant"])
    WatchlistStore(load_settings(WatchlistSettings)).publish(entry("s-1"))  # B's own key: written
    as_force(monkeypatch, topics[b], files["a_super"])
    with pytest.raises(Exception, match=f"belongs to force {a}, not to force {b}") as refused:
        WatchlistStore(load_settings(WatchlistSettings)).publish(entry("s-2"))
    assert refused.value.exit_code == 3
    capsys.readouterr()
    assert lfr(["watchlist", "remove", "--subject", "s-1", "--actor", "x", "--reason", "test"]) == 3
    assert f"belongs to force {a}, not to force {b}" in capsys.readouterr().err
    as_force(monkeypatch, topics[b], files["b_sergeant"])
    assert lfr(["watchlist", "remove", "--subject", "s-1", "--actor", "x", "--reason", "test"]) == 0


def test_readers_refuse_force_as_key_and_force_as_name_on_force_bs_watchlist(forces, broker):
    """Written past the command line's check: signed, carrying an audit hash; the reader refuses both."""
    a, b, topics, files, identity = forces
    passphrase = identity["LFR_SIGNING_KEY_PASSPHRASE"]
    topic = topics[b]["watchlist"]
    a_key, b_key = Signer.load(files["a_super"], passphrase), Signer.load(files["b_sergeant"], passphrase)
    records = []
    for subject, force, signer in (("by-a-key", b, a_key), ("named-a", a, b_key), ("good", b, b_key)):
        value = encode("lfr.watchlist.v1", {**entry(subject).to_data(), "force": force})
        records.append((subject.encode(), value, signer.record_headers(topic, subject.encode(), value, audit_hash="0" * 64)))
    for key, value, headers in records:
        produce(broker.bootstrap_servers, topic, [value], keys=[key], headers=[headers])
    refused = []
    reader = VerifiedWatchlist(Keyring.load(Path(identity["LFR_KEYRING_FILE"])), topic, lambda _r, refusal, _live: refused.append(refusal.reason))
    tail = TopicReader(broker.bootstrap_servers, topic)
    try:
        entries = fold(tail.read_until(3), reader)
    finally:
        tail.close()
    assert set(entries) == {"good"}
    assert sorted(refused) == ["force_mismatch", "key_force"]


def test_a_superintendent_of_force_a_cannot_authorise_force_bs_deployment(forces, monkeypatch, capsys):
    a, b, topics, files, _ = forces
    as_force(monkeypatch, topics[b], files["b_sergeant"])
    admin = DeploymentAdmin(DeploymentStore(load_settings(DeploymentSettings)), calibration=calibration())
    now = admin.clock()
    created = admin.create(replace(draft(force=None), deployment_id="dep-b", window=Window(now, now + 4 * HOUR)))
    assert created.force == b  # a new deployment carries its force
    as_force(monkeypatch, topics[b], files["a_super"])
    assert lfr(["deployment", "authorise", "dep-b"]) == 3
    assert f"belongs to force {a}" in capsys.readouterr().err
    as_force(monkeypatch, topics[b], files["b_super"])
    assert lfr(["deployment", "authorise", "dep-b"]) == 0, capsys.readouterr().err
    store = DeploymentStore(load_settings(DeploymentSettings))
    assert store.read_all()["dep-b"].state == "authorised"


def test_a_deployment_named_for_force_a_is_refused_on_force_bs_topic(forces, monkeypatch):
    a, b, topics, files, _ = forces
    as_force(monkeypatch, topics[b], files["b_sergeant"])
    admin = DeploymentAdmin(DeploymentStore(load_settings(DeploymentSettings)), calibration=calibration())
    with pytest.raises(Exception, match="names force") as refused:
        admin.create(replace(draft(force=a), deployment_id="dep-x"))
    assert getattr(refused.value, "exit_code", None) == 3


def test_audit_records_carry_their_force(forces, broker):
    a, _b, topics, _files, _ = forces
    from services.common.jsonevents import decode_record

    tail = TopicReader(broker.bootstrap_servers, topics[a]["audit"])
    try:
        records = [decode_record(m.value(), m.headers()).data for m in tail.read_until(3)]
    finally:
        tail.close()
    assert {r["force"] for r in records} == {a}
    assert json.dumps(records).count('"force"') >= 3


def test_audit_verify_force_checks_one_forces_chain(forces, monkeypatch, capsys):
    """`lfr audit verify --force F` verifies F's chain; a record of force A's key appended to force
    B's chain (written past every command's check) fails it as foreign."""
    from services.governance.audit.writer import AuditWriter
    from services.common.settings import AuditSettings

    a, b, topics, files, identity = forces
    monkeypatch.setenv("LFR_AUDIT_TOPIC", "lfr.audit.v2")  # --force, not the setting, picks the chain
    assert lfr(["audit", "verify", "--force", a]) == 0, capsys.readouterr().out
    assert f"lfr.{a}.audit.v2[0]: 3 records, chain intact" in capsys.readouterr().out
    as_force(monkeypatch, topics[b], files["b_sergeant"])
    settings = load_settings(AuditSettings)
    own = AuditWriter(settings, topics[b]["audit"], Signer.load(files["b_sergeant"], identity["LFR_SIGNING_KEY_PASSPHRASE"]), "test")
    own.write("test.own", None, {})
    own.close()
    assert lfr(["audit", "verify", "--force", b]) == 0
    capsys.readouterr()
    intruder = AuditWriter(settings, topics[b]["audit"], Signer.load(files["a_super"], identity["LFR_SIGNING_KEY_PASSPHRASE"]), "test")
    intruder.write("test.intrusion", None, {})
    intruder.close()
    assert lfr(["audit", "verify", "--force", b]) == 1
    out = capsys.readouterr().out
    assert f"FAILED at offset 1 (seq 1): foreign: signed by key" in out and f"of force {a}" in out
    assert lfr(["audit", "verify", "--force", a]) == 0  # A's chain is not B's business


def test_a_record_naming_force_a_in_force_bs_chain_is_foreign():
    from services.governance.audit.chain import GENESIS, Position, record_hash, seal, verify_chain

    signer = Signer.generate("Someone")
    ring = Keyring()
    ring.add(signer, 0)
    first = seal({"action": "x", "at_ms": 1, "service": "t", "force": "surrey"}, signer, 0, GENESIS)
    second = seal({"action": "y", "at_ms": 2, "service": "t", "force": "gmp"}, signer, 1, record_hash(first))
    assert verify_chain([Position(0, first), Position(1, second)], ring).ok  # no force asked: chain intact
    report = verify_chain([Position(0, first), Position(1, second)], ring, force="surrey")
    assert not report.ok and report.problem.kind == "foreign" and report.problem.offset == 1
