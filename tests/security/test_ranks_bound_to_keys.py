"""Ranks and roles are bound to keys (issue #23): a key administrator registers a key's rank,
role and force (signed, audited); authorisation takes the signer's registered rank, and a
`--rank` that disagrees is refused; readers refuse a record whose rank is not its key's."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import replace
from pathlib import Path

import pytest

from services.governance.audit.identity import ephemeral_identity
from services.cli import main as lfr
from services.common.jsonevents import decode_record
from services.common.settings import DeploymentSettings, load_settings
from services.common.signing import Keyring, Signer
from services.governance.deployments.admin import DeploymentAdmin
from services.governance.deployments.record import Window
from services.governance.deployments.signing import countersign
from services.governance.deployments.store import DeploymentStore
from tests.deployments.test_rules import HOUR, calibration, draft
from tests.kafka_helpers import TopicReader, create_topics, unique


@pytest.fixture
def force(broker, kafka_env, monkeypatch, tmp_path, capsys):
    """A keyring whose administrator (the operator, who creates deployments) registered an
    inspector and a superintendent; returns their key files and the topics."""
    topics = {name: unique(name) for name in ("deployments", "watchlist", "audit", "dlq")}
    create_topics(broker.bootstrap_servers, *topics.values(), partitions=1)
    for name, topic in topics.items():
        monkeypatch.setenv(f"LFR_{name.upper()}_TOPIC", topic)
    identity = ephemeral_identity(tmp_path / "keys", "PS 1 Operator")
    for name, value in identity.items():
        monkeypatch.setenv(name, value)
    files = {"admin": Path(identity["LFR_SIGNING_KEY_FILE"])}
    ring = Keyring.load(Path(identity["LFR_KEYRING_FILE"]))
    for who, owner, rank in (("inspector", "Insp 5 Moss", "inspector"), ("superintendent", "Supt 9 Evans", "superintendent")):
        signer = Signer.generate(owner)
        files[who] = tmp_path / "keys" / f"{who}.key.json"
        signer.save(files[who], identity["LFR_SIGNING_KEY_PASSPHRASE"])
        ring.add(signer, 0)
        ring.save()
        capsys.readouterr()
        assert lfr(["keys", "register", signer.key_id, "--rank", rank, "--role", "authorising_officer", "--force", "Test Police"]) == 0
        assert json.loads(capsys.readouterr().out)["registered_by"] == Signer.load(files["admin"], identity["LFR_SIGNING_KEY_PASSPHRASE"]).key_id
        ring = Keyring.load(Path(identity["LFR_KEYRING_FILE"]))
    admin = DeploymentAdmin(DeploymentStore(load_settings(DeploymentSettings)), calibration=calibration())
    now = admin.clock()
    admin.create(replace(draft(), deployment_id="dep-1", window=Window(now, now + 4 * HOUR)))
    return files, topics, identity


def as_key(monkeypatch, path: Path) -> None:
    monkeypatch.setenv("LFR_SIGNING_KEY_FILE", str(path))


def test_an_inspectors_key_cannot_authorise_by_claiming_superintendent(force, monkeypatch, capsys):
    files, _topics, _identity = force
    as_key(monkeypatch, files["inspector"])
    capsys.readouterr()
    assert lfr(["deployment", "authorise", "dep-1", "--rank", "superintendent"]) == 3
    assert "rank: superintendent is not the rank registered for Insp 5 Moss's key (inspector)" in capsys.readouterr().err
    assert lfr(["deployment", "authorise", "dep-1"]) == 3  # its own rank is below the minimum
    assert "inspector is below the minimum authorising rank" in capsys.readouterr().err
    as_key(monkeypatch, files["superintendent"])
    assert lfr(["deployment", "authorise", "dep-1", "--officer", "Insp 5 Moss"]) == 3  # --officer must be the key's owner
    assert lfr(["deployment", "authorise", "dep-1", "--rank", "superintendent"]) == 0
    assert "authorised by superintendent Supt 9 Evans" in capsys.readouterr().out


def test_readers_refuse_a_record_whose_rank_is_not_its_keys(force, broker):
    files, topics, identity = force
    passphrase = identity["LFR_SIGNING_KEY_PASSPHRASE"]
    store = DeploymentStore(load_settings(DeploymentSettings))
    current = store.read_all()["dep-1"]
    inspector = Signer.load(files["inspector"], passphrase)
    from tests.deployment_helpers import active_deployment

    template = active_deployment("dep-1", ["cam-1"], state="authorised")
    forged = dataclasses.replace(current, revision=1, state="authorised", authorisation=template.authorisation,
                                 snapshot=template.snapshot, history=(*current.history, template.history[-1]))
    forged = countersign(forged, inspector)  # rank "superintendent" on the record, an inspector's key
    assert forged.authorisation.rank == "superintendent"
    store.publish(forged)  # written, audited and signed by a trusted key: only the rank is wrong
    assert store.read_all()["dep-1"].state == "draft"
    assert store.refusals.reasons == {"rank_not_registered": 1}


def test_only_a_key_administrator_registers_and_a_hand_edited_rank_is_no_rank(force, monkeypatch, capsys):
    files, topics, identity = force
    ring_path = Path(identity["LFR_KEYRING_FILE"])
    inspector = Signer.load(files["inspector"], identity["LFR_SIGNING_KEY_PASSPHRASE"])
    as_key(monkeypatch, files["inspector"])
    capsys.readouterr()
    assert lfr(["keys", "register", inspector.key_id, "--rank", "chief_constable", "--role", "authorising_officer"]) == 3
    assert "is not a registered key administrator" in capsys.readouterr().err
    # Every registration is audited, signed by the administrator.
    reader = TopicReader(__import__("os").environ["LFR_KAFKA_BOOTSTRAP_SERVERS"], topics["audit"])
    try:
        registered = [r for r in (decode_record(m.value(), m.headers()).data for m in reader.read_until(2)) if r["action"].startswith("keys.")]
    finally:
        reader.close()
    assert [(r["action"], r["details"]["rank"], r["actor"]) for r in registered] == [
        ("keys.register", "inspector", "PS 1 Operator"), ("keys.register", "superintendent", "PS 1 Operator")]
    # Editing the keyring file to promote the inspector breaks the registration's signature.
    document = json.loads(ring_path.read_text())
    for key in document["keys"]:
        if key["key_id"] == inspector.key_id:
            key["rank"] = "superintendent"
    ring_path.write_text(json.dumps(document))
    assert Keyring.load(ring_path).registration(inspector.key_id) is None
    assert lfr(["deployment", "authorise", "dep-1"]) == 3
    assert "has no registered rank" in capsys.readouterr().err
